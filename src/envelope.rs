//! The queue message (envelope v1) written by the send handler, and the frames the
//! worker sends to clients. Formats are the contract in DESIGN.md; docs/envelope.md
//! explains them for users.
//!
//! Over 400 lines only by its tests (the code is about 320): the envelope and
//! the frames are one contract, kept in one file.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The only envelope version this worker understands.
pub const ENVELOPE_VERSION: u64 = 1;

/// API Gateway's 128 KiB WebSocket limit: the largest message a client may send
/// and the largest frame one @connections post (PostToConnection) may carry.
/// The one definition of that limit; the others below and in the gateway and
/// the worker's steps are this constant.
pub const API_GATEWAY_MESSAGE_BYTES: usize = 128 * 1024;

/// Largest encoded `payload` accepted (DESIGN.md: API Gateway's message limit).
pub const MAX_PAYLOAD_BYTES: usize = API_GATEWAY_MESSAGE_BYTES;

/// SQS limits MessageGroupId and MessageDeduplicationId to 128 characters.
pub const MAX_ID_CHARS: usize = 128;

/// One client message on its way through the FIFO queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    /// Envelope version, always [`ENVELOPE_VERSION`] when written by us.
    pub v: u64,
    /// API Gateway requestId of the frame (a `$leave`'s is [`leave_id`]);
    /// also the SQS deduplication id.
    pub id: String,
    /// Route key that produced the message (`sendMessage`, `history`, ...).
    pub action: String,
    /// Chat session; also the SQS message group.
    pub session_id: String,
    /// Who sent it.
    pub sender: Sender,
    /// Where the @connections API of the sender's API lives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback: Option<Callback>,
    /// When API Gateway received the frame, epoch milliseconds.
    pub received_at: i64,
    /// The `data` field of the client's frame; opaque JSON, `null` when absent.
    #[serde(default)]
    pub payload: Value,
}

/// The connection (and user, if authenticated) that sent a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sender {
    /// API Gateway connection id of the sender.
    pub connection_id: String,
    /// Authenticated user, absent for anonymous connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
}

/// The API Gateway domain and stage that received the message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Callback {
    /// e.g. `abc123.execute-api.eu-west-1.amazonaws.com`
    pub domain_name: String,
    /// e.g. `prod`
    pub stage: String,
}

impl Callback {
    /// The @connections endpoint of this API: `https://{domainName}/{stage}`.
    pub fn endpoint(&self) -> String {
        format!("https://{}/{}", self.domain_name, self.stage)
    }

    /// The domain and stage of an @connections endpoint
    /// (`http(s)://{domainName}/{stage}`, as [`Callback::endpoint`] writes
    /// it or `--callback-url` gives it), or `None` without a stage.
    pub fn from_endpoint(endpoint: &str) -> Option<Callback> {
        let rest = endpoint
            .strip_prefix("https://")
            .or_else(|| endpoint.strip_prefix("http://"))
            .unwrap_or(endpoint)
            .trim_end_matches('/');
        let (domain, stage) = rest.rsplit_once('/')?;
        (!domain.is_empty() && !stage.is_empty()).then(|| Callback {
            domain_name: domain.to_owned(),
            stage: stage.to_owned(),
        })
    }
}

/// Why a queue body is not a usable envelope. Every variant is non-retriable:
/// the message goes to the dead-letter queue with this text as its reason.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    /// The body does not parse as JSON.
    #[error("body is not valid JSON: {0}")]
    NotJson(serde_json::Error),
    /// The body is JSON but not an object.
    #[error("body is not a JSON object")]
    NotObject,
    /// `v` is missing or not a version we know.
    #[error("unsupported envelope version {0}: this worker reads v1")]
    UnknownVersion(String),
    /// A required field is missing or has the wrong type.
    #[error("invalid envelope: {0}")]
    Invalid(serde_json::Error),
    /// A required string field is empty or too long.
    #[error("invalid envelope: field `{field}` {problem}")]
    BadField {
        /// Field name as it appears in the JSON.
        field: &'static str,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// The payload is over [`MAX_PAYLOAD_BYTES`] encoded.
    #[error("payload is {size} bytes encoded; the limit is {MAX_PAYLOAD_BYTES}")]
    PayloadTooLarge {
        /// Encoded size in bytes.
        size: usize,
    },
}

