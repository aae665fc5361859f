//! Fault suite, @connections: the API answers 429 and 500 and resets TCP
//! connections without answering, per recipient and during a whole-API
//! outage. The real worker (on the embedded store) retries each recipient
//! with backoff until it is delivered: nothing lost, group order kept,
//! nothing delivered twice, and every retry accounted for in `/metrics`
//! (`switchboard_delivery_retries_total` equals the refusals the server
//! counted, by kind; no message needed more retries than `--push-retries`).

mod support;

use std::time::{Duration, Instant};

use switchboard::backend::embedded::EmbeddedStore;

use support::connections_server::{ConnectionsServer, Fault};
use support::embedded::TempDir;
use support::stream::{self, InProcessWorker, Plan, env_or, heavy, recipient};

/// The worker's delivery and retry counters against what the server received
/// and refused.
async fn check_retries(
    worker: &InProcessWorker,
    server: &ConnectionsServer,
    max_retries: u32,
    deliveries: usize,
) {
    // The last frames reach the server before the worker has their 200s.
    support::counter_reaches(
        Duration::from_secs(10),
        "every delivery counted ok",
        deliveries as f64,
        || worker.metric(r#"switchboard_deliveries_total{outcome="ok"}"#),
    )
    .await;
    let retried = |kind: &'static str| {
        let sample = format!(r#"switchboard_delivery_retries_total{{error_type="{kind}"}}"#);
        async move { worker.metric(&sample).await as u32 }
    };
    assert_eq!(
        retried("throttled").await,
        server.refused(Fault::Throttle),
        "429s retried"
    );
    assert_eq!(
        retried("server").await,
        server.refused(Fault::Fail),
        "500s retried"
    );
    assert_eq!(
        retried("network").await,
        server.refused(Fault::Reset),
        "resets retried"
    );
    assert_eq!(
        worker.metric("switchboard_delivery_retries_total").await as u32,
        server.refused(Fault::Throttle)
            + server.refused(Fault::Fail)
            + server.refused(Fault::Reset),
        "no other retries"
    );
    assert!(
        server.most_refusals_per_message() <= max_retries,
        "a delivery was refused {} times, more than --push-retries {max_retries}",
        server.most_refusals_per_message()
    );
    for outcome in ["throttled", "failed", "gone"] {
        let sample = format!(r#"switchboard_deliveries_total{{outcome="{outcome}"}}"#);
        assert_eq!(
            worker.metric(&sample).await,
            0.0,
            "no delivery ended {outcome}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_and_resets_per_recipient_are_retried_until_delivered() {
    let plan = Plan {
        groups: 10,
        per_group: env_or(
            "FAULTS_CONNECTIONS_PER_GROUP",
            if heavy() { 200 } else { 20 },
        ),
        recipients: 3,
    };
    let dir = TempDir::new("faults-connections");
    let store = EmbeddedStore::open(dir.path()).await.unwrap();
    let seeded = stream::seed(&store, plan, |_, _| None).await;
    let server = ConnectionsServer::start().await;
    // Member 0 of every group: one 429, one 500 and one reset, in that
    // order, on its first deliveries: 3 refusals, the most --push-retries 3
    // allows for one delivery. Member 1 of even groups: two resets.
    for g in 0..plan.groups {
        let first = recipient(g, 0);
        server.throttle(&first, 1);
        server.fail(&first, 1);
        server.reset(&first, 1);
        if g % 2 == 0 {
            server.reset(&recipient(g, 1), 2);
        }
    }
    let started = Instant::now();
    let worker =
        InProcessWorker::start(&store, &server.endpoint("test"), &["--push-retries", "3"]).await;
    server
        .wait_distinct(plan.deliveries(), Duration::from_secs(120))
        .await;
    let elapsed = started.elapsed();

    let verdict = seeded.ledger.verify(&seeded.members, &server.received());
    assert!(verdict.redelivered.is_empty(), "{:?}", verdict.redelivered);
    assert_eq!(server.refused(Fault::Throttle), plan.groups as u32);
    assert_eq!(server.refused(Fault::Fail), plan.groups as u32);
    assert_eq!(
        server.refused(Fault::Reset),
        (plan.groups + plan.groups / 2 * 2) as u32
    );
    check_retries(&worker, &server, 3, plan.deliveries()).await;
    println!(
        "per recipient: {} deliveries in {elapsed:.2?} with {} 429s, {} 500s and {} resets, \
         each retried once; at most {} refusals for one delivery",
        plan.deliveries(),
        server.refused(Fault::Throttle),
        server.refused(Fault::Fail),
        server.refused(Fault::Reset),
        server.most_refusals_per_message()
    );
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_of_the_whole_api_is_ridden_out_with_backoff() {
    let plan = Plan {
        groups: 20,
        per_group: env_or("FAULTS_OUTAGE_PER_GROUP", if heavy() { 200 } else { 20 }),
        recipients: 2,
    };
    let dir = TempDir::new("faults-connections");
    let store = EmbeddedStore::open(dir.path()).await.unwrap();
    let seeded = stream::seed(&store, plan, |_, _| None).await;
    let server = ConnectionsServer::start().await;
    // Backoff 100, 200, 400, 800, 1600 ms (plus jitter) before the 6th
    // attempt: a 1 s outage is ridden out by every delivery it hits.
    let worker = InProcessWorker::start(
        &store,
        &server.endpoint("test"),
        &["--push-retries", "6", "--push-retry-base", "100ms"],
    )
    .await;
    server
        .wait_distinct(plan.deliveries() / 5, Duration::from_secs(60))
        .await;
    let before = server.distinct();
    let outage = Duration::from_secs(1);
    let started = Instant::now();
    server.outage(outage, &[Fault::Throttle, Fault::Fail, Fault::Reset]);
    server
        .wait_distinct(plan.deliveries(), Duration::from_secs(120))
        .await;
    let elapsed = started.elapsed();

    let verdict = seeded.ledger.verify(&seeded.members, &server.received());
    assert!(verdict.redelivered.is_empty(), "{:?}", verdict.redelivered);
    for fault in [Fault::Throttle, Fault::Fail, Fault::Reset] {
        assert!(server.refused(fault) > 0, "the outage answered {fault:?}");
    }
    assert!(before < plan.deliveries(), "the outage came mid-stream");
    check_retries(&worker, &server, 6, plan.deliveries()).await;
    let retries = worker.metric("switchboard_delivery_retries_total").await;
    println!(
        "outage of {outage:?} (429, 500, reset in turn) after {before} of {} deliveries: \
         the rest delivered {elapsed:.2?} after it began, {retries} retries, at most {} for one delivery",
        plan.deliveries(),
        server.most_refusals_per_message()
    );
    worker.stop().await;
}

/// The ledger itself: a check that cannot fail proves nothing.
mod ledger_self_check {
    use std::collections::{BTreeMap, HashMap};

    use super::support::ledger::Ledger;

    fn ids(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    fn ledger() -> Ledger {
        let mut l = Ledger::new();
        for id in ["a1", "a2", "a3"] {
            l.sent("A", id);
        }
        l
    }

    fn members() -> BTreeMap<String, String> {
        BTreeMap::from([("r".to_owned(), "A".to_owned())])
    }

    #[test]
    fn redelivery_is_allowed_and_flagged() {
        let received = HashMap::from([("r".to_owned(), ids(&["a1", "a2", "a1", "a2", "a3"]))]);
        let v = ledger().verify(&members(), &received);
        assert_eq!(v.delivered, 3);
        assert_eq!(v.redelivered.len(), 2);
    }

    #[test]
    #[should_panic(expected = "first difference at position 1")]
    fn reordering_fails() {
        let received = HashMap::from([("r".to_owned(), ids(&["a1", "a3", "a2"]))]);
        ledger().verify(&members(), &received);
    }

    #[test]
    #[should_panic(expected = "missing (first 5): [\"a2\"]")]
    fn loss_fails() {
        let received = HashMap::from([("r".to_owned(), ids(&["a1", "a3"]))]);
        ledger().verify(&members(), &received);
    }

    #[test]
    #[should_panic(expected = "received 4 distinct messages, 3 were sent")]
    fn a_message_of_another_group_fails() {
        let received = HashMap::from([("r".to_owned(), ids(&["a1", "a2", "a3", "b1"]))]);
        ledger().verify(&members(), &received);
    }

    #[test]
    fn a_run_in_the_middle_is_fine_and_a_gap_is_not() {
        assert_eq!(ledger().verify_run("r", "A", &ids(&["a2", "a3"])), (1, 3));
        let gap = std::panic::catch_unwind(|| ledger().verify_run("r", "A", &ids(&["a1", "a3"])));
        assert!(gap.is_err());
    }
}
