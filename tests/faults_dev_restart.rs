//! Fault suite, `switchboard dev` crash: the binary is killed with `kill -9`
//! while a backlog of client messages is queued, and restarted on the same
//! `--data-dir`. The queued messages and the connection records survive:
//! every queued message is handled after the restart, everything accepted is
//! stored once, in each session's send order, and what clients saw before
//! the crash is a prefix of it. The records of the clients that died with
//! the process are pruned by the first broadcast's 410 Gone.

mod support;

use std::time::{Duration, Instant};

use switchboard::backend::embedded::EmbeddedStore;
use switchboard::backend::{Connections, Messages, Queue};
use switchboard::ops::migrate::Names;

use support::embedded::TempDir;
use support::ledger::Ledger;
use support::process::{DevProc, EMBEDDED_QUEUE, tail};
use support::stream::{env_or, heavy};
use support::ws::Member;

const SESSIONS: [&str; 3] = ["room-a", "room-b", "room-c"];

/// Every record of `session` in the connections table.
async fn records(store: &EmbeddedStore, session: &str) -> usize {
    let table = store.connections(&Names::default().connections_table, None);
    let mut n = 0;
    let mut cursor = None;
    loop {
        let page = table.by_session(session, cursor).await.unwrap();
        n += page.items.len();
        match page.next {
            Some(c) => cursor = Some(c),
            None => return n,
        }
    }
}

/// `payload.text` of every stored message of `session`, oldest first.
async fn stored(store: &EmbeddedStore, session: &str) -> Vec<String> {
    store
        .messages(&Names::default().messages_table)
        .latest(session, 100_000)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.payload["text"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_dev_keeps_queued_messages_and_connection_records() {
    let per_session = env_or("FAULTS_DEV_PER_SESSION", if heavy() { 2000 } else { 150 });
    let listeners = 20;
    let dir = TempDir::new("faults-dev-kill9");
    // Presence events off: the counts below are of the sessions' messages
    // only (join/leave across a crash are in tests/sessions_faults.rs).
    let dev = DevProc::start(dir.path(), &["--presence-events", "off"]).await;

    // Per session: one sender and `listeners` members, all reading.
    let mut senders = Vec::new();
    let mut members = Vec::new();
    for s in SESSIONS {
        senders.push(Member::join(&dev.ws_url(s)).await);
        for _ in 0..listeners {
            members.push((s, Member::join(&dev.ws_url(s)).await));
        }
    }
    // Each sender writes its whole stream at once; the worker, delivering
    // each message to 21 members, falls behind: a backlog builds up.
    let mut ledger = Ledger::new();
    for (s, sender) in SESSIONS.iter().zip(senders.iter_mut()) {
        for i in 0..per_session {
            let text = format!("{s}-{i:05}");
            sender.say(&text, serde_json::json!({})).await;
            ledger.sent(s, &text);
        }
    }
    let first = format!("{}-{:05}", SESSIONS[0], per_session / 10);
    members[0]
        .1
        .inbox
        .wait_text(&first, Duration::from_secs(60))
        .await;
    dev.proc.kill9().await;
    let killed = Instant::now();
    for (_, m) in &members {
        m.inbox.wait_ended(Duration::from_secs(10)).await;
    }

    // Before the crash every member got a prefix of its session's stream.
    let mut seen_before = 0;
    let everyone = members
        .iter()
        .map(|(s, m)| (*s, m))
        .chain(SESSIONS.iter().copied().zip(senders.iter()));
    for (s, m) in everyone {
        let (start, end) = ledger.verify_run("member", s, &m.inbox.texts());
        assert_eq!(start, 0, "every member joined before the first message");
        seen_before = seen_before.max(end);
    }

    // What survived, read from the directory while nothing runs.
    let (queued, stored_before) = {
        let store = EmbeddedStore::open(dir.path()).await.unwrap();
        let info = store.queue(EMBEDDED_QUEUE).unwrap().info().await.unwrap();
        for s in SESSIONS {
            assert_eq!(
                records(&store, s).await,
                listeners + 1,
                "{s}: every record survived"
            );
        }
        let mut before = 0;
        for s in SESSIONS {
            before += stored(&store, s).await.len();
        }
        (
            info.approximate_messages + info.approximate_in_flight,
            before,
        )
    };
    assert!(queued > 0, "the crash left a backlog");
    assert!(seen_before > 0);

    // Restart on the same directory; one new member per session, who then
    // sends a marker: when it comes back, its session's backlog is done.
    let dev = DevProc::start(dir.path(), &["--presence-events", "off"]).await;
    let back_up = killed.elapsed();
    let mut fresh = Vec::new();
    for s in SESSIONS {
        let mut m = Member::join(&dev.ws_url(s)).await;
        m.say(&format!("{s}-end"), serde_json::json!({})).await;
        fresh.push((s, m));
    }
    for (s, m) in &fresh {
        m.inbox
            .wait_text(&format!("{s}-end"), Duration::from_secs(120))
            .await;
    }
    // A marker reaches its member before the worker counts it done.
    let done_after = queued + SESSIONS.len() as u64;
    support::counter_reaches(
        Duration::from_secs(10),
        "every queued message was handled after the restart (plus the markers)",
        done_after as f64,
        || dev.metric(r#"switchboard_messages_total{action="sendMessage",outcome="done"}"#),
    )
    .await;
    let handled_after = dev.metric("switchboard_messages_total").await as u64;
    let pruned = dev.metric("switchboard_connections_pruned_total").await as usize;
    assert_eq!(
        handled_after, done_after,
        "nothing retried or dead-lettered"
    );
    assert_eq!(
        pruned,
        SESSIONS.len() * (listeners + 1),
        "the records of the clients that died with dev were pruned by 410 Gone"
    );
    for (s, m) in &fresh {
        let texts: Vec<String> = m
            .inbox
            .texts()
            .into_iter()
            .filter(|t| !t.ends_with("-end"))
            .collect();
        ledger.verify_run("new member", s, &texts);
    }
    dev.proc.sigterm();
    let mut proc = dev.proc;
    let status = proc.exit_within(Duration::from_secs(30)).await;
    assert!(status.success(), "{status:?}\n{}", tail(&proc.log(), 20));

    // Everything accepted is stored once, in send order; it includes all that
    // clients saw before the crash and all that was queued.
    let store = EmbeddedStore::open(dir.path()).await.unwrap();
    let mut accepted = 0;
    for s in SESSIONS {
        let mut texts = stored(&store, s).await;
        assert_eq!(
            texts.pop().as_deref(),
            Some(format!("{s}-end").as_str()),
            "the marker is last"
        );
        let want = &ledger.expected(s)[..texts.len()];
        assert_eq!(texts, want, "{s}: a prefix of the send order, each once");
        accepted += texts.len();
        assert_eq!(
            records(&store, s).await,
            0,
            "{s}: old records pruned, new ones closed"
        );
    }
    assert!(
        accepted > stored_before && accepted >= seen_before,
        "the backlog was stored after the restart: {stored_before} before, {accepted} after"
    );
    println!(
        "dev kill -9: {} messages sent by 3 senders to 3 × {} members; at the crash members had \
         seen up to {seen_before} messages, {stored_before} stored, {queued} queued; serving again {back_up:.1?} after the kill; \
         {accepted} stored in order at the end; {pruned} dead records pruned",
        per_session * SESSIONS.len(),
        listeners + 1
    );
}