impl EnvelopeError {
    /// Short, fixed label for metrics and the DLQ `errorType` attribute.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::NotJson(_) | Self::NotObject => "malformed",
            Self::UnknownVersion(_) => "unknown_version",
            Self::Invalid(_) | Self::BadField { .. } => "invalid",
            Self::PayloadTooLarge { .. } => "payload_too_large",
        }
    }
}

impl Envelope {
    /// A presence event (`$join` / `$leave`, no payload) of connection
    /// `sender` in `session_id`, at `at` (epoch ms).
    pub fn presence_event(
        id: String,
        action: &str,
        session_id: String,
        sender: Sender,
        callback: Option<Callback>,
        at: i64,
    ) -> Envelope {
        Envelope {
            v: ENVELOPE_VERSION,
            id,
            action: action.to_owned(),
            session_id,
            sender,
            callback,
            received_at: at,
            payload: Value::Null,
        }
    }

    /// Parses and validates a queue body.
    pub fn parse(body: &str) -> Result<Self, EnvelopeError> {
        let value: Value = serde_json::from_str(body).map_err(EnvelopeError::NotJson)?;
        let Value::Object(map) = &value else {
            return Err(EnvelopeError::NotObject);
        };
        match map.get("v") {
            Some(v) if v.as_u64() == Some(ENVELOPE_VERSION) => {}
            Some(v) => return Err(EnvelopeError::UnknownVersion(v.to_string())),
            None => return Err(EnvelopeError::UnknownVersion("(missing)".into())),
        }
        let env: Envelope = serde_json::from_value(value).map_err(EnvelopeError::Invalid)?;
        env.validate()?;
        Ok(env)
    }

    fn validate(&self) -> Result<(), EnvelopeError> {
        check_id("id", &self.id)?;
        check_id("sessionId", &self.session_id)?;
        check_nonempty("action", &self.action)?;
        check_nonempty("sender.connectionId", &self.sender.connection_id)?;
        if self.received_at < 0 {
            return Err(EnvelopeError::BadField {
                field: "receivedAt",
                problem: "must be epoch milliseconds, not negative",
            });
        }
        let size = encoded_len(&self.payload);
        if size > MAX_PAYLOAD_BYTES {
            return Err(EnvelopeError::PayloadTooLarge { size });
        }
        Ok(())
    }
}

fn check_nonempty(field: &'static str, s: &str) -> Result<(), EnvelopeError> {
    if s.is_empty() {
        return Err(EnvelopeError::BadField {
            field,
            problem: "must not be empty",
        });
    }
    Ok(())
}

fn check_id(field: &'static str, s: &str) -> Result<(), EnvelopeError> {
    check_nonempty(field, s)?;
    if s.chars().count() > MAX_ID_CHARS {
        return Err(EnvelopeError::BadField {
            field,
            problem: "is longer than 128 characters (the SQS limit for group and deduplication ids)",
        });
    }
    Ok(())
}

/// Length of a JSON value once encoded, without allocating the string.
pub fn encoded_len(value: &Value) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Counter(0);
    // Writing a Value to an in-memory sink cannot fail.
    let _ = serde_json::to_writer(&mut c, value);
    c.0
}

/// Who a message frame is from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FrameSender {
    /// Sender's user, when authenticated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Sender's connection.
    pub connection_id: String,
}

/// `{"type":"message",...}`: one chat message delivered to a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageFrame {
    /// Always `"message"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Message id (the envelope id); clients drop duplicates by it.
    pub id: String,
    /// Session the message belongs to.
    pub session_id: String,
    /// The session's sequence number of a stored message (absent when the
    /// route does not store).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// Route key it was sent with (`sendMessage`, `direct`, ...).
    pub action: String,
    /// Sender.
    pub from: FrameSender,
    /// When the gateway received it, epoch ms.
    pub sent_at: i64,
    /// Opaque client payload.
    pub payload: Value,
}

