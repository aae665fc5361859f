//! The `replay-dlq` command around [`ops::replay`](crate::ops::replay): checks both
//! queues first (usage errors exit 2), shows a progress bar on a terminal,
//! prints dry-run lines and the summary on stdout, and fails (exit 1) when any
//! message could not be moved.

use anyhow::anyhow;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::Error;
use crate::backend::{BackendError, ErrorKind, Queue, QueueInfo};
use crate::cli::ReplayDlqArgs;
use crate::ops::replay::{Event, ReplayOptions, SkipReason, Summary, replay};
use crate::usage::UsageError;

/// The options of a run, from the command line.
pub fn options(args: &ReplayDlqArgs) -> ReplayOptions {
    ReplayOptions {
        max: args.max,
        group: args.group.clone(),
        dry_run: args.dry_run,
        visibility: args.visibility_timeout,
        ..ReplayOptions::default()
    }
}

/// Reads a queue's settings before the run: a queue that does not exist or is
/// not FIFO is a usage error.
async fn fifo_info(queue: &dyn Queue, flag: &str) -> Result<QueueInfo, Error> {
    let info = queue.info().await.map_err(|e: BackendError| -> Error {
        if e.kind == ErrorKind::NotFound {
            UsageError(format!("{flag} {}: no such queue", queue.url())).into()
        } else {
            anyhow::Error::new(e)
                .context(format!("cannot read queue {}", queue.url()))
                .into()
        }
    })?;
    if !info.fifo {
        return Err(UsageError(format!(
            "{flag} {} is not a FIFO queue: replay-dlq keeps per-group order and needs FIFO queues",
            queue.url()
        ))
        .into());
    }
    Ok(info)
}

/// Runs `replay-dlq` from `dlq` (or, when `None`, the target's RedrivePolicy
/// target, opened with `open`) to `target`.
pub async fn run<Q: Queue>(
    target: &dyn Queue,
    dlq: Option<&dyn Queue>,
    open: impl FnOnce(String) -> Result<Q, BackendError>,
    opts: &ReplayOptions,
) -> Result<Summary, Error> {
    let target_info = fifo_info(target, "--to").await?;
    let opened;
    let dlq: &dyn Queue = match dlq {
        Some(q) => q,
        None => {
            let url = target_info.dead_letter_url.ok_or_else(|| {
                UsageError(format!(
                    "--to {} has no RedrivePolicy: pass --from DLQ_URL",
                    target.url()
                ))
            })?;
            opened = open(url.clone()).map_err(|e| {
                anyhow::Error::new(e).context(format!("cannot open the dead-letter queue {url}"))
            })?;
            &opened
        }
    };
    if dlq.url() == target.url() {
        return Err(UsageError("--from and --to must be different queues".into()).into());
    }
    let dlq_info = fifo_info(dlq, "--from").await?;

    let total = match opts.max {
        Some(max) if opts.group.is_none() => dlq_info.approximate_messages.min(max as u64),
        _ => dlq_info.approximate_messages,
    };
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/~{len} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let verb = if opts.dry_run { "to move" } else { "moved" };
    tracing::info!(
        from = dlq.url(),
        to = target.url(),
        approximate_messages = dlq_info.approximate_messages,
        dry_run = opts.dry_run,
        "replaying dead letters"
    );
    let result = replay(dlq, target, opts, |event| match event {
        Event::Moved { .. } => {
            bar.inc(1);
            bar.set_message(verb);
        }
        Event::WouldMove { group, id, reason } => {
            bar.inc(1);
            let reason = reason.as_deref().unwrap_or("-");
            bar.suspend(|| println!("would move: group={group} id={id} reason={reason:?}"));
        }
        Event::Failed { .. } => {
            bar.inc(1);
            bar.set_message(format!("{verb}, with failures"));
        }
        Event::Skipped {
            group,
            id,
            why: SkipReason::DeadAgain,
        } => {
            tracing::warn!(%group, %id, "a copy this run sent was dead-lettered again: left in the dead-letter queue (fix the cause, then run again)");
        }
        Event::Skipped { group, id, why } => {
            tracing::debug!(%group, %id, ?why, "skipped");
        }
    })
    .await;
    bar.finish_and_clear();
    match result {
        Ok(summary) => {
            println!("{}", summary.line());
            if summary.failed > 0 {
                return Err(anyhow!(
                    "{} dead letter(s) could not be replayed and are still in {}; \
                     fix the cause (see the log) and run replay-dlq again",
                    summary.failed,
                    dlq.url()
                )
                .into());
            }
            Ok(summary)
        }
        Err(e) => {
            println!("{}", e.summary.line());
            Err(anyhow::Error::new(e.source)
                .context(format!("cannot receive from {}", dlq.url()))
                .into())
        }
    }
}
