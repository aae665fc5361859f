//! The live console of `switchboard dev` (and `switchboard gateway`) at
//! `/@console/`: one page served from the binary (plain JS, no CDN, works
//! offline) polling a JSON API under `/@console/api/` (docs/dev.md).
//!
//! - Reads: connections (the gateway's registry, joined with the embedded
//!   connections table for sessions and users), sessions and their history,
//!   queue and DLQ depths, dead letters looked at in place, and five minutes
//!   of per-second samples of the metrics catalogue ([`samples`]).
//! - Actions (POST, logged): disconnect (the @connections DELETE path),
//!   replay dead letters (`ops::replay`, the code of `replay-dlq`, order
//!   kept), delete one.
//! - Who may use it: the callers @connections answers ([`access`]); every
//!   POST carries the per-process token the page was served with.
//!
//! It sits above `gateway`, `backend`, `ops` and `telemetry` and below
//! `app`, which wires it. Without the embedded store (`gateway` on AWS) the
//! store-backed parts answer `available: false` with the reason.

pub mod access;
#[cfg(test)]
mod access_tests;
mod api;
mod dead_letters;
pub mod samples;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use prometheus::Registry;
use rand::TryRngCore;

use crate::backend::embedded::EmbeddedStore;
use crate::gateway::Gateway;
use crate::gateway::origin::LocalAddr;
use samples::Sampler;

/// Where the console is served.
pub const PATH: &str = "/@console/";

/// Largest POST body the console reads.
const MAX_BODY: usize = 16 * 1024;

const INDEX: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/console.js");
const STYLE: &str = include_str!("assets/console.css");

/// The page may load only its own script and style and talk only to its
/// own origin: even a value that escaped escaping could not run or leak.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                   connect-src 'self'; img-src 'self'; base-uri 'none'; \
                   form-action 'none'; frame-ancestors 'none'";

/// The embedded queues and tables the console reads (`dev`).
#[derive(Clone, Debug)]
pub struct ConsoleStore {
    /// The store.
    pub store: EmbeddedStore,
    /// The inbound queue (`embedded://…`).
    pub queue_url: String,
    /// Its dead-letter queue.
    pub dlq_url: String,
    /// The connections table.
    pub connections_table: String,
    /// The messages table.
    pub messages_table: String,
}

/// A console; cheap to clone.
#[derive(Clone)]
pub struct Console {
    inner: Arc<Inner>,
}

struct Inner {
    gateway: Gateway,
    registry: Registry,
    store: Option<ConsoleStore>,
    token: String,
    sampler: Mutex<Sampler>,
    /// One replay at a time: two would hold each other's messages.
    replaying: tokio::sync::Mutex<()>,
}

/// The console could not be set up.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot make the console's token: the operating system's random number generator failed: {0}"
)]
pub struct TokenError(String);

impl Console {
    /// A console of `gateway`, sampling `registry` (the one `/metrics`
    /// renders), reading `store` when there is one.
    pub fn new(
        gateway: Gateway,
        registry: Registry,
        store: Option<ConsoleStore>,
    ) -> Result<Self, TokenError> {
        let mut bytes = [0_u8; 32];
        rand::rngs::OsRng
            .try_fill_bytes(&mut bytes)
            .map_err(|e| TokenError(e.to_string()))?;
        Ok(Console {
            inner: Arc::new(Inner {
                gateway,
                registry,
                store,
                token: data_encoding::HEXLOWER.encode(&bytes),
                sampler: Mutex::default(),
                replaying: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// The page, its script and style, and the JSON API, behind the access
    /// checks. Merge into the gateway's router.
    pub fn router(&self) -> Router {
        let api = Router::new()
            .route("/overview", get(api::overview))
            .route("/connections", get(api::connections))
            .route("/connections/{id}/disconnect", post(api::disconnect))
            .route("/sessions", get(api::sessions))
            .route("/sessions/{id}/history", get(api::history))
            .route("/queue", get(api::queue))
            .route("/dead-letters", get(dead_letters::list))
            .route("/dead-letters/replay", post(dead_letters::replay))
            .route("/dead-letters/{id}/delete", post(dead_letters::delete))
            .route("/metrics", get(api::metrics));
        Router::new()
            .route("/@console", get(page))
            .route("/@console/", get(page))
            .route(
                "/@console/console.js",
                get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
            )
            .route(
                "/@console/console.css",
                get(|| async { asset("text/css; charset=utf-8", STYLE) }),
            )
            .nest("/@console/api", api)
            .layer(middleware::from_fn_with_state(self.clone(), guard))
            .with_state(self.clone())
    }

    /// Samples the metrics once a second until `shutdown` resolves.
    pub async fn sample(self, shutdown: impl std::future::Future<Output = ()>) {
        let mut every = tokio::time::interval(Duration::from_secs(1));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = every.tick() => {
                    let now = crate::sync::now_ms();
                    crate::sync::lock(&self.inner.sampler).tick(&self.inner.registry, now);
                }
            }
        }
    }
}

fn secured(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    resp
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// The page, with this process's token (hex: nothing to escape).
async fn page(State(console): State<Console>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        INDEX.replace("{{TOKEN}}", &console.inner.token),
    )
        .into_response()
}

/// The access checks of every console request ([`access::check`]).
async fn guard(State(console): State<Console>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let Some(ConnectInfo(peer)) = parts
        .extensions
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .copied()
    else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let body = match to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("console requests are at most {MAX_BODY} bytes"),
            )
                .into_response();
        }
    };
    let checked = access::check(
        &console.inner.gateway,
        &access::Request {
            peer,
            local: parts.extensions.get::<LocalAddr>().map(|l| l.0),
            method: &parts.method,
            uri: &parts.uri,
            headers: &parts.headers,
            body: &body,
        },
        &console.inner.token,
    );
    if let Err(refusal) = checked {
        tracing::info!(%peer, method = %parts.method, path = %parts.uri.path(), ?refusal, "console request refused");
        return secured(refusal.into_response());
    }
    let req = Request::from_parts(parts, Body::from(body));
    secured(next.run(req).await)
}
