//! The schema, how the file is opened (WAL, synchronous FULL, one owner), the
//! repairs at open and the periodic sweep of expired data.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags};

use super::dedup::Dedup;
use super::error::sql_error;
use super::index::{Change, QueueIndex};
use super::walbuf;
use crate::backend::{BackendError, ErrorKind, Result};
use crate::sync::lock;

/// SQS keeps a deduplication id for 5 minutes after the first send: the
/// `queue_dedup_log` rows' lifetime (set by sends, repaired at open, swept
/// after).
pub(super) const DEDUP_WINDOW_MS: i64 = 5 * 60 * 1000;

/// Version of the schema below, kept in `PRAGMA user_version`. 2 added
/// sequence numbers (`stored_messages.seq`, `message_seqs`); 3 replaced the
/// `queue_dedup` table (keyed by id) by `queue_dedup_log` (in send order;
/// the lookup is in memory, see `dedup`); 4 dropped the three indexes of
/// `queue_messages` (kept in memory, see `index`); 5 dropped
/// `stored_messages_by_seq` (a resume walks the session's history back from
/// its newest message, as on DynamoDB).
const SCHEMA_VERSION: i64 = 5;

/// From schema 1 to 2, run before [`SCHEMA`] on a file written by version 1
/// (whose `stored_messages` already exists without `seq`).
const MIGRATE_1_TO_2: &str = "ALTER TABLE stored_messages ADD COLUMN seq INTEGER;";

/// From schema 2 (or 1) to 3, run after [`SCHEMA`] when `queue_dedup` exists:
/// its entries go to the log in the order their windows end.
const MIGRATE_2_TO_3: &str = "
INSERT INTO queue_dedup_log (queue, scope, dedup_id, message_id, expires_at_ms)
    SELECT queue, scope, dedup_id, message_id, expires_at_ms FROM queue_dedup
    ORDER BY expires_at_ms;
DROP TABLE queue_dedup;";

/// From schema 3 (or earlier) to 4: the indexes of `queue_messages` now
/// live in memory. Harmless on a new file.
const MIGRATE_3_TO_4: &str = "
DROP INDEX IF EXISTS queue_messages_by_group;
DROP INDEX IF EXISTS queue_messages_order;
DROP INDEX IF EXISTS queue_messages_in_flight;";

/// From schema 4 (or earlier) to 5: no index on `stored_messages.seq` (the
/// session's messages are in seq order by their sort key already). Harmless
/// on a new file.
const MIGRATE_4_TO_5: &str = "DROP INDEX IF EXISTS stored_messages_by_seq;";

/// How long opening waits for another process to let go of the file.
const BUSY_TIMEOUT: Duration = Duration::from_secs(2);

/// WAL bytes between automatic checkpoints (40 MiB: 40,960 pages of a new
/// file's 1 KiB, 10,240 of an older file's 4 KiB).
const WAL_CHECKPOINT_BYTES: i64 = 40 * 1024 * 1024;

/// Page size of a new file (SQLite's default is 4,096). An existing file
/// keeps the size it was created with: a WAL database cannot change it.
const NEW_FILE_PAGE_SIZE: i64 = 1024;

/// Bytes the WAL file is truncated to after a checkpoint when it grew larger
/// (a group commit can take it past the checkpoint size).
const JOURNAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

/// Prepared statements kept per connection: more than the store has.
const STATEMENT_CACHE: usize = 64;

/// The schema. Every table carries the name of the table or queue it belongs
/// to, so one file holds any number of them, like one AWS account.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS queues (
    name TEXT PRIMARY KEY NOT NULL,
    visibility_timeout_ms INTEGER NOT NULL,
    retention_ms INTEGER NOT NULL,
    dedup_scope TEXT NOT NULL CHECK (dedup_scope IN ('queue', 'messageGroup')),
    dead_letter_queue TEXT,
    max_receive_count INTEGER,
    created_at_ms INTEGER NOT NULL
) STRICT;

