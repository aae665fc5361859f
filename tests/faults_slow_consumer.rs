//! Fault suite, slow consumer: in `switchboard dev`, a member that never
//! reads its socket must not slow down the others of its session. Once the
//! kernel's socket buffers and the gateway's outbound buffer for it
//! (`[limits] outbound_buffer_frames`, 64 frames) are full, every post to it
//! is answered 429 LimitExceededException (as API Gateway does for a client
//! that does not read); the worker gives up on it after its retries and, for
//! the next 30 s, tries it once per frame. The others keep getting every
//! message, in order, with a per-message latency close to a run without the
//! slow member, and nothing more is buffered for it: memory stays bounded.

mod support;

use std::time::Duration;

use tokio::time::Instant;

use support::embedded::TempDir;
use support::ledger::Ledger;
use support::process::{DevProc, tail};
use support::stream::{env_or, heavy};
use support::ws::Member;

const SESSION: &str = "room";
/// Members that read (the first one also sends).
const FAST: usize = 5;
/// Frame padding: fills the slow member's socket buffers in a few hundred frames.
const PAD: usize = 16 * 1024;

/// Sends `n` messages one after another, each once every fast member got
/// the previous one; returns each message's latency (send → the last fast
/// member has it).
async fn closed_loop(
    members: &mut [Member],
    ledger: &mut Ledger,
    phase: &str,
    n: usize,
) -> Vec<Duration> {
    let pad = "x".repeat(PAD);
    let mut latencies = Vec::with_capacity(n);
    for i in 0..n {
        let text = format!("{phase}-{i:04}");
        let sent = Instant::now();
        members[0]
            .say(&text, serde_json::json!({ "pad": pad }))
            .await;
        ledger.sent(SESSION, &text);
        let mut last = sent;
        for m in members.iter() {
            last = last.max(m.inbox.wait_text(&text, Duration::from_secs(30)).await);
        }
        latencies.push(last - sent);
    }
    latencies
}

