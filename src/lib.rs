//! Switchboard: ordered, deduplicated, durable fan-out for API Gateway WebSocket
//! apps. Modules in the order data flows through them:
//!
//! - [`gateway`]: the local API Gateway WebSocket stand-in: the HTTP listener
//!   and its read deadlines, stages, route selection, integrations and their
//!   templates, Origin/Host checks, limits, the @connections API.
//! - [`handlers`]: the edge logic (`$connect`, `$disconnect`, custom routes,
//!   `$default`) and the JWT REQUEST authorizer on API Gateway proxy events,
//!   run in-process or as Lambdas.
//! - [`lambda`]: those handlers and the authorizer as AWS Lambda functions
//!   (feature `lambda`; binaries `switchboard-connect`, ... in `src/bin/`).
//! - [`envelope`]: the queue message (envelope v1), the frames sent to clients
//!   and the one 128 KiB limit.
//! - [`backend`]: the seams (`Queue`, `Connections`, `Messages`, `Push`) and
//!   their implementations: `backend::aws` (SQS, DynamoDB, the lean signed
//!   @connections client `aws::push`) and `backend::embedded` (the durable
//!   SQLite queue and tables `dev` runs on).
//! - [`worker`]: the FIFO consumer: pollers, per-group scheduler, visibility
//!   heartbeat, batched deletes, dead-lettering, graceful drain.
//! - [`actions`]: the steps a message runs, one file each (store with the
//!   session's `seq`, broadcast, direct, reply, history, resume, presence and
//!   announce), the pipelines, and the fan-out with retries and 410 pruning.
//! - [`ops`]: operator commands (`migrate` in its DynamoDB and SQS halves,
//!   `replay-dlq`, `healthcheck`), below [`app`].
//! - [`migrations`]: the table and queue definitions of `migrations/*.json`,
//!   read by `ops::migrate` and `backend::embedded`.
//! - [`telemetry`]: logs, the one metrics catalogue, `/metrics` `/healthz` `/readyz`,
//!   the W3C trace context (`telemetry::trace`) and, with feature `otel`, its
//!   OTLP export.
//! - [`console`]: the live console at `/@console/` (page and JSON API) over
//!   the gateway, the embedded store, `ops::replay` and the metrics; below [`app`].
//! - [`cli`] → [`worker_config`] → [`app`]: flags, validated worker settings,
//!   the running parts (and each command's wiring).
//! - Leaves every part may use: [`usage`] (the exit-2 error), [`sync`] (the
//!   poison-tolerant lock and the wall clock), [`clock`] (calendar dates and
//!   the time formats API Gateway and SigV4 use), `tls` (the rustls set-up of
//!   every outgoing HTTPS client), [`fds`] (the descriptor limit, count and
//!   table).

pub mod actions;
pub mod app;
pub mod backend;
pub mod cli;
pub mod clock;
pub mod console;
pub mod envelope;
pub mod fds;
pub mod gateway;
pub mod handlers;
pub mod lambda;
pub mod migrations;
pub mod ops;
pub mod sync;
pub mod telemetry;
pub(crate) mod tls;
pub mod usage;
pub mod worker;
pub mod worker_config;

pub use app::{Error, run};
