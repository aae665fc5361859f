//! The embedded backend in tests: state directories that clean up after
//! themselves, and an SDK configuration for the real @connections client that
//! needs no AWS account.

use std::path::{Path, PathBuf};

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_sqs::config::Credentials;

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// `$TMPDIR/<prefix>-<pid>-<random>`, created empty.
    pub fn new(prefix: &str) -> Self {
        let dir = std::env::temp_dir().join(super::unique(prefix));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// SDK configuration with static credentials and no endpoint: each client
/// gets its endpoint (a local @connections server) from the worker.
pub async fn static_sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "test",
            "test",
            None,
            None,
            "switchboard-tests",
        ))
        .retry_config(RetryConfig::standard().with_max_attempts(2))
        .load()
        .await
}
