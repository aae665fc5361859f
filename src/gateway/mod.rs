//! The local API Gateway WebSocket stand-in (`switchboard gateway`, and the
//! front of `switchboard dev`).
//!
//! - `ws://host:port/{stage}`: the WebSocket API. `$connect` runs before the
//!   handshake is answered; messages are routed by the route selection
//!   expression to integrations; `$disconnect` runs after every close.
//! - `http://host:port/{stage}/@connections/{id}`: the management API
//!   (POST/GET/DELETE), for the worker's `aws-sdk-apigatewaymanagement` client.
//!
//! Limits, close codes and error frames follow API Gateway; `docs/gateway.md`
//! lists what is emulated and what differs. Edge security (IP rules,
//! throttling, the authorizer, API keys and usage plans, TLS, SigV4 on
//! @connections) is in [`edge`], [`sigv4`] and [`tls`]; docs/security.md maps
//! it to AWS. Embed it with [`Gateway::new`] and [`run`]; extend its HTTP
//! surface with [`Gateway::router`].

pub mod config;
mod connection;
pub mod edge;
mod events;
pub mod http_integration;
pub mod ids;
pub mod integration;
mod listener;
mod management;
pub mod origin;
mod registry;
pub mod route;
pub mod sigv4;
pub mod template;
pub mod tls;
mod upgrade;

pub use config::{GatewayConfig, Integration, IntegrationSpec, Limits, Management, Route};
pub use registry::{CloseReason, ConnectionInfo};

/// What [`Gateway::delete_connection`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteOutcome {
    /// Closing now.
    Deleted,
    /// Unknown or already closing (410).
    Gone,
    /// Still in `$connect` (403).
    Connecting,
}

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::backend::{Connections, Queue};
use crate::handlers::{HandlerSettings, Handlers};
use crate::telemetry::GatewayMetrics;
use crate::usage::UsageError;
use edge::Edge;
use integration::Invoker;
use registry::Registry;

/// How long [`run`] waits, after shutdown, for connections to close and their
/// `$disconnect` integrations to finish.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// What the builtin handlers write to: the FIFO queue and the connections table.
#[derive(Clone)]
pub struct HandlerBackend {
    /// The inbound FIFO queue.
    pub queue: Arc<dyn Queue>,
    /// The connections table.
    pub connections: Arc<dyn Connections>,
}

/// A configured gateway; cheap to clone.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

struct Inner {
    config: GatewayConfig,
    edge: Edge,
    metrics: GatewayMetrics,
    invoker: Invoker,
    registry: Registry,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("stages", &self.inner.config.stages)
            .field("connections", &self.inner.registry.len())
            .finish()
    }
}

impl Gateway {
    /// A gateway for `config`; `backend` serves the `builtin` integrations and
    /// is required when a route uses one.
    pub fn new(config: GatewayConfig, backend: Option<HandlerBackend>) -> Result<Self, UsageError> {
        Self::with_metrics(config, backend, GatewayMetrics::new())
    }

