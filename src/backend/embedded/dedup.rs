//! The queues' deduplication ids of the last five minutes.
//!
//! SQS FIFO drops a message whose deduplication id it saw in the last 5
//! minutes (per queue, or per message group with DeduplicationScope
//! messageGroup) and answers with the first message's id. Our ids are random
//! (API Gateway request ids), so a b-tree keyed by them changed a page of its
//! own for every message, written again at every checkpoint: 13 KB of the 55
//! KB a durable `dev` wrote per message under load (docs/benchmarks.md, ninth
//! sitting). So the lookup lives in memory, and the table `queue_dedup_log`
//! only records each id in the order it was sent (appended, so neighbours
//! share pages), for the next open to rebuild the lookup from.
//!
//! In memory: a 128-bit SHA-256 prefix of (queue, scope, id) with the log row
//! and the end of its window, 70–140 bytes per id (a hash map and a queue
//! for expiry, both growing by doubling): 21–42 MB for 300,000 ids (1,000
//! messages/s for 5 minutes), given back once most of them have ended.
//!
//! Kept equal to the committed table: a send records its id only after its
//! rows are written (the last step of its job, so a job that fails has not
//! touched it), and when a group commit fails the store rebuilds it from the
//! table, which the failed commit left as it was.

use std::collections::{HashMap, VecDeque};

use aws_lc_rs::digest;
use rusqlite::Connection;

/// The ids seen in the last five minutes.
#[derive(Debug, Default)]
pub(super) struct Dedup {
    seen: HashMap<u128, Seen>,
    /// Every id in the order it was recorded, with its window, for expiry. An
    /// id recorded again (after its window) is here twice: the entry whose
    /// `expires_at_ms` the map holds is the current one.
    order: VecDeque<Entry>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    row: i64,
    expires_at_ms: i64,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    key: u128,
    seen: Seen,
}

/// The lookup key of deduplication id `dedup_id` in `scope` (the group, or ""
/// for the queue) of queue `queue`. Each part goes in with its length, so no
/// two triples share an input.
pub(super) fn key(queue: &str, scope: &str, dedup_id: &str) -> u128 {
    let mut ctx = digest::Context::new(&digest::SHA256);
    for part in [queue, scope, dedup_id] {
        ctx.update(&(part.len() as u64).to_le_bytes());
        ctx.update(part.as_bytes());
    }
    let d = ctx.finish();
    let mut first = [0_u8; 16];
    first.copy_from_slice(&d.as_ref()[..16]);
    u128::from_le_bytes(first)
}

impl Dedup {
    /// The ids of `queue_dedup_log` whose window is still open at `now_ms`.
    pub(super) fn load(conn: &Connection, now_ms: i64) -> rusqlite::Result<Dedup> {
        let mut d = Dedup::default();
        let mut s = conn.prepare(
            "SELECT id, queue, scope, dedup_id, expires_at_ms FROM queue_dedup_log
             WHERE expires_at_ms > ?1 ORDER BY id",
        )?;
        let mut rows = s.query([now_ms])?;
        while let Some(r) = rows.next()? {
            let k = key(
                r.get_ref(1)?.as_str()?,
                r.get_ref(2)?.as_str()?,
                r.get_ref(3)?.as_str()?,
            );
            d.record(k, r.get(0)?, r.get(4)?);
        }
        Ok(d)
    }

    /// The log row of the message first sent with `key`, while its window is
    /// open at `now_ms`.
    pub(super) fn lookup(&mut self, key: u128, now_ms: i64) -> Option<i64> {
        self.expire(now_ms);
        self.seen
            .get(&key)
            .filter(|s| s.expires_at_ms > now_ms)
            .map(|s| s.row)
    }

    /// `key` was sent as log row `row`; its window ends at `expires_at_ms`.
    pub(super) fn record(&mut self, key: u128, row: i64, expires_at_ms: i64) {
        let seen = Seen { row, expires_at_ms };
        self.seen.insert(key, seen);
        self.order.push_back(Entry { key, seen });
    }

    /// Forgets the ids whose window ended at `now_ms`.
    pub(super) fn expire(&mut self, now_ms: i64) {
        while let Some(e) = self.order.front().copied() {
            if e.seen.expires_at_ms > now_ms {
                break;
            }
            self.order.pop_front();
            if self.seen.get(&e.key) == Some(&e.seen) {
                self.seen.remove(&e.key);
            }
        }
        // Give memory back after a burst (a map never shrinks by itself).
        if self.seen.capacity() > 4 * self.seen.len() + 1024 {
            self.seen.shrink_to_fit();
            self.order.shrink_to_fit();
        }
    }

    /// The oldest log row still needed: every row before it is past its
    /// window (`None`: no row is needed).
    pub(super) fn first_live_row(&self) -> Option<i64> {
        self.order.front().map(|e| e.seen.row)
    }

    /// How many ids are in their window.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_keep_their_parts_apart() {
        assert_ne!(key("q", "ab", "c"), key("q", "a", "bc"));
        assert_ne!(key("q", "", "x"), key("q", "x", ""));
        assert_eq!(key("q", "g", "id"), key("q", "g", "id"));
    }

    #[test]
    fn an_id_is_seen_for_its_window_and_can_come_back_after_it() {
        let mut d = Dedup::default();
        let k = key("q", "", "req-1");
        assert_eq!(d.lookup(k, 0), None);
        d.record(k, 1, 300_000);
        d.record(key("q", "", "req-2"), 2, 301_000);
        assert_eq!(d.lookup(k, 299_999), Some(1));
        assert_eq!(d.first_live_row(), Some(1));
        assert_eq!(d.lookup(k, 300_000), None, "the window is over");
        assert_eq!(d.first_live_row(), Some(2));
        assert_eq!(d.len(), 1);

        // Sent again after its window: a new entry that the old one's expiry
        // does not remove.
        d.record(k, 3, 600_000);
        assert_eq!(d.lookup(k, 301_000), Some(3));
        assert_eq!(d.first_live_row(), Some(3));
        assert_eq!(d.lookup(k, 600_000), None);
        assert_eq!(d.first_live_row(), None);
        assert_eq!(d.len(), 0);
    }

    #[test]
    fn load_rebuilds_the_open_windows_from_the_log() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE queue_dedup_log (id INTEGER PRIMARY KEY, queue TEXT, scope TEXT,
                 dedup_id TEXT, message_id TEXT, expires_at_ms INTEGER);
             INSERT INTO queue_dedup_log VALUES (1, 'q', '', 'old', 'm1', 100);
             INSERT INTO queue_dedup_log VALUES (2, 'q', 'g', 'new', 'm2', 500);",
        )
        .unwrap();
        let mut d = Dedup::load(&conn, 200).unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!(d.lookup(key("q", "", "old"), 200), None);
        assert_eq!(d.lookup(key("q", "g", "new"), 200), Some(2));
        assert_eq!(d.lookup(key("q", "", "new"), 200), None, "another scope");
    }
}
