//! The flags of `switchboard gateway` and `switchboard dev`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

use super::values::{fifo_queue_url, on_off, socket_addr};

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

    /// on|off: $connect/$disconnect also put a $join/$leave event in the
    /// session's FIFO group (the worker announces it to the other members).
    #[arg(long, env = "SWITCHBOARD_PRESENCE_EVENTS", default_value = "on", value_parser = on_off, action = clap::ArgAction::Set)]
    pub presence_events: bool,
}

/// `switchboard dev`.
#[derive(Debug, Clone, Args)]
pub struct DevArgs {
    /// Gateway configuration (TOML, see switchboard.example.toml); default:
    /// stage dev with the builtin routes $connect, $disconnect, $default,
    /// sendMessage, history, direct, resume, presence.
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

    /// on|off: members get join/leave frames when others connect and
    /// disconnect (presence events; see docs/envelope.md for their cost).
    #[arg(long, env = "SWITCHBOARD_PRESENCE_EVENTS", default_value = "on", value_parser = on_off, action = clap::ArgAction::Set)]
    pub presence_events: bool,
}
