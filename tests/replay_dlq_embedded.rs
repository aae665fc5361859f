//! `replay-dlq` on the embedded queue (the same code as on SQS, through the
//! `Queue` trait): group order, `--group`, `--max`, dry run, and the one thing
//! moto cannot show: SQS's 5-minute deduplication window, which the embedded
//! queue keeps after a delete, swallows the re-send of a message that a
//! crashed run had already sent and that a worker has already consumed.
//! Also: a copy that is dead-lettered again during the run is not moved a
//! second time (a poison message and a fast worker made it go round).

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use switchboard::backend::embedded::EmbeddedStore;
use switchboard::backend::{
    OutgoingMessage, Queue, QueueInfo, QueueMessage, ReceiveRequest, Result as BackendResult,
};
use switchboard::ops::migrate::Names;
use switchboard::ops::replay::{self, Event, ReplayOptions, SkipReason, replay_dedup_id};

struct Stack {
    store: EmbeddedStore,
    queue_url: String,
    dlq_url: String,
}

async fn stack(dir: Option<&std::path::Path>) -> Stack {
    let store = match dir {
        Some(d) => EmbeddedStore::open(d).await.unwrap(),
        None => EmbeddedStore::in_memory().await.unwrap(),
    };
    let m = store
        .migrate(&Names {
            connections_table: "switchboard-connections".into(),
            messages_table: "switchboard-messages".into(),
            queue: "switchboard-inbound.fifo".into(),
            dlq: "switchboard-inbound-dlq.fifo".into(),
        })
        .await
        .unwrap();
    Stack {
        store,
        queue_url: m.queue_url,
        dlq_url: m.dlq_url,
    }
}

/// Dead letters `{group}-m{i}` interleaved across groups, with a `reason`.
async fn seed(dlq: &dyn Queue, groups: &[&str], n: usize) -> BTreeMap<String, Vec<String>> {
    let mut want: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for i in 0..n {
        for g in groups {
            let body = format!("{g}-m{i:02}");
            want.entry(g.to_string()).or_default().push(body.clone());
            dlq.send(&OutgoingMessage {
                body: body.clone(),
                group_id: g.to_string(),
                dedup_id: format!("src-{body}"),
                attributes: BTreeMap::from([("reason".into(), format!("poison {g}"))]),
            })
            .await
            .unwrap();
        }
    }
    want
}

fn req() -> ReceiveRequest {
    ReceiveRequest {
        max_messages: 10,
        wait: Duration::ZERO,
        visibility: Duration::from_secs(30),
    }
}

/// Receives and deletes everything; bodies per group in the order received.
async fn drain(q: &dyn Queue) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for _ in 0..100 {
        let got = q.receive(req()).await.unwrap();
        if got.is_empty() {
            return out;
        }
        let handles: Vec<&str> = got.iter().map(|m| m.receipt_handle.as_str()).collect();
        for r in q.delete_batch(&handles).await.unwrap() {
            r.unwrap();
        }
        for m in got {
            out.entry(m.group_id).or_default().push(m.body);
        }
    }
    panic!("queue did not drain");
}

fn opts() -> ReplayOptions {
    ReplayOptions {
        wait: Duration::ZERO,
        ..ReplayOptions::default()
    }
}

