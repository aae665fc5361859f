//! Requests checked like SQS checks them, before anything is stored.

use super::settings::{URL_PREFIX, invalid};
use crate::backend::{MAX_BATCH, OutgoingMessage, Result};

/// SQS's default MaximumMessageSize (body plus attribute names and values).
const MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// SQS allows 10 message attributes.
const MAX_ATTRIBUTES: usize = 10;
/// MessageGroupId and MessageDeduplicationId: 1 to 128 characters.
const MAX_ID_CHARS: usize = 128;

/// The queue name of `url_or_name` (`embedded://name` or `name`), checked like
/// an SQS FIFO queue name.
pub(in crate::backend::embedded) fn queue_name(url_or_name: &str) -> Result<String> {
    let name = url_or_name.strip_prefix(URL_PREFIX).unwrap_or(url_or_name);
    let stem = name.strip_suffix(".fifo");
    let ok = stem.is_some_and(|s| {
        !s.is_empty()
            && name.len() <= 80
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    });
    if !ok {
        return Err(invalid(
            "embedded.GetQueueUrl",
            format!(
                "`{url_or_name}` is not an embedded FIFO queue: expected embedded://NAME.fifo, NAME of up to 75 letters, digits, - and _"
            ),
        ));
    }
    Ok(name.to_owned())
}

pub(super) fn check_batch(op: &'static str, n: usize) -> Result<()> {
    if n > MAX_BATCH {
        return Err(invalid(
            op,
            format!("TooManyEntriesInBatchRequest: {n} entries, at most {MAX_BATCH}"),
        ));
    }
    Ok(())
}

/// SQS replaces characters outside XML's set with U+FFFD instead of failing.
pub(super) fn sqs_chars(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\t' | '\n' | '\r' => c,
            c if c < ' ' || c == '\u{fffe}' || c == '\u{ffff}' => '\u{fffd}',
            c => c,
        })
        .collect()
}

pub(super) fn check_message(op: &'static str, msg: &OutgoingMessage) -> Result<()> {
    let id_ok = |s: &str| {
        !s.is_empty()
            && s.chars().count() <= MAX_ID_CHARS
            && s.bytes().all(|b| b.is_ascii_graphic())
    };
    if !id_ok(&msg.group_id) {
        return Err(invalid(
            op,
            format!(
                "MessageGroupId `{}` must be 1 to 128 printable ASCII characters",
                msg.group_id
            ),
        ));
    }
    if !id_ok(&msg.dedup_id) {
        return Err(invalid(
            op,
            format!(
                "MessageDeduplicationId `{}` must be 1 to 128 printable ASCII characters",
                msg.dedup_id
            ),
        ));
    }
    if msg.body.is_empty() {
        return Err(invalid(op, "the message body must not be empty"));
    }
    if msg.attributes.len() > MAX_ATTRIBUTES {
        return Err(invalid(
            op,
            format!(
                "{} message attributes, at most {MAX_ATTRIBUTES}",
                msg.attributes.len()
            ),
        ));
    }
    for (k, v) in &msg.attributes {
        let lower = k.to_ascii_lowercase();
        let name_ok = !k.is_empty()
            && k.len() <= 256
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
            && !k.starts_with('.')
            && !k.ends_with('.')
            && !k.contains("..")
            && !lower.starts_with("aws.")
            && !lower.starts_with("amazon.");
        if !name_ok {
            return Err(invalid(
                op,
                format!("`{k}` is not a valid message attribute name"),
            ));
        }
        if v.is_empty() {
            return Err(invalid(
                op,
                format!("message attribute `{k}` has an empty value"),
            ));
        }
    }
    let size = msg.body.len()
        + msg
            .attributes
            .iter()
            .map(|(k, v)| k.len() + "String".len() + v.len())
            .sum::<usize>();
    if size > MAX_MESSAGE_BYTES {
        return Err(invalid(
            op,
            format!("the message is {size} bytes; SQS accepts at most {MAX_MESSAGE_BYTES}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::ErrorKind;

    #[test]
    fn names_and_urls() {
        assert_eq!(queue_name("embedded://a-b_1.fifo").unwrap(), "a-b_1.fifo");
        assert_eq!(queue_name("a.fifo").unwrap(), "a.fifo");
        for bad in [
            "a",
            "embedded://a",
            ".fifo",
            "a b.fifo",
            "https://sqs/1/a.fifo",
        ] {
            let e = queue_name(bad).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Validation, "{bad}");
        }
    }

    #[test]
    fn invalid_characters_become_replacement_characters() {
        assert_eq!(sqs_chars("a\u{0}b\tc\u{ffff}"), "a\u{fffd}b\tc\u{fffd}");
    }
}
