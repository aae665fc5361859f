//! The operator commands `migrate`, `replay-dlq` and `healthcheck`: the
//! clients they run on and their errors; the work itself is in [`crate::ops`].

use anyhow::Context;

use super::{Error, replay as command};
use crate::backend::aws::AwsBackend;
use crate::backend::embedded::{EmbeddedStore, URL_PREFIX};
use crate::backend::{BackendError, Queue};
use crate::cli::{HealthcheckArgs, MigrateArgs, ReplayDlqArgs};
use crate::migrations::Names;
use crate::ops::{healthcheck, migrate};
use crate::usage::UsageError;

impl From<&MigrateArgs> for Names {
    fn from(a: &MigrateArgs) -> Self {
        Names {
            connections_table: a.tables.connections_table.clone(),
            messages_table: a.tables.messages_table.clone(),
            queue: a.queue_name.clone(),
            dlq: a.dlq_name.clone(),
        }
    }
}

/// `switchboard migrate` on AWS (or a stand-in behind `AWS_ENDPOINT_URL`):
/// prints each step, then the queue URLs as `SWITCHBOARD_*_URL=` lines.
pub(super) async fn migrate(args: &MigrateArgs) -> Result<(), Error> {
    let backend = AwsBackend::from_env().await;
    let report = migrate::run(&backend, &Names::from(args), args.timeout, |line| {
        println!("{line}")
    })
    .await?;
    println!("SWITCHBOARD_QUEUE_URL={}", report.queue_url);
    println!("SWITCHBOARD_DLQ_URL={}", report.dlq_url);
    Ok(())
}

/// `switchboard replay-dlq` on SQS (or a stand-in behind `AWS_ENDPOINT_URL`),
/// or with `--data-dir` on the embedded queues.
pub(super) async fn replay_dlq(args: &ReplayDlqArgs) -> Result<(), Error> {
    let opts = command::options(args);
    if let Some(dir) = &args.data_dir {
        let store = EmbeddedStore::open(dir)
            .await
            .with_context(|| format!("cannot open the embedded store in {}", dir.display()))?;
        let usage = |e: BackendError| Error::Usage(UsageError(e.message));
        let target = store.queue(&args.to).map_err(usage)?;
        let dlq = args
            .from
            .as_ref()
            .map(|url| store.queue(url))
            .transpose()
            .map_err(usage)?;
        return command::run(
            &target,
            dlq.as_ref().map(|q| q as &dyn Queue),
            |url| store.queue(&url),
            &opts,
        )
        .await
        .map(|_| ());
    }
    if args.to.starts_with(URL_PREFIX) {
        return Err(UsageError(format!(
            "--to {} is an embedded queue: pass --data-dir DIR",
            args.to
        ))
        .into());
    }
    let backend = AwsBackend::from_env().await;
    let target = backend.queue(&args.to);
    let dlq = args.from.as_ref().map(|url| backend.queue(url));
    command::run(
        &target,
        dlq.as_ref().map(|q| q as &dyn Queue),
        |url| Ok(backend.queue(url)),
        &opts,
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
