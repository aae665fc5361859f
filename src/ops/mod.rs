//! Operator commands: `migrate` (tables and queues from `migrations/`),
//! `replay-dlq` (dead letters back to the queue, in group order) and
//! `healthcheck` (the container health check).

pub mod healthcheck;
pub mod migrate;
pub mod replay;
