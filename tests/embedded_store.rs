//! The embedded tables (keys, lookups and page cursors, conditional writes,
//! TTL) and the durability of the embedded store: reopening after a drop, and
//! after a `kill -9` of a child process that wrote to it.

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;
use switchboard::backend::embedded::{EmbeddedStore, Sweep};
use switchboard::backend::{
    Appended, Connection, Connections, ErrorKind, Messages, OutgoingMessage, Position, Queue,
    QueueMessage, ReceiveRequest, StoredMessage,
};
use switchboard::envelope::Sender;
use switchboard::ops::migrate::Names;

use support::embedded::TempDir;

fn wall_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn conn(id: &str, session: &str, user: Option<&str>, expires_at: i64) -> Connection {
    Connection {
        connection_id: id.to_owned(),
        session_id: session.to_owned(),
        user_id: user.map(str::to_owned),
        connected_at: 1_732_723_200_000,
        expires_at,
        domain_name: Some("127.0.0.1".into()),
        stage: Some("dev".into()),
        source_ip: Some("127.0.0.1".into()),
    }
}

fn stored(session: &str, id: &str, received_at: i64, expires_at: i64) -> StoredMessage {
    StoredMessage {
        session_id: session.to_owned(),
        id: id.to_owned(),
        action: "sendMessage".into(),
        sender: Sender {
            connection_id: "c1".into(),
            user_id: Some("alice".into()),
        },
        received_at,
        position: Position::at(received_at),
        payload: json!({ "text": id, "nested": [1, null, "ü"] }),
        expires_at,
        seq: None,
    }
}

/// Every item of a paged lookup, and the number of pages it took.
async fn all_pages<F, Fut>(mut page: F) -> (Vec<String>, usize)
where
    F: FnMut(Option<String>) -> Fut,
    Fut: std::future::Future<
            Output = switchboard::backend::Result<switchboard::backend::Page<Connection>>,
        >,
{
    let (mut ids, mut pages, mut cursor) = (Vec::new(), 0, None);
    loop {
        let p = page(cursor.take()).await.expect("page");
        pages += 1;
        ids.extend(p.items.into_iter().map(|c| c.connection_id));
        match p.next {
            Some(next) => cursor = Some(next),
            None => return (ids, pages),
        }
        assert!(pages < 100, "paging does not end");
    }
}

#[tokio::test]
async fn lookups_page_through_every_connection_of_a_session_or_user() {
    let store = EmbeddedStore::in_memory().await.unwrap();
    let t = store.connections("conns", Some(2));
    let later = wall_secs() + 3600;
    for i in 0..5 {
        t.put(&conn(&format!("s1-{i}"), "s1", Some("alice"), later))
            .await
            .unwrap();
    }
    t.put(&conn("s2-0", "s2", Some("bob"), later))
        .await
        .unwrap();
    t.put(&conn("s2-1", "s2", None, later)).await.unwrap();

    let (mut ids, pages) = all_pages(|c| t.by_session("s1", c)).await;
    ids.sort();
    assert_eq!(ids, ["s1-0", "s1-1", "s1-2", "s1-3", "s1-4"]);
    assert_eq!(pages, 3, "5 items in pages of 2");
    let (ids, pages) = all_pages(|c| t.by_session("s2", c)).await;
    assert_eq!((ids.len(), pages), (2, 1), "a full last page has no cursor");
    let (ids, _) = all_pages(|c| t.by_user("alice", c)).await;
    assert_eq!(ids.len(), 5);
    let (ids, _) = all_pages(|c| t.by_user("bob", c)).await;
    assert_eq!(ids, ["s2-0"]);
    assert!(
        t.by_session("nobody", None).await.unwrap().items.is_empty(),
        "an unknown session has no connections"
    );

    // A cursor belongs to its query.
    let cursor = t.by_session("s1", None).await.unwrap().next.unwrap();
    let err = t.by_session("s2", Some(cursor)).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Validation, "{err}");
    let err = t
        .by_user("alice", Some("not a cursor".into()))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Validation, "{err}");

    // Another table in the same store is another table.
    let other = store.connections("other-conns", None);
    assert!(other.get("s1-0").await.unwrap().is_none());
    assert!(other.by_session("s1", None).await.unwrap().items.is_empty());
}