impl MessageFrame {
    /// The frame of one message from its parts: the one constructor, used for
    /// a live envelope and for a stored message alike.
    pub fn new(
        id: &str,
        session_id: &str,
        action: &str,
        sender: &Sender,
        sent_at: i64,
        payload: &Value,
    ) -> Self {
        MessageFrame {
            kind: "message".into(),
            id: id.into(),
            session_id: session_id.into(),
            seq: None,
            action: action.into(),
            from: FrameSender {
                user_id: sender.user_id.clone(),
                connection_id: sender.connection_id.clone(),
            },
            sent_at,
            payload: payload.clone(),
        }
    }

    /// The frame with sequence number `seq`.
    pub fn with_seq(mut self, seq: Option<u64>) -> Self {
        self.seq = seq;
        self
    }

    /// The frame for an envelope.
    pub fn from_envelope(env: &Envelope) -> Self {
        Self::new(
            &env.id,
            &env.session_id,
            &env.action,
            &env.sender,
            env.received_at,
            &env.payload,
        )
    }
}

/// `{"type":"history",...}`: the last messages of a session, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryFrame {
    /// Always `"history"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Id of the `history` request this answers.
    pub id: String,
    /// Session.
    pub session_id: String,
    /// Stored messages, oldest first.
    pub messages: Vec<MessageFrame>,
    /// Some of the requested messages were left out because the frame
    /// could not hold them (one WebSocket message is at most 128 KiB);
    /// present only when true.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

impl HistoryFrame {
    /// The history frame for `messages` (oldest first), encoded in at most
    /// `max` bytes: the newest messages that fit are kept, in order; one that
    /// cannot fit is left out (`truncated`) and older, smaller ones are still
    /// tried, so one large message never empties the history.
    pub fn fitting(
        id: &str,
        session_id: &str,
        messages: Vec<MessageFrame>,
        max: usize,
    ) -> Result<(Self, Vec<u8>), serde_json::Error> {
        let mut frame = HistoryFrame {
            kind: "history".into(),
            id: id.into(),
            session_id: session_id.into(),
            messages: Vec::new(),
            truncated: true,
        };
        // The frame without messages (with `"truncated":true`, so the budget
        // holds either way), then each kept message and its comma.
        let mut used = serde_json::to_vec(&frame)?.len();
        let total = messages.len();
        let mut kept = Vec::with_capacity(total);
        for m in messages.into_iter().rev() {
            let len = serde_json::to_vec(&m)?.len() + 1;
            if used + len <= max {
                used += len;
                kept.push(m);
            }
        }
        kept.reverse();
        frame.truncated = kept.len() < total;
        frame.messages = kept;
        let bytes = serde_json::to_vec(&frame)?;
        debug_assert!(bytes.len() <= max);
        Ok((frame, bytes))
    }
}

/// `{"type":"resumed",...}`: the stored messages after a client's last `seq`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResumedFrame {
    /// Always `"resumed"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Id of the `resume` request this answers.
    pub id: String,
    /// Session.
    pub session_id: String,
    /// The `since` of the request.
    pub since: u64,
    /// The session's last `seq` when the request ran: the live stream goes on
    /// after it.
    pub last: u64,
    /// Messages with `seq` above `since`, oldest first.
    pub messages: Vec<MessageFrame>,
    /// The reply was cut to fit one WebSocket message: resume again from the
    /// last `seq` received.
    pub more: bool,
    /// False when some requested messages no longer exist (retention, TTL, or
    /// further back than the worker's `--resume-max`): a gap the client
    /// cannot fill.
    pub complete: bool,
}

