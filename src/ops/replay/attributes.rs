//! What the replayed copy of a dead letter carries: a deduplication id
//! derived from the dead letter's message id, and its attributes without the
//! worker's dead-letter metadata.

use std::collections::BTreeMap;

use crate::backend::QueueMessage;

/// Attributes the worker sets on a dead letter (`worker::Core::dead_letter`).
/// They describe the dead-lettering, not the message, so they are not copied
/// onto the replayed message; `reason` is carried over as
/// [`ATTR_DEAD_LETTER_REASON`].
pub const DEAD_LETTER_ATTRIBUTES: &[&str] = &[
    "reason",
    "errorType",
    "sourceMessageId",
    "sourceQueue",
    "receiveCount",
    "deadLetteredAt",
];

/// On a replayed message: the dead letter's message id.
pub const ATTR_REPLAY_OF: &str = "replayOf";
/// On a replayed message: when it was replayed, epoch ms.
pub const ATTR_REPLAYED_AT: &str = "replayedAt";
/// On a replayed message: the `reason` the worker gave when dead-lettering it.
pub const ATTR_DEAD_LETTER_REASON: &str = "deadLetterReason";

/// SQS's limit of message attributes per message.
const MAX_ATTRIBUTES: usize = 10;
/// SQS's limit on MessageDeduplicationId.
const MAX_DEDUP_ID: usize = 128;
/// Prefix of every replayed message's deduplication id.
const DEDUP_PREFIX: &str = "replay-";

/// The deduplication id of the replayed copy of dead letter `dlq_message_id`.
///
/// Derived from the dead letter's message id, which SQS assigns anew to every
/// message it stores, because:
/// - the original deduplication id (the envelope id) may still be inside the
///   target queue's 5-minute window when a poison message is fixed and
///   replayed quickly, and SQS would silently drop the replay;
/// - a rerun after a crash between send and delete re-sends the same dead
///   letter with the same id, so SQS drops that duplicate (within 5 minutes);
/// - a replayed message that is dead-lettered again gets a new dead-letter
///   message id, so replaying it again is not swallowed either.
pub fn replay_dedup_id(dlq_message_id: &str) -> Result<String, String> {
    let id = format!("{DEDUP_PREFIX}{dlq_message_id}");
    if id.len() > MAX_DEDUP_ID {
        return Err(format!(
            "message id `{dlq_message_id}` is too long for a deduplication id ({} > {MAX_DEDUP_ID} characters)",
            id.len()
        ));
    }
    Ok(id)
}

/// The attributes of the replayed copy: the dead letter's own attributes except
/// the worker's dead-letter metadata ([`DEAD_LETTER_ATTRIBUTES`]), then
/// `replayOf`, `replayedAt` and `deadLetterReason` while SQS's limit of 10
/// attributes leaves room (the message's own attributes come first).
///
/// `reason` is not kept under its own name: on the target queue it would make
/// the message look like a dead letter, and a second dead-lettering writes a
/// fresh `reason` of its own.
pub fn replay_attributes(msg: &QueueMessage, now_ms: i64) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = msg
        .attributes
        .iter()
        .filter(|(k, _)| !DEAD_LETTER_ATTRIBUTES.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut extra = vec![
        (ATTR_REPLAY_OF, msg.message_id.clone()),
        (ATTR_REPLAYED_AT, now_ms.to_string()),
    ];
    if let Some(reason) = msg.attributes.get("reason") {
        extra.push((ATTR_DEAD_LETTER_REASON, reason.clone()));
    }
    for (k, v) in extra {
        if out.len() >= MAX_ATTRIBUTES {
            break;
        }
        out.entry(k.to_owned()).or_insert(v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dead_letter(attrs: &[(&str, &str)]) -> QueueMessage {
        QueueMessage {
            message_id: "5fea7756-0ea4-451a-a703-a558b933e274".into(),
            receipt_handle: "rh".into(),
            body: "{}".into(),
            group_id: "room-1".into(),
            dedup_id: Some("orig".into()),
            receive_count: 1,
            sent_at_ms: None,
            attributes: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn dedup_id_is_derived_from_the_dead_letter_id() {
        assert_eq!(
            replay_dedup_id("5fea7756-0ea4-451a-a703-a558b933e274").unwrap(),
            "replay-5fea7756-0ea4-451a-a703-a558b933e274"
        );
        assert_eq!(replay_dedup_id("a"), replay_dedup_id("a"), "stable");
        assert!(replay_dedup_id(&"x".repeat(122)).is_err());
        assert!(replay_dedup_id(&"x".repeat(121)).is_ok());
    }

    #[test]
    fn worker_metadata_is_dropped_and_reason_renamed() {
        let m = dead_letter(&[
            ("reason", "unknown action `shout`"),
            ("errorType", "unknown_action"),
            ("sourceMessageId", "abc"),
            ("sourceQueue", "http://q/in.fifo"),
            ("receiveCount", "1"),
            ("deadLetteredAt", "1"),
            ("traceparent", "00-1-2-01"),
        ]);
        let a = replay_attributes(&m, 42);
        assert_eq!(
            a.keys().map(String::as_str).collect::<Vec<_>>(),
            ["deadLetterReason", "replayOf", "replayedAt", "traceparent"]
        );
        assert_eq!(a["deadLetterReason"], "unknown action `shout`");
        assert_eq!(a["replayOf"], m.message_id);
        assert_eq!(a["replayedAt"], "42");
    }

    #[test]
    fn sqs_redriven_letters_have_no_reason() {
        let a = replay_attributes(&dead_letter(&[]), 1);
        assert!(!a.contains_key("deadLetterReason"));
        assert!(a.contains_key("replayOf"));
    }

    #[test]
    fn own_attributes_win_over_replay_metadata_at_the_limit() {
        let own: Vec<(String, String)> = (0..9).map(|i| (format!("a{i}"), "v".into())).collect();
        let refs: Vec<(&str, &str)> = own
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .chain([("reason", "r")])
            .collect();
        let a = replay_attributes(&dead_letter(&refs), 1);
        assert_eq!(a.len(), 10);
        assert!(a.contains_key("replayOf"));
        assert!(!a.contains_key("replayedAt"));
    }
}
