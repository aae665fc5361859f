//! Fault suite, worker process: the real `switchboard worker --data-dir`
//! binary on an embedded store on disk, posting through the real
//! `aws-sdk-apigatewaymanagement` client to the recording @connections server.
//!
//! - `kill -9` in the middle of a stream, twice, restarting each time: every
//!   message reaches every member, in per-group order (redeliveries allowed,
//!   flagged by id); the store holds each message once, in order.
//! - SIGTERM under load: exit 0 within `--shutdown-grace`, nothing left in
//!   hand; a clean drain redelivers nothing; a drain that has to cut running
//!   messages off releases them and the next worker delivers them.
//!
//! Sizes: see `docs/reliability.md`; `SWITCHBOARD_HEAVY_FAULTS=1` runs the
//! heavy variants.

mod support;

use std::time::{Duration, Instant};

use switchboard::backend::embedded::EmbeddedStore;
use switchboard::backend::{Messages, Queue};
use switchboard::ops::migrate::Names;

use support::connections_server::ConnectionsServer;
use support::embedded::TempDir;
use support::ledger::Verdict;
use support::process::{EMBEDDED_QUEUE, WorkerProc, tail};
use support::stream::{self, Plan, Seeded, env_or, heavy};

/// Opens the store in `dir` and reports what is still queued: (visible,
/// in flight). A store opened after a crash makes in-flight messages visible.
async fn queued(dir: &std::path::Path) -> (u64, u64) {
    let store = EmbeddedStore::open(dir).await.expect("reopen the store");
    let info = store.queue(EMBEDDED_QUEUE).unwrap().info().await.unwrap();
    (info.approximate_messages, info.approximate_in_flight)
}

/// Checks the messages table: each group's messages stored once, in order.
async fn check_stored(dir: &std::path::Path, seeded: &Seeded) {
    let store = EmbeddedStore::open(dir).await.expect("reopen the store");
    let messages = store.messages(&Names::default().messages_table);
    for g in seeded.ledger.groups() {
        let want = seeded.ledger.expected(&g);
        let stored: Vec<String> = messages
            .latest(&g, want.len() + 10)
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.id)
            .collect();
        assert_eq!(stored, want, "{g}: stored once each, in order");
    }
}

