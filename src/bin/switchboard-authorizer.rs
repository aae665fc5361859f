//! The `$connect` REQUEST authorizer as an AWS Lambda function: validates the
//! JWT and answers an IAM policy, configured by `SWITCHBOARD_AUTH_*`.
//!
//! Built with `cargo lambda build --release --arm64 --features lambda`;
//! everything but this `main` is in `switchboard::lambda` (docs/operations.md).

use std::process::ExitCode;

use lambda_runtime::service_fn;
use switchboard::lambda;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let authorizer = match lambda::init_authorizer().await {
        Ok(authorizer) => authorizer,
        Err(code) => return code,
    };
    lambda::exit(
        lambda_runtime::run(service_fn(|event| lambda::authorizer(&authorizer, event))).await,
    )
}
