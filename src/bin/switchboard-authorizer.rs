//! The `$connect` REQUEST authorizer as an AWS Lambda function: validates the
//! JWT and answers an IAM policy, configured by `SWITCHBOARD_AUTH_*`.
//!
//! Built with `cargo lambda build --release --arm64 --features lambda`;
//! everything but this `main` is in `switchboard::lambda` (docs/operations.md).

use std::process::ExitCode;

use switchboard::lambda::{self, Function};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    lambda::run(Function::Authorizer).await
}
