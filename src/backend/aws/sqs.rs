//! [`Queue`] on SQS FIFO.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::types::{
    BatchResultErrorEntry, ChangeMessageVisibilityBatchRequestEntry,
    DeleteMessageBatchRequestEntry, MessageAttributeValue, MessageSystemAttributeName,
    MessageSystemAttributeNameForSends, MessageSystemAttributeValue, QueueAttributeName,
};

use super::classify;
use crate::backend::{
    BackendError, ErrorKind, MAX_BATCH, OutgoingMessage, Queue, QueueInfo, QueueMessage,
    ReceiveRequest, Result,
};
use crate::telemetry::trace::{ATTR_TRACEPARENT, TraceContext};

/// One SQS queue, by URL.
#[derive(Clone, Debug)]
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    url: String,
}

impl SqsQueue {
    /// The queue at `url`.
    pub fn new(client: aws_sdk_sqs::Client, url: String) -> Self {
        SqsQueue { client, url }
    }

    /// Resolves a queue ARN (`arn:aws:sqs:region:account:name`) to its URL.
    async fn url_of_arn(&self, arn: &str) -> Result<String> {
        let parts: Vec<&str> = arn.split(':').collect();
        let [_, _, "sqs", _region, account, name] = parts[..] else {
            return Err(BackendError::new(
                ErrorKind::Validation,
                "sqs.GetQueueUrl",
                format!("RedrivePolicy names `{arn}`, which is not an SQS queue ARN"),
            ));
        };
        let out = self
            .client
            .get_queue_url()
            .queue_name(name)
            .queue_owner_aws_account_id(account)
            .send()
            .await
            .map_err(|e| classify("sqs.GetQueueUrl", e))?;
        out.queue_url().map(str::to_owned).ok_or_else(|| {
            BackendError::new(ErrorKind::Other, "sqs.GetQueueUrl", "no QueueUrl in answer")
        })
    }
}

fn entry_error(op: &'static str, e: &BatchResultErrorEntry) -> BackendError {
    let status = if e.sender_fault() { 400 } else { 500 };
    BackendError::new(
        ErrorKind::from_status_and_code(status, Some(e.code())),
        op,
        format!("{}: {}", e.code(), e.message().unwrap_or_default()),
    )
}

/// Maps SQS's per-entry batch answer back to the order of the request.
fn batch_results(op: &'static str, n: usize, failed: &[BatchResultErrorEntry]) -> Vec<Result<()>> {
    let mut results: Vec<Result<()>> = (0..n).map(|_| Ok(())).collect();
    for f in failed {
        if let Some(r) = f
            .id()
            .parse::<usize>()
            .ok()
            .and_then(|i| results.get_mut(i))
        {
            *r = Err(entry_error(op, f));
        }
    }
    results
}

/// SQS's batch limits, checked here so that every caller gets the same
/// answer whatever stands behind the endpoint (moto does not check
/// ChangeMessageVisibilityBatch, for one).
fn check_batch(op: &'static str, n: usize) -> Result<()> {
    if n > MAX_BATCH {
        return Err(BackendError::new(
            ErrorKind::Validation,
            op,
            format!("TooManyEntriesInBatchRequest: {n} entries, at most {MAX_BATCH}"),
        ));
    }
    Ok(())
}

fn secs(d: Duration) -> i32 {
    i32::try_from(d.as_secs()).unwrap_or(i32::MAX)
}

#[async_trait]
impl Queue for SqsQueue {
    fn url(&self) -> &str {
        &self.url
    }

