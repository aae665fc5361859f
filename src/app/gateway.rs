//! `switchboard gateway`: the local API Gateway WebSocket stand-in alone, its
//! builtin handlers on the AWS backend, and the console (connections and
//! gateway plots; no store to show).

use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

use super::{Error, shutdown_signal};
use crate::backend::aws::AwsBackend;
use crate::cli::GatewayArgs;
use crate::console::Console;
use crate::usage::UsageError;

pub(super) async fn command(args: &GatewayArgs) -> Result<(), Error> {
    use crate::gateway::{Gateway, GatewayConfig, HandlerBackend};
    let mut config = match &args.config {
        Some(path) => GatewayConfig::load(path)?,
        None => GatewayConfig::default(),
    };
    config.presence_events = args.presence_events;
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
    let addr = listener.local_addr().context("listening address")?;
    let console = Console::new(gateway.clone(), gateway.metrics().registry().clone(), None)
        .context("console")?;
    let router = gateway.router().merge(console.router());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    tokio::spawn(console.sample(stopped(stop_rx.clone())));
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let scheme = if gateway.config().tls.is_some() {
        "https"
    } else {
        "http"
    };
    tracing::info!(url = %format!("{scheme}://{addr}{}", crate::console::PATH), "console");
    crate::gateway::serve(listener, gateway, router, stopped(stop_rx))
        .await
        .context("gateway server failed")?;
    Ok(())
}
