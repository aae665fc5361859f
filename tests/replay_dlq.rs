//! `switchboard replay-dlq` on SQS FIFO (moto): dead letters written by the real
//! worker come back in per-group order and are delivered; `--group`, `--max`
//! and `--dry-run` do what they say; a failed send or a killed run loses
//! nothing; the binary's exit codes.
#![cfg(feature = "aws-tests")]

mod support;

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use aws_sdk_sqs::types::{
    MessageAttributeValue, MessageSystemAttributeName, SendMessageBatchRequestEntry,
};
use support::aws::{self, Rig, Stack, envelope, message};
use support::eventually;
use support::fault_proxy::{Fault, FaultProxy};
use switchboard::backend::Queue;
use switchboard::backend::aws::AwsBackend;
use switchboard::ops::replay::{self, Event, ReplayOptions};

/// One message as found in a queue.
#[derive(Debug, Clone)]
struct Found {
    group: String,
    body: serde_json::Value,
    dedup_id: String,
    attributes: BTreeMap<String, String>,
}

impl Found {
    fn envelope_id(&self) -> String {
        self.body["id"].as_str().unwrap().to_owned()
    }
}

/// Receives and deletes until the queue is empty; returns what it found, in the
/// order received (for a FIFO queue: each group in send order).
async fn drain(backend: &AwsBackend, url: &str) -> Vec<Found> {
    let mut out = Vec::new();
    for _ in 0..200 {
        let got = backend
            .sqs()
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .expect("ReceiveMessage");
        if got.messages().is_empty() {
            return out;
        }
        for m in got.messages() {
            let sys = |n: MessageSystemAttributeName| {
                m.attributes()
                    .and_then(|a| a.get(&n))
                    .cloned()
                    .unwrap_or_default()
            };
            out.push(Found {
                group: sys(MessageSystemAttributeName::MessageGroupId),
                body: serde_json::from_str(m.body().unwrap()).unwrap(),
                dedup_id: sys(MessageSystemAttributeName::MessageDeduplicationId),
                attributes: m
                    .message_attributes()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), v.string_value().unwrap_or_default().to_owned()))
                    .collect(),
            });
            backend
                .sqs()
                .delete_message()
                .queue_url(url)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .expect("DeleteMessage");
        }
    }
    panic!("queue {url} did not drain");
}

/// Envelope ids per group, in the order found.
fn ids_by_group(found: &[Found]) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for f in found {
        out.entry(f.group.clone())
            .or_default()
            .push(f.envelope_id());
    }
    out
}

/// (visible, in flight) of a queue.
async fn depth(backend: &AwsBackend, url: &str) -> (u64, u64) {
    let info = backend.queue(url).info().await.expect("GetQueueAttributes");
    (info.approximate_messages, info.approximate_in_flight)
}

/// Dead letters as the worker writes them: `n` per group, ids `{group}-m{i:02}`,
/// interleaved across groups; groups listed in `no_reason` get no attributes
/// (like a message SQS's own redrive moved after maxReceiveCount).
async fn seed_dlq(
    backend: &AwsBackend,
    stack: &Stack,
    groups: &[&str],
    n: usize,
    no_reason: &[&str],
) -> BTreeMap<String, Vec<String>> {
    let mut want: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut entries = Vec::new();
    for i in 0..n {
        for g in groups {
            let id = format!("{g}-m{i:02}");
            want.entry(g.to_string()).or_default().push(id.clone());
            let mut e = SendMessageBatchRequestEntry::builder()
                .id(format!("e{}", entries.len() % 10))
                .message_body(envelope(
                    &id,
                    "shout",
                    g,
                    "c1",
                    serde_json::json!({ "n": i }),
                ))
                .message_group_id(*g)
                .message_deduplication_id(format!("src-{id}"));
            if !no_reason.contains(g) {
                for (k, v) in [
                    ("reason", format!("unknown action `shout` ({g})")),
                    ("errorType", "unknown_action".to_owned()),
                    ("sourceMessageId", format!("src-{id}")),
                    ("sourceQueue", stack.queue_url.clone()),
                    ("receiveCount", "1".to_owned()),
                    ("deadLetteredAt", "1732723200123".to_owned()),
                ] {
                    e = e.message_attributes(
                        k,
                        MessageAttributeValue::builder()
                            .data_type("String")
                            .string_value(v)
                            .build()
                            .unwrap(),
                    );
                }
            }
            entries.push(e.build().unwrap());
        }
    }
    for chunk in entries.chunks(10) {
        let out = backend
            .sqs()
            .send_message_batch()
            .queue_url(&stack.dlq_url)
            .set_entries(Some(chunk.to_vec()))
            .send()
            .await
            .expect("SendMessageBatch");
        assert!(out.failed().is_empty(), "{:?}", out.failed());
    }
    want
}

