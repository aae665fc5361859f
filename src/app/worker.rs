//! `switchboard worker`: the FIFO consumer with its telemetry endpoints, on the
//! AWS backend or on any [`WorkerBackends`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use backon::{ExponentialBuilder, Retryable};
use tokio::net::TcpListener;

use super::{Error, shutdown_signal};
use crate::actions::{Actions, Fanout};
use crate::backend::aws::AwsBackend;
use crate::backend::embedded::EmbeddedStore;
use crate::backend::{BackendError, Connections, Messages, Push, Queue};
use crate::cli::WorkerArgs;
use crate::telemetry::{self, Health, Metrics};
use crate::usage::UsageError;
use crate::worker::{Handler, Worker};
use crate::worker_config::WorkerConfig;

pub(super) async fn command(args: &WorkerArgs) -> Result<(), Error> {
    let config = WorkerConfig::from_args(args)?;
    let listener = TcpListener::bind(args.metrics_addr)
        .await
        .with_context(|| format!("cannot serve metrics on {}", args.metrics_addr))?;
    // The bound address, so that `--metrics-addr 127.0.0.1:0` can be found.
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
    }
    match config.data_dir.clone() {
        Some(dir) => {
            let store = EmbeddedStore::open(&dir)
                .await
                .with_context(|| format!("cannot open the embedded store in {}", dir.display()))?;
            // Like `dev`, create what is missing (idempotent): the queue of
            // --queue-url with its `-dlq` twin and the two tables.
            let queue = config.queue_url.trim_start_matches("embedded://");
            let names = crate::migrations::Names {
                connections_table: config.connections_table.clone(),
                messages_table: config.messages_table.clone(),
                queue: queue.to_owned(),
                dlq: format!("{}-dlq.fifo", queue.trim_end_matches(".fifo")),
            };
            store.migrate(&names).await.with_context(|| {
                format!("cannot create the embedded queues in {}", dir.display())
            })?;
            let backends = embedded_backends(&store, &config).await?;
            run_worker(backends, config, listener, shutdown_signal()).await
        }
        None => {
            let backend = AwsBackend::from_env().await;
            run_worker_on_aws(&backend, config, listener, shutdown_signal()).await
        }
    }
}

/// The worker's backends on an embedded store; the @connections client signs
/// with fixed local credentials (see [`local_push`]).
pub async fn embedded_backends(
    store: &EmbeddedStore,
    config: &WorkerConfig,
) -> Result<WorkerBackends, Error> {
    let opener = store.clone();
    Ok(WorkerBackends {
        queue: Arc::new(store.queue(&config.queue_url).context("inbound queue")?),
        open_queue: Box::new(move |url| Ok(Arc::new(opener.queue(url)?) as Arc<dyn Queue>)),
        connections: Arc::new(store.connections(&config.connections_table, config.query_page_size)),
        messages: Arc::new(store.messages(&config.messages_table)),
        push: Arc::new(local_push().await.push()),
    })
}

/// The @connections client for local endpoints (the local gateway accepts any
/// SigV4-signed request): the worker's own signed client (`AwsBackend::push`)
/// with fixed credentials, independent of the user's AWS configuration.
pub async fn local_push() -> AwsBackend {
    local_push_signed_by(None).await
}

/// Like [`local_push`], signing with `credentials` (access key id, secret)
/// when the gateway verifies signatures (`[management]` with credentials).
pub async fn local_push_signed_by(credentials: Option<(&str, &str)>) -> AwsBackend {
    let (id, secret) = credentials.unwrap_or(("switchboard-local", "switchboard-local"));
    AwsBackend::new(
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_sqs::config::Credentials::new(
                id,
                secret,
                None,
                None,
                "switchboard-local",
            ))
            .load()
            .await,
    )
}

/// Runs the worker on AWS services (or stand-ins behind `AWS_ENDPOINT_URL`),
/// serving telemetry on `listener`, until `shutdown`.
pub async fn run_worker_on_aws(
    backend: &AwsBackend,
    config: WorkerConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    let sqs = backend.clone();
    let backends = WorkerBackends {
        queue: Arc::new(backend.queue(&config.queue_url)),
        open_queue: Box::new(move |url| Ok(Arc::new(sqs.queue(url)) as Arc<dyn Queue>)),
        connections: Arc::new(
            backend.connections(&config.connections_table, config.query_page_size),
        ),
        messages: Arc::new(backend.messages(&config.messages_table)),
        push: Arc::new(backend.push()),
    };
    run_worker(backends, config, listener, shutdown).await
}