/// Waits until the worker has finished `n` messages. The fast members have a
/// frame before the worker has the answers for all its posts (the slow
/// member's 429s included) and before the gateway has counted them.
async fn settled(dev: &DevProc, n: usize) {
    support::counter_reaches(Duration::from_secs(30), "messages done", n as f64, || {
        dev.metric(r#"switchboard_messages_total{action="sendMessage",outcome="done"}"#)
    })
    .await;
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[derive(Debug)]
struct Stats {
    p50: Duration,
    p99: Duration,
    max: Duration,
}

fn stats(mut l: Vec<Duration>) -> Stats {
    l.sort();
    Stats {
        p50: percentile(&l, 0.5),
        p99: percentile(&l, 0.99),
        max: *l.last().unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_never_reads_does_not_slow_the_others() {
    let (n_base, n_slow) = if heavy() { (500, 2000) } else { (150, 300) };
    let n_base = env_or("FAULTS_SLOW_BASELINE", n_base);
    let n_slow = env_or("FAULTS_SLOW_MESSAGES", n_slow);
    let dir = TempDir::new("faults-slow");
    let dev = DevProc::start(dir.path(), &[]).await;
    let mut members = Vec::new();
    for _ in 0..FAST {
        members.push(Member::join(&dev.ws_url(SESSION)).await);
    }
    let mut ledger = Ledger::new();

    // Baseline: the same traffic without the slow member.
    let base = stats(closed_loop(&mut members, &mut ledger, "base", n_base).await);

    // The slow member: a small receive buffer, and it never reads.
    let slow_socket = tokio::net::TcpSocket::new_v4().unwrap();
    slow_socket.set_recv_buffer_size(4096).unwrap();
    let tcp = slow_socket.connect(dev.addr).await.unwrap();
    let (_slow, _) = tokio_tungstenite::client_async(dev.ws_url(SESSION), tcp)
        .await
        .expect("slow member connects");
    let rss_before = dev.proc.rss_kib();
    let slow_started = Instant::now();
    let slow_latencies = closed_loop(&mut members, &mut ledger, "slow", n_slow).await;
    let with_slow = stats(slow_latencies.clone());
    settled(&dev, n_base + n_slow).await;

    let ok_posts = r#"switchboard_gateway_management_requests_total{op="post",outcome="ok"}"#;
    let full = r#"switchboard_gateway_management_requests_total{op="post",outcome="throttled"}"#;
    let buffered_for_slow = |ok: f64, delivered: usize| ok as usize - delivered;
    let fast_deliveries = |n: usize| FAST * n;
    let refused = dev.metric(full).await;
    assert!(
        refused > 0.0,
        "the slow member's buffer filled: posts answered 429"
    );
    let accepted_for_slow =
        buffered_for_slow(dev.metric(ok_posts).await, fast_deliveries(n_base + n_slow));
    assert!(
        accepted_for_slow < n_slow,
        "the gateway stopped accepting frames for the slow member ({accepted_for_slow} of {n_slow})"
    );

    // From now on nothing more is buffered for it: the bound holds.
    let n_more = 100;
    let more_latencies = closed_loop(&mut members, &mut ledger, "more", n_more).await;
    let slow_phase = slow_started.elapsed();
    let more = stats(more_latencies.clone());
    settled(&dev, n_base + n_slow + n_more).await;
    let rss_after = dev.proc.rss_kib();
    assert_eq!(
        buffered_for_slow(
            dev.metric(ok_posts).await,
            fast_deliveries(n_base + n_slow + n_more)
        ),
        accepted_for_slow,
        "no frame accepted for a full buffer"
    );
    assert!(
        dev.metric(full).await >= refused + n_more as f64,
        "every later post refused"
    );
    let throttled = dev
        .metric(r#"switchboard_deliveries_total{outcome="throttled"}"#)
        .await;
    assert!(
        throttled >= n_more as f64,
        "the worker counts the slow member's deliveries as throttled"
    );

    // The others got everything, in order, once.
    let recipients: std::collections::BTreeMap<String, String> = (0..FAST)
        .map(|i| (format!("m{i}"), SESSION.to_owned()))
        .collect();
    let received = members
        .iter()
        .enumerate()
        .map(|(i, m)| (format!("m{i}"), m.inbox.texts()))
        .collect();
    let verdict = ledger.verify(&recipients, &received);
    assert!(verdict.redelivered.is_empty(), "{:?}", verdict.redelivered);

    // Latency for the others: close to the baseline. One message pays for
    // the worker's retries to the slow member (--push-retries 3 from 100 ms,
    // with jitter: under 1.5 s) when it gives up on it; from then on each
    // frame gets one attempt, and every refused attempt renews that for
    // 30 s. One more slow message is tolerated as noise of a loaded machine.
    let rss_growth_kib = rss_after.saturating_sub(rss_before);
    let spike = base.max * 3 + Duration::from_millis(250);
    let spikes = slow_latencies
        .iter()
        .chain(&more_latencies)
        .filter(|l| **l > spike)
        .count();
    let allowed = 2;
    println!(
        "slow consumer: {FAST} readers, {PAD} B frames; baseline {n_base} msgs {base:?}; \
         with a member that never reads {n_slow} msgs {with_slow:?}, then {n_more} more {more:?}; \
         {spikes} messages over {spike:?} in {slow_phase:.1?}; \
         {accepted_for_slow} frames accepted for it before 429s, {refused} refused by then; \
         dev RSS {rss_before} → {rss_after} KiB",
    );
    let slack = Duration::from_millis(25);
    assert!(
        with_slow.p50 <= base.p50 * 3 + slack && more.p50 <= base.p50 * 3 + slack,
        "median latency: baseline {:?}, with the slow member {:?}, then {:?}",
        base.p50,
        with_slow.p50,
        more.p50
    );
    assert!(
        spikes <= allowed,
        "{spikes} messages slower than {spike:?} in {slow_phase:?}: the slow member held the session up \
         more than once"
    );
    assert!(
        with_slow.p99 <= base.p99 * 3 + slack * 2,
        "99th percentile: baseline {:?}, with the slow member {:?}",
        base.p99,
        with_slow.p99
    );
    assert!(
        with_slow.max.max(more.max) <= base.max + Duration::from_secs(2),
        "worst latency: baseline {:?}, with the slow member {:?}",
        base.max,
        with_slow.max.max(more.max)
    );
    assert!(
        rss_growth_kib < 64 * 1024,
        "dev grew by {rss_growth_kib} KiB while the slow member's frames were refused"
    );

    dev.proc.sigterm();
    let mut proc = dev.proc;
    let status = proc.exit_within(Duration::from_secs(30)).await;
    assert!(status.success(), "{status:?}\n{}", tail(&proc.log(), 20));
}