impl ResumedFrame {
    /// The frame for `messages` (oldest first, contiguous from the start),
    /// encoded in at most `max` bytes: the oldest messages that fit are kept
    /// (so the client can continue from the last one); `more` when some were
    /// left for the next request. Leading messages too large to fit even
    /// alone are left out and make the reply not `complete`.
    pub fn fitting(
        mut self,
        messages: Vec<MessageFrame>,
        max: usize,
    ) -> Result<(Self, Vec<u8>), serde_json::Error> {
        self.messages = Vec::new();
        let mut used = serde_json::to_vec(&self)?.len();
        let total = messages.len();
        let mut skipped = 0;
        for m in messages {
            let len = serde_json::to_vec(&m)?.len() + 1;
            if used + len > max {
                if self.messages.is_empty() {
                    // Cannot fit even alone (within a few hundred bytes of
                    // the limit): a gap, so the client does not ask for it
                    // forever.
                    skipped += 1;
                    self.complete = false;
                    continue;
                }
                break;
            }
            used += len;
            self.messages.push(m);
        }
        self.more = self.messages.len() + skipped < total;
        let bytes = serde_json::to_vec(&self)?;
        debug_assert!(bytes.len() <= max);
        Ok((self, bytes))
    }
}

/// One member in a `presence` frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    /// Its connection.
    pub connection_id: String,
    /// Its user, when authenticated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// When it connected, epoch ms.
    pub connected_at: i64,
}

/// `{"type":"presence",...}`: who is in the session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PresenceFrame {
    /// Always `"presence"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Id of the `presence` request this answers.
    pub id: String,
    /// Session.
    pub session_id: String,
    /// Exact number of connections in the session.
    pub count: u64,
    /// At most [`PresenceFrame::MAX_MEMBERS`] of them.
    pub members: Vec<Member>,
}

impl PresenceFrame {
    /// Most members listed in one frame.
    pub const MAX_MEMBERS: usize = 100;
}

/// `{"type":"join"|"leave",...}`: a member came or went (presence events).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PresenceEventFrame {
    /// `"join"` or `"leave"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Session.
    pub session_id: String,
    /// The connection that joined or left.
    pub connection_id: String,
    /// Its user, when authenticated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// When, epoch ms (the `$connect` / `$disconnect` event's time).
    pub at: i64,
}

/// The custom route keys of a Switchboard API by default (gateway config,
/// handlers, Lambda functions); the worker's default pipelines cover them.
pub const DEFAULT_ACTIONS: [&str; 5] = ["sendMessage", "history", "direct", "resume", "presence"];

/// The envelope action the edge gives a join event.
pub const JOIN_ACTION: &str = "$join";
/// The envelope action the edge gives a leave event.
pub const LEAVE_ACTION: &str = "$leave";

/// The id of connection `connection_id`'s `$leave` event, and its SQS
/// deduplication id: `$leave:{connectionId}`. `$disconnect` and a worker
/// that prunes the connection's record may both send its leave; one id for
/// both lets the FIFO queue keep only the first within its 5-minute
/// deduplication window. `$` and `:` are punctuation, which SQS allows in a
/// deduplication id; API Gateway's connection ids are 16 characters, well
/// within the 128 allowed.
pub fn leave_id(connection_id: &str) -> String {
    format!("{LEAVE_ACTION}:{connection_id}")
}

/// `{"type":"error",...}`: tells the sender its message could not be handled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorFrame {
    /// Always `"error"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Id of the message that failed.
    pub id: String,
    /// Machine-readable code, e.g. `unknown_action`.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
}

impl ErrorFrame {
    /// An error frame about message `id`.
    pub fn new(id: &str, code: &str, message: impl Into<String>) -> Self {
        ErrorFrame {
            kind: "error".into(),
            id: id.into(),
            code: code.into(),
            message: message.into(),
        }
    }
}