    /// Like [`new`](Self::new), counting into `metrics` (e.g. registered in
    /// the worker's registry, so one `/metrics` shows both).
    pub fn with_metrics(
        config: GatewayConfig,
        backend: Option<HandlerBackend>,
        metrics: GatewayMetrics,
    ) -> Result<Self, UsageError> {
        if config.uses_builtin() && backend.is_none() {
            return Err(UsageError(
                "routes use builtin handlers, which need the FIFO queue and the connections \
                 table: give the queue URL and table name (or use http_proxy/mock integrations)"
                    .into(),
            ));
        }
        let handlers = backend.map(|b| {
            let settings = HandlerSettings {
                known_actions: config.custom_route_keys(),
                presence_events: config.presence_events,
                ..HandlerSettings::default()
            };
            Handlers::new(b.queue, b.connections, settings)
        });
        Ok(Gateway {
            inner: Arc::new(Inner {
                invoker: Invoker::new(handlers),
                edge: Edge::new(&config),
                config,
                metrics,
                registry: Registry::default(),
                shutdown: CancellationToken::new(),
                tasks: TaskTracker::new(),
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &GatewayConfig {
        &self.inner.config
    }

    /// The gateway's metrics.
    pub fn metrics(&self) -> &GatewayMetrics {
        &self.inner.metrics
    }

    /// Connections open or in `$connect` right now.
    pub fn connection_count(&self) -> usize {
        self.inner.registry.len()
    }

    /// What the gateway knows of every connection now (the console's list).
    pub fn connections(&self) -> Vec<ConnectionInfo> {
        self.inner.registry.snapshot()
    }

    /// Closes connection `id` as the @connections DELETE does (1000, its
    /// `$disconnect` runs).
    pub fn delete_connection(&self, id: &str) -> DeleteOutcome {
        match self.inner.registry.get(id).filter(|h| !h.is_closing()) {
            None => DeleteOutcome::Gone,
            Some(h) if !h.post_allowed() => DeleteOutcome::Connecting,
            Some(h) => {
                h.close(CloseReason::DELETED);
                DeleteOutcome::Deleted
            }
        }
    }

    /// The gateway's routes: the WebSocket API and @connections. Merge other
    /// routes (a demo page, `/metrics`) into it before serving; serve it with
    /// `into_make_service_with_connect_info::<SocketAddr>()`.
    pub fn router(&self) -> Router {
        let management = post(management::post)
            .get(management::get)
            .delete(management::delete)
            // The body limit is checked by the handler, which answers 413 the
            // way API Gateway does.
            .layer(DefaultBodyLimit::disable());
        Router::new()
            .route("/{stage}", get(upgrade::upgrade))
            .route("/{stage}/@connections/{id}", management.clone())
            .route("/{stage}/%40connections/{id}", management)
            .with_state(self.clone())
    }

    /// Closes every connection (1001, `$disconnect` runs) and waits up to
    /// `grace` for them and their integrations.
    pub async fn drain(&self, grace: Duration) {
        self.inner.shutdown.cancel();
        self.inner.registry.close_all(CloseReason::GOING_AWAY);
        self.inner.tasks.close();
        if tokio::time::timeout(grace, self.inner.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                left = self.inner.registry.len(),
                "connections still closing after the shutdown grace"
            );
        }
    }
}

/// Serves `gateway` on `listener` until `shutdown` resolves, then closes every
/// connection (1001 "Going away"), runs their `$disconnect` and returns.
pub async fn run(
    listener: TcpListener,
    gateway: Gateway,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve(listener, gateway.clone(), gateway.router(), shutdown).await
}

/// Like [`run`], serving `router` (the gateway's [`Gateway::router`] merged
/// with other routes). With `[tls]` configured, every connection on
/// `listener` must be TLS (`wss://`, `https://`): there is no plaintext port.
pub async fn serve(
    listener: TcpListener,
    gateway: Gateway,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let token = gateway.inner.shutdown.clone();
    let stop = async move {
        shutdown.await;
        // Open WebSockets are detached from hyper; tell them too, so that
        // the graceful shutdown below does not wait on them.
        token.cancel();
    };
    // Our own accept loop rather than `axum::serve`: it adds read deadlines,
    // a cap on unfinished handshakes and a file-descriptor watch
    // ([`listener`]); it gives the router the peer's `ConnectInfo<SocketAddr>`.
    let source = match gateway.config().tls.clone() {
        None => {
            if let Ok(addr) = listener.local_addr() {
                tracing::info!(%addr, stages = ?gateway.config().stages, "gateway listening (ws://, http://)");
            }
            listener::Source::Plain(listener)
        }
        Some(settings) => {
            if let Ok(addr) = listener.local_addr() {
                tracing::info!(%addr, stages = ?gateway.config().stages, cert = %settings.cert.display(), "gateway listening (wss://, https:// only)");
            }
            listener::Source::Tls(tls::TlsListener::new(listener, settings.server.clone()))
        }
    };
    let http_stop = CancellationToken::new();
    let trigger = http_stop.clone();
    tokio::spawn(async move {
        stop.await;
        trigger.cancel();
    });
    listener::serve(
        source,
        router,
        gateway.config().limits,
        gateway.metrics().clone(),
        http_stop,
    )
    .await;
    gateway.drain(SHUTDOWN_GRACE).await;
    Ok(())
}
