//! Per-group ordering: messages of one group run one at a time in arrival order;
//! different groups run concurrently, at most `max` at once. Pure bookkeeping,
//! no I/O: the worker spawns and releases what these methods return.

use std::collections::{HashMap, VecDeque};

#[derive(Debug)]
struct Group<T> {
    pending: VecDeque<T>,
    /// Running, or waiting for a slot in `waiting`.
    scheduled: bool,
}

/// What the caller must do after [`Groups::submit`].
#[derive(Debug, PartialEq, Eq)]
pub enum Submitted<T> {
    /// Start a task for this group.
    Start(String),
    /// Nothing: the group's task (running or waiting) will take it.
    Queued,
    /// Draining: release this item instead.
    Release(T),
}

/// What a group's task gets next.
#[derive(Debug, PartialEq, Eq)]
pub enum Next<T> {
    /// The group's next item.
    Item(T),
    /// The group is done: start `start` (groups that got a slot) and release
    /// `release` (items left when draining).
    Finished {
        /// Groups to start now.
        start: Vec<String>,
        /// Items to give back to the queue.
        release: Vec<T>,
    },
}

/// The scheduler's state.
#[derive(Debug)]
pub struct Groups<T> {
    groups: HashMap<String, Group<T>>,
    waiting: VecDeque<String>,
    running: usize,
    max: usize,
    draining: bool,
}

impl<T> Groups<T> {
    /// At most `max` groups run at once.
    pub fn new(max: usize) -> Self {
        Groups {
            groups: HashMap::new(),
            waiting: VecDeque::new(),
            running: 0,
            max: max.max(1),
            draining: false,
        }
    }

    /// Groups running now.
    pub fn running(&self) -> usize {
        self.running
    }

    /// Adds an item at the end of its group.
    pub fn submit(&mut self, group: &str, item: T) -> Submitted<T> {
        if self.draining {
            return Submitted::Release(item);
        }
        let g = self
            .groups
            .entry(group.to_owned())
            .or_insert_with(|| Group {
                pending: VecDeque::new(),
                scheduled: false,
            });
        g.pending.push_back(item);
        if g.scheduled {
            return Submitted::Queued;
        }
        g.scheduled = true;
        if self.running < self.max {
            self.running += 1;
            Submitted::Start(group.to_owned())
        } else {
            self.waiting.push_back(group.to_owned());
            Submitted::Queued
        }
    }

    /// The next item of a running group, or its end.
    pub fn next(&mut self, group: &str) -> Next<T> {
        if !self.draining
            && let Some(item) = self
                .groups
                .get_mut(group)
                .and_then(|g| g.pending.pop_front())
        {
            return Next::Item(item);
        }
        self.finish(group)
    }

    /// Ends a running group early (its current item failed and will be retried):
    /// its pending items must be released, because they may only run after it.
    pub fn abandon(&mut self, group: &str) -> Next<T> {
        self.finish(group)
    }

    fn finish(&mut self, group: &str) -> Next<T> {
        let release = self
            .groups
            .remove(group)
            .map(|g| g.pending.into_iter().collect())
            .unwrap_or_default();
        self.running = self.running.saturating_sub(1);
        let mut start = Vec::new();
        while !self.draining && self.running < self.max {
            let Some(g) = self.waiting.pop_front() else {
                break;
            };
            self.running += 1;
            start.push(g);
        }
        Next::Finished { start, release }
    }