fn options() -> ReplayOptions {
    ReplayOptions {
        wait: Duration::from_secs(1),
        ..ReplayOptions::default()
    }
}

/// The real binary, pointed at `endpoint` (moto or a proxy in front of it).
fn switchboard(endpoint: &str, args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchboard"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("SWITCHBOARD_LOG_FORMAT", "json")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn run_bin(endpoint: &str, args: &[&str]) -> Ran {
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        switchboard(endpoint, args).output(),
    )
    .await
    .expect("switchboard finished within 120 s")
    .expect("run switchboard");
    Ran {
        code: out.status.code().expect("exited, not killed"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dead_letters_of_the_worker_come_back_in_group_order_and_are_delivered() {
    const GROUPS: usize = 5;
    const PER_GROUP: usize = 20;
    let rig = Rig::start("replay").await;
    let (backend, stack, server) = (&rig.backend, &rig.stack, &rig.server);
    for g in 0..GROUPS {
        rig.connect(&format!("room-{g}"), &[format!("c{g}")]).await;
    }

    // 1. `shout` is not a route of the worker: every message is poison and the
    //    worker dead-letters it, group by group in order.
    let worker = rig.worker(&[]).await;
    let mut sent = Vec::new();
    for i in 0..PER_GROUP {
        for g in 0..GROUPS {
            let session = format!("room-{g}");
            let id = format!("{session}-m{i:02}");
            sent.push(message(
                &id,
                "shout",
                &session,
                &format!("c{g}"),
                serde_json::json!({ "n": i }),
            ));
        }
    }
    rig.send_all(&sent).await;
    eventually(
        Duration::from_secs(120),
        "every message dead-lettered",
        || async {
            (depth(backend, &stack.dlq_url).await.0 == (GROUPS * PER_GROUP) as u64).then_some(())
        },
    )
    .await;
    worker.stop().await;
    assert_eq!(depth(backend, &stack.queue_url).await, (0, 0));

    // 2. Replay everything.
    let target = backend.queue(&stack.queue_url);
    let dlq = backend.queue(&stack.dlq_url);
    let mut events = Vec::new();
    let summary = replay::replay(&dlq, &target, &options(), |e| events.push(e.clone()))
        .await
        .expect("replay");
    assert_eq!(
        (summary.moved, summary.skipped, summary.failed),
        (GROUPS * PER_GROUP, 0, 0),
        "{events:?}"
    );
    assert_eq!(depth(backend, &stack.dlq_url).await, (0, 0), "DLQ empty");

    // 3. A worker that knows `shout` delivers them, each session in its order.
    let worker = rig.worker(&["--route", "shout=broadcast"]).await;
    let messages = |posts: &[support::connections_server::Post]| {
        posts
            .iter()
            .filter(|p| p.frame["type"] == "message")
            .count()
    };
    server
        .wait_until(
            Duration::from_secs(120),
            "every replayed message delivered",
            |p| messages(p) >= GROUPS * PER_GROUP,
        )
        .await;
    worker.stop().await;
    for g in 0..GROUPS {
        let got: Vec<String> = server
            .posts_to(&format!("c{g}"))
            .iter()
            .filter(|f| f["type"] == "message")
            .map(|f| f["id"].as_str().unwrap().to_owned())
            .collect();
        let want: Vec<String> = (0..PER_GROUP)
            .map(|i| format!("room-{g}-m{i:02}"))
            .collect();
        assert_eq!(got, want, "room-{g} delivered out of order or twice");
    }
    assert_eq!(messages(&server.posts()), GROUPS * PER_GROUP);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_and_max_move_only_what_was_asked_in_order() {
    let backend = aws::backend().await;
    let stack = aws::migrated_stack(&backend, "replay-group").await;
    let want = seed_dlq(&backend, &stack, &["a", "b", "c"], 6, &["c"]).await;
    let target = backend.queue(&stack.queue_url);
    let dlq = backend.queue(&stack.dlq_url);

    // --group b --max 4: the first four of b, nothing else.
    let mut events = Vec::new();
    let opts = ReplayOptions {
        group: Some("b".into()),
        max: Some(4),
        ..options()
    };
    let s = replay::replay(&dlq, &target, &opts, |e| events.push(e.clone()))
        .await
        .unwrap();
    assert_eq!((s.moved, s.failed), (4, 0), "{events:?}");
    assert!(
        events.iter().all(|e| match e {
            Event::Moved { group, .. } => group == "b",
            Event::Skipped { group, .. } => group != "b",
            _ => false,
        }),
        "{events:?}"
    );
    // Everything else is visible again at once (released, not left in flight).
    assert_eq!(depth(&backend, &stack.dlq_url).await, (14, 0));
    let moved = drain(&backend, &stack.queue_url).await;
    assert_eq!(
        ids_by_group(&moved),
        BTreeMap::from([("b".to_owned(), want["b"][..4].to_vec())])
    );
    // The replayed copy: body and group unchanged, the worker's metadata gone,
    // the reason kept under another name, a dedup id derived from the DLQ id.
    for m in &moved {
        let a = &m.attributes;
        assert_eq!(
            a.keys().map(String::as_str).collect::<Vec<_>>(),
            ["deadLetterReason", "replayOf", "replayedAt"],
            "{a:?}"
        );
        assert_eq!(a["deadLetterReason"], "unknown action `shout` (b)");
        assert_eq!(m.dedup_id, format!("replay-{}", a["replayOf"]));
        assert_eq!(m.body["action"], "shout");
    }

    // Then everything: the rest of b after its first four, a and c whole.
    let s = replay::replay(&dlq, &target, &options(), |_| {})
        .await
        .unwrap();
    assert_eq!((s.moved, s.skipped, s.failed), (14, 0, 0));
    let moved = drain(&backend, &stack.queue_url).await;
    let got = ids_by_group(&moved);
    assert_eq!(got["a"], want["a"]);
    assert_eq!(got["b"], want["b"][4..]);
    assert_eq!(got["c"], want["c"]);
    // c came from SQS's own redrive (no attributes): no reason to carry.
    assert!(
        moved
            .iter()
            .filter(|m| m.group == "c")
            .all(|m| !m.attributes.contains_key("deadLetterReason"))
    );
    assert_eq!(depth(&backend, &stack.dlq_url).await, (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_prints_what_would_move_and_changes_nothing() {
    let backend = aws::backend().await;
    let stack = aws::migrated_stack(&backend, "replay-dry").await;
    seed_dlq(&backend, &stack, &["a", "b"], 3, &["b"]).await;
    let endpoint = aws::endpoint();

    let r = run_bin(
        &endpoint,
        &[
            "replay-dlq",
            "--from",
            &stack.dlq_url,
            "--to",
            &stack.queue_url,
            "--dry-run",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    let would: Vec<&&str> = lines
        .iter()
        .filter(|l| l.starts_with("would move: "))
        .collect();
    assert_eq!(would.len(), 6, "{}", r.stdout);
    for l in &would {
        if l.contains("group=a ") {
            assert!(l.ends_with(r#"reason="unknown action `shout` (a)""#), "{l}");
        } else {
            assert!(
                l.contains("group=b ") && l.ends_with(r#"reason="-""#),
                "{l}"
            );
        }
    }
    assert_eq!(
        lines.last().copied(),
        Some("dry run: would move 6, skipped 0, failed 0 (nothing was changed)")
    );
    // Nothing moved, nothing left in flight.
    assert_eq!(depth(&backend, &stack.dlq_url).await, (6, 0));
    assert_eq!(depth(&backend, &stack.queue_url).await, (0, 0));

    // With --max, and the flags from the environment.
    let mut cmd = switchboard(&endpoint, &["replay-dlq"]);
    cmd.env("SWITCHBOARD_DLQ_URL", &stack.dlq_url)
        .env("SWITCHBOARD_QUEUE_URL", &stack.queue_url)
        .env("SWITCHBOARD_REPLAY_DRY_RUN", "true")
        .env("SWITCHBOARD_REPLAY_MAX", "2");
    let out = cmd.output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert_eq!(stdout.matches("would move: ").count(), 2, "{stdout}");
    assert!(stdout.contains("dry run: would move 2,"), "{stdout}");
    assert_eq!(depth(&backend, &stack.dlq_url).await, (6, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_send_leaves_the_message_and_the_rest_of_its_group_in_the_dlq() {
    let backend = aws::backend().await;
    let stack = aws::migrated_stack(&backend, "replay-fail").await;
    let want = seed_dlq(&backend, &stack, &["a"], 4, &[]).await;
    let proxy = FaultProxy::start(&aws::endpoint()).await;
    proxy.inject(
        "AmazonSQS.SendMessage",
        Fault {
            status: 500,
            error_type: "InternalError",
            times: 1000,
        },
    );

    let args = [
        "replay-dlq",
        "--from",
        &stack.dlq_url,
        "--to",
        &stack.queue_url,
    ];
    let r = run_bin(&proxy.url, &args).await;
    assert_eq!(r.code, 1, "stdout: {}\nstderr: {}", r.stdout, r.stderr);
    assert_eq!(r.stdout.trim(), "moved 0, skipped 3, failed 1");
    assert!(
        r.stderr.contains("1 dead letter(s) could not be replayed"),
        "{}",
        r.stderr
    );
    assert!(proxy.seen("AmazonSQS.SendMessage") >= 1);
    // Nothing lost, nothing moved, nothing left invisible.
    assert_eq!(depth(&backend, &stack.dlq_url).await, (4, 0));
    assert_eq!(depth(&backend, &stack.queue_url).await, (0, 0));

    // Once the target accepts sends again, the group moves whole and in order.
    let r = run_bin(&aws::endpoint(), &args).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout.trim(), "moved 4, skipped 0, failed 0");
    let got = ids_by_group(&drain(&backend, &stack.queue_url).await);
    assert_eq!(got["a"], want["a"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_between_send_and_delete_loses_nothing_and_a_rerun_completes_it() {
    let backend = aws::backend().await;
    let stack = aws::migrated_stack(&backend, "replay-kill").await;
    let groups = ["a", "b", "c"];
    let want = seed_dlq(&backend, &stack, &groups, 10, &[]).await;
    let total: usize = want.values().map(Vec::len).sum();
    let proxy = FaultProxy::start(&aws::endpoint()).await;
    // Eight deletes go through; the ninth never comes back: the process is
    // then killed with messages sent but not yet deleted.
    proxy.hold_after("AmazonSQS.DeleteMessageBatch", 8);
    let args = [
        "replay-dlq",
        "--from",
        &stack.dlq_url,
        "--to",
        &stack.queue_url,
        "--visibility-timeout",
        "2s",
    ];
    let mut child = switchboard(&proxy.url, &args).spawn().unwrap();
    eventually(
        Duration::from_secs(60),
        "a delete held by the proxy",
        || async { (proxy.held("AmazonSQS.DeleteMessageBatch") >= 1).then_some(()) },
    )
    .await;
    child.kill().await.unwrap();

    // Killed: every message is in the DLQ, in the target, or (sent but not
    // deleted) in both; at most the in-flight ones twice.
    let (dlq_visible, dlq_in_flight) = depth(&backend, &stack.dlq_url).await;
    let (target_visible, _) = depth(&backend, &stack.queue_url).await;
    assert!(dlq_in_flight >= 1, "the held message is still in the DLQ");
    assert!(
        target_visible >= 9,
        "eight moved plus the one whose delete was held: {target_visible}"
    );
    let dlq_total = (dlq_visible + dlq_in_flight) as usize;
    assert!(dlq_total + target_visible as usize >= total);
    assert!(
        dlq_total + target_visible as usize <= total + groups.len(),
        "duplicates beyond one in-flight message per group"
    );

    // The dead run's messages come back after their 2 s visibility timeout.
    eventually(
        Duration::from_secs(30),
        "the killed run's messages visible again",
        || async { (depth(&backend, &stack.dlq_url).await.1 == 0).then_some(()) },
    )
    .await;
    let r = run_bin(&aws::endpoint(), &args).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(depth(&backend, &stack.dlq_url).await, (0, 0));

    // Each message exactly once: the re-sent copy of a message sent before the
    // kill has the same deduplication id, so the queue dropped it. In order.
    let found = drain(&backend, &stack.queue_url).await;
    assert_eq!(found.len(), total, "{:?}", ids_by_group(&found));
    assert_eq!(ids_by_group(&found), want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_and_usage_errors() {
    let backend = aws::backend().await;
    let stack = aws::migrated_stack(&backend, "replay-exit").await;
    let endpoint = aws::endpoint();

    let usage: &[(&[&str], &str)] = &[
        (
            &["replay-dlq", "--to", "http://127.0.0.1:1/q"],
            "ending in .fifo",
        ),
        (&["replay-dlq", "--from", &stack.dlq_url], "--to"),
        (
            &[
                "replay-dlq",
                "--from",
                &stack.dlq_url,
                "--to",
                &stack.dlq_url,
            ],
            "different queues",
        ),
        (
            &[
                "replay-dlq",
                "--to",
                &format!("{endpoint}/123456789012/no-such-queue.fifo"),
            ],
            "no such queue",
        ),
        (
            &["replay-dlq", "--to", &stack.queue_url, "--max", "0"],
            "at least 1",
        ),
    ];
    for (args, needle) in usage {
        let r = run_bin(&endpoint, args).await;
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        let err = r.stderr.lines().last().unwrap_or_default();
        assert!(err.contains(needle), "{args:?}: {}", r.stderr);
    }

    // Without --from, the DLQ comes from the queue's RedrivePolicy.
    seed_dlq(&backend, &stack, &["a"], 2, &[]).await;
    let r = run_bin(&endpoint, &["replay-dlq", "--to", &stack.queue_url]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout.trim(), "moved 2, skipped 0, failed 0");
    assert_eq!(depth(&backend, &stack.queue_url).await.0, 2);

    // An empty DLQ: nothing to do is success.
    let r = run_bin(&endpoint, &["replay-dlq", "--to", &stack.queue_url]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout.trim(), "moved 0, skipped 0, failed 0");
}