/// `{"type":"ack",...}`: the `reply` step's answer to the sender.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AckFrame {
    /// Always `"ack"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Id of the acknowledged message.
    pub id: String,
    /// Session.
    pub session_id: String,
    /// Route key of the acknowledged message.
    pub action: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = include_str!("../tests/fixtures/envelope_v1.json");

    #[test]
    fn parses_the_design_example() {
        let env = Envelope::parse(FIXTURE).unwrap();
        assert_eq!(env.id, "Kx3vDEXAMPLE=");
        assert_eq!(env.action, "sendMessage");
        assert_eq!(env.session_id, "room-42");
        assert_eq!(env.sender.user_id.as_deref(), Some("alice"));
        assert_eq!(
            env.callback.as_ref().unwrap().endpoint(),
            "https://abc123.execute-api.eu-west-1.amazonaws.com/prod"
        );
        assert_eq!(env.received_at, 1732723200123);
        assert_eq!(env.payload, serde_json::json!({"text": "hi"}));
    }

    #[test]
    fn a_callback_is_read_back_from_its_endpoint() {
        let cb = Envelope::parse(FIXTURE).unwrap().callback.unwrap();
        assert_eq!(Callback::from_endpoint(&cb.endpoint()), Some(cb));
        let local = Callback::from_endpoint("http://127.0.0.1:8080/dev/").unwrap();
        assert_eq!(
            (local.domain_name.as_str(), local.stage.as_str()),
            ("127.0.0.1:8080", "dev")
        );
        assert_eq!(Callback::from_endpoint("https://host"), None);
        assert_eq!(Callback::from_endpoint("https://host/"), None);
    }

    #[test]
    fn a_leave_has_the_same_id_whoever_sends_it() {
        assert_eq!(leave_id("L0SM9cOFvHcCIhw="), "$leave:L0SM9cOFvHcCIhw=");
        let id = leave_id("L0SM9cOFvHcCIhw=");
        assert!(id.len() <= MAX_ID_CHARS && id.bytes().all(|b| b.is_ascii_graphic()));
    }

    #[test]
    fn round_trips() {
        let env = Envelope::parse(FIXTURE).unwrap();
        let again = Envelope::parse(&serde_json::to_string(&env).unwrap()).unwrap();
        assert_eq!(env, again);
    }

    #[test]
    fn anonymous_sender_and_missing_payload_are_fine() {
        let body = r#"{"v":1,"id":"a","action":"history","sessionId":"s","sender":{"connectionId":"c"},"receivedAt":1}"#;
        let env = Envelope::parse(body).unwrap();
        assert_eq!(env.sender.user_id, None);
        assert_eq!(env.payload, Value::Null);
        assert_eq!(env.callback, None);
    }

    #[test]
    fn rejects_bad_bodies_with_a_reason() {
        let cases = [
            ("not json", "malformed", "not valid JSON"),
            ("[1,2]", "malformed", "not a JSON object"),
            (
                r#"{"v":2,"id":"a","action":"x","sessionId":"s","sender":{"connectionId":"c"},"receivedAt":1}"#,
                "unknown_version",
                "version 2",
            ),
            (r#"{"id":"a"}"#, "unknown_version", "(missing)"),
            (
                r#"{"v":1,"action":"x","sessionId":"s","sender":{"connectionId":"c"},"receivedAt":1}"#,
                "invalid",
                "missing field `id`",
            ),
            (
                r#"{"v":1,"id":"a","action":"x","sessionId":"","sender":{"connectionId":"c"},"receivedAt":1}"#,
                "invalid",
                "`sessionId` must not be empty",
            ),
            (
                r#"{"v":1,"id":"a","action":"x","sessionId":"s","sender":{},"receivedAt":1}"#,
                "invalid",
                "connectionId",
            ),
        ];
        for (body, kind, text) in cases {
            let err = Envelope::parse(body).unwrap_err();
            assert_eq!(err.kind(), kind, "{body}");
            assert!(err.to_string().contains(text), "{body}: {err}");
        }
    }

    #[test]
    fn payload_numbers_pass_through_every_hop_unchanged() {
        // Found by tests/faults_fuzz.rs: serde_json's default float parsing is
        // not exact, so these came back one ULP off after each parse.
        for n in [
            "-4.5267777168271437e-194",
            "-1.0703297025684542e-45",
            "0.1",
            "1.7976931348623157e308",
            "5e-324",
        ] {
            let body = format!(
                r#"{{"v":1,"id":"a","action":"x","sessionId":"s","sender":{{"connectionId":"c"}},"receivedAt":1,"payload":{{"n":{n}}}}}"#
            );
            let env = Envelope::parse(&body).unwrap();
            // std's parser rounds correctly.
            assert_eq!(env.payload["n"].as_f64(), n.parse::<f64>().ok(), "{n}");
            let again = Envelope::parse(&serde_json::to_string(&env).unwrap()).unwrap();
            assert_eq!(again, env, "{n}");
        }
    }

    #[test]
    fn payload_limit_is_on_the_encoded_size() {
        let at_limit = "x".repeat(MAX_PAYLOAD_BYTES - 2); // plus two quotes
        let over = "x".repeat(MAX_PAYLOAD_BYTES - 1);
        let body = |p: &str| {
            format!(
                r#"{{"v":1,"id":"a","action":"x","sessionId":"s","sender":{{"connectionId":"c"}},"receivedAt":1,"payload":"{p}"}}"#
            )
        };
        assert!(Envelope::parse(&body(&at_limit)).is_ok());
        let err = Envelope::parse(&body(&over)).unwrap_err();
        assert_eq!(err.kind(), "payload_too_large");
    }

    #[test]
    fn message_frame_has_the_contract_shape() {
        let env = Envelope::parse(FIXTURE).unwrap();
        let frame = serde_json::to_value(MessageFrame::from_envelope(&env)).unwrap();
        assert_eq!(
            frame,
            serde_json::json!({
                "type": "message", "id": "Kx3vDEXAMPLE=", "sessionId": "room-42",
                "action": "sendMessage",
                "from": {"userId": "alice", "connectionId": "L0SM9cOFvHcCIhw="},
                "sentAt": 1732723200123_i64, "payload": {"text": "hi"}
            })
        );
    }

    #[test]
    fn history_leaves_out_only_what_cannot_fit() {
        let m = |id: &str, size: usize| MessageFrame {
            kind: "message".into(),
            id: id.into(),
            session_id: "s".into(),
            seq: None,
            action: "sendMessage".into(),
            from: FrameSender {
                user_id: None,
                connection_id: "c".into(),
            },
            sent_at: 1,
            payload: Value::String("x".repeat(size)),
        };
        let ids = |f: &HistoryFrame| f.messages.iter().map(|m| m.id.clone()).collect::<Vec<_>>();
        // All fit: not truncated, and the field is absent.
        let (f, bytes) =
            HistoryFrame::fitting("h", "s", vec![m("a", 10), m("b", 10)], 1000).unwrap();
        assert_eq!(
            (ids(&f), f.truncated),
            (vec!["a".into(), "b".into()], false)
        );
        assert!(!String::from_utf8(bytes).unwrap().contains("truncated"));
        // A large one in the middle: the small ones around it stay, in order.
        let (f, bytes) =
            HistoryFrame::fitting("h", "s", vec![m("a", 10), m("big", 900), m("c", 10)], 1000)
                .unwrap();
        assert_eq!((ids(&f), f.truncated), (vec!["a".into(), "c".into()], true));
        assert!(bytes.len() <= 1000);
        assert_eq!(serde_json::from_slice::<HistoryFrame>(&bytes).unwrap(), f);
        // Room for only some: the newest are kept.
        let many: Vec<_> = (0..20).map(|i| m(&format!("m{i:02}"), 100)).collect();
        let (f, bytes) = HistoryFrame::fitting("h", "s", many, 1000).unwrap();
        assert!(f.truncated && bytes.len() <= 1000);
        assert_eq!(f.messages.last().unwrap().id, "m19");
        let first: usize = f.messages[0].id[1..].parse().unwrap();
        assert_eq!(
            ids(&f),
            (first..20).map(|i| format!("m{i:02}")).collect::<Vec<_>>()
        );
    }
}