-- seq is the FIFO sequence number: AUTOINCREMENT never reuses a value, so send
-- order is seq order and a receipt handle names exactly one stored message.
-- No secondary index: which messages each queue and group has, and which are
-- in flight, is kept in memory (src/backend/embedded/index.rs), rebuilt at open.
CREATE TABLE IF NOT EXISTS queue_messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    message_id TEXT NOT NULL,
    group_id TEXT NOT NULL,
    dedup_id TEXT NOT NULL,
    body TEXT NOT NULL,
    attributes TEXT NOT NULL,
    sent_at_ms INTEGER NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    receipt TEXT,
    received_at_ms INTEGER,
    invisible_until_ms INTEGER NOT NULL DEFAULT 0
) STRICT;

-- Each deduplication id as it was sent (scope: the group, or '' for the
-- queue). Appended in send order, so ids ending their window come first; the
-- lookup by id is in memory, rebuilt from here at open.
CREATE TABLE IF NOT EXISTS queue_dedup_log (
    id INTEGER PRIMARY KEY,
    queue TEXT NOT NULL,
    scope TEXT NOT NULL,
    dedup_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    expires_at_ms INTEGER NOT NULL
) STRICT;

CREATE TABLE IF NOT EXISTS connections (
    tbl TEXT NOT NULL,
    connection_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    user_id TEXT,
    connected_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    domain_name TEXT,
    stage TEXT,
    source_ip TEXT,
    PRIMARY KEY (tbl, connection_id)
) STRICT;
CREATE INDEX IF NOT EXISTS connections_by_session ON connections (tbl, session_id, connection_id);
CREATE INDEX IF NOT EXISTS connections_by_user ON connections (tbl, user_id, connection_id)
    WHERE user_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS connections_expiry ON connections (expires_at);

CREATE TABLE IF NOT EXISTS stored_messages (
    tbl TEXT NOT NULL,
    session_id TEXT NOT NULL,
    sk TEXT NOT NULL,
    id TEXT NOT NULL,
    action TEXT NOT NULL,
    sender TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    payload TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    seq INTEGER,
    PRIMARY KEY (tbl, session_id, sk)
) STRICT;
CREATE INDEX IF NOT EXISTS stored_messages_expiry ON stored_messages (expires_at);

-- The last seq assigned per session (DynamoDB: the `~seq` counter item). Never
-- swept: a seq is never handed out twice, even after every message expired.
CREATE TABLE IF NOT EXISTS message_seqs (
    tbl TEXT NOT NULL,
    session_id TEXT NOT NULL,
    last INTEGER NOT NULL,
    PRIMARY KEY (tbl, session_id)
) STRICT, WITHOUT ROWID;
";

