//! `$default` as an AWS Lambda function: answers a frame no route matched
//! with the actions in `SWITCHBOARD_ACTIONS`.
//!
//! Built with `cargo lambda build --release --arm64 --features lambda`;
//! everything but this `main` is in `switchboard::lambda` (docs/operations.md).

use std::process::ExitCode;

use switchboard::lambda::{self, Function};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    lambda::run(Function::Default).await
}