#[tokio::test]
async fn group_max_dry_run_and_order_on_the_embedded_queue() {
    let s = stack(None).await;
    let target = s.store.queue(&s.queue_url).unwrap();
    let dlq = s.store.queue(&s.dlq_url).unwrap();
    let want = seed(&dlq, &["a", "b", "c"], 5).await;

    let dry = replay::replay(
        &dlq,
        &target,
        &ReplayOptions {
            dry_run: true,
            ..opts()
        },
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!((dry.moved, dry.skipped, dry.failed), (15, 0, 0));
    assert_eq!(dlq.info().await.unwrap().approximate_messages, 15);
    assert!(drain(&target).await.is_empty(), "dry run sent nothing");

    let first = replay::replay(
        &dlq,
        &target,
        &ReplayOptions {
            group: Some("b".into()),
            max: Some(3),
            ..opts()
        },
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!((first.moved, first.failed), (3, 0));
    let info = dlq.info().await.unwrap();
    assert_eq!(
        (info.approximate_messages, info.approximate_in_flight),
        (12, 0)
    );

    let rest = replay::replay(&dlq, &target, &opts(), |_| {})
        .await
        .unwrap();
    assert_eq!((rest.moved, rest.skipped, rest.failed), (12, 0, 0));
    let got = drain(&target).await;
    assert_eq!(got["a"], want["a"]);
    assert_eq!(got["c"], want["c"]);
    assert_eq!(got["b"], want["b"], "b's first three, then the rest");
}

#[tokio::test]
async fn a_rerun_after_a_crash_does_not_deliver_a_consumed_message_twice() {
    let s = stack(None).await;
    let target = s.store.queue(&s.queue_url).unwrap();
    let dlq = s.store.queue(&s.dlq_url).unwrap();
    seed(&dlq, &["a"], 2).await;

    // A run that crashed after sending the first dead letter but before
    // deleting it: the copy went out under the derived id, and a worker has
    // since consumed (deleted) it.
    let head = dlq
        .receive(ReceiveRequest {
            max_messages: 1,
            ..req()
        })
        .await
        .unwrap()
        .remove(0);
    assert_eq!(head.body, "a-m00");
    target
        .send(&OutgoingMessage {
            body: head.body.clone(),
            group_id: head.group_id.clone(),
            dedup_id: replay_dedup_id(&head.message_id).unwrap(),
            attributes: BTreeMap::new(),
        })
        .await
        .unwrap();
    let consumed = drain(&target).await;
    assert_eq!(consumed["a"], ["a-m00"]);
    // The crashed run's messages come back (here at once; on SQS after their
    // visibility timeout).
    for r in dlq
        .change_visibility_batch(&[(head.receipt_handle.as_str(), Duration::ZERO)])
        .await
        .unwrap()
    {
        r.unwrap();
    }

    let s2 = replay::replay(&dlq, &target, &opts(), |_| {})
        .await
        .unwrap();
    assert_eq!((s2.moved, s2.failed), (2, 0));
    assert_eq!(dlq.info().await.unwrap().approximate_messages, 0);
    // Within 5 minutes the re-sent copy has the same deduplication id and is
    // dropped: only the second message arrives.
    assert_eq!(
        drain(&target).await,
        BTreeMap::from([("a".to_owned(), vec!["a-m01".to_owned()])])
    );
}

#[tokio::test]
async fn the_binary_replays_an_embedded_store_with_data_dir() {
    let dir = std::env::temp_dir().join(support::unique("replay-embedded"));
    {
        let s = stack(Some(&dir)).await;
        let dlq = s.store.queue(&s.dlq_url).unwrap();
        seed(&dlq, &["a", "b"], 2).await;
    } // closed: one process per directory
    let bin = env!("CARGO_BIN_EXE_switchboard");
    let run = |args: &[&str]| {
        std::process::Command::new(bin)
            .args(args)
            .env("SWITCHBOARD_LOG_FORMAT", "json")
            .env_remove("SWITCHBOARD_QUEUE_URL")
            .env_remove("SWITCHBOARD_DLQ_URL")
            .output()
            .unwrap()
    };
    let d = dir.to_str().unwrap();
    let to = "embedded://switchboard-inbound.fifo";

    let out = run(&["replay-dlq", "--data-dir", d, "--to", to, "--dry-run"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains(r#"group=a "#) && stdout.contains(r#"reason="poison a""#));
    assert!(stdout.ends_with("dry run: would move 4, skipped 0, failed 0 (nothing was changed)\n"));

    let out = run(&["replay-dlq", "--data-dir", d, "--to", to]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "moved 4, skipped 0, failed 0\n"
    );

    // Usage errors: an embedded queue without --data-dir, a queue that does not exist.
    let out = run(&["replay-dlq", "--to", to]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--data-dir"));
    let out = run(&[
        "replay-dlq",
        "--data-dir",
        d,
        "--to",
        "embedded://nope.fifo",
    ]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let s = stack(Some(&dir)).await;
    let got = drain(&s.store.queue(&s.queue_url).unwrap()).await;
    assert_eq!(got["a"], ["a-m00", "a-m01"]);
    assert_eq!(got["b"], ["b-m00", "b-m01"]);
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The inbound queue with a worker that fails everything it gets at once:
/// each message sent to it is dead-lettered the way the worker does it (the
/// body again, `sourceMessageId` naming the copy) before `send` returns. Both
/// queues are the real embedded ones.
struct FailsEverything {
    inbound: Box<dyn Queue>,
    dlq: Box<dyn Queue>,
}

#[async_trait::async_trait]
impl Queue for FailsEverything {
    fn url(&self) -> &str {
        self.inbound.url()
    }
    async fn receive(&self, req: ReceiveRequest) -> BackendResult<Vec<QueueMessage>> {
        self.inbound.receive(req).await
    }
    async fn delete_batch(&self, handles: &[&str]) -> BackendResult<Vec<BackendResult<()>>> {
        self.inbound.delete_batch(handles).await
    }
    async fn change_visibility_batch(
        &self,
        entries: &[(&str, Duration)],
    ) -> BackendResult<Vec<BackendResult<()>>> {
        self.inbound.change_visibility_batch(entries).await
    }
    async fn send(&self, msg: &OutgoingMessage) -> BackendResult<String> {
        let id = self.inbound.send(msg).await?;
        self.dlq
            .send(&OutgoingMessage {
                body: msg.body.clone(),
                group_id: msg.group_id.clone(),
                dedup_id: id.clone(),
                attributes: BTreeMap::from([
                    ("reason".into(), "poison again".into()),
                    ("sourceMessageId".into(), id.clone()),
                ]),
            })
            .await?;
        Ok(id)
    }
    async fn info(&self) -> BackendResult<QueueInfo> {
        self.inbound.info().await
    }
}

#[tokio::test]
async fn a_copy_dead_lettered_again_during_the_run_is_left_for_the_next() {
    let s = stack(None).await;
    let dlq = s.store.queue(&s.dlq_url).unwrap();
    let target = FailsEverything {
        inbound: Box::new(s.store.queue(&s.queue_url).unwrap()),
        dlq: Box::new(s.store.queue(&s.dlq_url).unwrap()),
    };
    seed(&dlq, &["a", "b"], 2).await;

    // Moving the copies back as they arrive never ends: each move makes one.
    let mut events = Vec::new();
    let run = tokio::time::timeout(
        Duration::from_secs(20),
        replay::replay(&dlq, &target, &opts(), |e| events.push(e.clone())),
    )
    .await
    .expect("the run ended")
    .unwrap();
    assert_eq!(
        (run.moved, run.skipped, run.failed),
        (4, 4, 0),
        "{events:?}"
    );
    let moved: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            Event::Moved { new_id, .. } => Some(new_id.as_str()),
            _ => None,
        })
        .collect();
    let again = events
        .iter()
        .filter(|e| {
            matches!(
                e,
                Event::Skipped {
                    why: SkipReason::DeadAgain,
                    ..
                }
            )
        })
        .count();
    assert_eq!(again, 4, "{events:?}");

    // The four that came back wait in the dead-letter queue, visible again,
    // each naming a copy this run sent.
    let left = dlq.receive(req()).await.unwrap();
    assert_eq!(left.len(), 4, "{left:?}");
    for m in &left {
        let source = m.attributes["sourceMessageId"].as_str();
        assert!(moved.contains(&source), "{source} in {moved:?}");
    }
}
