//! The SQLite database behind the embedded backends.
//!
//! One connection, used by one blocking task at a time: callers queue a job and
//! await its answer; whichever call finds no task running starts one with
//! `spawn_blocking`, which runs every queued job in one transaction (group
//! commit: one WAL sync for many operations), commits, and only then answers
//! them. So an answered write is committed, and the tokio runtime never blocks
//! on disk. `spawn_blocking` (not a thread of our own) also keeps tests with
//! `tokio::time::pause()` honest: a paused clock does not auto-advance while a
//! blocking task runs.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;

use super::dedup::Dedup;
use super::error::sql_error;
use super::index::QueueIndex;
use super::schema::{Sweep, open_blocking, sweep};
use crate::backend::{BackendError, ErrorKind, Result};
use crate::sync::lock;

/// Most jobs in one transaction, so one caller never waits behind thousands.
const MAX_GROUP: usize = 256;

/// How often expired items, dedup entries and messages past retention are
/// removed (piggybacked on a call, see [`Db::call_then`]).
const SWEEP_EVERY_MS: i64 = 60_000;

/// Epoch milliseconds that advance with tokio's clock.
///
/// Read once from the wall clock when the store opens, then advanced by
/// `tokio::time::Instant`: timeouts inside one run are immune to wall-clock
/// jumps, and tests drive them with `tokio::time::pause()` / `advance()`. The
/// values written to disk are still wall-clock epoch times, so after a restart
/// they compare correctly against the new run's clock.
#[derive(Debug, Clone, Copy)]
pub(super) struct Clock {
    wall_ms: i64,
    start: Instant,
}

impl Clock {
    fn new() -> Self {
        let wall_ms = crate::sync::now_ms();
        Clock {
            wall_ms,
            start: Instant::now(),
        }
    }

    /// Now, epoch ms.
    pub(super) fn now_ms(&self) -> i64 {
        let elapsed = Instant::now().saturating_duration_since(self.start);
        self.wall_ms + i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX / 2)
    }

    /// The tokio instant at which the clock reads `ms`.
    pub(super) fn instant_at(&self, ms: i64) -> Instant {
        let after = u64::try_from(ms - self.wall_ms).unwrap_or(0);
        self.start + Duration::from_millis(after)
    }
}

/// A job queued for the blocking task.
trait Job: Send {
    /// Runs inside the open transaction; says whether it succeeded (else its
    /// writes are rolled back) and how to answer once the commit is known.
    fn run(self: Box<Self>, conn: &Connection) -> (bool, Box<dyn Reply>);
    /// Answers without running (the transaction could not start).
    fn fail(self: Box<Self>, err: BackendError);
}

/// The answer of a job that ran, sent after the commit.
trait Reply: Send {
    fn send(self: Box<Self>, commit: std::result::Result<(), &BackendError>);
}

struct FnJob<F, A, T> {
    op: &'static str,
    f: F,
    after: A,
    tx: oneshot::Sender<Result<T>>,
}

struct FnReply<A, T> {
    op: &'static str,
    result: Result<T>,
    after: A,
    tx: oneshot::Sender<Result<T>>,
}

impl<F, A, T> Job for FnJob<F, A, T>
where
    F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    A: FnOnce(&T) + Send + 'static,
    T: Send + 'static,
{
    fn run(self: Box<Self>, conn: &Connection) -> (bool, Box<dyn Reply>) {
        let FnJob { op, f, after, tx } = *self;
        let result = f(conn);
        let ok = result.is_ok();
        (
            ok,
            Box::new(FnReply {
                op,
                result,
                after,
                tx,
            }),
        )
    }

    fn fail(self: Box<Self>, err: BackendError) {
        let _ = self
            .tx
            .send(Err(BackendError::new(err.kind, self.op, err.message)));
    }
}

impl<A, T> Reply for FnReply<A, T>
where
    A: FnOnce(&T) + Send + 'static,
    T: Send + 'static,
{
    fn send(self: Box<Self>, commit: std::result::Result<(), &BackendError>) {
        let FnReply {
            op,
            result,
            after,
            tx,
        } = *self;
        let result = match commit {
            Ok(()) => result,
            Err(e) => Err(BackendError::new(e.kind, op, e.message.clone())),
        };
        if let Ok(v) = &result {
            after(v);
        }
        let _ = tx.send(result);
    }
}

#[derive(Default)]
struct Pending {
    jobs: Vec<Box<dyn Job>>,
    running: bool,
}

