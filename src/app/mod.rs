//! What each subcommand does, wired from the typed configuration to the parts:
//! `worker` (worker.rs), `gateway` (gateway.rs), `dev` (dev.rs: everything on one
//! machine), `migrate`, `replay-dlq` and `healthcheck` (ops.rs; replay-dlq's
//! progress and summary in replay.rs).

mod demo;
mod dev;
mod gateway;
mod ops;
mod replay;
mod worker;

pub use dev::{DevConfig, dev_config, run_dev, run_dev_counting_into};
pub use worker::{
    QueueOpener, WorkerBackends, embedded_backends, local_push, local_push_signed_by, run_worker,
    run_worker_on_aws, serve_worker,
};

use crate::cli::{Cli, Command};
use crate::usage::UsageError;

/// A failed command: usage errors exit 2, everything else 1.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad flag, file or setting: exit 2.
    #[error(transparent)]
    Usage(#[from] UsageError),
    /// Anything that went wrong while running: exit 1.
    #[error(transparent)]
    Runtime(#[from] anyhow::Error),
}

impl Error {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => 2,
            Error::Runtime(_) => 1,
        }
    }
}

/// Runs a parsed command line to completion.
pub async fn run(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Command::Worker(args) => worker::command(&args).await,
        Command::Gateway(args) => gateway::command(&args).await,
        Command::Dev(args) => dev::command(&args).await,
        Command::Migrate(args) => ops::migrate(&args).await,
        Command::ReplayDlq(args) => ops::replay_dlq(&args).await,
        Command::Healthcheck(args) => ops::healthcheck(&args).await,
    }
}

/// Resolves when SIGTERM or SIGINT arrives.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received"),
        _ = term => tracing::info!("SIGTERM received"),
    }
}
