//! `seq` across crashes (issue 12): `kill -9` of `switchboard dev` (embedded
//! store) and of the worker binary (moto) in the middle of a session's
//! stream, then a restart: every stored message has one `seq`, 1..=N with no
//! gap and no repeat, and a client that resumes gets them all.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;
use support::embedded::TempDir;
use support::process::DevProc;
use support::sessions::{messages, next_of, resume_all, say, seq_texts};
use support::ws::connect;

const DEADLINE: Duration = Duration::from_secs(60);

/// Checks what a resume from 0 returned after the crash: seq 1..=N
/// contiguous, every text stored once, and (when `in_order`) the texts in
/// the order they were sent. Returns N.
fn check_contiguous(resumed: &[Value], sent: &[String], in_order: bool) -> u64 {
    let got = seq_texts(resumed);
    let seqs: Vec<u64> = got.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        seqs,
        (1..=got.len() as u64).collect::<Vec<_>>(),
        "seq contiguous from 1, none reused, none skipped"
    );
    let mut seen = BTreeMap::new();
    for (seq, text) in &got {
        assert!(
            seen.insert(text.clone(), *seq).is_none(),
            "{text} stored twice"
        );
        assert!(sent.contains(text), "{text} was never sent");
    }
    if in_order {
        let order: Vec<usize> = got
            .iter()
            .map(|(_, t)| sent.iter().position(|s| s == t).unwrap())
            .collect();
        assert!(
            order.windows(2).all(|w| w[0] < w[1]),
            "send order: {order:?}"
        );
    }
    got.len() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seq_stays_contiguous_across_a_kill_9_of_dev() {
    let dir = TempDir::new("sessions-kill-dev");
    let dev = DevProc::start(dir.path(), &[]).await;
    let url = dev.ws_url("crash");
    let mut a = connect(&url).await;
    let mut sent: Vec<String> = (0..150).map(|i| format!("before-{i}")).collect();
    for t in &sent {
        say(&mut a, t).await;
    }
    // Some are handled, the rest are queued or on their way when it dies.
    let held = seq_texts(&messages(&mut a, 20, DEADLINE).await);
    dev.proc.kill9().await;
    drop(a);

    let dev = DevProc::start(dir.path(), &[]).await;
    let mut b = connect(&dev.ws_url("crash")).await;
    let after: Vec<String> = (0..20).map(|i| format!("after-{i}")).collect();
    for t in &after {
        say(&mut b, t).await;
    }
    // The last one is back: everything before it in the group is stored.
    loop {
        let m = next_of(&mut b, "message", DEADLINE).await;
        if m["payload"]["text"] == "after-19" {
            break;
        }
    }
    sent.extend(after.iter().cloned());
    let all = resume_all(&mut b, 0, DEADLINE).await;
    assert!(all.frames.iter().all(|f| f["complete"] == true));
    let n = check_contiguous(&all.messages, &sent, true);
    let tail: Vec<String> = seq_texts(&all.messages[all.messages.len() - 20..])
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    assert_eq!(tail, after);
    // What the client held before the crash kept its seq.
    for (seq, text) in &held {
        assert_eq!(
            seq_texts(&all.messages[*seq as usize - 1..*seq as usize])[0].1,
            *text
        );
    }
    // A client that held `held.last()` resumes exactly the rest.
    let from = held.last().unwrap().0;
    let rest = resume_all(&mut b, from, DEADLINE).await;
    assert_eq!(rest.messages.len() as u64, n - from);
}

#[cfg(feature = "aws-tests")]
mod on_moto {
    use super::*;
    use support::aws;
    use support::process::Proc;
    use switchboard::gateway::GatewayConfig;

    fn worker(stack: &aws::Stack, callback: &str) -> Proc {
        let args: Vec<String> = [
            "worker",
            "--queue-url",
            &stack.queue_url,
            "--callback-url",
            callback,
            "--connections-table",
            &stack.names.connections_table,
            "--messages-table",
            &stack.names.messages_table,
            "--metrics-addr",
            "127.0.0.1:0",
            "--wait-time-seconds",
            "1",
            "--visibility-timeout",
            "5s",
            // One poller on moto: see support::aws::worker_config.
            "--pollers",
            "1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let endpoint = aws::endpoint();
        Proc::spawn(
            &args,
            &[
                ("AWS_ENDPOINT_URL", endpoint.as_str()),
                ("AWS_REGION", "us-east-1"),
                ("AWS_ACCESS_KEY_ID", "test"),
                ("AWS_SECRET_ACCESS_KEY", "test"),
            ],
        )
    }

    /// On moto the resumed texts are not checked for send order: moto's
    /// receive is not atomic and has handed out a group's messages out of
    /// order after a kill -9 (docs/testing.md); SQS does not, and the
    /// embedded test above checks the order. Contiguity and uniqueness of
    /// `seq` are what the transaction guarantees whatever the order.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn seq_stays_contiguous_across_a_kill_9_of_the_worker() {
        let backend = aws::backend().await;
        let stack = aws::migrated_stack(&backend, "seq-kill").await;
        let gw = aws::gateway(&backend, &stack, GatewayConfig::default()).await;
        let callback = gw.endpoint("dev");
        let w = worker(&stack, &callback);
        w.log_line(DEADLINE, "worker started").await;
        let url = gw.ws_url("dev?session=crash");
        let mut a = connect(&url).await;
        let sent: Vec<String> = (0..60).map(|i| format!("m-{i}")).collect();
        for t in &sent {
            say(&mut a, t).await;
        }
        let held = seq_texts(&messages(&mut a, 10, DEADLINE).await);
        w.kill9().await;
        let w = worker(&stack, &callback);
        w.log_line(DEADLINE, "worker started").await;
        // Every message comes back once handled (at least once: a message
        // finished before the kill may be delivered again, with its seq).
        let mut live: BTreeMap<String, u64> = held.iter().map(|(s, t)| (t.clone(), *s)).collect();
        while live.len() < sent.len() {
            let m = next_of(&mut a, "message", DEADLINE).await;
            let (seq, text) = seq_texts(&[m]).remove(0);
            if let Some(old) = live.insert(text.clone(), seq) {
                assert_eq!(old, seq, "{text}: a redelivery keeps its seq");
            }
        }
        let all = resume_all(&mut a, 0, DEADLINE).await;
        let n = check_contiguous(&all.messages, &sent, false);
        assert_eq!(n, 60, "every sent message stored once");
        for (seq, text) in seq_texts(&all.messages) {
            assert_eq!(live[&text], seq, "{text}: live and resumed seq agree");
        }
        w.kill9().await;
        gw.stop().await;
    }
}