struct Shared {
    conn: Mutex<Connection>,
    pending: Mutex<Pending>,
    /// The queues' deduplication ids (see `dedup`); changed only by jobs.
    dedup: Arc<Mutex<Dedup>>,
    /// Where the queues' messages are (see `index`); changed only by jobs.
    index: Arc<Mutex<QueueIndex>>,
    notifies: Mutex<HashMap<String, Arc<Notify>>>,
    last_sweep_ms: AtomicI64,
}

/// Handle to the database; cheap to clone.
#[derive(Clone)]
pub(super) struct Db {
    shared: Arc<Shared>,
    /// The store's clock.
    pub(super) clock: Clock,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("clock", &self.clock).finish()
    }
}

/// Where the database lives.
pub(super) enum Location<'a> {
    File(&'a Path),
    Memory,
}

impl Db {
    /// Opens (creating if needed) the database, sets it up and makes messages
    /// left in flight by an earlier run visible again.
    pub(super) async fn open(location: Location<'_>) -> Result<Db> {
        const OP: &str = "embedded.Open";
        let clock = Clock::new();
        let now = clock.now_ms();
        let path = match location {
            Location::File(p) => Some(p.to_owned()),
            Location::Memory => None,
        };
        let (conn, dedup, index) = tokio::task::spawn_blocking(move || {
            let conn = open_blocking(path.as_deref(), now)?;
            let dedup = Dedup::load(&conn, now).map_err(|e| sql_error(OP, e))?;
            let index = QueueIndex::load(&conn).map_err(|e| sql_error(OP, e))?;
            Ok::<_, BackendError>((conn, dedup, index))
        })
        .await
        .map_err(|e| BackendError::new(ErrorKind::Other, OP, e.to_string()))??;
        Ok(Db {
            shared: Arc::new(Shared {
                conn: Mutex::new(conn),
                pending: Mutex::default(),
                dedup: Arc::new(Mutex::new(dedup)),
                index: Arc::new(Mutex::new(index)),
                notifies: Mutex::default(),
                last_sweep_ms: AtomicI64::new(now),
            }),
            clock,
        })
    }

    /// Runs `f` in the next transaction and returns its result once committed.
    pub(super) async fn call<T, F>(&self, op: &'static str, f: F) -> Result<T>
    where
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        self.call_then(op, f, |_| {}).await
    }

    /// Like [`Db::call`]; `after` sees the result once it is committed, before
    /// the caller does (to wake long polls).
    pub(super) async fn call_then<T, F, A>(&self, op: &'static str, f: F, after: A) -> Result<T>
    where
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
        A: FnOnce(&T) + Send + 'static,
        T: Send + 'static,
    {
        let now = self.clock.now_ms();
        let last = self.shared.last_sweep_ms.load(Ordering::Relaxed);
        if now - last >= SWEEP_EVERY_MS
            && self
                .shared
                .last_sweep_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            // Nobody awaits it: it runs in the same transaction as this call.
            let (tx, _rx) = oneshot::channel();
            let (dedup, index) = (self.dedup(), self.index());
            self.enqueue(Box::new(FnJob {
                op: "embedded.Sweep",
                f: move |conn: &Connection| sweep(conn, now, (&dedup, &index)),
                after: |_: &Sweep| {},
                tx,
            }));
        }
        let (tx, rx) = oneshot::channel();
        self.enqueue(Box::new(FnJob { op, f, after, tx }));
        rx.await.map_err(|_| {
            BackendError::new(
                ErrorKind::Server,
                op,
                "the embedded store stopped before answering",
            )
        })?
    }

    fn enqueue(&self, job: Box<dyn Job>) {
        let start = {
            let mut p = lock(&self.shared.pending);
            p.jobs.push(job);
            !std::mem::replace(&mut p.running, true)
        };
        if start {
            let drainer = Drainer {
                shared: self.shared.clone(),
                clock: self.clock,
                done: false,
            };
            tokio::task::spawn_blocking(move || drainer.run());
        }
    }

    /// The wake-up signal of queue `name`, shared by every handle to it.
    pub(super) fn notify(&self, name: &str) -> Arc<Notify> {
        lock(&self.shared.notifies)
            .entry(name.to_owned())
            .or_default()
            .clone()
    }

    /// The queues' deduplication ids, for the jobs that send.
    pub(super) fn dedup(&self) -> Arc<Mutex<Dedup>> {
        self.shared.dedup.clone()
    }

    /// Where the queues' messages are, for the jobs that read or change them.
    pub(super) fn index(&self) -> Arc<Mutex<QueueIndex>> {
        self.shared.index.clone()
    }

