//! Sessions that survive reconnects (issue 12), as scenarios any running
//! stack passes: `dev` on the embedded store, the gateway + worker on moto,
//! before and after a `kill -9`. Real WebSocket clients only.

use std::time::Duration;

use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use switchboard::backend::{Messages, Position, StoredMessage};
use switchboard::envelope::Sender;

use super::ws::{Client, connect, send};

/// Now, epoch seconds (the unit of a stored message's TTL).
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Stores messages 1..=`last` of session `kept` with their seqs, 1 and 2
/// already past their TTL, and checks that a stale counter (`last` again)
/// writes nothing.
pub async fn store_kept_past_retention(table: &dyn Messages, last: u64) {
    let now = now_secs();
    for seq in 1..=last {
        let expires = if seq <= 2 { now - 10 } else { now + 3600 };
        assert!(
            table
                .put_sequenced(&stored("kept", seq, expires))
                .await
                .unwrap()
        );
    }
    assert!(
        !table
            .put_sequenced(&stored("kept", last, now + 3600))
            .await
            .unwrap(),
        "a stale counter is refused"
    );
}

/// Message `m{seq}` of session `session`, stored with `seq` (received 1 ms
/// after the one before), live until `expires_at` (epoch seconds).
pub fn stored(session: &str, seq: u64, expires_at: i64) -> StoredMessage {
    StoredMessage {
        session_id: session.into(),
        id: format!("m{seq}"),
        action: "sendMessage".into(),
        sender: Sender {
            connection_id: "old".into(),
            user_id: None,
        },
        received_at: 1_700_000_000_000 + seq as i64,
        position: Position::at(1_700_000_000_000 + seq as i64),
        payload: json!({"text": format!("m{seq}")}),
        expires_at,
        seq: Some(seq),
    }
}

/// The next frame of type `kind` within `deadline`, skipping other types
/// (join/leave, history, ...). Panics on close or timeout.
pub async fn next_of(c: &mut Client, kind: &str, deadline: Duration) -> Value {
    use futures::StreamExt;
    let end = tokio::time::Instant::now() + deadline;
    loop {
        match tokio::time::timeout_at(end, c.next()).await {
            Err(_) => panic!("no {kind} frame within {deadline:?}"),
            Ok(Some(Ok(Message::Text(t)))) => {
                let v: Value = serde_json::from_str(&t).expect("JSON frame");
                if v["type"] == kind {
                    return v;
                }
            }
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            Ok(other) => panic!("waiting for {kind}: got {other:?}"),
        }
    }
}

/// Sends a `sendMessage` whose text is `text`.
pub async fn say(c: &mut Client, text: &str) {
    send(
        c,
        json!({"action": "sendMessage", "data": {"text": text}}).to_string(),
    )
    .await;
}

/// The next `n` message frames.
pub async fn messages(c: &mut Client, n: usize, deadline: Duration) -> Vec<Value> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(next_of(c, "message", deadline).await);
    }
    out
}

/// `(seq, text)` of message frames.
pub fn seq_texts(frames: &[Value]) -> Vec<(u64, String)> {
    frames
        .iter()
        .map(|f| {
            (
                f["seq"].as_u64().unwrap_or_else(|| panic!("no seq in {f}")),
                f["payload"]["text"].as_str().unwrap_or("?").to_owned(),
            )
        })
        .collect()
}

/// What resuming from `since` until `more` is false returned: every
/// resumed message in order, the frames themselves, and the `complete` of
/// the first frame.
pub struct Resumed {
    /// The messages of every frame, in order.
    pub messages: Vec<Value>,
    /// The frames (without their messages).
    pub frames: Vec<Value>,
}

/// Sends `resume` from `since`, and again from the last seq received while
/// a frame says `more`.
pub async fn resume_all(c: &mut Client, since: u64, deadline: Duration) -> Resumed {
    let mut since = since;
    let mut out = Resumed {
        messages: Vec::new(),
        frames: Vec::new(),
    };
    for _ in 0..1000 {
        send(
            c,
            json!({"action": "resume", "data": {"since": since}}).to_string(),
        )
        .await;
        let mut f = next_of(c, "resumed", deadline).await;
        assert_eq!(f["since"], since, "{f}");
        let msgs = f["messages"].as_array().cloned().unwrap_or_default();
        if let Some(last) = msgs.last() {
            since = last["seq"].as_u64().expect("resumed messages carry seq");
        }
        out.messages.extend(msgs);
        f["messages"] = json!(null);
        let more = f["more"] == true;
        out.frames.push(f);
        if !more {
            return out;
        }
    }
    panic!("resume never ended");
}

/// Member B holds messages 1..=3, drops its connection, 50 messages are sent
/// meanwhile, B reconnects and resumes from 3: it gets exactly those 50 in
/// order with seq 4..=53, `complete`, then the live ones from 54 with no gap
/// and no duplicate. `url` is a WebSocket URL of a new session.
pub async fn resume_after_reconnect(url: &str, deadline: Duration) {
    let mut a = connect(url).await;
    let mut b = connect(url).await;
    for i in 0..3 {
        say(&mut a, &format!("before-{i}")).await;
    }
    let held = seq_texts(&messages(&mut b, 3, deadline).await);
    assert_eq!(
        held,
        (0..3)
            .map(|i| (i + 1, format!("before-{i}")))
            .collect::<Vec<_>>(),
        "seq starts at 1 and follows queue order"
    );
    b.close(None).await.expect("close");
    drop(b);

    for i in 0..50 {
        say(&mut a, &format!("missed-{i}")).await;
    }
    // All 50 stored: the sender got them back.
    let seen = seq_texts(&messages(&mut a, 53, deadline).await);
    assert_eq!(seen.last().unwrap(), &(53, "missed-49".to_owned()));

    let mut b = connect(url).await;
    let resumed = resume_all(&mut b, 3, deadline).await;
    let got = seq_texts(&resumed.messages);
    let want: Vec<(u64, String)> = (0..50).map(|i| (4 + i, format!("missed-{i}"))).collect();
    assert_eq!(got, want, "exactly the 50 missed, in order, seq contiguous");
    let first = &resumed.frames[0];
    assert_eq!(first["complete"], true, "{first}");
    assert_eq!(first["last"], 53, "{first}");

    for i in 0..5 {
        say(&mut a, &format!("live-{i}")).await;
    }
    let live = seq_texts(&messages(&mut b, 5, deadline).await);
    let want: Vec<(u64, String)> = (0..5).map(|i| (54 + i, format!("live-{i}"))).collect();
    assert_eq!(
        live, want,
        "the live stream goes on right after the resumed"
    );
}

/// Bad `since` values are answered with a `bad_request` error frame and
/// change nothing: the next stored message takes the next seq. The session
/// holds `last` messages already.
pub async fn bad_resumes_are_refused(c: &mut Client, last: u64, deadline: Duration) {
    for since in [
        json!(-1),
        json!("3"),
        json!(1.5),
        json!(last + 1),
        json!(null),
    ] {
        send(
            c,
            json!({"action": "resume", "data": {"since": since}}).to_string(),
        )
        .await;
        let e = next_of(c, "error", deadline).await;
        assert_eq!(e["code"], "bad_request", "since {since}: {e}");
        assert!(
            e["message"].as_str().unwrap().contains("since"),
            "the error names the field: {e}"
        );
    }
    say(c, "after-bad").await;
    let m = next_of(c, "message", deadline).await;
    assert_eq!(m["seq"], last + 1, "{m}");
}