    /// Starts a drain: nothing new starts; returns the items of groups that were
    /// waiting for a slot. Running groups give theirs back through [`Groups::next`].
    pub fn drain(&mut self) -> Vec<T> {
        self.draining = true;
        let mut release = Vec::new();
        for g in self.waiting.drain(..) {
            if let Some(group) = self.groups.remove(&g) {
                release.extend(group.pending);
            }
        }
        release
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item<T>(n: Next<T>) -> T {
        match n {
            Next::Item(t) => t,
            Next::Finished { .. } => panic!("expected an item"),
        }
    }

    #[test]
    fn one_task_per_group_in_arrival_order() {
        let mut g = Groups::new(8);
        assert_eq!(g.submit("a", 1), Submitted::Start("a".into()));
        assert_eq!(g.submit("a", 2), Submitted::Queued);
        assert_eq!(g.submit("b", 10), Submitted::Start("b".into()));
        assert_eq!(g.submit("a", 3), Submitted::Queued);
        assert_eq!(item(g.next("a")), 1);
        assert_eq!(item(g.next("a")), 2);
        assert_eq!(item(g.next("a")), 3);
        assert_eq!(
            g.next("a"),
            Next::Finished {
                start: vec![],
                release: vec![]
            }
        );
        assert_eq!(g.running(), 1);
        // A later message of a finished group starts it again.
        assert_eq!(g.submit("a", 4), Submitted::Start("a".into()));
    }

    #[test]
    fn at_most_max_groups_run_and_waiting_groups_start_in_order() {
        let mut g = Groups::new(2);
        assert_eq!(g.submit("a", 1), Submitted::Start("a".into()));
        assert_eq!(g.submit("b", 1), Submitted::Start("b".into()));
        assert_eq!(g.submit("c", 1), Submitted::Queued);
        assert_eq!(g.submit("d", 1), Submitted::Queued);
        assert_eq!(g.submit("c", 2), Submitted::Queued);
        assert_eq!(g.running(), 2);
        assert_eq!(item(g.next("a")), 1);
        assert_eq!(
            g.next("a"),
            Next::Finished {
                start: vec!["c".into()],
                release: vec![]
            }
        );
        assert_eq!(item(g.next("c")), 1);
        assert_eq!(item(g.next("c")), 2);
        assert_eq!(g.running(), 2);
    }

    #[test]
    fn abandon_releases_the_rest_of_the_group() {
        let mut g = Groups::new(1);
        g.submit("a", 1);
        g.submit("a", 2);
        g.submit("a", 3);
        g.submit("b", 9);
        assert_eq!(item(g.next("a")), 1);
        assert_eq!(
            g.abandon("a"),
            Next::Finished {
                start: vec!["b".into()],
                release: vec![2, 3]
            }
        );
    }

    #[test]
    fn drain_releases_waiting_and_pending_and_starts_nothing() {
        let mut g = Groups::new(1);
        g.submit("a", 1);
        g.submit("a", 2);
        g.submit("b", 9);
        assert_eq!(item(g.next("a")), 1);
        assert_eq!(g.drain(), vec![9]);
        assert_eq!(g.submit("c", 5), Submitted::Release(5));
        assert_eq!(
            g.next("a"),
            Next::Finished {
                start: vec![],
                release: vec![2]
            }
        );
        assert_eq!(g.running(), 0);
    }

    /// Drives `Groups` the way the worker does (one task per started group,
    /// `next` until finished) with work that takes virtual time.
    #[tokio::test(start_paused = true)]
    async fn groups_run_concurrently_up_to_max_and_each_in_order_in_virtual_time() {
        use std::sync::{Arc, Mutex};
        use std::time::Duration;
        use tokio::time::Instant;

        type Log = Arc<Mutex<Vec<(String, u32, Instant, Instant)>>>;
        let groups = Arc::new(Mutex::new(Groups::new(3)));
        let log: Log = Arc::default();
        let running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let peak = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let tasks = tokio_util::task::TaskTracker::new();

        fn spawn(
            tasks: &tokio_util::task::TaskTracker,
            groups: Arc<Mutex<Groups<u32>>>,
            log: Log,
            running: Arc<std::sync::atomic::AtomicUsize>,
            peak: Arc<std::sync::atomic::AtomicUsize>,
            group: String,
        ) {
            use std::sync::atomic::Ordering::SeqCst;
            let t = tasks.clone();
            tasks.spawn(async move {
                let now = running.fetch_add(1, SeqCst) + 1;
                peak.fetch_max(now, SeqCst);
                loop {
                    let next = groups.lock().unwrap().next(&group);
                    match next {
                        Next::Item(n) => {
                            let start = Instant::now();
                            // Work of a message: 1 s, in virtual time.
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            log.lock()
                                .unwrap()
                                .push((group.clone(), n, start, Instant::now()));
                        }
                        Next::Finished { start, .. } => {
                            running.fetch_sub(1, SeqCst);
                            for g in start {
                                spawn(
                                    &t,
                                    groups.clone(),
                                    log.clone(),
                                    running.clone(),
                                    peak.clone(),
                                    g,
                                );
                            }
                            return;
                        }
                    }
                }
            });
        }

        let began = Instant::now();
        // 6 groups × 4 messages, interleaved as a receive would bring them.
        for n in 0..4 {
            for g in 0..6 {
                let group = format!("g{g}");
                if let Submitted::Start(s) = groups.lock().unwrap().submit(&group, n) {
                    spawn(
                        &tasks,
                        groups.clone(),
                        log.clone(),
                        running.clone(),
                        peak.clone(),
                        s,
                    );
                }
            }
        }
        tasks.close();
        tasks.wait().await;

        let log = log.lock().unwrap();
        assert_eq!(log.len(), 24);
        assert_eq!(
            peak.load(std::sync::atomic::Ordering::SeqCst),
            3,
            "at most max groups at once"
        );
        for g in 0..6 {
            let mine: Vec<_> = log.iter().filter(|e| e.0 == format!("g{g}")).collect();
            let order: Vec<u32> = mine.iter().map(|e| e.1).collect();
            assert_eq!(order, [0, 1, 2, 3], "g{g} in arrival order");
            for w in mine.windows(2) {
                assert!(w[1].2 >= w[0].3, "g{g}: one message at a time");
            }
        }
        // 24 s of work on 3 slots: 8 s, not 24 s (serial) and not 4 s (unbounded).
        assert_eq!(began.elapsed(), Duration::from_secs(8));
    }
}