    /// Removes what has expired now.
    pub(super) async fn sweep(&self) -> Result<Sweep> {
        let now = self.clock.now_ms();
        self.shared.last_sweep_ms.store(now, Ordering::Relaxed);
        let (dedup, index) = (self.dedup(), self.index());
        self.call("embedded.Sweep", move |conn| {
            sweep(conn, now, (&dedup, &index))
        })
        .await
    }
}

/// Runs queued jobs until none is left. If it is dropped without running (the
/// runtime shut down first), it answers the queued jobs with an error instead
/// of leaving their callers waiting.
struct Drainer {
    shared: Arc<Shared>,
    clock: Clock,
    done: bool,
}

impl Drainer {
    fn run(mut self) {
        let conn = lock(&self.shared.conn);
        loop {
            let jobs = {
                let mut p = lock(&self.shared.pending);
                if p.jobs.is_empty() {
                    p.running = false;
                    break;
                }
                let rest = if p.jobs.len() > MAX_GROUP {
                    p.jobs.split_off(MAX_GROUP)
                } else {
                    Vec::new()
                };
                std::mem::replace(&mut p.jobs, rest)
            };
            run_group(&conn, jobs, &self.shared, self.clock);
        }
        drop(conn);
        self.done = true;
    }
}

impl Drop for Drainer {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let jobs = {
            let mut p = lock(&self.shared.pending);
            p.running = false;
            std::mem::take(&mut p.jobs)
        };
        for job in jobs {
            job.fail(BackendError::new(
                ErrorKind::Server,
                "embedded",
                "the embedded store's task stopped",
            ));
        }
    }
}

/// Runs `jobs` in one transaction, each inside a savepoint so that a failing
/// job leaves no partial writes and does not affect the others.
fn run_group(conn: &Connection, jobs: Vec<Box<dyn Job>>, shared: &Shared, clock: Clock) {
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        let e = sql_error("sqlite.Begin", e);
        for job in jobs {
            job.fail(e.clone());
        }
        return;
    }
    let mut replies = Vec::with_capacity(jobs.len());
    for job in jobs {
        if let Err(e) = exec(conn, "SAVEPOINT job") {
            job.fail(e);
            continue;
        }
        match catch_unwind(AssertUnwindSafe(|| job.run(conn))) {
            Ok((true, reply)) => {
                let _ = exec(conn, "RELEASE job");
                replies.push(reply);
            }
            Ok((false, reply)) => {
                let _ = exec(conn, "ROLLBACK TO job");
                let _ = exec(conn, "RELEASE job");
                replies.push(reply);
            }
            Err(_) => {
                // The job's answer channel went with it: its caller gets an error.
                tracing::error!(
                    "an embedded store operation panicked; its writes were rolled back"
                );
                let _ = exec(conn, "ROLLBACK TO job");
                let _ = exec(conn, "RELEASE job");
            }
        }
    }
    let commit = exec(conn, "COMMIT");
    if commit.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
        // The group's sends are undone: so are the ids they recorded.
        let rebuilt = Dedup::load(conn, clock.now_ms());
        *lock(&shared.dedup) = rebuilt.unwrap_or_else(|e| {
            // Forgetting every id can let a resent message in twice; keeping
            // ids of sends that did not happen would drop a retry of them.
            tracing::error!(error = %e, "could not reload the queues' deduplication ids after a failed commit; starting empty");
            Dedup::default()
        });
        // And its sends, receives and deletes, in the index.
        match QueueIndex::load(conn) {
            Ok(index) => *lock(&shared.index) = index,
            // Kept as the jobs left it: at worst it names messages that are
            // not in the table (a receive drops them) or misses new ones
            // until the next open.
            Err(e) => {
                tracing::error!(error = %e, "could not reload the queues' message index after a failed commit; keeping it")
            }
        }
    }
    for reply in replies {
        reply.send(commit.as_ref().map(|_| ()));
    }
}

