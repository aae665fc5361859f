//! Switchboard: ordered, deduplicated, durable fan-out for API Gateway WebSocket
//! apps. Modules in the order data flows through them:
//!
//! - [`gateway`]: the local API Gateway WebSocket stand-in: stages, route
//!   selection, integrations, limits, the @connections API.
//! - [`handlers`]: the edge logic (`$connect`, `$disconnect`, custom routes,
//!   `$default`) on API Gateway proxy events, run in-process or as Lambdas.
//! - [`lambda`]: those handlers and the authorizer as AWS Lambda functions
//!   (feature `lambda`; binaries `switchboard-connect`, ... in `src/bin/`).
//! - [`envelope`]: the queue message (envelope v1) and the frames sent to clients.
//! - [`backend`]: the seams (`Queue`, `Connections`, `Messages`, `Push`) and their
//!   AWS implementation (`backend::aws`: SQS, DynamoDB, @connections).
//! - [`worker`]: the FIFO consumer: pollers, per-group scheduler, visibility
//!   heartbeat, batched deletes, dead-lettering, graceful drain.
//! - [`actions`]: the steps a message runs (store, broadcast, direct, reply,
//!   history) and the fan-out with retries and 410 pruning.
//! - [`ops`]: operator commands (`migrate`, `replay-dlq`, `healthcheck`).
//! - [`telemetry`]: logs, the one metrics catalogue, `/metrics` `/healthz` `/readyz`.
//! - [`cli`], [`config`], [`app`]: flags → validated settings → running parts.

pub mod actions;
pub mod app;
pub mod backend;
pub mod cli;
pub mod envelope;
pub mod gateway;
pub mod handlers;
pub mod lambda;
pub mod migrations;
pub mod ops;
pub mod sync;
pub mod telemetry;
pub mod usage;
pub mod worker;
pub mod worker_config;

pub use app::{Error, run};
