//! Where each queue's messages are, as the receive path asks: in send order
//! with their group and visibility, each group's messages in order, and the
//! messages in flight by when they come back.
//!
//! The rows stay on disk (`queue_messages`, keyed by `seq`, so a message is
//! appended next to the one sent before it and its neighbours share pages);
//! what used to be three secondary indexes of that table is kept here. On
//! disk every commit wrote each index page it changed, and the per-group one
//! changed a page of its own for nearly every message (a message goes in at
//! its group's end and leaves from its start, in other commits than its
//! neighbours): a quarter of the bytes a durable `dev` wrote per message
//! under load, 37–38 KB with them and 28 without (docs/benchmarks.md, tenth
//! sitting).
//!
//! In memory: about 80 bytes per queued message (a b-tree entry with its
//! group and visibility, its place in its group's deque, and an in-flight
//! entry while it is held; 78 measured with 200,000 messages in 100 groups),
//! so a backlog of a million messages costs about 80 MB.
//!
//! Kept equal to the committed table the way the deduplication ids are (see
//! `dedup`): a job collects its [`Change`]s and applies them once its
//! statements have all succeeded, and when a group commit fails the store
//! rebuilds the index from the table, which the failed commit left as it was.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::ops::Bound;
use std::sync::Arc;

use rusqlite::Connection;

/// The messages of every queue.
#[derive(Debug, Default)]
pub(super) struct QueueIndex {
    queues: HashMap<Box<str>, Messages>,
}

/// The messages of one queue.
#[derive(Debug, Default)]
pub(super) struct Messages {
    /// Every message, by sequence number (send order).
    order: BTreeMap<i64, Entry>,
    /// Each group's messages in send order (never empty: a group leaves the
    /// map with its last message).
    groups: HashMap<Arc<str>, VecDeque<i64>>,
    /// Each group's oldest message: the groups in the order SQS serves them.
    heads: BTreeMap<i64, Arc<str>>,
    /// `(invisible_until_ms, seq)` of every message received at least once
    /// and not deleted since (the end may be in the past).
    in_flight: BTreeSet<(i64, i64)>,
}

#[derive(Debug, Clone)]
struct Entry {
    group: Arc<str>,
    /// Epoch ms until which the message is hidden; 0: never received, or
    /// made visible at open.
    until_ms: i64,
}

/// A change to the table that the index takes on once its job succeeded.
#[derive(Debug, Clone)]
pub(super) enum Change {
    /// Message `seq` of `group` was stored in queue `queue`.
    Insert {
        queue: String,
        seq: i64,
        group: Arc<str>,
    },
    /// Message `seq` of queue `queue` is hidden until `until_ms`.
    Hide {
        queue: String,
        seq: i64,
        until_ms: i64,
    },
    /// Message `seq` of queue `queue` is gone.
    Remove { queue: String, seq: i64 },
}

impl QueueIndex {
    /// Every message of `queue_messages`.
    pub(super) fn load(conn: &Connection) -> rusqlite::Result<QueueIndex> {
        let mut index = QueueIndex::default();
        let mut s = conn.prepare(
            "SELECT seq, queue, group_id, invisible_until_ms FROM queue_messages ORDER BY seq",
        )?;
        let mut rows = s.query([])?;
        while let Some(r) = rows.next()? {
            let seq: i64 = r.get(0)?;
            let queue: String = r.get(1)?;
            let group: String = r.get(2)?;
            let until_ms: i64 = r.get(3)?;
            // One shared name per group, not one per message.
            let group = index
                .group_name(&queue, &group)
                .unwrap_or_else(|| group.as_str().into());
            let m = index.queue_mut(&queue);
            m.insert(seq, group);
            if until_ms > 0 {
                m.hide(seq, until_ms);
            }
        }
        Ok(index)
    }

    /// The messages of queue `name` (none when it has none).
    pub(super) fn queue(&self, name: &str) -> Option<&Messages> {
        self.queues.get(name)
    }

    fn queue_mut(&mut self, name: &str) -> &mut Messages {
        if !self.queues.contains_key(name) {
            self.queues.insert(name.into(), Messages::default());
        }
        self.queues.get_mut(name).expect("inserted above")
    }

    /// Takes on the changes of a job that succeeded.
    pub(super) fn apply(&mut self, changes: Vec<Change>) {
        for c in changes {
            match c {
                Change::Insert { queue, seq, group } => self.queue_mut(&queue).insert(seq, group),
                Change::Hide {
                    queue,
                    seq,
                    until_ms,
                } => self.queue_mut(&queue).hide(seq, until_ms),
                Change::Remove { queue, seq } => {
                    if let Some(m) = self.queues.get_mut(queue.as_str()) {
                        m.remove(seq);
                    }
                }
            }
        }
    }

    /// The name shared by the messages of `group` in queue `queue`, if it
    /// has any (so a send does not allocate one per message).
    pub(super) fn group_name(&self, queue: &str, group: &str) -> Option<Arc<str>> {
        let (name, _) = self.queues.get(queue)?.groups.get_key_value(group)?;
        Some(name.clone())
    }
}

