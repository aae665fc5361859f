//! The command line: one binary, subcommands, every flag also an environment
//! variable (`SWITCHBOARD_*`). Values are checked here, up front; a bad one exits
//! 2 with one line that says what to fix.
//!
//! One file per group of commands: `worker.rs`, `gateway.rs` (`gateway`,
//! `dev`), `ops.rs` (`migrate`, `replay-dlq`, `healthcheck`); the value
//! parsers they share in `values.rs`.

mod gateway;
mod ops;
mod values;
mod worker;

use clap::{Args, Parser, Subcommand};

use crate::telemetry::LogFormat;
pub use gateway::{DevArgs, GatewayArgs};
pub use ops::{HealthcheckArgs, MigrateArgs, ReplayDlqArgs};
pub use values::duration;
pub(crate) use values::fifo_queue_url;
pub use worker::WorkerArgs;

/// Ordered, durable fan-out for API Gateway WebSocket apps.
#[derive(Debug, Parser)]
#[command(name = "switchboard", version, about, propagate_version = true)]
pub struct Cli {
    /// Log format: auto (JSON unless stderr is a terminal), json or pretty.
    #[arg(
        long,
        env = "SWITCHBOARD_LOG_FORMAT",
        value_enum,
        default_value = "auto",
        global = true
    )]
    pub log_format: LogFormat,

    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Consume the SQS FIFO queue and deliver through @connections (the ECS service).
    Worker(Box<WorkerArgs>),
    /// Create or update the tables and queues from migrations/ (safe to run twice).
    Migrate(MigrateArgs),
    /// The local API Gateway WebSocket stand-in alone (ws://ADDR/{stage}, @connections).
    Gateway(GatewayArgs),
    /// Everything on this machine: gateway, handlers, embedded queue and tables,
    /// worker, demo page (ws://127.0.0.1:8080/dev).
    Dev(DevArgs),
    /// Move dead letters back to the queue, keeping each message group's order.
    ReplayDlq(ReplayDlqArgs),
    /// Exit 0 when the local worker answers /healthz (the container health check).
    Healthcheck(HealthcheckArgs),
}

/// Table names shared by every command.
#[derive(Debug, Clone, Args)]
pub struct TableArgs {
    /// Connections table (partition key connectionId, GSIs bySession and byUser).
    #[arg(
        long,
        env = "SWITCHBOARD_CONNECTIONS_TABLE",
        default_value = "switchboard-connections"
    )]
    pub connections_table: String,

    /// Messages table (sessionId + sk).
    #[arg(
        long,
        env = "SWITCHBOARD_MESSAGES_TABLE",
        default_value = "switchboard-messages"
    )]
    pub messages_table: String,
}

/// Parses the command line; on a usage error prints one line and exits 2.
pub fn parse_or_exit() -> Cli {
    match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => exit_with(e),
    }
}

/// Prints a clap error (help and version as clap does; errors on one line) and exits.
pub fn exit_with(e: clap::Error) -> ! {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => e.exit(),
        _ => {
            eprintln!("{}", one_line(&e));
            std::process::exit(2);
        }
    }
}

/// Clap's multi-line error text as one line: the error and its context, without
/// the usage block.
pub fn one_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let mut parts = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with("Usage:") || line.starts_with("For more information") {
            break;
        }
        if !line.is_empty() {
            parts.push(line);
        }
    }
    let mut out = parts.join(" ");
    if !out.contains("--help") {
        out.push_str(" (see --help)");
    }
    out
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_errors_become_one_line() {
        let e = Cli::try_parse_from([
            "switchboard",
            "worker",
            "--queue-url",
            "http://h/q",
            "--pollers",
            "0",
        ])
        .unwrap_err();
        let line = one_line(&e);
        assert!(!line.contains('\n'));
        assert!(line.contains("--queue-url"), "{line}");
        let e = Cli::try_parse_from(["switchboard", "worker"]).unwrap_err();
        let line = one_line(&e);
        assert!(line.contains("--queue-url"), "{line}");
        assert!(!line.contains('\n'));
    }

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