fn exec(conn: &Connection, sql: &str) -> Result<()> {
    conn.prepare_cached(sql)
        .and_then(|mut s| s.execute([]))
        .map(|_| ())
        .map_err(|e| sql_error("sqlite", e))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::backend::embedded::{EmbeddedQueue, EmbeddedStore, QueueSettings};
    use crate::backend::{OutgoingMessage, Queue, ReceiveRequest};

    fn message(dedup_id: &str) -> OutgoingMessage {
        OutgoingMessage {
            body: dedup_id.to_owned(),
            group_id: "g".to_owned(),
            dedup_id: dedup_id.to_owned(),
            attributes: BTreeMap::new(),
        }
    }

    /// The ids of what one receive of up to 10 returns now.
    async fn receive_ids(q: &EmbeddedQueue) -> Vec<String> {
        let got = q
            .receive(ReceiveRequest {
                max_messages: 10,
                wait: Duration::ZERO,
                visibility: Duration::from_secs(30),
            })
            .await
            .unwrap();
        got.into_iter().map(|m| m.message_id).collect()
    }

    /// A send whose group commit fails did not happen: the queue does not
    /// count it, and sending it again is a new message, also after another
    /// send took the log row (and the sequence number) it had.
    #[tokio::test]
    // Held on purpose while the two calls queue up: only the drainer (on a
    // blocking thread) waits for it, not the tasks awaited meanwhile.
    #[allow(clippy::await_holding_lock)]
    async fn a_failed_commit_forgets_its_sends() {
        let store = EmbeddedStore::in_memory().await.unwrap();
        let q = store
            .create_queue("t.fifo", QueueSettings::default())
            .await
            .unwrap();
        let db = store.db.clone();
        // A write that fails only at COMMIT: a deferred foreign key.
        lock(&db.shared.conn)
            .execute_batch(
                "PRAGMA foreign_keys = ON;
                 CREATE TABLE parent (id INTEGER PRIMARY KEY);
                 CREATE TABLE child (pid INTEGER REFERENCES parent (id)
                     DEFERRABLE INITIALLY DEFERRED);",
            )
            .unwrap();
        let (send, bad) = {
            // The drainer waits for this lock, so both calls join one group.
            let conn = lock(&db.shared.conn);
            let send = tokio::spawn({
                let q = q.clone();
                async move { q.send(&message("d1")).await }
            });
            let bad = tokio::spawn({
                let db = db.clone();
                async move {
                    db.call("test.Orphan", |c| {
                        c.execute("INSERT INTO child VALUES (1)", [])
                            .map_err(|e| sql_error("test.Orphan", e))?;
                        Ok(())
                    })
                    .await
                }
            });
            for _ in 0..10_000 {
                if lock(&db.shared.pending).jobs.len() >= 2 {
                    break;
                }
                tokio::task::yield_now().await;
            }
            assert_eq!(lock(&db.shared.pending).jobs.len(), 2, "both queued");
            drop(conn);
            (send, bad)
        };
        assert!(bad.await.unwrap().is_err());
        let err = send.await.unwrap().expect_err("its commit failed");
        assert!(err.message.contains("FOREIGN KEY"), "{err}");
        let info = q.info().await.unwrap();
        assert_eq!(
            (info.approximate_messages, info.approximate_in_flight),
            (0, 0),
            "not in the index either"
        );

        // Another message takes the log row the failed send had.
        let other = q.send(&message("d2")).await.unwrap();
        let again = q.send(&message("d1")).await.unwrap();
        assert_ne!(again, other, "not taken for a duplicate of d2's row");
        let ids = receive_ids(&q).await;
        assert_eq!(ids, [other, again]);
    }

    /// The index follows the sweep and the console's delete by id: what they
    /// remove is neither counted nor received afterwards.
    #[tokio::test(start_paused = true)]
    async fn swept_and_deleted_messages_leave_the_index() {
        let store = EmbeddedStore::in_memory().await.unwrap();
        let settings = QueueSettings {
            retention: Duration::from_secs(60),
            ..QueueSettings::default()
        };
        let q = store.create_queue("t.fifo", settings).await.unwrap();
        q.send(&message("old-1")).await.unwrap();
        q.send(&message("old-2")).await.unwrap();
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(store.sweep().await.unwrap().queue_messages, 2);
        let kept = q.send(&message("new")).await.unwrap();
        let other = q
            .send(&OutgoingMessage {
                group_id: "h".into(),
                ..message("other")
            })
            .await
            .unwrap();
        let depth = store.queue_depth(q.url(), 10).await.unwrap();
        assert_eq!((depth.visible, depth.in_flight), (2, 0));
        let groups: Vec<(&str, u64)> = depth
            .busiest_groups
            .iter()
            .map(|g| (g.group.as_str(), g.messages))
            .collect();
        assert_eq!(groups, [("g", 1), ("h", 1)]);

        assert!(store.delete_message(q.url(), &other).await.unwrap());
        let info = q.info().await.unwrap();
        assert_eq!(
            (info.approximate_messages, info.approximate_in_flight),
            (1, 0)
        );
        let ids = receive_ids(&q).await;
        assert_eq!(ids, [kept]);
        let info = q.info().await.unwrap();
        assert_eq!(
            (info.approximate_messages, info.approximate_in_flight),
            (0, 1)
        );
    }
}