#[tokio::test]
async fn put_replaces_and_keys_follow_dynamodb_rules() {
    let store = EmbeddedStore::in_memory().await.unwrap();
    let t = store.connections("conns", None);
    let later = wall_secs() + 3600;
    let c = conn("c1", "s1", Some("alice"), later);
    t.put(&c).await.unwrap();
    assert_eq!(t.get("c1").await.unwrap(), Some(c));

    // Same connectionId: the item is replaced and moves to the new session.
    let moved = conn("c1", "s2", Some(""), later);
    t.put(&moved).await.unwrap();
    assert!(t.by_session("s1", None).await.unwrap().items.is_empty());
    let got = t.get("c1").await.unwrap().unwrap();
    assert_eq!(got.session_id, "s2");
    assert_eq!(got.user_id, None, "an empty userId is stored as absent");
    assert!(t.by_user("", None).await.unwrap().items.is_empty());

    for bad in [conn("", "s1", None, later), conn("c2", "", None, later)] {
        let err = t.put(&bad).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Validation, "{err}");
    }
    t.delete("c1").await.unwrap();
    t.delete("c1")
        .await
        .expect("deleting a missing item is fine");
    assert!(t.get("c1").await.unwrap().is_none());
}

#[tokio::test]
async fn delete_if_same_only_deletes_that_connection() {
    let store = EmbeddedStore::in_memory().await.unwrap();
    let t = store.connections("conns", None);
    let c = conn("c1", "s1", None, wall_secs() + 3600);
    t.put(&c).await.unwrap();

    let reconnected = Connection {
        connected_at: c.connected_at + 1,
        ..c.clone()
    };
    assert!(!t.delete_if_same(&reconnected).await.unwrap());
    let other_session = Connection {
        session_id: "s9".into(),
        ..c.clone()
    };
    assert!(!t.delete_if_same(&other_session).await.unwrap());
    assert!(t.get("c1").await.unwrap().is_some(), "still there");

    assert!(t.delete_if_same(&c).await.unwrap());
    assert!(t.get("c1").await.unwrap().is_none());
    assert!(
        !t.delete_if_same(&c).await.unwrap(),
        "nothing left to delete"
    );
}

#[tokio::test(start_paused = true)]
async fn expired_items_are_hidden_then_swept() {
    let store = EmbeddedStore::in_memory().await.unwrap();
    let t = store.connections("conns", None);
    let m = store.messages("msgs");
    let now = wall_secs();
    t.put(&conn("soon", "s1", Some("alice"), now + 10))
        .await
        .unwrap();
    t.put(&conn("later", "s1", Some("alice"), now + 3600))
        .await
        .unwrap();
    t.put(&conn("gone", "s1", Some("alice"), now - 5))
        .await
        .unwrap();
    m.put_if_absent(&stored("s1", "old", 1, now + 10))
        .await
        .unwrap();
    m.put_if_absent(&stored("s1", "new", 2, now + 3600))
        .await
        .unwrap();

    let ids = |p: Vec<Connection>| -> Vec<String> {
        let mut v: Vec<String> = p.into_iter().map(|c| c.connection_id).collect();
        v.sort();
        v
    };
    assert!(t.get("gone").await.unwrap().is_none(), "already expired");
    assert_eq!(
        ids(t.by_session("s1", None).await.unwrap().items),
        ["later", "soon"]
    );
    assert_eq!(m.latest("s1", 10).await.unwrap().len(), 2);

    tokio::time::advance(Duration::from_secs(15)).await;
    assert!(t.get("soon").await.unwrap().is_none());
    assert_eq!(
        ids(t.by_session("s1", None).await.unwrap().items),
        ["later"]
    );
    assert_eq!(
        ids(t.by_user("alice", None).await.unwrap().items),
        ["later"]
    );
    let latest = m.latest("s1", 10).await.unwrap();
    assert_eq!(latest.len(), 1);
    assert_eq!(latest[0].id, "new");

    // Hidden items are also removed eventually (here: now).
    let swept = store.sweep().await.unwrap();
    assert_eq!(
        swept,
        Sweep {
            connections: 2,
            messages: 1,
            ..Sweep::default()
        }
    );
    assert_eq!(store.sweep().await.unwrap(), Sweep::default());
}

