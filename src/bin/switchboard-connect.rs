//! `$connect` as an AWS Lambda function: stores the connection in
//! `SWITCHBOARD_CONNECTIONS_TABLE`.
//!
//! Built with `cargo lambda build --release --arm64 --features lambda`;
//! everything but this `main` is in `switchboard::lambda` (docs/operations.md).

use std::process::ExitCode;

use lambda_runtime::service_fn;
use switchboard::lambda::{self, Function};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let handlers = match lambda::init_edge(Function::Connect).await {
        Ok(handlers) => handlers,
        Err(code) => return code,
    };
    lambda::exit(lambda_runtime::run(service_fn(|event| lambda::connect(&handlers, event))).await)
}