/// Opens a queue by its URL.
pub type QueueOpener = Box<dyn Fn(&str) -> Result<Arc<dyn Queue>, BackendError> + Send + Sync>;

/// What the worker runs on: AWS services or the embedded backend.
pub struct WorkerBackends {
    /// The inbound FIFO queue.
    pub queue: Arc<dyn Queue>,
    /// Opens a queue by URL: the dead-letter queue, from `--dlq-url` or the
    /// inbound queue's redrive policy.
    pub open_queue: QueueOpener,
    /// The connections table.
    pub connections: Arc<dyn Connections>,
    /// The messages table.
    pub messages: Arc<dyn Messages>,
    /// The @connections transport.
    pub push: Arc<dyn Push>,
}

/// Runs the worker on `backends` (the queue and table names in `config` are
/// not used: `backends` already names them), serving telemetry on
/// `listener`, until `shutdown`.
pub async fn run_worker(
    backends: WorkerBackends,
    config: WorkerConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::default());
    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let http = tokio::spawn(telemetry::serve(
        listener,
        metrics.clone(),
        health.clone(),
        async {
            let _ = http_stopped.await;
        },
    ));
    let result = serve_worker(backends, config, metrics, health, shutdown).await;
    let _ = stop_http.send(());
    let _ = http.await;
    result
}

/// Runs the worker on `backends` until `shutdown`, counting into `metrics` and
/// reporting readiness in `health`; whoever calls it serves those.
pub async fn serve_worker(
    backends: WorkerBackends,
    config: WorkerConfig,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    let queue = backends.queue;
    tokio::pin!(shutdown);
    let probed = tokio::select! {
        i = probe_queue(queue.as_ref()) => Some(i?),
        _ = &mut shutdown => None,
    };
    let Some(info) = probed else {
        return Ok(());
    };
    if !info.fifo {
        return Err(UsageError(format!(
            "queue {} is not a FIFO queue: the worker keeps per-session order only on FIFO queues",
            queue.url()
        ))
        .into());
    }
    let dlq_url = config
        .dlq_url
        .clone()
        .or(info.dead_letter_url)
        .ok_or_else(|| {
            UsageError(format!(
                "queue {} has no RedrivePolicy: pass --dlq-url or run `switchboard migrate`",
                queue.url()
            ))
        })?;
    let dlq = (backends.open_queue)(&dlq_url)
        .with_context(|| format!("cannot open dead-letter queue {dlq_url}"))?;
    health.set_polling(true);

    let fanout = Fanout::new(
        backends.push,
        backends.connections,
        config.fanout_concurrency,
        config.push_retry,
        metrics.clone(),
    )
    .with_pipeline(config.fanout_pipeline);
    // The worker announces presence events: it also sends the leave of a
    // connection it prunes (docs/envelope.md, join and leave events).
    let fanout = if config.actions.presence_events {
        fanout.with_leaves(queue.clone())
    } else {
        fanout
    };
    let actions = Actions::new(backends.messages, fanout, config.actions.clone());
    let handler = Handler::new(
        actions,
        config.pipelines.clone(),
        config.backoff,
        metrics.clone(),
    );
    let worker = Worker::new(queue, dlq, handler, config.worker.clone(), metrics, health);
    worker.run(shutdown).await;
    Ok(())
}

/// Reads the queue's settings, retrying transient failures (the queue endpoint
/// may come up after us); fails on anything that retrying cannot fix.
async fn probe_queue(queue: &dyn Queue) -> Result<crate::backend::QueueInfo, Error> {
    // Without a limit, as before: the worker is useless until the queue answers.
    // 100 ms doubling up to 5 s, each plus up to as much again of jitter
    // (so at most 10 s between tries, as before, and workers started together
    // spread out).
    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(5))
        .without_max_times()
        .with_jitter();
    (|| queue.info())
        .retry(backoff)
        .when(BackendError::is_retriable)
        .notify(|e, delay| tracing::warn!(error = %e, ?delay, "queue not reachable yet"))
        .await
        .map_err(|e| {
            anyhow::Error::new(e)
                .context(format!("cannot read queue {}", queue.url()))
                .into()
        })
}