#[tokio::test]
async fn messages_are_stored_once_and_read_newest_n_oldest_first() {
    let store = EmbeddedStore::in_memory().await.unwrap();
    let m = store.messages("msgs");
    let later = wall_secs() + 3600;
    // 999 and 1000 ms: the zero-padded sort key keeps time order.
    for (i, at) in [999, 1000, 1001, 20_000, 1_732_723_200_000]
        .iter()
        .enumerate()
    {
        assert!(
            m.put_if_absent(&stored("s1", &format!("m{i}"), *at, later))
                .await
                .unwrap()
        );
    }
    m.put_if_absent(&stored("s2", "x", 5, later)).await.unwrap();

    let redelivery = StoredMessage {
        payload: json!("changed"),
        ..stored("s1", "m0", 999, later)
    };
    assert!(
        !m.put_if_absent(&redelivery).await.unwrap(),
        "the same key again is not written"
    );

    let ids = |v: Vec<StoredMessage>| v.into_iter().map(|s| s.id).collect::<Vec<_>>();
    assert_eq!(ids(m.latest("s1", 3).await.unwrap()), ["m2", "m3", "m4"]);
    let all = m.latest("s1", 100).await.unwrap();
    assert_eq!(ids(all.clone()), ["m0", "m1", "m2", "m3", "m4"]);
    assert_eq!(
        all[0],
        stored("s1", "m0", 999, later),
        "first write kept as is"
    );
    assert!(m.latest("s1", 0).await.unwrap().is_empty());
    assert_eq!(ids(m.latest("s2", 10).await.unwrap()), ["x"]);

    let huge = StoredMessage {
        payload: json!("x".repeat(500 * 1024)),
        ..stored("s1", "big", 1, later)
    };
    let err = m.put_if_absent(&huge).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Validation, "{err}");
}

/// A resume reads back from the session's newest message and stops at the
/// first `seq` at or below the one asked for (no index on `seq`): it gets
/// the newest live messages above it, oldest first, skips expired ones and
/// other sessions', and never reaches a message stored without a `seq`.
#[tokio::test]
async fn a_resume_reads_the_newest_live_messages_above_its_seq() {
    let store = EmbeddedStore::in_memory().await.unwrap();
    let m = store.messages("msgs");
    let (later, past) = (wall_secs() + 3600, wall_secs() - 10);
    // Stored before sequence numbers existed: no seq.
    assert!(
        m.put_if_absent(&stored("r", "legacy", 500, later))
            .await
            .unwrap()
    );
    // 2 and 5 are past their TTL; 4 was received before 3 (another
    // gateway's clock) and still goes after it, with the next seq.
    let received = [1_000, 2_000, 3_000, 2_500, 4_000, 5_000];
    for (i, at) in received.iter().enumerate() {
        let n = i as u64 + 1;
        let expires = if n == 2 || n == 5 { past } else { later };
        let got = m
            .append(stored("r", &format!("m{n}"), *at, expires))
            .await
            .unwrap();
        assert_eq!(got, Appended::Stored(n));
        m.append(stored("other", &format!("o{n}"), *at, later))
            .await
            .unwrap();
    }
    let read = |since, max| {
        let m = m.clone();
        async move {
            let r = m.since_seq("r", since, max).await.unwrap();
            let got: Vec<_> = r.messages.iter().map(|s| (s.seq, s.id.clone())).collect();
            (r.last_seq, got)
        }
    };
    let seqs = |v: &[u64]| {
        v.iter()
            .map(|n| (Some(*n), format!("m{n}")))
            .collect::<Vec<_>>()
    };
    assert_eq!(read(0, 10).await, (6, seqs(&[1, 3, 4, 6])));
    assert_eq!(read(3, 10).await, (6, seqs(&[4, 6])));
    assert_eq!(read(0, 2).await, (6, seqs(&[4, 6])), "the newest two");
    assert_eq!(read(5, 10).await, (6, seqs(&[6])));
    assert_eq!(read(6, 10).await, (6, seqs(&[])));
    assert_eq!(read(0, 0).await, (6, seqs(&[])));
    let r = m.since_seq("nobody", 0, 10).await.unwrap();
    assert_eq!((r.last_seq, r.messages.len()), (0, 0));
}

