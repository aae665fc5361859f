//! The custom routes (`sendMessage`, `history`, `direct`) as an AWS Lambda
//! function: enqueues envelope v1 on `SWITCHBOARD_QUEUE_URL`.
//!
//! Built with `cargo lambda build --release --arm64 --features lambda`;
//! everything but this `main` is in `switchboard::lambda` (docs/operations.md).

use std::process::ExitCode;

use switchboard::lambda::{self, Function};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    lambda::run(Function::Send).await
}
