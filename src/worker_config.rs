//! `switchboard worker`'s flags turned into its validated settings
//! ([`WorkerConfig`]); everything that can be checked before touching AWS is
//! checked here.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::actions::{ActionSettings, Pipelines, RetryPolicy};
use crate::cli::WorkerArgs;
use crate::usage::{UsageError, toml_error};
use crate::worker::{Backoff, WorkerSettings};

/// Everything `switchboard worker` needs, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerConfig {
    /// Inbound FIFO queue URL.
    pub queue_url: String,
    /// The embedded store's directory, when not on AWS.
    pub data_dir: Option<std::path::PathBuf>,
    /// Dead-letter queue URL, if given on the command line.
    pub dlq_url: Option<String>,
    /// Connections table.
    pub connections_table: String,
    /// Messages table.
    pub messages_table: String,
    /// Items per connections Query page.
    pub query_page_size: Option<u32>,
    /// Consumer settings.
    pub worker: WorkerSettings,
    /// Step settings.
    pub actions: ActionSettings,
    /// Route pipelines.
    pub pipelines: Pipelines,
    /// Backoff of failed messages.
    pub backoff: Backoff,
    /// Retries of one recipient.
    pub push_retry: RetryPolicy,
    /// Most posts in flight.
    pub fanout_concurrency: usize,
    /// Recipients of one frame posted together (HTTP/1.1 pipelining).
    pub fanout_pipeline: usize,
}

/// `switchboard dev`'s worker pipelines its posts: it talks to its own
/// gateway, which answers pipelined requests in one write
/// (docs/worker.md, "Pipelining").
pub const DEV_FANOUT_PIPELINE: usize = 8;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoutesFile {
    #[serde(default)]
    routes: std::collections::BTreeMap<String, Vec<String>>,
}

/// Applies a routes file (`[routes] KEY = ["store", "broadcast"]`) to `pipelines`.
pub fn apply_routes_file(pipelines: &mut Pipelines, path: &Path) -> Result<(), UsageError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| UsageError(format!("cannot read routes file {}: {e}", path.display())))?;
    let file: RoutesFile = toml::from_str(&text)
        .map_err(|e| UsageError(format!("{}{}", path.display(), toml_error(&text, &e))))?;
    for (key, steps) in file.routes {
        pipelines
            .apply_spec(&format!("{key}={}", steps.join(",")))
            .map_err(|e| UsageError(format!("routes file {}: {e}", path.display())))?;
    }
    Ok(())
}

/// Worker pipelines from a routes file and `--route` specs (in that order) on
/// top of the defaults.
pub fn pipelines(routes_file: Option<&Path>, routes: &[String]) -> Result<Pipelines, UsageError> {
    let mut pipelines = Pipelines::default();
    if let Some(path) = routes_file {
        apply_routes_file(&mut pipelines, path)?;
    }
    for spec in routes.iter().filter(|s| !s.trim().is_empty()) {
        pipelines
            .apply_spec(spec)
            .map_err(|e| UsageError(format!("--route: {e}")))?;
    }
    Ok(pipelines)
}

impl WorkerConfig {
    /// The worker of `switchboard dev`: every default of `switchboard worker`,
    /// the given queue, @connections endpoint and pipelines.
    pub fn local(queue_url: String, callback_url: String, pipelines: Pipelines) -> Self {
        let worker = WorkerSettings::default();
        WorkerConfig {
            queue_url,
            data_dir: None,
            dlq_url: None,
            connections_table: "switchboard-connections".into(),
            messages_table: "switchboard-messages".into(),
            query_page_size: None,
            actions: ActionSettings {
                callback_url: Some(callback_url),
                ..ActionSettings::default()
            },
            pipelines,
            backoff: Backoff::default(),
            push_retry: RetryPolicy::default(),
            fanout_concurrency: 128,
            fanout_pipeline: DEV_FANOUT_PIPELINE,
            worker,
        }
    }