pub(super) fn open_blocking(path: Option<&Path>, now_ms: i64) -> Result<Connection> {
    const OP: &str = "embedded.Open";
    let err = |e: rusqlite::Error| {
        let mut err = sql_error(OP, e);
        if let Some(p) = path {
            err.message = format!("{}: {}", p.display(), err.message);
            if matches!(err.kind, ErrorKind::Server) && err.message.contains("locked") {
                err.message.push_str(
                    " (another switchboard process is using this state directory; stop it or use another directory)",
                );
                err.kind = ErrorKind::Other;
            }
        }
        err
    };
    let conn = match path {
        // Each commit's WAL frames in one write (see `walbuf`); the default
        // VFS if it cannot be registered, which only costs the speed.
        Some(p) if walbuf::register() => {
            Connection::open_with_flags_and_vfs(p, OpenFlags::default(), walbuf::NAME)
                .map_err(err)?
        }
        Some(p) => Connection::open(p).map_err(err)?,
        None => Connection::open_in_memory().map_err(err)?,
    };
    conn.busy_timeout(BUSY_TIMEOUT).map_err(err)?;
    // Every statement the store runs stays prepared: rusqlite keeps 16 by
    // default, fewer than the queue and tables use, and an evicted statement
    // is parsed and planned again on its next call.
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    // Plans that do not depend on bound values: without this SQLite marks a
    // statement with `LIMIT ?` (most of the store's queries) expired at every
    // rebind and parses and plans it again on each call, which was the
    // largest single cost of the store (`sqlite3Reprepare`, 8 % of `dev`'s
    // CPU in bench/gateway.sh's sustained run). The plans here come from the
    // indexes alone (no ANALYZE statistics), so they stay the same.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
        .map_err(err)?;
    // Temporary storage in memory, above all the statement journal that
    // undoes one job of a group commit (db.rs runs each in a savepoint). On a
    // file database SQLite otherwise spills it past 64 KiB to a deleted file
    // in the temporary directory (`/var/tmp/etilqs_*`), which a busy group
    // always did: the store then also needs a writable temporary directory,
    // which a container with a read-only root does not have. It holds at most
    // the pages one group changed (no CPU change measured either way).
    conn.pragma_update(None, "temp_store", "MEMORY")
        .map_err(err)?;
    if path.is_some() {
        // 1 KiB pages, set before anything is written (on an existing file
        // this does nothing). A commit writes every page it changed in full,
        // and under load most pages a commit changes hold one or two changed
        // rows (a session's newest history entry, the end of the queue): with
        // pages a quarter the size, a durable `dev` wrote 12 KB per message
        // instead of 28 in bench/gateway.sh's sustained run, at 6,398–7,511
        // against 4,885–6,558 messages/s (docs/benchmarks.md, tenth sitting).
        // Rows longer than about 1,000 bytes continue on overflow pages, as
        // longer rows did on 4 KiB pages. In memory (`--ephemeral`) nothing
        // is written, and the default stays.
        conn.pragma_update(None, "page_size", NEW_FILE_PAGE_SIZE)
            .map_err(err)?;
        // One process owns the file: long polls are woken in-process, and
        // messages in flight at open time belong to a consumer that is gone.
        conn.pragma_update(None, "locking_mode", "EXCLUSIVE")
            .map_err(err)?;
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .map_err(err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(BackendError::new(
                ErrorKind::Other,
                OP,
                format!("SQLite refused WAL mode (journal_mode is {mode})"),
            ));
        }
        // FULL: the WAL is synced at every commit, so an answered write survives
        // a power cut too, not only a crash of the process (which NORMAL would
        // already survive). Group commit makes it one sync per batch.
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(err)?;
        // Checkpoint every WAL_CHECKPOINT_BYTES (40 MiB) instead of SQLite's
        // 1,000 pages (4 MB of 4 KiB pages). A checkpoint copies every page
        // the WAL holds into the database file and syncs it; the pages a busy
        // store changes most (the end of the queue, a session's history) are
        // in every WAL, so fewer checkpoints write them fewer times: 46–47 KB
        // written per message instead of 53–55 in bench/gateway.sh's
        // sustained run (docs/benchmarks.md, ninth sitting). The WAL file
        // keeps the size it reached, at most about JOURNAL_SIZE_LIMIT after a
        // checkpoint.
        let page_size: i64 = conn
            .pragma_query_value(None, "page_size", |r| r.get(0))
            .map_err(err)?;
        conn.pragma_update(None, "wal_autocheckpoint", WAL_CHECKPOINT_BYTES / page_size)
            .map_err(err)?;
        conn.pragma_update(None, "journal_size_limit", JOURNAL_SIZE_LIMIT)
            .map_err(err)?;
    }
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(err)?;
    if version > SCHEMA_VERSION {
        return Err(BackendError::new(
            ErrorKind::Other,
            OP,
            format!(
                "the store was written by a newer switchboard (schema {version}, this one knows {SCHEMA_VERSION})"
            ),
        ));
    }
    let upgrade = if version == 1 { MIGRATE_1_TO_2 } else { "" };
    let old_dedup: bool = conn
        .query_row(
            "SELECT COUNT(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'queue_dedup'",
            [],
            |r| r.get(0),
        )
        .map_err(err)?;
    let dedup_upgrade = if old_dedup { MIGRATE_2_TO_3 } else { "" };
    conn.execute_batch(&format!(
        "BEGIN IMMEDIATE; {upgrade} {SCHEMA} {dedup_upgrade} {MIGRATE_3_TO_4} {MIGRATE_4_TO_5} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
    ))
    .map_err(err)?;
    recover(&conn, now_ms).map_err(err)?;
    Ok(conn)
}

