//! The command line: one binary, subcommands, every flag also an environment
//! variable (`SWITCHBOARD_*`). Values are checked here, up front; a bad one exits
//! 2 with one line that says what to fix.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::telemetry::LogFormat;

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
    /// broadcast, broadcast:exclude-sender, direct, reply, history. Default:
    /// sendMessage=store,broadcast history=history direct=direct whisper=direct.
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

    /// Items per connections Query page; default DynamoDB's 1 MB pages.
    #[arg(long, env = "SWITCHBOARD_QUERY_PAGE_SIZE", value_parser = positive_u32)]
    pub query_page_size: Option<u32>,
}

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

/// `switchboard gateway`.
#[derive(Debug, Clone, Args)]
pub struct GatewayArgs {
    /// Gateway configuration (TOML: [api], [[routes]], [stages.*], [limits],
    /// [management]); default: stage dev with the builtin routes.
    #[arg(long, env = "SWITCHBOARD_GATEWAY_CONFIG")]
    pub config: Option<PathBuf>,

    /// Address of the WebSocket API and the @connections API.
    #[arg(long, env = "SWITCHBOARD_LISTEN", default_value = "127.0.0.1:8080", value_parser = socket_addr)]
    pub listen: SocketAddr,

    /// Inbound FIFO queue the builtin send handler writes to (needed when a
    /// route uses a builtin handler).
    #[arg(long, env = "SWITCHBOARD_QUEUE_URL", value_parser = fifo_queue_url)]
    pub queue_url: Option<String>,

    /// Connections table of the builtin $connect/$disconnect/send handlers.
    #[arg(
        long,
        env = "SWITCHBOARD_CONNECTIONS_TABLE",
        default_value = "switchboard-connections"
    )]
    pub connections_table: String,
}

/// `switchboard dev`.
#[derive(Debug, Clone, Args)]
pub struct DevArgs {
    /// Gateway configuration (TOML, see switchboard.example.toml); default:
    /// stage dev with the builtin routes $connect, $disconnect, $default,
    /// sendMessage, history, direct.
    #[arg(long, env = "SWITCHBOARD_GATEWAY_CONFIG")]
    pub config: Option<PathBuf>,

    /// Address of the WebSocket API, @connections, the demo page and /metrics.
    #[arg(long, env = "SWITCHBOARD_LISTEN", default_value = "127.0.0.1:8080", value_parser = socket_addr)]
    pub listen: SocketAddr,

    /// Keep queue and tables in memory: nothing survives a restart.
    #[arg(long, env = "SWITCHBOARD_EPHEMERAL")]
    pub ephemeral: bool,

    /// Directory of the embedded queue and tables (SQLite); survives restarts and crashes.
    #[arg(long, env = "SWITCHBOARD_DATA_DIR", default_value = ".switchboard")]
    pub data_dir: PathBuf,

    /// Worker pipeline of a route, KEY=STEP,STEP (repeatable), as for `worker`;
    /// every custom route of the gateway needs one.
    #[arg(long = "route", env = "SWITCHBOARD_ROUTES", value_delimiter = ';')]
    pub routes: Vec<String>,

    /// TOML file with a [routes] table of worker pipelines, applied before --route.
    #[arg(long, env = "SWITCHBOARD_ROUTES_FILE")]
    pub routes_file: Option<PathBuf>,
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

/// Durations like `500ms`, `25s`, `5m`, `2h`, `7d`; a bare number is seconds.
pub fn duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration: use e.g. 500ms, 25s, 5m, 2h, 7d"))?;
    let secs = |k: u64| Duration::from_secs(n.saturating_mul(k));
    Ok(match unit.trim() {
        "ms" => Duration::from_millis(n),
        "" | "s" => secs(1),
        "m" => secs(60),
        "h" => secs(3600),
        "d" => secs(86_400),
        other => {
            return Err(format!(
                "unknown unit `{other}` in `{s}`: use ms, s, m, h or d"
            ));
        }
    })
}

fn visibility(s: &str) -> Result<Duration, String> {
    let d = duration(s)?;
    // SQS: 0 s to 12 h, in whole seconds; below 2 s the heartbeat cannot keep up.
    if d < Duration::from_secs(2) || d > Duration::from_secs(12 * 3600) {
        return Err(format!(
            "`{s}` must be between 2s and 12h (SQS visibility timeout limits)"
        ));
    }
    Ok(d)
}

fn positive(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("`{s}` is not a positive whole number")),
    }
}

fn positive_u32(s: &str) -> Result<u32, String> {
    let n = positive(s)?;
    u32::try_from(n).map_err(|_| format!("`{s}` is too large"))
}

fn socket_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse()
        .map_err(|_| format!("`{s}` is not an address: use IP:PORT, e.g. 0.0.0.0:9464"))
}

fn http_url(s: &str) -> Result<String, String> {
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .ok_or_else(|| format!("`{s}` must start with https:// or http://"))?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(format!("`{s}` has no host"));
    }
    Ok(s.trim_end_matches('/').to_owned())
}

pub(crate) fn fifo_queue_url(s: &str) -> Result<String, String> {
    if let Some(name) = s.strip_prefix("embedded://") {
        return fifo_name(name).map(|_| s.to_owned());
    }
    let url = http_url(s)?;
    if !url.ends_with(".fifo") {
        return Err(format!(
            "must be the URL of a FIFO queue, ending in .fifo: got {s}"
        ));
    }
    Ok(url)
}

fn fifo_name(s: &str) -> Result<String, String> {
    let ok = s.ends_with(".fifo")
        && s.len() <= 80
        && s[..s.len() - 5]
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !ok {
        return Err(format!(
            "`{s}` is not a FIFO queue name: up to 80 letters, digits, - and _, ending in .fifo"
        ));
    }
    Ok(s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(duration("25").unwrap(), Duration::from_secs(25));
        assert_eq!(duration("25s").unwrap(), Duration::from_secs(25));
        assert_eq!(duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(duration("7d").unwrap(), Duration::from_secs(7 * 86_400));
        assert!(duration("5x").unwrap_err().contains("unknown unit"));
        assert!(duration("soon").unwrap_err().contains("not a duration"));
    }

    #[test]
    fn queue_urls_must_be_fifo() {
        assert!(fifo_queue_url("https://sqs.eu-west-1.amazonaws.com/1/q.fifo").is_ok());
        let e = fifo_queue_url("https://sqs.eu-west-1.amazonaws.com/1/q").unwrap_err();
        assert!(e.contains("ending in .fifo"), "{e}");
        assert!(
            fifo_queue_url("sqs/q.fifo")
                .unwrap_err()
                .contains("https://")
        );
    }

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
