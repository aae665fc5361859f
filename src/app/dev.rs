//! `switchboard dev`: the whole system on one machine. The local gateway (with
//! the builtin handlers), the embedded queue and tables, the worker posting back
//! through the worker's SigV4-signed @connections client (the one it uses on
//! AWS) to the gateway's own @connections API, the demo page, the console
//! and `/metrics`, all on one port.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::worker::{WorkerBackends, local_push_signed_by, serve_worker};
use super::{Error, demo, shutdown_signal};
use crate::actions::Pipelines;
use crate::backend::embedded::EmbeddedStore;
use crate::backend::{Connections, Queue};
use crate::cli::DevArgs;
use crate::console::{Console, ConsoleStore};
use crate::gateway::{self, Gateway, GatewayConfig, HandlerBackend};
use crate::handlers::HandlerKind;
use crate::migrations::Names;
use crate::telemetry::{self, GatewayMetrics, Health, Metrics};
use crate::usage::UsageError;
use crate::worker_config::{WorkerConfig, pipelines};

/// What `dev` runs, checked up front.
#[derive(Debug, Clone, PartialEq)]
pub struct DevConfig {
    /// The gateway's API.
    pub gateway: GatewayConfig,
    /// The worker's route pipelines.
    pub pipelines: Pipelines,
}

/// Validates `dev`'s flags: the gateway file, and a worker pipeline for every
/// custom route that enqueues (else its messages could only be dead-lettered).
pub fn dev_config(args: &DevArgs) -> Result<DevConfig, UsageError> {
    let mut gateway = match &args.config {
        Some(path) => GatewayConfig::load(path)?,
        None => GatewayConfig::default(),
    };
    gateway.presence_events = args.presence_events;
    if gateway.tls.is_some() {
        return Err(UsageError(format!(
            "{}: [tls] is for `switchboard gateway`; `switchboard dev` serves ws:// and \
             http:// (its worker posts to @connections on the same port): remove [tls]",
            args.config
                .as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        )));
    }
    let pipelines = pipelines(args.routes_file.as_deref(), &args.routes)?;
    check_pipelines(&gateway, &pipelines)?;
    Ok(DevConfig { gateway, pipelines })
}

fn check_pipelines(gateway: &GatewayConfig, pipelines: &Pipelines) -> Result<(), UsageError> {
    use crate::gateway::IntegrationSpec;
    for (key, route) in &gateway.routes {
        let enqueues = matches!(
            route.integration.spec,
            IntegrationSpec::Builtin(HandlerKind::Send)
        );
        if enqueues && pipelines.get(key).is_none() {
            return Err(UsageError(format!(
                "route `{key}` sends to the queue but the worker has no pipeline for it: \
                 add --route {key}=store,broadcast (or another step list)"
            )));
        }
    }
    Ok(())
}

pub(super) async fn command(args: &DevArgs) -> Result<(), Error> {
    let config = dev_config(args)?;
    if !args.ephemeral {
        writable(&args.data_dir)?;
    }
    let store = if args.ephemeral {
        EmbeddedStore::in_memory().await
    } else {
        EmbeddedStore::open(&args.data_dir).await
    }
    .with_context(|| {
        format!(
            "cannot open the state directory {}",
            args.data_dir.display()
        )
    })?;
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr().context("listening address")?;
    let stage = config.gateway.stages.first().cloned().unwrap_or_default();
    let state = match store.path() {
        Some(p) => format!("kept in {}", p.display()),
        None => "in memory (--ephemeral): gone when this stops".to_owned(),
    };
    println!("switchboard dev: the whole system on this machine; queue and tables {state}");
    println!("  WebSocket API  ws://{addr}/{stage}?session=room1");
    println!("  demo page      http://{addr}/?stage={stage}");
    println!("  @connections   http://{addr}/{stage}/@connections/{{connectionId}}");
    println!("  metrics        http://{addr}/metrics");
    println!("  console        http://{addr}{}", crate::console::PATH);
    println!(
        "  try it         wscat -c 'ws://{addr}/{stage}?session=room1'   then send   {{\"action\":\"sendMessage\",\"data\":{{\"text\":\"hi\"}}}}"
    );
    println!("Ctrl-C stops; queued messages stay queued.");
    run_dev(config, store, listener, shutdown_signal()).await
}

/// An existing state directory must be writable: SQLite would otherwise fail
/// later with a bare "disk I/O error". A directory without any write
/// permission bit counts as read-only even for root, who could write anyway.
fn writable(dir: &std::path::Path) -> Result<(), UsageError> {
    let Ok(meta) = std::fs::metadata(dir) else {
        // Not there yet: the store creates it (and says so if it cannot).
        return Ok(());
    };
    let refuse = |why: String| {
        UsageError(format!(
            "the state directory {} is not writable ({why}): give --data-dir a writable \
             directory, or use --ephemeral",
            dir.display()
        ))
    };
    if !meta.is_dir() {
        return Err(UsageError(format!(
            "--data-dir {} is not a directory",
            dir.display()
        )));
    }
    if meta.permissions().readonly() {
        return Err(refuse("its permissions allow no writes".into()));
    }
    let probe = dir.join(format!(".switchboard-write-check-{}", std::process::id()));
    match std::fs::File::create(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(refuse(e.to_string())),
    }
}