    /// Validates the worker's arguments.
    pub fn from_args(args: &WorkerArgs) -> Result<Self, UsageError> {
        let pipelines = pipelines(args.routes_file.as_deref(), &args.routes)?;
        if args.history_limit > args.history_max {
            return Err(UsageError(format!(
                "--history-limit ({}) must not exceed --history-max ({})",
                args.history_limit, args.history_max
            )));
        }
        if args.retry_base > args.retry_max {
            return Err(UsageError(format!(
                "--retry-base ({:?}) must not exceed --retry-max ({:?})",
                args.retry_base, args.retry_max
            )));
        }
        if args.retry_max > Duration::from_secs(12 * 3600) {
            return Err(UsageError(
                "--retry-max must be at most 12h (the SQS visibility timeout limit)".into(),
            ));
        }
        if args.shutdown_grace < Duration::from_secs(1) {
            return Err(UsageError("--shutdown-grace must be at least 1s".into()));
        }
        let embedded_url = args.queue_url.starts_with("embedded://");
        match (&args.data_dir, embedded_url) {
            (None, true) => {
                return Err(UsageError(format!(
                    "--queue-url {} is an embedded queue: also pass --data-dir with its directory",
                    args.queue_url
                )));
            }
            (Some(dir), false) => {
                return Err(UsageError(format!(
                    "--data-dir {} runs on the embedded store: pass --queue-url embedded://NAME.fifo \
                     (e.g. embedded://switchboard-inbound.fifo)",
                    dir.display()
                )));
            }
            _ => {}
        }
        if args.dlq_url.as_deref() == Some(args.queue_url.as_str()) {
            return Err(UsageError(
                "--dlq-url must be a different queue than --queue-url".into(),
            ));
        }
        Ok(WorkerConfig {
            queue_url: args.queue_url.clone(),
            data_dir: args.data_dir.clone(),
            dlq_url: args.dlq_url.clone(),
            connections_table: args.tables.connections_table.clone(),
            messages_table: args.tables.messages_table.clone(),
            query_page_size: args.query_page_size,
            worker: WorkerSettings {
                pollers: args.pollers,
                max_groups: args.max_groups,
                wait: Duration::from_secs(args.wait_time_seconds),
                visibility: args.visibility_timeout,
                shutdown_grace: args.shutdown_grace,
                max_in_hand: args
                    .max_in_hand
                    .unwrap_or_else(|| (args.max_groups * 2).max(10)),
            },
            actions: ActionSettings {
                callback_url: args.callback_url.clone(),
                history_default: args.history_limit,
                history_max: args.history_max,
                retention: args.message_retention,
                resume_max: args.resume_max,
                presence_events: args.presence_events,
                ..ActionSettings::default()
            },
            pipelines,
            backoff: Backoff {
                base: args.retry_base,
                max: args.retry_max,
            },
            push_retry: RetryPolicy {
                retries: args.push_retries,
                base: args.push_retry_base,
                max: (args.push_retry_base * 20).min(Duration::from_secs(5)),
            },
            fanout_concurrency: args.fanout_concurrency,
            fanout_pipeline: args.fanout_pipeline,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn worker(extra: &[&str]) -> Result<WorkerConfig, UsageError> {
        let mut argv = vec![
            "switchboard",
            "worker",
            "--queue-url",
            "https://sqs.x/1/q.fifo",
        ];
        argv.extend_from_slice(extra);
        let Command::Worker(args) = Cli::try_parse_from(argv).unwrap().command else {
            unreachable!()
        };
        WorkerConfig::from_args(&args)
    }

    #[test]
    fn the_local_worker_has_the_flag_defaults() {
        let flags = worker(&[]).unwrap();
        let local = WorkerConfig::local(
            flags.queue_url.clone(),
            "http://127.0.0.1:8080/dev".into(),
            Pipelines::default(),
        );
        assert_eq!(local.worker, flags.worker);
        assert_eq!(local.backoff, flags.backoff);
        assert_eq!(local.push_retry, flags.push_retry);
        assert_eq!(local.fanout_concurrency, flags.fanout_concurrency);
        // The one deliberate difference: dev pipelines to its own gateway.
        assert_eq!(flags.fanout_pipeline, 1);
        assert_eq!(local.fanout_pipeline, DEV_FANOUT_PIPELINE);
        assert_eq!(local.actions.history_default, flags.actions.history_default);
        assert_eq!(local.actions.retention, flags.actions.retention);
    }

    #[test]
    fn presence_events_and_resume_max_flags() {
        let c = worker(&[]).unwrap();
        assert!(c.actions.presence_events, "on by default");
        assert_eq!(c.actions.resume_max, 1000);
        let c = worker(&["--presence-events", "off", "--resume-max", "50"]).unwrap();
        assert!(!c.actions.presence_events);
        assert_eq!(c.actions.resume_max, 50);
        assert!(
            worker(&["--presence-events", "on"])
                .unwrap()
                .actions
                .presence_events
        );
        let argv = [
            "switchboard",
            "worker",
            "--queue-url",
            "https://sqs.x/1/q.fifo",
            "--presence-events",
            "maybe",
        ];
        let e = Cli::try_parse_from(argv).unwrap_err().to_string();
        assert!(e.contains("not on or off"), "{e}");
        for cmd in ["dev", "gateway"] {
            let argv = ["switchboard", cmd, "--presence-events", "off"];
            assert!(Cli::try_parse_from(argv).is_ok(), "{cmd}");
        }
    }

    #[test]
    fn defaults_match_the_design() {
        let c = worker(&[]).unwrap();
        assert_eq!(c.worker.max_groups, 64);
        assert_eq!(c.fanout_concurrency, 128);
        assert_eq!(c.worker.shutdown_grace, Duration::from_secs(25));
        assert_eq!(c.worker.wait, Duration::from_secs(20));
        assert_eq!(c.worker.max_in_hand, 128);
        assert_eq!(c.connections_table, "switchboard-connections");
        assert_eq!(c.messages_table, "switchboard-messages");
        assert_eq!(c.pipelines, Pipelines::default());
    }

    #[test]
    fn routes_from_flags_and_file() {
        let dir = std::env::temp_dir().join(format!("sb-routes-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("routes.toml");
        std::fs::write(
            &file,
            "[routes]\nannounce = [\"broadcast:exclude-sender\"]\n",
        )
        .unwrap();
        let c = worker(&[
            "--routes-file",
            file.to_str().unwrap(),
            "--route",
            "ping=reply",
        ])
        .unwrap();
        assert!(c.pipelines.get("announce").is_some());
        assert!(c.pipelines.get("ping").is_some());
        std::fs::write(&file, "[routs]\n").unwrap();
        let e = worker(&["--routes-file", file.to_str().unwrap()]).unwrap_err();
        assert!(
            e.0.contains("routes.toml line 1: unknown field `routs`"),
            "{e}"
        );
    }

    #[test]
    fn embedded_queues_go_with_a_data_dir() {
        let mut argv = vec![
            "switchboard",
            "worker",
            "--queue-url",
            "embedded://switchboard-inbound.fifo",
        ];
        let Command::Worker(args) = Cli::try_parse_from(argv.clone()).unwrap().command else {
            unreachable!()
        };
        assert!(
            WorkerConfig::from_args(&args)
                .unwrap_err()
                .0
                .contains("--data-dir")
        );
        argv.extend(["--data-dir", "/tmp/x"]);
        let Command::Worker(args) = Cli::try_parse_from(argv).unwrap().command else {
            unreachable!()
        };
        assert!(WorkerConfig::from_args(&args).is_ok());
        assert!(
            worker(&["--data-dir", "/tmp/x"])
                .unwrap_err()
                .0
                .contains("embedded://")
        );
    }

    #[test]
    fn inconsistent_values_are_usage_errors() {
        assert!(
            worker(&["--history-limit", "200"])
                .unwrap_err()
                .0
                .contains("--history-max")
        );
        assert!(
            worker(&["--retry-base", "10m"])
                .unwrap_err()
                .0
                .contains("--retry-max")
        );
        assert!(
            worker(&["--dlq-url", "https://sqs.x/1/q.fifo"])
                .unwrap_err()
                .0
                .contains("different queue")
        );
    }
}
