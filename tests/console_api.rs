//! The console's JSON API against a running `switchboard dev`: real
//! WebSocket clients make the traffic, a real poison message lands in the
//! DLQ, and dead letters replayed through the API arrive in their order.
//! Its guards: POSTs without the page's token or from another origin are
//! refused and change nothing.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::console::{ConsoleClient, Dev};
use support::eventually;
use support::ws::{Member, next_close};

const DEADLINE: Duration = Duration::from_secs(20);

fn envelope(id: &str, session: &str, text: &str) -> String {
    json!({
        "v": 1,
        "id": id,
        "action": "sendMessage",
        "sessionId": session,
        "sender": { "connectionId": "gone-sender", "userId": "replayer" },
        "receivedAt": switchboard::sync::now_ms(),
        "payload": { "text": text },
    })
    .to_string()
}

/// The dead letters the API lists: (message id, group, reason attribute).
async fn dead(console: &ConsoleClient) -> Vec<(String, String, Option<String>)> {
    let d = console.get("/dead-letters").await;
    assert_eq!(d["available"], true);
    d["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["messageId"].as_str().unwrap().to_owned(),
                m["group"].as_str().unwrap().to_owned(),
                m["attributes"]["reason"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_api_shows_traffic_and_replays_dead_letters_in_order() {
    let dev = Dev::start().await;
    let console = ConsoleClient::open(dev.addr).await;
    let room = support::unique("room");
    let other = support::unique("other");

    // Connections: counts per stage and session go up as clients join.
    let mut alice = Member::join(&dev.ws_url(&room)).await;
    let bob = Member::join(&dev.ws_url(&room)).await;
    let _carol = Member::join(&dev.ws_url(&other)).await;
    let conns = eventually(DEADLINE, "three connections listed", || async {
        let c = console.get("/connections").await;
        (c["total"] == 3 && c["bySession"][&room] == 2).then_some(c)
    })
    .await;
    assert_eq!(conns["byStage"]["dev"], 3);
    assert_eq!(conns["bySession"][&other], 1);
    let search = console.get(&format!("/connections?q={other}")).await;
    assert_eq!(search["matched"], 1, "{search}");
    assert_eq!(search["items"][0]["sessionId"], other.as_str());
    assert_eq!(search["items"][0]["sourceIp"], "127.0.0.1");

    // A message is stored; the session shows it and its history.
    alice.say("hello", json!({})).await;
    bob.inbox.wait_text("hello", DEADLINE).await;
    let session = eventually(DEADLINE, "the session's stored message", || async {
        let s = console.get("/sessions").await;
        s["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["sessionId"] == room.as_str() && x["stored"] == 1)
            .cloned()
    })
    .await;
    assert_eq!(session["members"], 2);
    let history = console.get(&format!("/sessions/{room}/history")).await;
    assert_eq!(history["messages"][0]["payload"]["text"], "hello");
    // The session's first stored message: seq 1, also shown as the last seq.
    assert_eq!(history["messages"][0]["seq"], 1);
    assert_eq!(history["lastSeq"], 1);

    // A real poison: `direct` without `data.to` is dead-lettered by the worker.
    {
        use futures::SinkExt;
        alice
            .sink
            .send(tokio_tungstenite::tungstenite::Message::text(
                json!({"action": "direct", "data": {"text": "to nobody"}}).to_string(),
            ))
            .await
            .unwrap();
    }
    let poison = eventually(DEADLINE, "the poison in the DLQ", || async {
        let d = dead(&console).await;
        (d.len() == 1).then(|| d[0].clone())
    })
    .await;
    assert_eq!(poison.1, room, "dead-lettered in its group");
    assert!(
        poison.2.as_deref().is_some_and(|r| !r.is_empty()),
        "{poison:?}"
    );
    let queue = console.get("/queue").await;
    assert_eq!(queue["dlq"]["depth"]["visible"], 1, "{queue}");
    assert_eq!(
        queue["dlq"]["depth"]["busiestGroups"][0]["group"],
        room.as_str()
    );

    // Three dead letters of one group, as SQS's redrive leaves them.
    let m1 = dev
        .dead_letter(&room, &envelope("e-1", &room, "m1"), "d1")
        .await;
    let m2 = dev
        .dead_letter(&room, &envelope("e-2", &room, "m2"), "d2")
        .await;
    let m3 = dev
        .dead_letter(&room, &envelope("e-3", &room, "m3"), "d3")
        .await;
    let listed = dead(&console).await;
    let ids: Vec<&str> = listed.iter().map(|d| d.0.as_str()).collect();
    assert_eq!(ids, [poison.0.as_str(), &m1, &m2, &m3], "oldest first");

    // Guards: no token, a wrong token, a foreign Origin: refused, nothing moves.
    let replay_m2 = json!({ "messageId": m2 }).to_string();
    let (status, body) = console
        .post_with(
            "/dead-letters/replay",
            &replay_m2,
            &[("content-type", "application/json")],
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(body["error"].as_str().unwrap().contains("token"), "{body}");
    let (status, _) = console
        .post_with(
            "/dead-letters/replay",
            &replay_m2,
            &[("x-switchboard-console-token", &"0".repeat(64))],
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = console
        .post(
            "/dead-letters/replay",
            &replay_m2,
            &[("origin", "http://evil.example")],
        )
        .await;
    assert_eq!(status, 403);
    assert_eq!(dead(&console).await.len(), 4, "nothing moved");

    // Replaying m2 takes m1 first (its group's order), and only those: the
    // poison before them is in the group too, so it goes first as well.
    let (status, r) = console.post("/dead-letters/replay", &replay_m2, &[]).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["moved"], 3, "poison, m1, m2: {r}");
    bob.inbox.wait_text("m2", DEADLINE).await;
    let left = eventually(DEADLINE, "m3 and the poison again", || async {
        let d = dead(&console).await;
        (d.len() == 2).then_some(d)
    })
    .await;
    assert!(left.iter().any(|d| d.0 == m3), "{left:?}");
    let again = left.iter().find(|d| d.0 != m3).unwrap();
    assert_ne!(again.0, poison.0, "dead-lettered anew, with a new id");

    // Replay all: m3 arrives after m1 and m2.
    let (status, r) = console.post("/dead-letters/replay", "{}", &[]).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["moved"], 2, "{r}");
    bob.inbox.wait_text("m3", DEADLINE).await;
    let texts = bob.inbox.texts();
    let replayed: Vec<&str> = texts
        .iter()
        .map(String::as_str)
        .filter(|t| t.starts_with('m'))
        .collect();
    assert_eq!(replayed, ["m1", "m2", "m3"], "in the group's order");

    // Delete: the poison (back once more) goes for good.
    let back = eventually(DEADLINE, "the poison back in the DLQ", || async {
        let d = dead(&console).await;
        (d.len() == 1).then(|| d[0].clone())
    })
    .await;
    let (status, r) = console
        .post(&format!("/dead-letters/{}/delete", back.0), "", &[])
        .await;
    assert_eq!(status, 200, "{r}");
    assert!(dead(&console).await.is_empty());
    let (status, _) = console
        .post(&format!("/dead-letters/{}/delete", back.0), "", &[])
        .await;
    assert_eq!(status, 404);

    // Disconnect: the client gets API Gateway's 1000 close, the count drops.
    let mut dave = support::ws::connect(&dev.ws_url(&other)).await;
    let dave_id = eventually(DEADLINE, "dave listed", || async {
        let c = console.get(&format!("/connections?q={other}")).await;
        c["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["connectionId"] != search["items"][0]["connectionId"])
            .map(|x| x["connectionId"].as_str().unwrap().to_owned())
    })
    .await;
    let (status, r) = console
        .post(&format!("/connections/{dave_id}/disconnect"), "", &[])
        .await;
    assert_eq!(status, 200, "{r}");
    let close = next_close(&mut dave, DEADLINE)
        .await
        .expect("a close frame");
    assert_eq!(u16::from(close.code), 1000);
    eventually(DEADLINE, "dave gone from the list", || async {
        let c = console.get("/connections").await;
        (c["total"] == 3).then_some(())
    })
    .await;
    let (status, _) = console
        .post(&format!("/connections/{dave_id}/disconnect"), "", &[])
        .await;
    assert_eq!(status, 410);

    // Plots: per-second samples of the catalogue saw the traffic.
    let samples = eventually(DEADLINE, "samples with the traffic", || async {
        let m = console.get("/metrics").await;
        let s: Vec<Value> = m["samples"].as_array().unwrap().clone();
        let sum = |k: &str| s.iter().filter_map(|x| x[k].as_f64()).sum::<f64>();
        (sum("messagesIn") >= 2.0 && sum("deliveries") >= 2.0).then_some(s)
    })
    .await;
    assert!(samples.len() <= 300);
    assert!(
        samples
            .iter()
            .any(|x| x["deliveryP99Ms"].as_f64().is_some()),
        "a latency point"
    );

    dev.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_is_served_with_a_token_and_a_strict_policy() {
    let dev = Dev::start().await;
    let (status, page) = support::console::raw(dev.addr, "GET", "/@console/", &[], "")
        .await
        .unwrap();
    assert_eq!(status, 200);
    let page = String::from_utf8(page.to_vec()).unwrap();
    assert!(!page.contains("{{TOKEN}}"));
    // No CDN: every script and style is our own.
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "{page}"
    );
    let other = ConsoleClient::open(dev.addr).await;
    let again = ConsoleClient::open(dev.addr).await;
    assert_eq!(other.token, again.token, "one token per process");
    // A DNS-rebinding page (its own name as Host) gets nothing.
    let (status, _) = support::console::raw(
        dev.addr,
        "GET",
        "/@console/api/connections",
        &[("host", "evil.example")],
        "",
    )
    .await
    .unwrap();
    assert_eq!(status, 403);
    dev.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_management_credentials_the_console_needs_them_too() {
    let files = support::embedded::TempDir::new("sb-console-creds");
    let gateway = support::secure::parse(
        "[management]\nbind = \"loopback\"\naccess_key_id = \"AKIDCONSOLE\"\n\
         secret_access_key = \"env:SB_CONSOLE_SECRET\"\n",
        &files,
        &[("SB_CONSOLE_SECRET", "console-secret-for-the-test")],
    );
    let dev = Dev::start_with(gateway, false).await;
    let basic = |user: &str, password: &str| {
        format!(
            "Basic {}",
            data_encoding::BASE64.encode(format!("{user}:{password}").as_bytes())
        )
    };
    let get = |auth: Option<String>| {
        let addr = dev.addr;
        async move {
            let headers: Vec<(&str, &str)> = auth
                .as_deref()
                .map(|a| vec![("authorization", a)])
                .unwrap_or_default();
            support::console::raw(addr, "GET", "/@console/api/connections", &headers, "")
                .await
                .unwrap()
                .0
        }
    };
    assert_eq!(get(None).await, 401, "no credentials");
    assert_eq!(get(Some(basic("AKIDCONSOLE", "guess"))).await, 401);
    assert_eq!(
        get(Some(basic("AKIDCONSOLE", "console-secret-for-the-test"))).await,
        200
    );
    dev.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_embedded_store_the_console_says_what_it_cannot_show() {
    use switchboard::backend::embedded::EmbeddedStore;
    use switchboard::backend::{Connections, Queue};
    use switchboard::console::Console;
    use switchboard::gateway::{self, Gateway, GatewayConfig, HandlerBackend};

    // As `switchboard gateway` runs it: a gateway, no store for the console
    // (its handlers write to a queue and table the console cannot read).
    let store = EmbeddedStore::in_memory().await.unwrap();
    let migrated = store.migrate(&Default::default()).await.unwrap();
    let queue: std::sync::Arc<dyn Queue> =
        std::sync::Arc::new(store.queue(&migrated.queue_url).unwrap());
    let connections: std::sync::Arc<dyn Connections> =
        std::sync::Arc::new(store.connections("switchboard-connections", None));
    let gw = Gateway::new(
        GatewayConfig::default(),
        Some(HandlerBackend { queue, connections }),
    )
    .unwrap();
    let console = Console::new(gw.clone(), gw.metrics().registry().clone(), None).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (sample_stop, sample_stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(console.clone().sample(async {
        let _ = sample_stopped.await;
    }));
    let router = gw.router().merge(console.router());
    let server = tokio::spawn(gateway::serve(listener, gw, router, async {
        let _ = stopped.await;
    }));

    let client = ConsoleClient::open(addr).await;
    let _alice = Member::join(&format!("ws://{addr}/dev?session=room")).await;
    let c = eventually(DEADLINE, "the connection listed", || async {
        let c = client.get("/connections").await;
        (c["total"] == 1).then_some(c)
    })
    .await;
    assert_eq!(c["bySession"], Value::Null);
    assert!(
        c["sessionsUnavailable"]
            .as_str()
            .unwrap()
            .contains("switchboard gateway")
    );
    assert_eq!(client.get("/overview").await["mode"], "gateway");
    for path in [
        "/sessions",
        "/queue",
        "/dead-letters",
        "/sessions/room/history",
    ] {
        let v = client.get(path).await;
        assert_eq!(v["available"], false, "{path}: {v}");
        assert!(
            v["reason"].as_str().unwrap().contains("not available"),
            "{v}"
        );
    }
    let (status, v) = client.post("/dead-letters/replay", "{}", &[]).await;
    assert_eq!((status, &v["available"]), (200, &json!(false)));
    let samples = eventually(DEADLINE, "a sample", || async {
        let m = client.get("/metrics").await;
        m["samples"].as_array().filter(|s| !s.is_empty()).cloned()
    })
    .await;
    assert_eq!(samples[0]["deliveries"], Value::Null, "no worker here");
    assert!(samples[0]["messagesIn"].is_number());

    let _ = sample_stop.send(());
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(30), server)
        .await
        .expect("stopped")
        .unwrap()
        .unwrap();
}
