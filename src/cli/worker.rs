//! `switchboard worker`'s flags.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::TableArgs;
use super::values::{
    duration, fifo_queue_url, http_url, on_off, positive, positive_u32, socket_addr, visibility,
};

/// `switchboard worker`.
#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    /// URL of the inbound SQS FIFO queue (ends in .fifo); with --data-dir,
    /// embedded://NAME.fifo.
    #[arg(long, env = "SWITCHBOARD_QUEUE_URL", value_parser = fifo_queue_url)]
    pub queue_url: String,

    /// Run on the embedded queue and tables kept in this directory (as
    /// `switchboard dev --data-dir` keeps them) instead of SQS and DynamoDB.
    /// One process per directory at a time.
    #[arg(long = "data-dir", env = "SWITCHBOARD_WORKER_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// Dead-letter queue URL; default: the queue's RedrivePolicy target.
    #[arg(long, env = "SWITCHBOARD_DLQ_URL", value_parser = fifo_queue_url)]
    pub dlq_url: Option<String>,

    /// @connections endpoint for every message (e.g. https://abc.execute-api.eu-west-1.amazonaws.com/prod);
    /// default: https://{domainName}/{stage} from each message.
    #[arg(long, env = "SWITCHBOARD_CALLBACK_URL", value_parser = http_url)]
    pub callback_url: Option<String>,

    #[command(flatten)]
    pub tables: TableArgs,

    /// Where /metrics, /healthz and /readyz are served.
    #[arg(long, env = "SWITCHBOARD_METRICS_ADDR", default_value = "0.0.0.0:9464", value_parser = socket_addr)]
    pub metrics_addr: SocketAddr,

    /// Concurrent long-polling receivers.
    #[arg(long, env = "SWITCHBOARD_POLLERS", default_value = "2", value_parser = positive)]
    pub pollers: usize,

    /// Most message groups (sessions) handled at once.
    #[arg(long, env = "SWITCHBOARD_MAX_GROUPS", default_value = "64", value_parser = positive)]
    pub max_groups: usize,

    /// Most @connections posts in flight at once.
    #[arg(long, env = "SWITCHBOARD_FANOUT_CONCURRENCY", default_value = "128", value_parser = positive)]
    pub fanout_concurrency: usize,

    /// Recipients of one frame sent together on one keep-alive connection
    /// (HTTP/1.1 pipelining), within --fanout-concurrency; 1 sends them one by one.
    #[arg(long, env = "SWITCHBOARD_FANOUT_PIPELINE", default_value = "1", value_parser = positive)]
    pub fanout_pipeline: usize,

    /// Most messages received and not yet finished; default 2 × --max-groups (at least 10).
    #[arg(long, env = "SWITCHBOARD_MAX_IN_HAND", value_parser = positive)]
    pub max_in_hand: Option<usize>,

    /// Long-poll wait per receive, 0–20 seconds.
    #[arg(long, env = "SWITCHBOARD_WAIT_TIME_SECONDS", default_value = "20", value_parser = clap::value_parser!(u64).range(0..=20))]
    pub wait_time_seconds: u64,

    /// Visibility timeout per receive; renewed while a message is in hand.
    #[arg(long, env = "SWITCHBOARD_VISIBILITY_TIMEOUT", default_value = "30s", value_parser = visibility)]
    pub visibility_timeout: Duration,

    /// Time from SIGTERM/SIGINT to exit (keep it under ECS's stopTimeout).
    #[arg(long, env = "SWITCHBOARD_SHUTDOWN_GRACE", default_value = "25s", value_parser = duration)]
    pub shutdown_grace: Duration,

    /// Backoff after the first failed attempt of a message; doubles per receive.
    #[arg(long, env = "SWITCHBOARD_RETRY_BASE", default_value = "2s", value_parser = duration)]
    pub retry_base: Duration,

    /// Largest backoff of a failed message (SQS allows up to 12h).
    #[arg(long, env = "SWITCHBOARD_RETRY_MAX", default_value = "5m", value_parser = duration)]
    pub retry_max: Duration,

    /// Retries per recipient on 429/5xx/timeouts before it counts as failed.
    #[arg(long, env = "SWITCHBOARD_PUSH_RETRIES", default_value = "3")]
    pub push_retries: usize,

    /// First delay between retries of one recipient; doubles, with jitter.
    #[arg(long, env = "SWITCHBOARD_PUSH_RETRY_BASE", default_value = "100ms", value_parser = duration)]
    pub push_retry_base: Duration,

    /// Route pipeline, KEY=STEP,STEP (repeatable; env: `;`-separated). Steps: store,
    /// broadcast, broadcast:exclude-sender, direct, reply, history, resume,
    /// presence, announce. Default: sendMessage=store,broadcast history=history
    /// direct=direct whisper=direct resume=resume presence=presence.
    #[arg(long = "route", env = "SWITCHBOARD_ROUTES", value_delimiter = ';')]
    pub routes: Vec<String>,

    /// TOML file with a [routes] table (KEY = ["store", "broadcast"]), applied before --route.
    #[arg(long, env = "SWITCHBOARD_ROUTES_FILE")]
    pub routes_file: Option<PathBuf>,

    /// Messages a history request returns when it gives no data.limit.
    #[arg(long, env = "SWITCHBOARD_HISTORY_LIMIT", default_value = "50", value_parser = positive)]
    pub history_limit: usize,

    /// Most messages one history request returns.
    #[arg(long, env = "SWITCHBOARD_HISTORY_MAX", default_value = "100", value_parser = positive)]
    pub history_max: usize,

    /// How long stored messages are kept (their expiresAt TTL).
    #[arg(long, env = "SWITCHBOARD_MESSAGE_RETENTION", default_value = "7d", value_parser = duration)]
    pub message_retention: Duration,

    /// Most messages one resume request looks back; older ones are reported
    /// as a gap (`complete: false`).
    #[arg(long, env = "SWITCHBOARD_RESUME_MAX", default_value = "1000", value_parser = positive)]
    pub resume_max: usize,

    /// on|off: announce $join/$leave events from the edge to the session's
    /// other members, and enqueue the $leave of a connection a fan-out
    /// prunes; off drops them (counted in
    /// switchboard_presence_events_total{outcome="off"}) and enqueues none.
    #[arg(long, env = "SWITCHBOARD_PRESENCE_EVENTS", default_value = "on", value_parser = on_off, action = clap::ArgAction::Set)]
    pub presence_events: bool,

    /// Items per connections Query page; default DynamoDB's 1 MB pages.
    #[arg(long, env = "SWITCHBOARD_QUERY_PAGE_SIZE", value_parser = positive_u32)]
    pub query_page_size: Option<u32>,
}
