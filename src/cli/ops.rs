//! The flags of the operator commands `migrate`, `replay-dlq` and `healthcheck`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::TableArgs;
use super::values::{duration, fifo_name, fifo_queue_url, positive, socket_addr, visibility};

/// `switchboard migrate`.
#[derive(Debug, Clone, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub tables: TableArgs,

    /// Name of the inbound FIFO queue.
    #[arg(long, env = "SWITCHBOARD_QUEUE_NAME", default_value = "switchboard-inbound.fifo", value_parser = fifo_name)]
    pub queue_name: String,

    /// Name of its dead-letter queue.
    #[arg(long, env = "SWITCHBOARD_DLQ_NAME", default_value = "switchboard-inbound-dlq.fifo", value_parser = fifo_name)]
    pub dlq_name: String,

    /// How long to wait for tables and indexes to become ACTIVE.
    #[arg(long, env = "SWITCHBOARD_MIGRATE_TIMEOUT", default_value = "10m", value_parser = duration)]
    pub timeout: Duration,
}

/// `switchboard replay-dlq`.
#[derive(Debug, Clone, Args)]
pub struct ReplayDlqArgs {
    /// Dead-letter queue to move messages out of; default: the --to queue's RedrivePolicy target.
    #[arg(long = "from", env = "SWITCHBOARD_DLQ_URL", value_parser = fifo_queue_url)]
    pub from: Option<String>,

    /// FIFO queue to move them to (the worker's inbound queue); with --data-dir,
    /// embedded://NAME.fifo.
    #[arg(long = "to", env = "SWITCHBOARD_QUEUE_URL", value_parser = fifo_queue_url)]
    pub to: String,

    /// Replay on the embedded queues kept in this directory (`switchboard dev
    /// --data-dir`, `worker --data-dir`) instead of SQS; stop the process using it first.
    #[arg(long = "data-dir", env = "SWITCHBOARD_REPLAY_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// Most messages to take out of the dead-letter queue; default: all.
    #[arg(long, env = "SWITCHBOARD_REPLAY_MAX", value_parser = positive)]
    pub max: Option<usize>,

    /// Move only this message group (session); leave the others in place.
    #[arg(long, env = "SWITCHBOARD_REPLAY_GROUP")]
    pub group: Option<String>,

    /// Print what would move (group, id, reason) and change nothing.
    #[arg(long, env = "SWITCHBOARD_REPLAY_DRY_RUN")]
    pub dry_run: bool,

    /// How long received dead letters stay invisible; held-back messages of a
    /// crashed run reappear after it.
    #[arg(long, env = "SWITCHBOARD_REPLAY_VISIBILITY_TIMEOUT", default_value = "5m", value_parser = visibility)]
    pub visibility_timeout: Duration,
}

/// `switchboard healthcheck`.
#[derive(Debug, Clone, Args)]
pub struct HealthcheckArgs {
    /// The worker's telemetry address; an unspecified IP (0.0.0.0, ::) means this host.
    #[arg(long, env = "SWITCHBOARD_METRICS_ADDR", default_value = "0.0.0.0:9464", value_parser = socket_addr)]
    pub metrics_addr: SocketAddr,

    /// Path to check: /healthz (alive) or /readyz (polling the queue).
    #[arg(long, env = "SWITCHBOARD_HEALTHCHECK_PATH", default_value = "/healthz", value_parser = ["/healthz", "/readyz"])]
    pub path: String,

    /// Give up after this long.
    #[arg(long, env = "SWITCHBOARD_HEALTHCHECK_TIMEOUT", default_value = "3s", value_parser = duration)]
    pub timeout: Duration,
}
