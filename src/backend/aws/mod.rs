//! The AWS implementation of the backend traits: SQS FIFO ([`SqsQueue`]), DynamoDB
//! ([`DynamoConnections`], [`DynamoMessages`]) and the API Gateway management API
//! ([`LeanPush`], and the SDK's [`ApiGatewayPush`]).
//!
//! Configuration comes from `aws-config`'s standard chain (environment, profile,
//! ECS task role), so `AWS_ENDPOINT_URL` points every client at a stand-in.
//! SDK errors are classified here, once, into [`ErrorKind`](super::ErrorKind).

mod classify;
mod dynamo;
mod push;
mod sqs;

pub use dynamo::{DynamoConnections, DynamoMessages};
pub use push::{ApiGatewayPush, Clock, LeanPush};
pub use sqs::SqsQueue;

pub(crate) use classify::{classify, written};

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};

/// SQS calls wait up to 20 s (long polling); anything past this is a hung connection.
const SQS_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(35);
/// DynamoDB answers in milliseconds; a call this slow is treated as a timeout.
const DYNAMODB_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// Shared AWS configuration and clients; hands out the backend implementations.
#[derive(Clone, Debug)]
pub struct AwsBackend {
    sdk: SdkConfig,
    sqs: aws_sdk_sqs::Client,
    dynamodb: aws_sdk_dynamodb::Client,
}

impl AwsBackend {
    /// Loads configuration from the standard AWS chain (`AWS_REGION`,
    /// `AWS_ENDPOINT_URL[_SQS|_DYNAMODB]`, profile, ECS task role, ...).
    pub async fn from_env() -> Self {
        Self::new(aws_config::load_defaults(BehaviorVersion::latest()).await)
    }

    /// Uses an already loaded configuration (tests point it at moto).
    pub fn new(sdk: SdkConfig) -> Self {
        let sqs = aws_sdk_sqs::Client::from_conf(
            aws_sdk_sqs::config::Builder::from(&sdk)
                .timeout_config(attempt_timeout(&sdk, SQS_ATTEMPT_TIMEOUT))
                .build(),
        );
        let dynamodb = aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(&sdk)
                .timeout_config(attempt_timeout(&sdk, DYNAMODB_ATTEMPT_TIMEOUT))
                .build(),
        );
        AwsBackend { sdk, sqs, dynamodb }
    }

    /// The loaded SDK configuration.
    pub fn sdk_config(&self) -> &SdkConfig {
        &self.sdk
    }

    /// The SQS client.
    pub fn sqs(&self) -> &aws_sdk_sqs::Client {
        &self.sqs
    }

    /// The DynamoDB client.
    pub fn dynamodb(&self) -> &aws_sdk_dynamodb::Client {
        &self.dynamodb
    }

    /// The queue at `url`.
    pub fn queue(&self, url: impl Into<String>) -> SqsQueue {
        SqsQueue::new(self.sqs.clone(), url.into())
    }

    /// The connections table `table`; `page_size` limits each Query page
    /// (`None`: DynamoDB's 1 MB pages).
    pub fn connections(
        &self,
        table: impl Into<String>,
        page_size: Option<u32>,
    ) -> DynamoConnections {
        DynamoConnections::new(self.dynamodb.clone(), table.into(), page_size)
    }

    /// The messages table `table`.
    pub fn messages(&self, table: impl Into<String>) -> DynamoMessages {
        DynamoMessages::new(self.dynamodb.clone(), table.into())
    }

    /// The @connections transport of the hot path: the lean signed client,
    /// one attempt per call (the fan-out retries each recipient itself, with
    /// its own bounded backoff, and counts every attempt).
    pub fn push(&self) -> LeanPush {
        LeanPush::new(&self.sdk, DYNAMODB_ATTEMPT_TIMEOUT)
    }

    /// The same transport through the real `aws-sdk-apigatewaymanagement`
    /// client (the reference the lean client is tested against). SDK retries
    /// are off, as the fan-out retries.
    pub fn sdk_push(&self) -> ApiGatewayPush {
        ApiGatewayPush::new(
            aws_sdk_apigatewaymanagement::config::Builder::from(&self.sdk)
                .retry_config(RetryConfig::disabled())
                .timeout_config(attempt_timeout(&self.sdk, DYNAMODB_ATTEMPT_TIMEOUT)),
        )
    }
}

fn attempt_timeout(sdk: &SdkConfig, attempt: Duration) -> TimeoutConfig {
    let mut b = TimeoutConfig::builder();
    if let Some(t) = sdk.timeout_config() {
        if let Some(c) = t.connect_timeout() {
            b = b.connect_timeout(c);
        }
        if let Some(o) = t.operation_timeout() {
            b = b.operation_timeout(o);
        }
    }
    b.operation_attempt_timeout(attempt).build()
}
