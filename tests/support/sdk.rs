//! The one SDK configuration every test client is built from: static test
//! credentials (no AWS account, no credential chain lookups), `us-east-1`,
//! one retry.

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_sqs::config::Credentials;

/// SDK configuration for tests. With `endpoint` every client goes there
/// (moto, or a fault proxy in front of it); without, each client gets its
/// endpoint elsewhere (the worker gives its @connections client
/// `--callback-url`, a local server).
pub async fn config(endpoint: Option<&str>) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "test",
            "test",
            None,
            None,
            "switchboard-tests",
        ))
        .retry_config(RetryConfig::standard().with_max_attempts(2));
    if let Some(endpoint) = endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    loader.load().await
}
