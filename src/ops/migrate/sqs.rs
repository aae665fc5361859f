//! The SQS half of `switchboard migrate`: creates a queue with its attributes,
//! or brings an existing one's attributes in line (refusing to change those
//! SQS fixes at creation), and returns its URL and ARN for later
//! `{"ref": LogicalId}` RedrivePolicy references.

use std::collections::HashMap;

use anyhow::{Context, Result, anyhow, bail};
use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::Value;

use crate::backend::ErrorKind;
use crate::backend::aws::{AwsBackend, classify};

/// Logical id → (url, arn) of the queues applied so far.
pub(super) type Applied = HashMap<String, (String, String)>;

/// Queue attributes as SQS wants them: strings, with `{"ref": LogicalId}`
/// replaced by that queue's ARN.
fn queue_attributes(props: &Value, queues: &Applied) -> Result<HashMap<String, String>> {
    let obj = props
        .as_object()
        .ok_or_else(|| anyhow!("queue properties must be an object"))?;
    let mut out = HashMap::new();
    for (k, v) in obj {
        if k == "QueueName" {
            continue;
        }
        let text = match v {
            Value::String(s) => s.clone(),
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => n.to_string(),
            Value::Object(_) => resolve_refs(v, queues)?.to_string(),
            other => bail!("queue attribute {k} has unsupported value {other}"),
        };
        out.insert(k.clone(), text);
    }
    Ok(out)
}

fn resolve_refs(v: &Value, queues: &Applied) -> Result<Value> {
    Ok(match v {
        Value::Object(m) if m.len() == 1 && m.contains_key("ref") => {
            let id = m["ref"].as_str().unwrap_or_default();
            let (_, arn) = queues
                .get(id)
                .ok_or_else(|| anyhow!("ref to {id}, which is not defined before it"))?;
            Value::String(arn.clone())
        }
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| Ok((k.clone(), resolve_refs(v, queues)?)))
                .collect::<Result<_>>()?,
        ),
        other => other.clone(),
    })
}

/// Compares attribute values the way SQS normalises them (JSON policies by
/// content, not by text).
fn same_value(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (
        serde_json::from_str::<Value>(a),
        serde_json::from_str::<Value>(b),
    ) {
        (Ok(Value::Object(x)), Ok(Value::Object(y))) => {
            let norm = |m: serde_json::Map<String, Value>| -> HashMap<String, String> {
                m.into_iter()
                    .map(|(k, v)| {
                        (
                            k,
                            v.as_str()
                                .map(str::to_owned)
                                .unwrap_or_else(|| v.to_string()),
                        )
                    })
                    .collect()
            };
            norm(x) == norm(y)
        }
        _ => false,
    }
}

/// Attributes that exist only at creation time.
const CREATE_ONLY: &[&str] = &["FifoQueue"];

/// Creates queue `name` or updates its attributes; returns its (url, arn).
pub(super) async fn apply_queue(
    aws: &AwsBackend,
    name: &str,
    props: &Value,
    queues: &Applied,
    step: &mut impl FnMut(String),
) -> Result<(String, String)> {
    let want = queue_attributes(props, queues)?;
    let url = match queue_url(aws, name).await? {
        None => create_queue(aws, name, &want, step).await?,
        Some(url) => {
            update_attributes(aws, name, &url, &want, step).await?;
            url
        }
    };
    let arn = queue_attrs(aws, &url)
        .await?
        .remove("QueueArn")
        .ok_or_else(|| anyhow!("queue {name} has no QueueArn"))?;
    Ok((url, arn))
}

/// The queue's URL, or `None` if there is no such queue.
async fn queue_url(aws: &AwsBackend, name: &str) -> Result<Option<String>> {
    match aws.sqs().get_queue_url().queue_name(name).send().await {
        Ok(out) => Ok(out.queue_url().map(str::to_owned)),
        Err(e) => {
            let e = classify("sqs.GetQueueUrl", e);
            if e.kind != ErrorKind::NotFound {
                return Err(e).with_context(|| format!("cannot look up queue {name}"));
            }
            Ok(None)
        }
    }
}