impl Messages {
    fn insert(&mut self, seq: i64, group: Arc<str>) {
        // A seq is stored once; if the index still had it, the new one wins.
        if self.order.contains_key(&seq) {
            self.remove(seq);
        }
        let g = self.groups.entry(group.clone()).or_default();
        let old_head = g.front().copied();
        // In seq order in practice (a send or a move to the dead-letter queue
        // takes a new, higher seq; a load reads in order); kept sorted anyway.
        match g.back() {
            Some(&last) if last > seq => {
                let at = g.partition_point(|&s| s < seq);
                g.insert(at, seq);
            }
            _ => g.push_back(seq),
        }
        if g.front() != old_head.as_ref() {
            if let Some(old) = old_head {
                self.heads.remove(&old);
            }
            self.heads.insert(seq, group.clone());
        }
        self.order.insert(seq, Entry { group, until_ms: 0 });
    }

    fn hide(&mut self, seq: i64, until_ms: i64) {
        let Some(e) = self.order.get_mut(&seq) else {
            return;
        };
        if e.until_ms > 0 {
            self.in_flight.remove(&(e.until_ms, seq));
        }
        e.until_ms = until_ms;
        if until_ms > 0 {
            self.in_flight.insert((until_ms, seq));
        }
    }

    fn remove(&mut self, seq: i64) {
        let Some(e) = self.order.remove(&seq) else {
            return;
        };
        if e.until_ms > 0 {
            self.in_flight.remove(&(e.until_ms, seq));
        }
        if let Some(g) = self.groups.get_mut(&e.group) {
            // Deletes come mostly from the front: the group's oldest first.
            if g.front() == Some(&seq) {
                g.pop_front();
                self.heads.remove(&seq);
                if let Some(&next) = g.front() {
                    self.heads.insert(next, e.group.clone());
                }
            } else if let Ok(at) = g.binary_search(&seq) {
                g.remove(at);
            }
            if g.is_empty() {
                self.groups.remove(&e.group);
            }
        }
    }

    /// The groups with a message in flight at `now_ms` (FIFO: they return
    /// nothing more until it is deleted or visible again).
    pub(super) fn held_groups(&self, now_ms: i64) -> HashSet<Arc<str>> {
        self.in_flight
            .range((now_ms + 1, i64::MIN)..)
            .filter_map(|(_, seq)| self.order.get(seq).map(|e| e.group.clone()))
            .collect()
    }

    /// The groups with a message among the first `limit` messages, in the
    /// order of their oldest message (SQS looks no further for available
    /// groups). A walk over the groups, not over every message of the first
    /// `limit`, unless the queue holds more than `limit`.
    pub(super) fn groups_in_order(&self, limit: usize) -> impl Iterator<Item = &Arc<str>> {
        let end = if self.order.len() > limit {
            self.order
                .keys()
                .nth(limit)
                .map_or(Bound::Unbounded, |s| Bound::Excluded(*s))
        } else {
            Bound::Unbounded
        };
        self.heads.range((Bound::Unbounded, end)).map(|(_, g)| g)
    }

