//! The operator commands `replay-dlq` and `healthcheck`.

use super::Error;
use crate::backend::Queue;
use crate::backend::aws::AwsBackend;
use crate::cli::{HealthcheckArgs, ReplayDlqArgs};
use crate::ops::{healthcheck, replay};

/// `switchboard replay-dlq` on SQS (or a stand-in behind `AWS_ENDPOINT_URL`).
pub(super) async fn replay_dlq(args: &ReplayDlqArgs) -> Result<(), Error> {
    let backend = AwsBackend::from_env().await;
    let target = backend.queue(&args.to);
    let dlq = args.from.as_ref().map(|url| backend.queue(url));
    replay::command::run(
        &target,
        dlq.as_ref().map(|q| q as &dyn Queue),
        |url| backend.queue(url),
        &replay::command::options(args),
    )
    .await
    .map(|_| ())
}

/// `switchboard healthcheck`: exit 0 when the local worker answers.
pub(super) async fn healthcheck(args: &HealthcheckArgs) -> Result<(), Error> {
    healthcheck::check(
        healthcheck::target(args.metrics_addr),
        &args.path,
        args.timeout,
    )
    .await
    .map_err(|e| Error::Runtime(e.into()))
}
