//! Operator commands: `migrate` (tables and queues from `migrations/`).

pub mod migrate;
