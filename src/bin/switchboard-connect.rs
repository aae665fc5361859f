//! `$connect` as an AWS Lambda function: stores the connection in
//! `SWITCHBOARD_CONNECTIONS_TABLE`.
//!
//! Built with `cargo lambda build --release --arm64 --features lambda`;
//! everything but this `main` is in `switchboard::lambda` (docs/operations.md).

use std::process::ExitCode;

use switchboard::lambda::{self, Function};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    lambda::run(Function::Connect).await
}
