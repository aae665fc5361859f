//! What each subcommand does, wired from the typed configuration to the parts.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::actions::{Actions, Fanout};
use crate::backend::aws::AwsBackend;
use crate::backend::{BackendError, Connections, Messages, Push, Queue};
use crate::cli::{Cli, Command, GatewayArgs, WorkerArgs};
use crate::config::{UsageError, WorkerConfig};
use crate::ops::migrate;
use crate::telemetry::{self, Health, Metrics};
use crate::worker::{Handler, Worker};

/// A failed command: usage errors exit 2, everything else 1.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad flag, file or setting: exit 2.
    #[error(transparent)]
    Usage(#[from] UsageError),
    /// Anything that went wrong while running: exit 1.
    #[error(transparent)]
    Runtime(#[from] anyhow::Error),
}

impl Error {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => 2,
            Error::Runtime(_) => 1,
        }
    }
}

/// Runs a parsed command line to completion.
pub async fn run(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Command::Worker(args) => worker(&args).await,
        Command::Gateway(args) => gateway(&args).await,
        Command::Migrate(args) => {
            let backend = AwsBackend::from_env().await;
            let report = migrate::run(
                &backend,
                &migrate::Names::from(&args),
                args.timeout,
                |line| println!("{line}"),
            )
            .await?;
            println!("SWITCHBOARD_QUEUE_URL={}", report.queue_url);
            println!("SWITCHBOARD_DLQ_URL={}", report.dlq_url);
            Ok(())
        }
    }
}

/// Resolves when SIGTERM or SIGINT arrives.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received"),
        _ = term => tracing::info!("SIGTERM received"),
    }
}

async fn worker(args: &WorkerArgs) -> Result<(), Error> {
    let config = WorkerConfig::from_args(args)?;
    let listener = TcpListener::bind(args.metrics_addr)
        .await
        .with_context(|| format!("cannot serve metrics on {}", args.metrics_addr))?;
    let backend = AwsBackend::from_env().await;
    run_worker_on_aws(&backend, config, listener, shutdown_signal()).await
}

async fn gateway(args: &GatewayArgs) -> Result<(), Error> {
    use crate::gateway::{Gateway, GatewayConfig, HandlerBackend};
    let config = match &args.config {
        Some(path) => GatewayConfig::load(path)?,
        None => GatewayConfig::default(),
    };
    let backend = if config.uses_builtin() {
        let queue_url = args.queue_url.clone().ok_or_else(|| {
            UsageError(
                "the gateway's routes use builtin handlers, which write to the FIFO queue: \
                 pass --queue-url (or SWITCHBOARD_QUEUE_URL)"
                    .into(),
            )
        })?;
        let aws = AwsBackend::from_env().await;
        Some(HandlerBackend {
            queue: Arc::new(aws.queue(queue_url)),
            connections: Arc::new(aws.connections(&args.connections_table, None)),
        })
    } else {
        None
    };
    let gateway = Gateway::new(config, backend)?;
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    crate::gateway::run(listener, gateway, shutdown_signal())
        .await
        .context("gateway server failed")?;
    Ok(())
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
    );
    let actions = Actions::new(backends.messages, fanout, config.actions.clone());
    let handler = Handler::new(
        actions,
        config.pipelines.clone(),
        config.backoff,
        metrics.clone(),
    );
    let worker = Worker::new(queue, dlq, handler, config.worker.clone(), metrics, health);
    worker.run(shutdown).await;
    let _ = stop_http.send(());
    let _ = http.await;
    Ok(())
}

/// Reads the queue's settings, retrying transient failures (the queue endpoint
/// may come up after us); fails on anything that retrying cannot fix.
async fn probe_queue(queue: &dyn Queue) -> Result<crate::backend::QueueInfo, Error> {
    let mut delay = Duration::from_millis(200);
    loop {
        match queue.info().await {
            Ok(info) => return Ok(info),
            Err(e) if e.is_retriable() => {
                tracing::warn!(error = %e, ?delay, "queue not reachable yet");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
            Err(e) => {
                return Err(anyhow::Error::new(e)
                    .context(format!("cannot read queue {}", queue.url()))
                    .into());
            }
        }
    }
}
