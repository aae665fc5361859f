//! `switchboard dev` end to end: the local gateway, the builtin handlers, the
//! embedded queue and tables and the worker, driven by real WebSocket clients.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use support::dev::Dev;
use support::embedded::TempDir;
use support::ws::{self, Client};
use switchboard::backend::embedded::EmbeddedStore;
use switchboard::backend::{Connection, Connections};
use switchboard::gateway::GatewayConfig;

fn say(text: &str) -> String {
    serde_json::json!({"action": "sendMessage", "data": {"text": text}}).to_string()
}

/// The next `message` frame (other frame types skipped).
async fn next_message(c: &mut Client) -> serde_json::Value {
    loop {
        let f = ws::next_json(c).await;
        if f["type"] == "message" {
            return f;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_get_their_own_session_only_in_send_order_with_ids() {
    let dev = Dev::in_memory().await;
    let mut a: Vec<Client> = Vec::new();
    for _ in 0..3 {
        a.push(ws::connect(&dev.url("room-a")).await);
    }
    let mut b: Vec<Client> = Vec::new();
    for _ in 0..2 {
        b.push(ws::connect(&dev.url("room-b")).await);
    }
    // Interleaved: a0 and b0 take turns.
    for i in 0..20 {
        ws::send(&mut a[0], say(&format!("a{i}"))).await;
        if i < 10 {
            ws::send(&mut b[0], say(&format!("b{i}"))).await;
        }
    }
    ws::send(&mut a[0], say("end-a")).await;
    ws::send(&mut b[0], say("end-b")).await;

    for (clients, room, n, end) in [
        (&mut a, "room-a", 20, "end-a"),
        (&mut b, "room-b", 10, "end-b"),
    ] {
        let prefix = &room[5..];
        for c in clients.iter_mut() {
            let mut texts = Vec::new();
            let mut ids = HashSet::new();
            loop {
                let f = next_message(c).await;
                assert_eq!(f["sessionId"], room, "a frame of another session: {f}");
                let id = f["id"].as_str().expect("every frame has an id").to_owned();
                assert!(!id.is_empty() && ids.insert(id), "ids are unique: {f}");
                let text = f["payload"]["text"].as_str().unwrap().to_owned();
                if text == end {
                    break;
                }
                texts.push(text);
            }
            let want: Vec<String> = (0..n).map(|i| format!("{prefix}{i}")).collect();
            assert_eq!(texts, want, "{room}: every message, in send order");
        }
    }
    dev.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_removes_the_record_and_a_vanished_connection_is_pruned_by_410() {
    let store = EmbeddedStore::in_memory().await.unwrap();
    let table = store.connections("switchboard-connections", None);
    let dev = Dev::start(GatewayConfig::default(), store.clone()).await;
    let mut c1 = ws::connect(&dev.url("room")).await;
    let mut c2 = ws::connect(&dev.url("room")).await;
    ws::send(&mut c2, say("hello from c2")).await;
    let c2_id = next_message(&mut c1).await["from"]["connectionId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        table.get(&c2_id).await.unwrap().is_some(),
        "$connect stored c2"
    );

    c2.close(None).await.unwrap();
    support::eventually(
        Duration::from_secs(10),
        "c2's record removed by $disconnect",
        || async { table.get(&c2_id).await.unwrap().is_none().then_some(()) },
    )
    .await;

    // A record the gateway does not know, as left by a crash: the next
    // broadcast gets 410 Gone for it and prunes exactly that item.
    let ghost = Connection {
        connection_id: "Z2hvc3QtY29ubmVjdGlvbg=".into(),
        session_id: "room".into(),
        user_id: None,
        connected_at: 1,
        expires_at: i64::MAX / 2,
        domain_name: None,
        stage: Some("dev".into()),
        source_ip: None,
    };
    table.put(&ghost).await.unwrap();
    ws::send(&mut c1, say("anyone there?")).await;
    let f = next_message(&mut c1).await;
    assert_eq!(f["payload"]["text"], "anyone there?");
    support::eventually(Duration::from_secs(10), "the ghost pruned", || async {
        table
            .get(&ghost.connection_id)
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    let c1_id = f["from"]["connectionId"].as_str().unwrap();
    assert!(
        table.get(c1_id).await.unwrap().is_some(),
        "the sender stays"
    );
    dev.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_mid_stream_loses_no_queued_message() {
    let dir = TempDir::new("dev-restart");
    const N: usize = 80;
    let dev = Dev::start(
        GatewayConfig::default(),
        EmbeddedStore::open(dir.path()).await.unwrap(),
    )
    .await;
    let mut a = ws::connect(&dev.url("room")).await;
    for i in 0..N {
        ws::send(&mut a, say(&format!("m{i:02}"))).await;
    }
    let mut before = Vec::new();
    while before.len() < 10 {
        before.push(
            next_message(&mut a).await["payload"]["text"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    dev.stop().await;

    let dev = Dev::start(
        GatewayConfig::default(),
        EmbeddedStore::open(dir.path()).await.unwrap(),
    )
    .await;
    let mut b = ws::connect(&dev.url("room")).await;
    // Queued behind whatever was left: answered once all of it is stored.
    ws::send(&mut b, r#"{"action":"history","data":{"limit":100}}"#).await;
    let history = loop {
        let f = ws::next_json(&mut b).await;
        if f["type"] == "history" {
            break f;
        }
    };
    let stored: Vec<String> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["payload"]["text"].as_str().unwrap().to_owned())
        .collect();
    // The gateway enqueues a connection's frames in order, so what was accepted
    // is a prefix of what was sent; all of it is stored, in order.
    let want: Vec<String> = (0..stored.len()).map(|i| format!("m{i:02}")).collect();
    assert_eq!(stored, want);
    assert!(
        stored.len() >= before.len(),
        "everything delivered before the restart is stored"
    );
    assert_eq!(&stored[..before.len()], &before[..]);
    dev.stop().await;
}

#[tokio::test]
async fn the_binary_prints_its_urls_serves_a_client_and_exits_0_on_sigterm() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["dev", "--ephemeral", "--listen", "127.0.0.1:0"])
        .env("SWITCHBOARD_LOG_FORMAT", "json")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut banner = Vec::new();
    let url = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            banner.push(line.clone());
            if let Some(rest) = line.trim().strip_prefix("WebSocket API") {
                return rest.trim().to_owned();
            }
        }
        panic!("no WebSocket URL in the banner: {banner:?}");
    })
    .await
    .expect("banner printed");
    assert!(
        url.starts_with("ws://127.0.0.1:") && url.ends_with("/dev?session=room1"),
        "{url}"
    );
    let mut rest = Vec::new();
    for _ in 0..5 {
        rest.push(lines.next_line().await.unwrap().unwrap());
    }
    let text = rest.join("\n");
    for want in [
        "demo page",
        "@connections",
        "/metrics",
        "/@console/",
        "wscat -c",
    ] {
        assert!(text.contains(want), "banner lacks {want}:\n{text}");
    }
    let mut c = ws::connect(&url).await;
    ws::send(&mut c, say("hi")).await;
    assert_eq!(next_message(&mut c).await["payload"]["text"], "hi");

    let pid = child.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("exited after SIGTERM")
        .unwrap();
    assert!(status.success(), "{status:?}");
}