/// Runs a fresh worker on `dir` until all `total` deliveries arrived, stops
/// it with SIGTERM (exit 0 within 30 s) and returns the ledger's verdict.
async fn finish(
    dir: &std::path::Path,
    server: &ConnectionsServer,
    seeded: &Seeded,
    total: usize,
    deadline: Duration,
) -> Verdict {
    let worker = WorkerProc::start(dir, &server.endpoint("test"), &[]).await;
    server.wait_distinct(total, deadline).await;
    worker.proc.sigterm();
    let mut proc = worker.proc;
    let status = proc.exit_within(Duration::from_secs(30)).await;
    assert!(status.success(), "{status:?}\n{}", tail(&proc.log(), 20));
    seeded.ledger.verify(&seeded.members, &server.received())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_stream_and_restart_delivers_everything_in_group_order() {
    // 10k messages in 100 groups, one member each (about 30 s in a debug
    // build here); the heavy variant sends 100k to two members each
    // (docs/reliability.md).
    let plan = Plan {
        groups: 100,
        per_group: env_or("FAULTS_KILL_PER_GROUP", if heavy() { 1000 } else { 100 }),
        recipients: env_or("FAULTS_KILL_RECIPIENTS", if heavy() { 2 } else { 1 }),
    };
    let dir = TempDir::new("faults-kill9");
    let seeded = {
        let store = EmbeddedStore::open(dir.path()).await.unwrap();
        stream::seed(&store, plan, |_, _| None).await
    };
    let server = ConnectionsServer::start().await;
    let callback = server.endpoint("test");
    let total = plan.deliveries();
    // Generous: about 1 ms per delivery is measured here.
    let deadline = Duration::from_secs(60) + Duration::from_millis(20) * total as u32;
    let started = Instant::now();

    // Two crashes: at about 20 % and about 60 % of the deliveries.
    let mut kills = Vec::new();
    for fraction in [0.2, 0.6] {
        let worker = WorkerProc::start(dir.path(), &callback, &[]).await;
        let at = (total as f64 * fraction) as usize;
        server.wait_distinct(at, deadline).await;
        worker.proc.kill9().await;
        let delivered = server.distinct();
        let (visible, in_flight) = queued(dir.path()).await;
        assert!(
            delivered < total && visible > 0,
            "the crash came mid-stream: {delivered} of {total} delivered, {visible} queued"
        );
        assert_eq!(
            in_flight, 0,
            "a reopened store makes in-flight messages visible"
        );
        kills.push((delivered, visible));
    }

    let worker = WorkerProc::start(dir.path(), &callback, &[]).await;
    server.wait_distinct(total, deadline).await;
    let elapsed = started.elapsed();
    let redelivered_metric = worker.metric("switchboard_duplicate_receives_total").await;
    worker.proc.sigterm();
    let mut proc = worker.proc;
    let status = proc.exit_within(Duration::from_secs(30)).await;
    assert!(status.success(), "{status:?}\n{}", tail(&proc.log(), 20));

    let verdict = seeded.ledger.verify(&seeded.members, &server.received());
    assert_eq!(verdict.delivered, total);
    let (visible, in_flight) = queued(dir.path()).await;
    assert_eq!((visible, in_flight), (0, 0), "the queue drained");
    check_stored(dir.path(), &seeded).await;
    println!(
        "kill -9: {} messages in {} groups to {} members: {total} deliveries in {elapsed:.1?} \
         across 2 crashes (delivered/queued at each: {kills:?}); {} redeliveries; \
         duplicate receives in the last run: {redelivered_metric}",
        plan.messages(),
        plan.groups,
        plan.groups * plan.recipients,
        verdict.redelivered.len(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_exits_0_within_the_grace_and_a_clean_drain_redelivers_nothing() {
    let plan = Plan {
        groups: 100,
        per_group: env_or("FAULTS_SIGTERM_PER_GROUP", if heavy() { 100 } else { 20 }),
        recipients: 2,
    };
    let dir = TempDir::new("faults-sigterm");
    let seeded = {
        let store = EmbeddedStore::open(dir.path()).await.unwrap();
        stream::seed(&store, plan, |_, _| None).await
    };
    let server = ConnectionsServer::start().await;
    // A slow API: 64 groups are mid-message at any time.
    server.set_latency(Duration::from_millis(20));
    let callback = server.endpoint("test");
    let total = plan.deliveries();
    let grace = Duration::from_secs(5);

    let worker = WorkerProc::start(dir.path(), &callback, &["--shutdown-grace", "5s"]).await;
    server
        .wait_distinct(total / 4, Duration::from_secs(300))
        .await;
    let in_flight = worker.metric("switchboard_groups_in_flight").await;
    let signalled = Instant::now();
    worker.proc.sigterm();
    let mut proc = worker.proc;
    let status = proc.exit_within(grace + Duration::from_secs(5)).await;
    let took = signalled.elapsed();
    let log = proc.log();
    assert!(status.success(), "{status:?}\n{}", tail(&log, 20));
    assert!(
        took < grace,
        "exited {took:?} after SIGTERM; grace {grace:?}"
    );
    assert!(
        in_flight > 1.0,
        "SIGTERM came under load: {in_flight} groups running"
    );
    let stopped = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["message"] == "worker stopped")
        .unwrap_or_else(|| panic!("no `worker stopped` line:\n{}", tail(&log, 20)));
    assert_eq!(stopped["left_in_hand"], 0, "everything deleted or released");
    assert!(!log.contains("grace period nearly over"), "a clean drain");

    // Every message was either delivered to all members and deleted, or is
    // back in the queue untouched: a clean drain redelivers nothing.
    let delivered_before = server.distinct();
    let (visible, _) = queued(dir.path()).await;
    assert!(visible > 0, "SIGTERM came mid-stream");
    let fully_delivered = {
        let received = server.received();
        seeded
            .ledger
            .groups()
            .iter()
            .flat_map(|g| seeded.ledger.expected(g).iter().map(move |id| (g, id)))
            .filter(|(g, id)| {
                seeded
                    .members
                    .iter()
                    .filter(|(_, mg)| mg == g)
                    .all(|(m, _)| received.get(m).is_some_and(|r| r.contains(id)))
            })
            .count()
    };
    assert_eq!(
        fully_delivered as u64 + visible,
        plan.messages() as u64,
        "delivered + queued = sent"
    );
    assert_eq!(
        delivered_before,
        fully_delivered * plan.recipients,
        "no partly delivered message"
    );

    server.set_latency(Duration::ZERO);
    let verdict = finish(
        dir.path(),
        &server,
        &seeded,
        total,
        Duration::from_secs(300),
    )
    .await;
    assert!(
        verdict.redelivered.is_empty(),
        "a clean drain redelivers nothing: {:?}",
        &verdict.redelivered[..verdict.redelivered.len().min(5)]
    );
    check_stored(dir.path(), &seeded).await;
    println!(
        "SIGTERM: {} groups running, exit 0 after {took:.2?} (grace {grace:?}); \
         {delivered_before} of {total} deliveries done, {visible} messages back in the queue; \
         restart delivered the rest, 0 redeliveries",
        in_flight
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_messages_slower_than_the_grace_releases_them_for_the_next_worker() {
    let plan = Plan {
        groups: 10,
        per_group: 5,
        recipients: 2,
    };
    let dir = TempDir::new("faults-cutoff");
    let seeded = {
        let store = EmbeddedStore::open(dir.path()).await.unwrap();
        stream::seed(&store, plan, |_, _| None).await
    };
    let server = ConnectionsServer::start().await;
    let callback = server.endpoint("test");
    let total = plan.deliveries();
    // Every post takes 3 s, the grace is 2 s: the drain must cut running
    // messages off (at 1.6 s) and release them.
    server.set_latency(Duration::from_secs(3));
    let grace = Duration::from_secs(2);
    let worker = WorkerProc::start(dir.path(), &callback, &["--shutdown-grace", "2s"]).await;
    support::eventually(Duration::from_secs(30), "all groups running", || async {
        (worker.metric("switchboard_groups_in_flight").await >= plan.groups as f64).then_some(())
    })
    .await;
    let signalled = Instant::now();
    worker.proc.sigterm();
    let mut proc = worker.proc;
    let status = proc.exit_within(grace + Duration::from_secs(5)).await;
    let took = signalled.elapsed();
    let log = proc.log();
    assert!(status.success(), "{status:?}\n{}", tail(&log, 20));
    assert!(
        took < grace + Duration::from_millis(500),
        "exited {took:?} after SIGTERM"
    );
    assert!(
        log.contains("grace period nearly over"),
        "{}",
        tail(&log, 20)
    );
    let (visible, _) = queued(dir.path()).await;
    assert_eq!(
        visible,
        plan.messages() as u64,
        "nothing was finished; all released"
    );

    server.set_latency(Duration::ZERO);
    let verdict = finish(
        dir.path(),
        &server,
        &seeded,
        total,
        Duration::from_secs(120),
    )
    .await;
    println!(
        "SIGTERM with 3 s posts and a 2 s grace: exit 0 after {took:.2?}, {visible} messages released; \
         restart delivered all {total}, {} redeliveries",
        verdict.redelivered.len()
    );
}
