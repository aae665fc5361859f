//! The fault suite's ledger: what was sent, per message group and in send
//! order, checked against what each recipient received.
//!
//! Delivery is at-least-once and every frame carries the message id, so a
//! recipient may see a message again after a crash or a cut-off drain (a
//! redelivery). The rule every fault case asserts: after dropping repeated ids,
//! each recipient's sequence is exactly its group's send order: nothing lost,
//! nothing reordered, nothing from another group. Repeats are counted and
//! reported by id, so a case that must not redeliver can assert there are none.

use std::collections::{BTreeMap, HashMap, HashSet};

/// What was sent, per group, in send order.
#[derive(Debug, Default, Clone)]
pub struct Ledger {
    sent: BTreeMap<String, Vec<String>>,
    /// Ids sent as poison: expected in the dead-letter queue, never delivered.
    poison: BTreeMap<String, Vec<String>>,
    group_of: HashMap<String, String>,
}

/// What a check found, for the report.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Recipients checked.
    pub recipients: usize,
    /// Distinct (recipient, message) deliveries.
    pub delivered: usize,
    /// Repeated deliveries: (recipient, message id), in arrival order.
    pub redelivered: Vec<(String, String)>,
}

impl Ledger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `id` was sent to `group` (after everything sent before).
    pub fn sent(&mut self, group: &str, id: &str) {
        self.record(group, id);
        self.sent
            .entry(group.to_owned())
            .or_default()
            .push(id.to_owned());
    }

    /// Records that poison message `id` was sent to `group`: it must reach
    /// the dead-letter queue and no recipient.
    pub fn sent_poison(&mut self, group: &str, id: &str) {
        self.record(group, id);
        self.poison
            .entry(group.to_owned())
            .or_default()
            .push(id.to_owned());
    }

    fn record(&mut self, group: &str, id: &str) {
        let previous = self.group_of.insert(id.to_owned(), group.to_owned());
        assert!(previous.is_none(), "ledger: id {id} sent twice");
    }

    /// The deliverable ids of `group`, in send order.
    pub fn expected(&self, group: &str) -> &[String] {
        self.sent.get(group).map(Vec::as_slice).unwrap_or_default()
    }

    /// The poison ids of `group`, in send order.
    pub fn poison(&self, group: &str) -> &[String] {
        self.poison
            .get(group)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// Every group with deliverable or poison messages.
    pub fn groups(&self) -> Vec<String> {
        let mut all: Vec<String> = self
            .sent
            .keys()
            .chain(self.poison.keys())
            .cloned()
            .collect();
        all.sort();
        all.dedup();
        all
    }

    /// Deliverable messages sent, in all groups.
    pub fn total(&self) -> usize {
        self.sent.values().map(Vec::len).sum()
    }

    /// The group `id` was sent to.
    pub fn group_of(&self, id: &str) -> Option<&str> {
        self.group_of.get(id).map(String::as_str)
    }

    /// Checks every recipient: `members` maps a recipient to its group,
    /// `received` a recipient to the ids it received, in arrival order.
    /// Panics with the first difference.
    pub fn verify(
        &self,
        members: &BTreeMap<String, String>,
        received: &HashMap<String, Vec<String>>,
    ) -> Verdict {
        let mut verdict = Verdict::default();
        let none = Vec::new();
        for (recipient, group) in members {
            let got = received.get(recipient).unwrap_or(&none);
            let (distinct, repeats) = dedup(got);
            if let Err(e) = same_sequence(self.expected(group), &distinct) {
                panic!("ledger: {recipient} (group {group}) {e}");
            }
            verdict.recipients += 1;
            verdict.delivered += distinct.len();
            verdict
                .redelivered
                .extend(repeats.into_iter().map(|id| (recipient.clone(), id)));
        }
        verdict
    }

    /// Like [`verify`](Self::verify) for one recipient that may have joined
    /// or left midway: what it received (repeats dropped) must be one
    /// contiguous run of its group's send order. Returns the run's bounds.
    pub fn verify_run(&self, recipient: &str, group: &str, received: &[String]) -> (usize, usize) {
        let (distinct, _) = dedup(received);
        let want = self.expected(group);
        let Some(first) = distinct.first() else {
            return (0, 0);
        };
        let start = want
            .iter()
            .position(|id| id == first)
            .unwrap_or_else(|| panic!("ledger: {recipient} got {first}, not sent to {group}"));
        let end = start + distinct.len();
        if end > want.len() || want[start..end] != distinct[..] {
            let at = (0..distinct.len())
                .find(|&i| want.get(start + i) != Some(&distinct[i]))
                .unwrap_or(0);
            panic!(
                "ledger: {recipient} (group {group}) received a gap or reordering at its message {at}: \
                 got {:?}, expected {:?}",
                window(&distinct, at),
                window(&want[start..], at)
            );
        }
        (start, end)
    }
}

/// Drops repeated ids (keeping the first occurrence); returns the distinct
/// sequence and the repeats in arrival order.
pub fn dedup(ids: &[String]) -> (Vec<String>, Vec<String>) {
    let mut seen = HashSet::new();
    let mut distinct = Vec::new();
    let mut repeats = Vec::new();
    for id in ids {
        if seen.insert(id.as_str()) {
            distinct.push(id.clone());
        } else {
            repeats.push(id.clone());
        }
    }
    (distinct, repeats)
}

/// `Ok` when `got` is exactly `want`; else where and how they differ.
fn same_sequence(want: &[String], got: &[String]) -> Result<(), String> {
    if want == got {
        return Ok(());
    }
    let at = want
        .iter()
        .zip(got)
        .position(|(a, b)| a != b)
        .unwrap_or(want.len().min(got.len()));
    let missing: Vec<&String> = {
        let have: HashSet<&String> = got.iter().collect();
        want.iter()
            .filter(|id| !have.contains(id))
            .take(5)
            .collect()
    };
    Err(format!(
        "received {} distinct messages, {} were sent; first difference at position {at}: \
         got {:?}, expected {:?}; missing (first 5): {missing:?}",
        got.len(),
        want.len(),
        window(got, at),
        window(want, at)
    ))
}

fn window(ids: &[String], at: usize) -> &[String] {
    let start = at.saturating_sub(2);
    let end = (at + 3).min(ids.len());
    ids.get(start..end).unwrap_or_default()
}