#[tokio::test]
async fn in_memory_stores_are_separate() {
    let a = EmbeddedStore::in_memory().await.unwrap();
    let b = EmbeddedStore::in_memory().await.unwrap();
    assert!(a.path().is_none());
    a.connections("t", None)
        .put(&conn("c1", "s1", None, wall_secs() + 60))
        .await
        .unwrap();
    assert!(b.connections("t", None).get("c1").await.unwrap().is_none());
}

// ---------------------------------------------------------------- durability

fn names() -> Names {
    Names {
        connections_table: "switchboard-connections".into(),
        messages_table: "switchboard-messages".into(),
        queue: "switchboard-inbound.fifo".into(),
        dlq: "switchboard-inbound-dlq.fifo".into(),
    }
}

fn outgoing(group: &str, id: &str) -> OutgoingMessage {
    OutgoingMessage {
        body: format!("{{\"id\":\"{id}\"}}"),
        group_id: group.to_owned(),
        dedup_id: id.to_owned(),
        attributes: [("k".to_owned(), id.to_owned())].into(),
    }
}

async fn receive(q: &dyn Queue, max: u32) -> Vec<QueueMessage> {
    q.receive(ReceiveRequest {
        max_messages: max,
        wait: Duration::ZERO,
        visibility: Duration::from_secs(300),
    })
    .await
    .unwrap()
}

/// Writes the state that [`check_state`] expects: per group g0..g2 messages
/// m0..m4, the first two of g0 received (in flight), connections and
/// stored messages.
async fn write_state(store: &EmbeddedStore) {
    let migrated = store.migrate(&names()).await.unwrap();
    let q = store.queue(&migrated.queue_url).unwrap();
    for i in 0..5 {
        for g in 0..3 {
            q.send(&outgoing(&format!("g{g}"), &format!("g{g}-m{i}")))
                .await
                .unwrap();
        }
    }
    let got = receive(&q, 2).await;
    assert_eq!(
        got.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(),
        ["{\"id\":\"g0-m0\"}", "{\"id\":\"g0-m1\"}"]
    );
    let conns = store.connections(&names().connections_table, None);
    let messages = store.messages(&names().messages_table);
    for i in 0..20 {
        conns
            .put(&conn(
                &format!("c{i}"),
                "room",
                Some("u"),
                wall_secs() + 7200,
            ))
            .await
            .unwrap();
        messages
            .put_if_absent(&stored(
                "room",
                &format!("s{i}"),
                1000 + i,
                wall_secs() + 7200,
            ))
            .await
            .unwrap();
    }
}