/// Runs everything on `listener` with `store` until `shutdown`, then closes the
/// WebSockets (their `$disconnect` runs) and drains the worker.
pub async fn run_dev(
    config: DevConfig,
    store: EmbeddedStore,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let metrics = Arc::new(Metrics::new());
    run_dev_counting_into(config, store, listener, metrics, shutdown).await
}

/// [`run_dev`], counting into `metrics`, which outlive it: what the drain
/// did can be read after it returned. A fresh [`Metrics`]: the gateway's
/// metrics are registered in its registry too.
pub async fn run_dev_counting_into(
    config: DevConfig,
    store: EmbeddedStore,
    listener: TcpListener,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let addr: SocketAddr = listener.local_addr().context("listening address")?;
    let names = Names::default();
    let migrated = store
        .migrate(&names)
        .await
        .context("cannot create the embedded queues")?;
    let queue: Arc<dyn Queue> =
        Arc::new(store.queue(&migrated.queue_url).context("inbound queue")?);
    let connections: Arc<dyn Connections> =
        Arc::new(store.connections(&names.connections_table, None));

    let health = Arc::new(Health::default());
    let gateway = Gateway::with_metrics(
        config.gateway,
        Some(HandlerBackend {
            queue: queue.clone(),
            connections: connections.clone(),
        }),
        GatewayMetrics::registered_in(metrics.registry()),
    )?;
    let stage = gateway.config().stages.first().cloned().unwrap_or_default();
    let callback = format!("http://{addr}/{stage}");
    // The worker signs its @connections calls with the gateway's own
    // credentials when the gateway verifies signatures.
    let signer = match &gateway.config().management {
        crate::gateway::Management::SigV4 { credentials, .. } => Some((
            credentials.access_key_id.clone(),
            String::from_utf8_lossy(credentials.secret_access_key.expose()).into_owned(),
        )),
        crate::gateway::Management::Loopback => None,
    };
    let push = local_push_signed_by(signer.as_ref().map(|(i, s)| (i.as_str(), s.as_str())))
        .await
        .push();

    let console = Console::new(
        gateway.clone(),
        metrics.registry().clone(),
        Some(ConsoleStore {
            store: store.clone(),
            queue_url: migrated.queue_url.clone(),
            dlq_url: migrated.dlq_url.clone(),
            connections_table: names.connections_table.clone(),
            messages_table: names.messages_table.clone(),
        }),
    )
    .context("console")?;
    let opener = store.clone();
    let backends = WorkerBackends {
        queue,
        open_queue: Box::new(move |url| Ok(Arc::new(opener.queue(url)?) as Arc<dyn Queue>)),
        connections,
        messages: Arc::new(store.messages(&names.messages_table)),
        push: Arc::new(push),
    };
    let mut worker_config = WorkerConfig::local(migrated.queue_url, callback, config.pipelines);
    // One switch for both halves: with the edge's presence events off, the
    // worker sends no leaves of the connections it prunes either.
    worker_config.actions.presence_events = gateway.config().presence_events;

    let router = gateway
        .router()
        .merge(demo::router())
        .merge(console.router())
        .merge(telemetry::router(metrics.clone(), health.clone()));
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    tokio::spawn(console.sample(stopped(stop_rx.clone())));
    let server = tokio::spawn(gateway::serve(
        listener,
        gateway,
        router,
        stopped(stop_rx.clone()),
    ));
    let worker = serve_worker(backends, worker_config, metrics, health, stopped(stop_rx)).await;
    let served = server.await.context("gateway task")?;
    worker?;
    served.context("gateway server failed")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(extra: &[&str]) -> DevArgs {
        let mut argv = vec!["switchboard", "dev"];
        argv.extend_from_slice(extra);
        match crate::cli::Cli::try_parse_from(argv).unwrap().command {
            crate::cli::Command::Dev(a) => a,
            _ => unreachable!(),
        }
    }

    #[test]
    fn the_default_api_has_a_pipeline_for_every_route() {
        let c = dev_config(&args(&[])).unwrap();
        assert_eq!(c.gateway.stages, ["dev"]);
        for key in c.gateway.custom_route_keys() {
            assert!(c.pipelines.get(&key).is_some(), "{key}");
        }
    }

    #[test]
    fn a_route_without_pipeline_is_a_usage_error() {
        let e = dev_config(&args(&["--route", "sendMessage="])).unwrap_err();
        assert!(e.0.contains("--route sendMessage=store,broadcast"), "{e}");
    }
}
