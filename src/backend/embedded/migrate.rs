//! Applies the queue definitions of `migrations/` to an embedded store, so the
//! embedded queues get the same attributes (visibility, retention,
//! deduplication scope, redrive) as the ones `switchboard migrate` creates on AWS.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;

use super::db::Db;
use super::queue::{DedupScope, EmbeddedQueue, QueueSettings, Redrive, URL_PREFIX};
use crate::backend::{BackendError, ErrorKind, Result};
use crate::migrations::{Names, migrations};

const OP: &str = "embedded.Migrate";

/// What [`EmbeddedStore::migrate`](super::EmbeddedStore::migrate) did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migrated {
    /// One line per resource.
    pub steps: Vec<String>,
    /// URL of the inbound queue (`embedded://…`).
    pub queue_url: String,
    /// URL of its dead-letter queue.
    pub dlq_url: String,
}

fn bad(message: impl Into<String>) -> BackendError {
    BackendError::new(ErrorKind::Validation, OP, message)
}

fn number(logical_id: &str, key: &str, v: &Value) -> Result<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
    .ok_or_else(|| {
        bad(format!(
            "{logical_id}.{key} must be a whole number: got {v}"
        ))
    })
}

/// Queue settings from CloudFormation-style properties; `queues` maps logical
/// ids of queues defined so far to their names (for RedrivePolicy refs).
fn settings(
    logical_id: &str,
    props: &Value,
    queues: &HashMap<String, String>,
) -> Result<QueueSettings> {
    let props = props
        .as_object()
        .ok_or_else(|| bad(format!("{logical_id}: properties must be an object")))?;
    let mut s = QueueSettings::default();
    for (key, v) in props {
        match key.as_str() {
            // The name comes from `Names`, overridable like on AWS.
            "QueueName" => {}
            "FifoQueue" if v == &Value::Bool(true) || v == "true" => {}
            "ContentBasedDeduplication" if v == &Value::Bool(false) || v == "false" => {}
            // A throughput quota, nothing to reproduce on one machine.
            "FifoThroughputLimit" => {}
            // Every receive names its own wait (the worker always does).
            "ReceiveMessageWaitTimeSeconds" => {}
            "VisibilityTimeout" => {
                s.visibility_timeout = Duration::from_secs(number(logical_id, key, v)?);
            }
            "MessageRetentionPeriod" => {
                s.retention = Duration::from_secs(number(logical_id, key, v)?);
            }
            "DeduplicationScope" => {
                s.dedup_scope = match v.as_str() {
                    Some("queue") => DedupScope::Queue,
                    Some("messageGroup") => DedupScope::MessageGroup,
                    _ => return Err(bad(format!("{logical_id}.DeduplicationScope: got {v}"))),
                };
            }
            "RedrivePolicy" => {
                let target = v.get("deadLetterTargetArn");
                let dlq = match target.and_then(|t| t.get("ref")).and_then(Value::as_str) {
                    Some(r) => queues.get(r).cloned().ok_or_else(|| {
                        bad(format!("{logical_id}.RedrivePolicy refers to {r}, which is not defined before it"))
                    })?,
                    // A literal ARN: its last part is the queue name.
                    None => target
                        .and_then(Value::as_str)
                        .and_then(|arn| arn.rsplit(':').next())
                        .map(str::to_owned)
                        .ok_or_else(|| bad(format!("{logical_id}.RedrivePolicy has no deadLetterTargetArn")))?,
                };
                let max = v.get("maxReceiveCount").ok_or_else(|| {
                    bad(format!("{logical_id}.RedrivePolicy has no maxReceiveCount"))
                })?;
                s.redrive = Some(Redrive {
                    dead_letter_queue: dlq,
                    max_receive_count: u32::try_from(number(logical_id, "maxReceiveCount", max)?)
                        .unwrap_or(u32::MAX),
                });
            }
            // Anything else would be silently different from AWS: refuse it.
            other => {
                return Err(bad(format!(
                    "{logical_id} sets {other} = {v}, which the embedded queue does not implement"
                )));
            }
        }
    }
    Ok(s)
}

pub(super) async fn run(db: &Db, names: &Names) -> Result<Migrated> {
    let defs = migrations().map_err(|e| bad(format!("{e:#}")))?;
    let mut steps = Vec::new();
    let mut queues: HashMap<String, String> = HashMap::new();
    for m in defs {
        let name = names.for_logical_id(&m.logical_id).ok_or_else(|| {
            bad(format!(
                "migration with unknown logical_id {}",
                m.logical_id
            ))
        })?;
        match m.kind.as_str() {
            // Rows carry their table name: nothing to create, no index to wait for.
            "dynamodb_table" => steps.push(format!("table {name}: ready")),
            "sqs_queue" => {
                let s = settings(&m.logical_id, &m.properties, &queues)?;
                let line = format!(
                    "queue {URL_PREFIX}{name}: ready (visibility {:?}, retention {:?}, dedup scope {:?}{})",
                    s.visibility_timeout,
                    s.retention,
                    s.dedup_scope,
                    s.redrive
                        .as_ref()
                        .map(|r| format!(
                            ", dead letters to {} after {} receives",
                            r.dead_letter_queue, r.max_receive_count
                        ))
                        .unwrap_or_default()
                );
                EmbeddedQueue::create(db.clone(), name.to_owned(), s).await?;
                queues.insert(m.logical_id.clone(), name.to_owned());
                steps.push(line);
            }
            other => {
                return Err(bad(format!(
                    "migration {} has unknown kind {other}",
                    m.logical_id
                )));
            }
        }
    }
    let url = |id: &str| {
        queues
            .get(id)
            .map(|n| format!("{URL_PREFIX}{n}"))
            .ok_or_else(|| bad(format!("migrations define no {id}")))
    };
    Ok(Migrated {
        queue_url: url("InboundQueue")?,
        dlq_url: url("InboundDeadLetterQueue")?,
        steps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn inbound_queue_properties_map_to_settings() {
        let queues = HashMap::from([("Dlq".to_owned(), "d.fifo".to_owned())]);
        let s = settings(
            "Q",
            &json!({
                "QueueName": "q.fifo", "FifoQueue": true, "ContentBasedDeduplication": false,
                "DeduplicationScope": "messageGroup", "FifoThroughputLimit": "perMessageGroupId",
                "VisibilityTimeout": 30, "MessageRetentionPeriod": "345600",
                "ReceiveMessageWaitTimeSeconds": 20,
                "RedrivePolicy": { "deadLetterTargetArn": { "ref": "Dlq" }, "maxReceiveCount": 5 }
            }),
            &queues,
        )
        .unwrap();
        assert_eq!(s.dedup_scope, DedupScope::MessageGroup);
        assert_eq!(s.retention, Duration::from_secs(345_600));
        assert_eq!(
            s.redrive,
            Some(Redrive {
                dead_letter_queue: "d.fifo".into(),
                max_receive_count: 5
            })
        );
    }

    #[test]
    fn unsupported_properties_are_refused() {
        for props in [
            json!({ "DelaySeconds": 5 }),
            json!({ "FifoQueue": false }),
            json!({ "ContentBasedDeduplication": true }),
            json!({ "RedrivePolicy": { "deadLetterTargetArn": { "ref": "Nope" }, "maxReceiveCount": 5 } }),
        ] {
            let e = settings("Q", &props, &HashMap::new()).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Validation, "{props}");
        }
    }
}