    async fn receive(&self, req: ReceiveRequest) -> Result<Vec<QueueMessage>> {
        if !(1..=MAX_BATCH as u32).contains(&req.max_messages) {
            return Err(BackendError::new(
                ErrorKind::Validation,
                "sqs.ReceiveMessage",
                format!(
                    "MaxNumberOfMessages must be 1 to {MAX_BATCH}: got {}",
                    req.max_messages
                ),
            ));
        }
        let out = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(req.max_messages as i32)
            .wait_time_seconds(secs(req.wait).min(20))
            .visibility_timeout(secs(req.visibility))
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|e| classify("sqs.ReceiveMessage", e))?;
        let mut messages = Vec::with_capacity(out.messages().len());
        for m in out.messages() {
            let attr = |name: MessageSystemAttributeName| {
                m.attributes().and_then(|a| a.get(&name)).cloned()
            };
            let (Some(message_id), Some(receipt_handle)) = (m.message_id(), m.receipt_handle())
            else {
                continue;
            };
            let mut attributes: BTreeMap<String, String> = m
                .message_attributes()
                .into_iter()
                .flatten()
                .filter_map(|(k, v)| Some((k.clone(), v.string_value()?.to_owned())))
                .collect();
            // A producer that only set X-Ray's header is continued too.
            if !attributes.contains_key(ATTR_TRACEPARENT)
                && let Some(t) = attr(MessageSystemAttributeName::AwsTraceHeader)
                    .as_deref()
                    .and_then(TraceContext::from_xray)
            {
                attributes.insert(ATTR_TRACEPARENT.to_owned(), t.traceparent());
            }
            messages.push(QueueMessage {
                message_id: message_id.to_owned(),
                receipt_handle: receipt_handle.to_owned(),
                body: m.body().unwrap_or_default().to_owned(),
                group_id: attr(MessageSystemAttributeName::MessageGroupId).unwrap_or_default(),
                dedup_id: attr(MessageSystemAttributeName::MessageDeduplicationId),
                receive_count: attr(MessageSystemAttributeName::ApproximateReceiveCount)
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(1),
                sent_at_ms: attr(MessageSystemAttributeName::SentTimestamp)
                    .and_then(|t| t.parse().ok()),
                attributes,
            });
        }
        Ok(messages)
    }

    async fn delete_batch(&self, receipt_handles: &[&str]) -> Result<Vec<Result<()>>> {
        const OP: &str = "sqs.DeleteMessageBatch";
        check_batch(OP, receipt_handles.len())?;
        if receipt_handles.is_empty() {
            return Ok(Vec::new());
        }
        let entries = receipt_handles
            .iter()
            .enumerate()
            .map(|(i, h)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(*h)
                    .build()
                    .map_err(|e| BackendError::new(ErrorKind::Validation, OP, e.to_string()))
            })
            .collect::<Result<Vec<_>>>()?;
        let out = self
            .client
            .delete_message_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| classify(OP, e))?;
        Ok(batch_results(OP, receipt_handles.len(), out.failed()))
    }

    async fn change_visibility_batch(
        &self,
        entries: &[(&str, Duration)],
    ) -> Result<Vec<Result<()>>> {
        const OP: &str = "sqs.ChangeMessageVisibilityBatch";
        check_batch(OP, entries.len())?;
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let req = entries
            .iter()
            .enumerate()
            .map(|(i, (h, t))| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(*h)
                    .visibility_timeout(secs(*t))
                    .build()
                    .map_err(|e| BackendError::new(ErrorKind::Validation, OP, e.to_string()))
            })
            .collect::<Result<Vec<_>>>()?;
        let out = self
            .client
            .change_message_visibility_batch()
            .queue_url(&self.url)
            .set_entries(Some(req))
            .send()
            .await
            .map_err(|e| classify(OP, e))?;
        Ok(batch_results(OP, entries.len(), out.failed()))
    }

    async fn send(&self, msg: &OutgoingMessage) -> Result<String> {
        const OP: &str = "sqs.SendMessage";
        let mut req = self
            .client
            .send_message()
            .queue_url(&self.url)
            .message_body(&msg.body)
            .message_group_id(&msg.group_id)
            .message_deduplication_id(&msg.dedup_id);
        for (k, v) in &msg.attributes {
            let value = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(v)
                .build()
                .map_err(|e| BackendError::new(ErrorKind::Validation, OP, e.to_string()))?;
            req = req.message_attributes(k, value);
        }
        // X-Ray links the queue to the trace through this system attribute.
        if let Some(t) = TraceContext::from_attributes(&msg.attributes) {
            let value = MessageSystemAttributeValue::builder()
                .data_type("String")
                .string_value(t.xray())
                .build()
                .map_err(|e| BackendError::new(ErrorKind::Validation, OP, e.to_string()))?;
            req = req.message_system_attributes(
                MessageSystemAttributeNameForSends::AwsTraceHeader,
                value,
            );
        }
        let out = req.send().await.map_err(|e| classify(OP, e))?;
        Ok(out.message_id().unwrap_or_default().to_owned())
    }

    async fn info(&self) -> Result<QueueInfo> {
        const OP: &str = "sqs.GetQueueAttributes";
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(QueueAttributeName::All)
            .send()
            .await
            .map_err(|e| classify(OP, e))?;
        let attrs = out.attributes();
        let get = |n: QueueAttributeName| attrs.and_then(|a| a.get(&n)).map(String::as_str);
        let num = |n: QueueAttributeName| get(n).and_then(|v| v.parse::<u64>().ok());
        let (dead_letter_url, max_receive_count) = match get(QueueAttributeName::RedrivePolicy) {
            Some(policy) if !policy.is_empty() => {
                let (arn, max) = parse_redrive_policy(policy).ok_or_else(|| {
                    BackendError::new(
                        ErrorKind::Validation,
                        OP,
                        format!("cannot read RedrivePolicy {policy}"),
                    )
                })?;
                (Some(self.url_of_arn(&arn).await?), Some(max))
            }
            _ => (None, None),
        };
        Ok(QueueInfo {
            fifo: get(QueueAttributeName::FifoQueue) == Some("true"),
            visibility_timeout: Duration::from_secs(
                num(QueueAttributeName::VisibilityTimeout).unwrap_or(30),
            ),
            dead_letter_url,
            max_receive_count,
            approximate_messages: num(QueueAttributeName::ApproximateNumberOfMessages).unwrap_or(0),
            approximate_in_flight: num(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
                .unwrap_or(0),
        })
    }
}

/// `{"deadLetterTargetArn": "...", "maxReceiveCount": 5}` (the count may be a
/// string or a number, depending on who wrote the policy).
pub(crate) fn parse_redrive_policy(policy: &str) -> Option<(String, u32)> {
    let v: serde_json::Value = serde_json::from_str(policy).ok()?;
    let arn = v.get("deadLetterTargetArn")?.as_str()?.to_owned();
    let max = match v.get("maxReceiveCount")? {
        serde_json::Value::Number(n) => n.as_u64()?,
        serde_json::Value::String(s) => s.parse().ok()?,
        _ => return None,
    };
    Some((arn, u32::try_from(max).ok()?))
}

#[cfg(test)]
mod tests {
    use super::parse_redrive_policy;

    #[test]
    fn redrive_policy_count_as_string_or_number() {
        let arn = "arn:aws:sqs:us-east-1:123456789012:switchboard-inbound-dlq.fifo";
        for p in [
            format!(r#"{{"deadLetterTargetArn":"{arn}","maxReceiveCount":5}}"#),
            format!(r#"{{"deadLetterTargetArn":"{arn}","maxReceiveCount":"5"}}"#),
        ] {
            assert_eq!(parse_redrive_policy(&p), Some((arn.to_owned(), 5)));
        }
        assert_eq!(parse_redrive_policy("{}"), None);
    }
}
