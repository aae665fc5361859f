//! SigV4 for PostToConnection, computed as the SDK computes it (the tests
//! hold the two to each other byte for byte: tests/push_parity.rs): the
//! signing key and `Authorization` prefix of a day, what is fixed per
//! endpoint, the canonical request and signature of one recipient, the
//! connection id's path encoding and the `x-amz-date` format. Pure functions
//! and values; the credentials they start from are [`super::credentials`]'.

use std::cell::RefCell;
use std::time::{Duration, UNIX_EPOCH};

use crate::backend::Frame;

/// The service the @connections API is signed for.
const SERVICE: &str = "execute-api";
/// The SDK's content type for PostToConnection's blob payload (signed).
pub(super) const CONTENT_TYPE_VALUE: &str = "application/octet-stream";

/// Derived once per (credentials, date, region, service).
pub(super) struct DayKey {
    /// Days since the epoch.
    pub(super) day: i64,
    key: [u8; 32],
    /// `AWS4-HMAC-SHA256 Credential=…/aws4_request, SignedHeaders=…, Signature=`.
    pub(super) authorization_prefix: String,
    /// `20240101/us-east-1/execute-api/aws4_request`.
    scope: String,
}

impl DayKey {
    /// The key of `day` (days since the epoch, `yyyymmdd` its date) for
    /// these credentials in `region`.
    pub(super) fn derive(
        access_key_id: &str,
        secret: &str,
        with_token: bool,
        day: i64,
        yyyymmdd: &str,
        region: &str,
    ) -> DayKey {
        let time = UNIX_EPOCH + Duration::from_secs(u64::try_from(day * 86_400).unwrap_or(0));
        let derived = aws_sigv4::sign::v4::generate_signing_key(secret, time, region, SERVICE);
        let mut key = [0u8; 32];
        key.copy_from_slice(&derived.as_ref()[..32]);
        let scope = format!("{yyyymmdd}/{region}/{SERVICE}/aws4_request");
        DayKey {
            day,
            key,
            authorization_prefix: format!(
                "AWS4-HMAC-SHA256 Credential={access_key_id}/{scope}, SignedHeaders={}, Signature=",
                signed_headers(with_token)
            ),
            scope,
        }
    }
}

/// What is fixed per endpoint in the canonical request.
pub(super) struct Target {
    /// `POST\n` and the canonical (SigV4-encoded) form of the path prefix.
    canonical_prefix: String,
    /// `host:{host}\n`.
    host_line: String,
}

impl Target {
    /// For requests to `{path_prefix}{id}` on `host` (the `Host` header).
    pub(super) fn new(path_prefix: &str, host: &str) -> Target {
        let mut canonical_prefix = String::from("POST\n");
        for b in path_prefix.bytes() {
            if b == b'/' || is_unreserved(b) {
                canonical_prefix.push(char::from(b));
            } else {
                push_pct(&mut canonical_prefix, b);
            }
        }
        Target {
            canonical_prefix,
            host_line: format!("host:{host}\n"),
        }
    }
}

thread_local! {
    /// The canonical request and string to sign of the request being
    /// signed on this thread (reused: no allocation per recipient).
    static SCRATCH: RefCell<(String, String)> = const { RefCell::new((String::new(), String::new())) };
}

