//! The embedded implementation of [`Queue`](super::Queue),
//! [`Connections`](super::Connections) and [`Messages`](super::Messages): one
//! SQLite database on local disk (or in memory), with the semantics of SQS FIFO
//! and of the DynamoDB tables, so the worker and the edge handlers run on one
//! machine unchanged. `switchboard dev` keeps it under `./.switchboard/`.
//!
//! - [`EmbeddedStore`] opens the database and hands out queues and tables.
//! - [`EmbeddedQueue`]: per-group order, in-flight group blocking, 5-minute
//!   deduplication (ids looked up in memory, `dedup`), visibility timeouts,
//!   receive counts, redrive to a DLQ, long polling. Which messages each
//!   group and queue has, and which are in flight, is kept in memory too
//!   (`index`); the messages themselves are on disk. Queues are addressed as
//!   `embedded://<name>`.
//! - [`EmbeddedConnections`], [`EmbeddedMessages`]: the keys, lookups, page
//!   cursors, conditional writes and TTL of the tables in `migrations/`.
//! - `inspect`: what the `dev` console shows (queue depths, dead letters
//!   looked at in place, every connection and session).
//! - `walbuf`: the VFS a file store is opened with, which writes each
//!   commit's WAL frames in one write instead of two per frame.
//!
//! Durability: WAL journal, `synchronous = FULL`, and every call answers only
//! after its transaction committed. `docs/embedded.md` has the details and the
//! list of what is and is not reproduced.

mod db;
mod dedup;
mod error;
mod index;
mod inspect;
mod migrate;
mod queue;
mod schema;
mod tables;
mod walbuf;

pub use inspect::{GroupBacklog, PeekedMessage, QueueDepth, SessionSummary};
pub use migrate::Migrated;
pub use queue::{DedupScope, EmbeddedQueue, QueueSettings, Redrive, URL_PREFIX};
pub use schema::Sweep;
pub use tables::{DEFAULT_PAGE_SIZE, EmbeddedConnections, EmbeddedMessages};

use std::path::{Path, PathBuf};

use super::{BackendError, ErrorKind, Result};
use crate::migrations::Names;
use db::{Db, Location};

/// The database file inside a state directory.
pub const DB_FILE: &str = "switchboard.sqlite3";

/// One embedded database: every queue and table of one `switchboard dev`.
/// Cheap to clone; all clones share the database.
#[derive(Clone, Debug)]
pub struct EmbeddedStore {
    db: Db,
    path: Option<PathBuf>,
}

impl EmbeddedStore {
    /// Opens the store kept in directory `dir` (created if missing), in
    /// `dir/switchboard.sqlite3`. One process at a time: while this store is
    /// open, opening the same directory elsewhere fails. Messages left in
    /// flight by an earlier run are visible again at once.
    pub async fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| {
            BackendError::new(
                ErrorKind::Other,
                "embedded.Open",
                format!("cannot create state directory {}: {e}", dir.display()),
            )
        })?;
        let path = dir.join(DB_FILE);
        let db = Db::open(Location::File(&path)).await?;
        Ok(EmbeddedStore {
            db,
            path: Some(path),
        })
    }

    /// A store that lives in memory only and is gone when the last clone is
    /// dropped (`switchboard dev --ephemeral`).
    pub async fn in_memory() -> Result<Self> {
        Ok(EmbeddedStore {
            db: Db::open(Location::Memory).await?,
            path: None,
        })
    }

    /// The database file, `None` in memory.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Creates FIFO queue `name` (ending in `.fifo`), or updates the settings
    /// of an existing one. A dead-letter queue must be created first.
    pub async fn create_queue(&self, name: &str, settings: QueueSettings) -> Result<EmbeddedQueue> {
        EmbeddedQueue::create(self.db.clone(), name.to_owned(), settings).await
    }

    /// The queue at `url` (`embedded://<name>`, or the bare name). Only the
    /// name is checked here; calls on a queue that does not exist fail with
    /// [`ErrorKind::NotFound`], as on SQS.
    pub fn queue(&self, url: &str) -> Result<EmbeddedQueue> {
        Ok(EmbeddedQueue::new(self.db.clone(), queue::queue_name(url)?))
    }

    /// The connections table `table`; `page_size` limits each lookup page
    /// (`None`: [`DEFAULT_PAGE_SIZE`]).
    pub fn connections(&self, table: &str, page_size: Option<u32>) -> EmbeddedConnections {
        EmbeddedConnections::new(self.db.clone(), table, page_size)
    }

    /// The messages table `table`.
    pub fn messages(&self, table: &str) -> EmbeddedMessages {
        EmbeddedMessages::new(self.db.clone(), table)
    }

    /// Applies the queue definitions of `migrations/` under `names`, like
    /// `switchboard migrate` does on AWS; safe to run on every start.
    pub async fn migrate(&self, names: &Names) -> Result<Migrated> {
        migrate::run(&self.db, names).await
    }

    /// Removes expired items, expired deduplication entries and messages past
    /// retention now. It also happens on its own about once a minute.
    pub async fn sweep(&self) -> Result<Sweep> {
        self.db.sweep().await
    }
}