    /// The messages of `group` in send order.
    pub(super) fn group(&self, group: &str) -> impl Iterator<Item = i64> + '_ {
        self.groups.get(group).into_iter().flatten().copied()
    }

    /// When the first message in flight at `now_ms` comes back.
    pub(super) fn next_visible(&self, now_ms: i64) -> Option<i64> {
        self.in_flight
            .range((now_ms + 1, i64::MIN)..)
            .next()
            .map(|(t, _)| *t)
    }

    /// How many messages are visible and how many in flight at `now_ms`.
    pub(super) fn depth(&self, now_ms: i64) -> (u64, u64) {
        let held = self.in_flight.range((now_ms + 1, i64::MIN)..).count() as u64;
        (self.order.len() as u64 - held, held)
    }

    /// The `top` groups with the most messages, most first (ties by name).
    pub(super) fn busiest(&self, top: usize) -> Vec<(String, u64)> {
        let mut all: Vec<(&Arc<str>, usize)> =
            self.groups.iter().map(|(g, m)| (g, m.len())).collect();
        all.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        all.into_iter()
            .take(top)
            .map(|(g, n)| (g.to_string(), n as u64))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn insert(q: &str, seq: i64, group: &str) -> Change {
        Change::Insert {
            queue: q.to_owned(),
            seq,
            group: group.into(),
        }
    }

    fn remove(q: &str, seq: i64) -> Change {
        Change::Remove {
            queue: q.to_owned(),
            seq,
        }
    }

    fn groups(m: &Messages, limit: usize) -> Vec<String> {
        m.groups_in_order(limit).map(|g| g.to_string()).collect()
    }

    /// Groups come in the order of their oldest message, and only those with
    /// a message among the first `limit`.
    #[test]
    fn groups_are_served_oldest_first_within_the_scan_limit() {
        let mut i = QueueIndex::default();
        i.apply(vec![
            insert("q", 1, "a"),
            insert("q", 2, "a"),
            insert("q", 3, "b"),
            insert("q", 4, "a"),
            insert("q", 5, "c"),
        ]);
        let m = i.queue("q").unwrap();
        assert_eq!(groups(m, 10), ["a", "b", "c"]);
        assert_eq!(groups(m, 3), ["a", "b"], "c is the fifth message");
        assert_eq!(groups(m, 2), ["a"], "b is the third");
        // a's first two leave: b is the oldest now, a's next (4) after it.
        i.apply(vec![remove("q", 1), remove("q", 2)]);
        let m = i.queue("q").unwrap();
        assert_eq!(groups(m, 10), ["b", "a", "c"]);
        // A message that arrives out of order becomes its group's head.
        i.apply(vec![insert("q", 0, "c")]);
        let m = i.queue("q").unwrap();
        assert_eq!(groups(m, 10), ["c", "b", "a"]);
        assert_eq!(m.heads.len(), 3, "one head per group");
    }

    #[test]
    fn groups_keep_send_order_and_leave_with_their_last_message() {
        let mut i = QueueIndex::default();
        i.apply(vec![
            insert("q", 1, "a"),
            insert("q", 2, "b"),
            insert("q", 3, "a"),
        ]);
        let m = i.queue("q").unwrap();
        assert_eq!(m.group("a").collect::<Vec<_>>(), [1, 3]);
        assert_eq!(groups(m, 10), ["a", "b"]);
        assert_eq!(m.depth(0), (3, 0));

        // Kept sorted even when one arrives behind a later seq.
        i.apply(vec![insert("q", 0, "a")]);
        assert_eq!(
            i.queue("q").unwrap().group("a").collect::<Vec<_>>(),
            [0, 1, 3]
        );

        i.apply(vec![remove("q", 1), remove("q", 2)]);
        let m = i.queue("q").unwrap();
        assert_eq!(m.group("a").collect::<Vec<_>>(), [0, 3]);
        assert_eq!(m.group("b").count(), 0);
        assert!(
            i.group_name("q", "b").is_none(),
            "gone with its last message"
        );
        assert!(i.group_name("q", "a").is_some());
        assert!(i.group_name("other", "a").is_none());
    }

    #[test]
    fn held_messages_block_their_group_until_they_come_back() {
        let mut i = QueueIndex::default();
        i.apply(vec![insert("q", 1, "a"), insert("q", 2, "b")]);
        i.apply(vec![Change::Hide {
            queue: "q".into(),
            seq: 1,
            until_ms: 100,
        }]);
        let m = i.queue("q").unwrap();
        let held: Vec<String> = m.held_groups(50).iter().map(|g| g.to_string()).collect();
        assert_eq!(held, ["a"]);
        assert_eq!(m.next_visible(50), Some(100));
        assert_eq!(m.depth(50), (1, 1));
        // At its end it is visible again.
        assert!(m.held_groups(100).is_empty());
        assert_eq!(m.next_visible(100), None);
        assert_eq!(m.depth(100), (2, 0));

        // Hidden again for longer: one in-flight entry, the new one.
        i.apply(vec![Change::Hide {
            queue: "q".into(),
            seq: 1,
            until_ms: 300,
        }]);
        let m = i.queue("q").unwrap();
        assert_eq!(m.next_visible(50), Some(300));
        assert_eq!(m.in_flight.len(), 1);
        i.apply(vec![remove("q", 1)]);
        let m = i.queue("q").unwrap();
        assert!(m.in_flight.is_empty());
        assert_eq!(m.depth(0), (1, 0));
    }

    #[test]
    fn busiest_groups_most_first_then_by_name() {
        let mut i = QueueIndex::default();
        i.apply(vec![
            insert("q", 1, "b"),
            insert("q", 2, "a"),
            insert("q", 3, "c"),
            insert("q", 4, "c"),
        ]);
        let m = i.queue("q").unwrap();
        assert_eq!(m.busiest(2), [("c".to_owned(), 2), ("a".to_owned(), 1)]);
    }

    #[test]
    fn load_rebuilds_queues_groups_and_holds_from_the_table() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE queue_messages (seq INTEGER PRIMARY KEY, queue TEXT, group_id TEXT,
                 invisible_until_ms INTEGER);
             INSERT INTO queue_messages VALUES (1, 'q', 'a', 0);
             INSERT INTO queue_messages VALUES (2, 'dlq', 'a', 0);
             INSERT INTO queue_messages VALUES (3, 'q', 'a', 500);
             INSERT INTO queue_messages VALUES (4, 'q', 'b', 0);",
        )
        .unwrap();
        let i = QueueIndex::load(&conn).unwrap();
        let q = i.queue("q").unwrap();
        assert_eq!(q.group("a").collect::<Vec<_>>(), [1, 3]);
        assert!(
            Arc::ptr_eq(&q.order[&1].group, &q.order[&3].group),
            "one shared name per group"
        );
        assert_eq!(q.depth(100), (2, 1));
        assert_eq!(i.queue("dlq").unwrap().depth(0), (1, 0));
        assert!(i.queue("none").is_none());
    }
}