async fn create_queue(
    aws: &AwsBackend,
    name: &str,
    want: &HashMap<String, String>,
    step: &mut impl FnMut(String),
) -> Result<String> {
    let out = aws
        .sqs()
        .create_queue()
        .queue_name(name)
        .set_attributes(Some(
            want.iter()
                .map(|(k, v)| (QueueAttributeName::from(k.as_str()), v.clone()))
                .collect(),
        ))
        .send()
        .await
        .map_err(|e| classify("sqs.CreateQueue", e))
        .with_context(|| format!("cannot create queue {name}"))?;
    step(format!("queue {name}: created"));
    out.queue_url()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("CreateQueue returned no URL for {name}"))
}

async fn update_attributes(
    aws: &AwsBackend,
    name: &str,
    url: &str,
    want: &HashMap<String, String>,
    step: &mut impl FnMut(String),
) -> Result<()> {
    let have = queue_attrs(aws, url).await?;
    let mut changes = HashMap::new();
    for (k, v) in want {
        if have.get(k).is_some_and(|h| same_value(h, v)) {
            continue;
        }
        if CREATE_ONLY.contains(&k.as_str()) {
            bail!(
                "queue {name} exists with {k}={:?}, but {v} is required; use another queue name",
                have.get(k)
            );
        }
        changes.insert(QueueAttributeName::from(k.as_str()), v.clone());
    }
    if changes.is_empty() {
        step(format!("queue {name}: exists, attributes up to date"));
        return Ok(());
    }
    let mut keys: Vec<&str> = changes.keys().map(|k| k.as_str()).collect();
    keys.sort_unstable();
    let keys = keys.join(", ");
    aws.sqs()
        .set_queue_attributes()
        .queue_url(url)
        .set_attributes(Some(changes))
        .send()
        .await
        .map_err(|e| classify("sqs.SetQueueAttributes", e))
        .with_context(|| format!("cannot update queue {name}"))?;
    step(format!("queue {name}: updated {keys}"));
    Ok(())
}

async fn queue_attrs(aws: &AwsBackend, url: &str) -> Result<HashMap<String, String>> {
    let out = aws
        .sqs()
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .map_err(|e| classify("sqs.GetQueueAttributes", e))
        .with_context(|| format!("cannot read attributes of {url}"))?;
    Ok(out
        .attributes()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.as_str().to_owned(), v.clone()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrations::migrations;

    #[test]
    fn redrive_ref_resolves_to_the_dlq_arn() {
        let queues = HashMap::from([(
            "InboundDeadLetterQueue".to_owned(),
            (
                "http://q/dlq.fifo".to_owned(),
                "arn:aws:sqs:us-east-1:1:dlq.fifo".to_owned(),
            ),
        )]);
        let ms = migrations().unwrap();
        let inbound = ms.iter().find(|m| m.logical_id == "InboundQueue").unwrap();
        let attrs = queue_attributes(&inbound.properties, &queues).unwrap();
        let policy: Value = serde_json::from_str(&attrs["RedrivePolicy"]).unwrap();
        assert_eq!(
            policy["deadLetterTargetArn"],
            "arn:aws:sqs:us-east-1:1:dlq.fifo"
        );
        assert_eq!(policy["maxReceiveCount"], 5);
        assert_eq!(attrs["FifoQueue"], "true");
        assert!(!attrs.contains_key("QueueName"));
    }

    #[test]
    fn policies_compare_by_content() {
        assert!(same_value(
            r#"{"deadLetterTargetArn":"a","maxReceiveCount":5}"#,
            r#"{"maxReceiveCount":"5","deadLetterTargetArn":"a"}"#
        ));
        assert!(!same_value(
            r#"{"deadLetterTargetArn":"a","maxReceiveCount":5}"#,
            r#"{"deadLetterTargetArn":"a","maxReceiveCount":4}"#
        ));
        assert!(same_value("30", "30"));
    }
}