/// Checks everything [`write_state`] wrote is there, with the messages that
/// were in flight visible again (received once already) and order kept.
async fn check_state(store: &EmbeddedStore) {
    let migrated = store
        .migrate(&names())
        .await
        .expect("migrate is idempotent");
    let q = store.queue(&migrated.queue_url).unwrap();
    let info = q.info().await.unwrap();
    assert_eq!(
        (info.approximate_messages, info.approximate_in_flight),
        (15, 0),
        "every sent message is back and visible"
    );
    let mut seen: Vec<(String, String, u32)> = Vec::new();
    for _ in 0..20 {
        let batch = receive(&q, 10).await;
        if batch.is_empty() {
            break;
        }
        for m in &batch {
            assert_eq!(m.attributes["k"], m.dedup_id.clone().unwrap());
            seen.push((
                m.group_id.clone(),
                m.dedup_id.clone().unwrap(),
                m.receive_count,
            ));
        }
        let handles: Vec<&str> = batch.iter().map(|m| m.receipt_handle.as_str()).collect();
        for r in q.delete_batch(&handles).await.unwrap() {
            r.unwrap();
        }
    }
    for g in 0..3 {
        let order: Vec<&str> = seen
            .iter()
            .filter(|(grp, _, _)| *grp == format!("g{g}"))
            .map(|(_, id, _)| id.as_str())
            .collect();
        let want: Vec<String> = (0..5).map(|i| format!("g{g}-m{i}")).collect();
        assert_eq!(order, want, "group g{g} complete and in order");
    }
    let counts: Vec<u32> = seen
        .iter()
        .filter(|(g, _, _)| g == "g0")
        .map(|(_, _, c)| *c)
        .collect();
    assert_eq!(
        counts,
        [2, 2, 1, 1, 1],
        "the in-flight two were received before"
    );

    // Deduplication ids survive the restart too.
    q.send(&outgoing("g1", "g1-m0")).await.unwrap();
    assert!(receive(&q, 10).await.is_empty(), "still a duplicate");

    let conns = store.connections(&names().connections_table, Some(7));
    let mut n = 0;
    let mut cursor = None;
    loop {
        let p = conns.by_session("room", cursor.take()).await.unwrap();
        n += p.items.len();
        match p.next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(n, 20, "every connection record is there");
    let latest = store
        .messages(&names().messages_table)
        .latest("room", 100)
        .await
        .unwrap();
    assert_eq!(latest.len(), 20);
}

#[tokio::test]
async fn everything_survives_dropping_the_store_and_reopening_it() {
    let dir = TempDir::new("reopen");
    let store = EmbeddedStore::open(dir.path()).await.unwrap();
    write_state(&store).await;
    drop(store);

    let store = EmbeddedStore::open(dir.path()).await.unwrap();
    check_state(&store).await;
}

#[tokio::test]
async fn a_state_directory_has_one_owner_at_a_time() {
    let dir = TempDir::new("owner");
    let store = EmbeddedStore::open(dir.path()).await.unwrap();
    store.migrate(&names()).await.unwrap();
    let err = EmbeddedStore::open(dir.path())
        .await
        .expect_err("opened twice");
    assert!(err.message.contains("another switchboard process"), "{err}");
    drop(store);
    EmbeddedStore::open(dir.path())
        .await
        .expect("free again once the first is dropped");
}

const CHILD_ENV: &str = "SWITCHBOARD_TEST_KILL9_DIR";

/// Not a test of its own: the child process of
/// [`acknowledged_writes_survive_kill_9`]. It writes the state, says READY
/// and waits (at most a minute) to be killed.
#[tokio::test]
#[ignore = "helper: run by acknowledged_writes_survive_kill_9 in a child process"]
async fn kill9_child_writer() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let store = EmbeddedStore::open(&dir).await.unwrap();
    write_state(&store).await;
    println!("READY");
    use std::io::Write;
    std::io::stdout().flush().unwrap();
    tokio::time::sleep(Duration::from_secs(60)).await;
    panic!("the parent test did not kill this process within 60 s");
}

#[cfg(unix)]
#[tokio::test]
async fn acknowledged_writes_survive_kill_9() {
    use std::os::unix::process::ExitStatusExt;
    use std::process::Stdio;
    use tokio::io::{AsyncBufReadExt, BufReader};

    let dir = TempDir::new("kill9");
    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args(["kill9_child_writer", "--exact", "--ignored", "--nocapture"])
        .env(CHILD_ENV, dir.path())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("re-run this test binary as the child");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.trim() == "READY" {
                return;
            }
        }
        panic!("the child exited without writing its state");
    })
    .await
    .expect("child ready within 60 s");

    child.start_kill().unwrap(); // SIGKILL: no destructor, no checkpoint, no close.
    let status = child.wait().await.unwrap();
    assert_eq!(status.signal(), Some(9), "killed by SIGKILL: {status:?}");
    let wal = dir.path().join("switchboard.sqlite3-wal");
    assert!(
        std::fs::metadata(&wal)
            .map(|m| m.len() > 0)
            .unwrap_or(false),
        "the writes are still in the WAL, not checkpointed by a clean close"
    );

    let store = EmbeddedStore::open(dir.path()).await.unwrap();
    check_state(&store).await;
}