/// The signature (lowercase hex) of `frame` posted to `connection_id` at
/// `target`, signed at `amz_date` (`YYYYMMDDTHHMMSSZ`) with `day`'s key; the
/// canonical request is copied into `canonical_out` when asked for.
pub(super) fn signature(
    day: &DayKey,
    amz_date: &str,
    target: &Target,
    connection_id: &str,
    frame: &Frame,
    session_token: Option<&str>,
    canonical_out: Option<&mut String>,
) -> String {
    SCRATCH.with_borrow_mut(|(creq, sts)| {
        creq.clear();
        creq.push_str(&target.canonical_prefix);
        push_canonical_label(creq, connection_id);
        // No query string; then the signed headers, sorted.
        let _ = std::fmt::Write::write_fmt(
            creq,
            format_args!(
                "\n\ncontent-length:{}\ncontent-type:{CONTENT_TYPE_VALUE}\n",
                frame.bytes().len()
            ),
        );
        creq.push_str(&target.host_line);
        creq.push_str("x-amz-date:");
        creq.push_str(amz_date);
        creq.push('\n');
        if let Some(t) = session_token {
            creq.push_str("x-amz-security-token:");
            creq.push_str(t);
            creq.push('\n');
        }
        creq.push('\n');
        creq.push_str(signed_headers(session_token.is_some()));
        creq.push('\n');
        creq.push_str(frame.sha256_hex());

        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, creq.as_bytes());
        sts.clear();
        sts.push_str("AWS4-HMAC-SHA256\n");
        sts.push_str(amz_date);
        sts.push('\n');
        sts.push_str(&day.scope);
        sts.push('\n');
        sts.push_str(
            std::str::from_utf8(&crate::backend::hex_lower(digest.as_ref())).unwrap_or_default(),
        );
        if let Some(out) = canonical_out {
            out.clone_from(creq);
        }
        aws_sigv4::sign::v4::calculate_signature(day.key, sts.as_bytes())
    })
}

fn signed_headers(with_token: bool) -> &'static str {
    if with_token {
        "content-length;content-type;host;x-amz-date;x-amz-security-token"
    } else {
        "content-length;content-type;host;x-amz-date"
    }
}

/// RFC 3986 unreserved: what the SDK leaves as is in a path label.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn push_pct(out: &mut String, b: u8) {
    out.push('%');
    out.push(char::from(HEX[usize::from(b >> 4)]));
    out.push(char::from(HEX[usize::from(b & 0xf)]));
}

/// The connection id as the canonical request has it: the label as sent
/// ([`push_label`]) encoded once more, as SigV4 does (each `%` as `%25`).
fn push_canonical_label(out: &mut String, id: &str) {
    for_label(id, true, |b| out.push(char::from(b)));
}

/// The connection id as a path label, encoded as the SDK encodes it (every
/// byte but unreserved ones as `%XX`, `/` included): as sent in the request
/// line.
pub(super) fn push_label(out: &mut Vec<u8>, id: &str) {
    for_label(id, false, |b| out.push(b));
}

/// The ASCII bytes of the encoded label, one at a time; `twice` encodes
/// each `%` again.
fn for_label(id: &str, twice: bool, mut put: impl FnMut(u8)) {
    for b in id.bytes() {
        if is_unreserved(b) {
            put(b);
        } else {
            put(b'%');
            if twice {
                // `%` is itself encoded: `%25` then the two hex digits.
                put(b'2');
                put(b'5');
            }
            put(HEX[usize::from(b >> 4)]);
            put(HEX[usize::from(b & 0xf)]);
        }
    }
}

/// The time an `x-amz-date` stands for, epoch ms.
pub(super) fn amz_time_ms(amz_date: &[u8; 16]) -> Option<i64> {
    crate::clock::amz_date_ms(std::str::from_utf8(amz_date).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_encoded_like_the_sdk_and_twice_for_sigv4() {
        let mut sent = Vec::new();
        push_label(&mut sent, "ab+/=cd-_.~é");
        assert_eq!(sent, b"ab%2B%2F%3Dcd-_.~%C3%A9");
        let mut twice = String::new();
        push_canonical_label(&mut twice, "ab+/=cd-_.~é");
        assert_eq!(twice, "ab%252B%252F%253Dcd-_.~%25C3%25A9");
    }

    #[test]
    fn targets_encode_the_path_prefix_once() {
        let t = Target::new("/prod/@connections/", "abc.example.com");
        assert_eq!(t.canonical_prefix, "POST\n/prod/%40connections/");
        assert_eq!(t.host_line, "host:abc.example.com\n");
    }

    #[test]
    fn amz_dates() {
        let date = crate::clock::amz_date(1_732_719_600_000);
        assert_eq!(&date, b"20241127T150000Z");
        assert_eq!(amz_time_ms(&date), Some(1_732_719_600_000));
        assert_eq!(
            &crate::clock::amz_date(253_402_300_800_000),
            b"00000000T000000Z"
        );
    }
}