/// Start-of-run repairs: messages in flight belonged to a consumer of an
/// earlier run (the file is ours alone now), so they are visible again; dedup
/// entries that end further ahead than one window (the wall clock went back
/// between runs) end one window from now.
fn recover(conn: &Connection, now_ms: i64) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE queue_messages SET invisible_until_ms = 0 WHERE invisible_until_ms > 0",
        [],
    )?;
    let latest = now_ms + DEDUP_WINDOW_MS;
    conn.execute(
        "UPDATE queue_dedup_log SET expires_at_ms = ?1 WHERE expires_at_ms > ?1",
        [latest],
    )?;
    Ok(())
}

/// What a sweep removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sweep {
    /// Connections past their `expiresAt`.
    pub connections: usize,
    /// Stored messages past their `expiresAt`.
    pub messages: usize,
    /// Queue messages past their queue's retention period.
    pub queue_messages: usize,
    /// Deduplication entries past their 5-minute window.
    pub dedup_entries: usize,
}

pub(super) fn sweep(
    conn: &Connection,
    now_ms: i64,
    (dedup, index): (&Mutex<Dedup>, &Mutex<QueueIndex>),
) -> Result<Sweep> {
    let now_s = now_ms.div_euclid(1000);
    let run = |sql: &str, v: i64| {
        conn.prepare_cached(sql)
            .and_then(|mut s| s.execute([v]))
            .map_err(|e| sql_error("embedded.Sweep", e))
    };
    // Like DynamoDB TTL: expired when expiresAt is before now.
    let connections = run("DELETE FROM connections WHERE expires_at < ?1", now_s)?;
    let messages = run("DELETE FROM stored_messages WHERE expires_at < ?1", now_s)?;
    let gone: Vec<Change> = conn
        .prepare_cached(
            "DELETE FROM queue_messages WHERE seq IN (
                SELECT m.seq FROM queue_messages m JOIN queues q ON q.name = m.queue
                WHERE m.sent_at_ms + q.retention_ms <= ?1)
             RETURNING seq, queue",
        )
        .and_then(|mut s| {
            s.query_map([now_ms], |r| {
                Ok(Change::Remove {
                    seq: r.get(0)?,
                    queue: r.get(1)?,
                })
            })?
            .collect()
        })
        .map_err(|e| sql_error("embedded.Sweep", e))?;
    let dedup_entries = {
        // The log is in send order: every row before the oldest id still
        // in its window is over (the wall clock only moves forward within
        // a run, and `recover` caps windows left by an earlier one).
        let mut d = lock(dedup);
        d.expire(now_ms);
        let first_live = d.first_live_row().unwrap_or(i64::MAX);
        run("DELETE FROM queue_dedup_log WHERE id < ?1", first_live)?
    };
    let queue_messages = gone.len();
    // Last, once nothing can fail.
    lock(index).apply(gone);
    Ok(Sweep {
        connections,
        messages,
        queue_messages,
        dedup_entries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A new directory under the system's temporary one, named for this run.
    fn fresh_dir(prefix: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "{prefix}-{}-{}",
            std::process::id(),
            crate::sync::now_ms()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Opens the file at `path`, which must then be at the current schema.
    fn open_current(path: &Path, now_ms: i64) -> Connection {
        let c = open_blocking(Some(path), now_ms).unwrap();
        let version: i64 = c
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        c
    }

    fn count(c: &Connection, sql: &str) -> i64 {
        c.query_row(sql, [], |r| r.get(0)).unwrap()
    }

    /// Schema 2's deduplication table (keyed by id) moves into the log in the
    /// order the windows end, and is gone; the lookup rebuilt from the log
    /// finds the ids whose window is open.
    #[test]
    fn a_version_2_file_moves_its_dedup_entries_to_the_log() {
        let dir = fresh_dir("sb-schema-v2");
        let path = dir.join("v2.sqlite3");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(
                "CREATE TABLE queue_dedup (
                    queue TEXT NOT NULL, scope TEXT NOT NULL, dedup_id TEXT NOT NULL,
                    message_id TEXT NOT NULL, expires_at_ms INTEGER NOT NULL,
                    PRIMARY KEY (queue, scope, dedup_id)) STRICT, WITHOUT ROWID;
                 CREATE INDEX queue_dedup_expiry ON queue_dedup (expires_at_ms);
                 INSERT INTO queue_dedup VALUES ('in.fifo', 'g', 'b-late', 'm2', 2000);
                 INSERT INTO queue_dedup VALUES ('in.fifo', 'g', 'a-early', 'm1', 1000);
                 INSERT INTO queue_dedup VALUES ('in.fifo', '', 'gone', 'm0', 10);
                 PRAGMA user_version = 2;",
            )
            .unwrap();
        }
        let c = open_current(&path, 500);
        // An existing file keeps its page size; the checkpoint still comes
        // every 40 MiB of WAL.
        assert_eq!(count(&c, "PRAGMA page_size"), 4096);
        assert_eq!(count(&c, "PRAGMA wal_autocheckpoint"), 10 * 1024);
        let old = count(
            &c,
            "SELECT COUNT(*) FROM sqlite_master WHERE name LIKE 'queue_dedup' OR name = 'queue_dedup_expiry'",
        );
        assert_eq!(old, 0, "the old table and its index are dropped");
        let ids: Vec<String> = c
            .prepare("SELECT dedup_id FROM queue_dedup_log ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(ids, ["gone", "a-early", "b-late"], "in window order");
        let mut d = Dedup::load(&c, 500).unwrap();
        let k = super::super::dedup::key("in.fifo", "g", "a-early");
        assert!(d.lookup(k, 500).is_some());
        assert!(
            d.lookup(super::super::dedup::key("in.fifo", "", "gone"), 500)
                .is_none()
        );
        drop(c);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Schema 3's indexes of `queue_messages` are dropped (they live in
    /// memory now); the messages stay.
    #[test]
    fn a_version_3_file_loses_its_queue_indexes() {
        let dir = fresh_dir("sb-schema-v3");
        let path = dir.join("v3.sqlite3");
        {
            let c = open_blocking(Some(&path), 0).unwrap();
            c.execute_batch(
                "CREATE INDEX queue_messages_by_group ON queue_messages (queue, group_id);
                 CREATE INDEX queue_messages_order ON queue_messages (queue, seq, group_id);
                 CREATE INDEX queue_messages_in_flight ON queue_messages (queue, invisible_until_ms);
                 INSERT INTO queue_messages (queue, message_id, group_id, dedup_id, body,
                     attributes, sent_at_ms) VALUES ('q', 'm', 'g', 'd', 'b', '{}', 1);
                 PRAGMA user_version = 3;",
            )
            .unwrap();
        }
        let c = open_current(&path, 0);
        let indexes = count(
            &c,
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = 'queue_messages'",
        );
        assert_eq!(indexes, 0);
        let index = QueueIndex::load(&c).unwrap();
        assert_eq!(index.queue("q").map(|m| m.depth(0)), Some((1, 0)));
        drop(c);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Schema 4's index on `stored_messages.seq` is dropped (a resume walks
    /// the history by sort key); the messages and their seqs stay.
    #[test]
    fn a_version_4_file_loses_its_seq_index() {
        let dir = fresh_dir("sb-schema-v4");
        let path = dir.join("v4.sqlite3");
        {
            let c = open_blocking(Some(&path), 0).unwrap();
            c.execute_batch(
                "CREATE INDEX stored_messages_by_seq ON stored_messages (tbl, session_id, seq)
                     WHERE seq IS NOT NULL;
                 INSERT INTO stored_messages (tbl, session_id, sk, id, action, sender,
                     received_at, payload, expires_at, seq)
                     VALUES ('t', 's', '0000000000001#a', 'a', 'sendMessage', '{}', 1, 'null', 99, 1);
                 PRAGMA user_version = 4;",
            )
            .unwrap();
        }
        let c = open_current(&path, 0);
        let indexes = count(
            &c,
            "SELECT COUNT(*) FROM sqlite_master WHERE name = 'stored_messages_by_seq'",
        );
        assert_eq!(indexes, 0);
        assert_eq!(count(&c, "SELECT seq FROM stored_messages"), 1);
        drop(c);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_version_1_file_gains_sequence_numbers_and_keeps_its_messages() {
        let dir = fresh_dir("sb-schema");
        let path = dir.join("v1.sqlite3");
        {
            // stored_messages as schema 1 made it, with one message.
            let c = Connection::open(&path).unwrap();
            c.execute_batch(
                "CREATE TABLE stored_messages (
                    tbl TEXT NOT NULL, session_id TEXT NOT NULL, sk TEXT NOT NULL,
                    id TEXT NOT NULL, action TEXT NOT NULL, sender TEXT NOT NULL,
                    received_at INTEGER NOT NULL, payload TEXT NOT NULL,
                    expires_at INTEGER NOT NULL, PRIMARY KEY (tbl, session_id, sk)) STRICT;
                 INSERT INTO stored_messages VALUES
                    ('t', 's', '0000000000001#a', 'a', 'sendMessage', '{\"connectionId\":\"c\"}', 1, 'null', 99);
                 PRAGMA user_version = 1;",
            )
            .unwrap();
        }
        let c = open_current(&path, 0);
        let (id, seq): (String, Option<i64>) = c
            .query_row("SELECT id, seq FROM stored_messages", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((id.as_str(), seq), ("a", None), "kept, without a seq");
        c.execute("INSERT INTO message_seqs VALUES ('t', 's', 1)", [])
            .unwrap();
        drop(c);
        // Opening again is a no-op.
        let c = open_blocking(Some(&path), 0).unwrap();
        let last: i64 = c
            .query_row("SELECT last FROM message_seqs", [], |r| r.get(0))
            .unwrap();
        assert_eq!(last, 1);
        drop(c);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A new file store has 1 KiB pages, checkpoints its WAL every 40 MiB
    /// (not every 1,000 pages) and truncates a larger WAL file to 64 MiB
    /// after a checkpoint.
    #[test]
    fn a_new_file_store_has_1_kib_pages_and_checkpoints_every_40_mib() {
        let dir = fresh_dir("sb-checkpoint");
        let c = open_blocking(Some(&dir.join("s.sqlite3")), 0).unwrap();
        let pages: i64 = c
            .pragma_query_value(None, "wal_autocheckpoint", |r| r.get(0))
            .unwrap();
        let limit: i64 = c
            .pragma_query_value(None, "journal_size_limit", |r| r.get(0))
            .unwrap();
        let page_size: i64 = c
            .pragma_query_value(None, "page_size", |r| r.get(0))
            .unwrap();
        assert_eq!(page_size, 1024);
        assert_eq!(pages, 40 * 1024);
        assert_eq!(limit, 64 * 1024 * 1024);
        drop(c);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A savepoint that changes more than 64 KiB of pages keeps its journal
    /// in memory: no `etilqs_*` file in the temporary directory.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_large_savepoint_journal_stays_in_memory() {
        let dir = fresh_dir("sb-subjournal");
        let c = open_blocking(Some(&dir.join("s.sqlite3")), 0).unwrap();
        let temp_store: i64 = c
            .pragma_query_value(None, "temp_store", |r| r.get(0))
            .unwrap();
        assert_eq!(temp_store, 2, "MEMORY");
        let row = "x".repeat(1000);
        c.execute_batch("BEGIN").unwrap();
        for i in 0..400 {
            c.execute(
                "INSERT INTO stored_messages (tbl, session_id, sk, id, action, sender, received_at, payload, expires_at)
                 VALUES ('t', 's', ?1, ?1, 'a', '{}', 1, ?2, 99)",
                rusqlite::params![format!("{i:08}"), row],
            )
            .unwrap();
        }
        c.execute_batch("COMMIT; BEGIN IMMEDIATE; SAVEPOINT job;")
            .unwrap();
        // ~400 KiB of existing pages change inside the savepoint.
        c.execute("UPDATE stored_messages SET payload = upper(payload)", [])
            .unwrap();
        let temp_files: Vec<String> = std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .map(|p| p.display().to_string())
            .filter(|p| p.contains("etilqs_"))
            .collect();
        c.execute_batch("ROLLBACK TO job; RELEASE job; COMMIT;")
            .unwrap();
        let payload: String = c
            .query_row("SELECT payload FROM stored_messages LIMIT 1", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(payload, row, "rolled back to the savepoint");
        drop(c);
        let _ = std::fs::remove_dir_all(&dir);
        assert!(temp_files.is_empty(), "{temp_files:?}");
    }
}
