//! The hot-path @connections client: one SigV4-signed `POST
//! /{stage}/@connections/{id}` per recipient, and nothing else.
//!
//! It sends and signs exactly what `aws-sdk-apigatewaymanagement` sends for
//! PostToConnection (same path encoding, same signed headers minus the SDK's
//! own telemetry headers), so API Gateway cannot tell them apart; the tests
//! hold it to the SDK byte for byte (tests/push_parity.rs). What it leaves out
//! is the SDK's per-call machinery: the orchestrator, interceptors, endpoint
//! and identity resolution, retry classification and a fresh SigV4 key
//! derivation per call. Per endpoint the host and canonical path prefix are
//! built once; per (credentials, day) the signing key; per message the
//! payload hash ([`Frame`]); per recipient only the path, one canonical
//! request in a reused buffer and two SHA-256/HMAC passes.
//!
//! Credentials come from the SDK configuration's provider (the standard
//! chain: environment, profile, web identity, ECS/IMDS roles), cached and
//! refreshed before they expire as the SDK's lazy identity cache does.
//! Retries are the fan-out's (per recipient, bounded); this client makes one
//! attempt, except that a 403 whose `Date` shows that our clock is off
//! corrects the clock and signs once more, as the SDK's clock-skew handling
//! does.
//!
//! Its parts: the signature in [`super::sign`], the credentials in
//! [`super::credentials`], the connections and the HTTP/1.1 exchange in
//! [`super::http1`]; here the endpoints, the clock (and its skew), the
//! request as sent and the answer's outcome.

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use aws_config::SdkConfig;
use bytes::Bytes;
use hyper::Uri;
use hyper::header::HeaderValue;
use hyper::http::uri::Scheme;

use super::credentials::{Credentials, OP, Signer};
use super::http1::{Origin, SendError};
use super::sign::{self, CONTENT_TYPE_VALUE, DayKey, Target};
use crate::backend::{BackendError, ErrorKind, Frame, Push, Result};
use crate::sync::{read, write};

/// The SDK's default connect timeout.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_millis(3100);
/// A 403 whose `Date` is further than this from our signing time is taken
/// as clock skew: the clock is corrected and the request signed again.
const SKEW_THRESHOLD_MS: i64 = 60_000;

/// The clock requests are signed with (tests fix it).
pub type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// Posts frames to `@connections` over pooled keep-alive HTTP/1.1
/// connections (one pool per endpoint), signing each request with
/// SigV4 (see the module docs).
#[derive(Clone)]
pub struct LeanPush {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for LeanPush {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeanPush")
            .field("region", &self.inner.region)
            .field("timeout", &self.inner.timeout)
            .finish_non_exhaustive()
    }
}

struct Inner {
    /// TLS for `https://` endpoints.
    tls: Arc<rustls::ClientConfig>,
    connect_timeout: Duration,
    credentials: Credentials,
    region: Option<String>,
    timeout: Duration,
    clock: Clock,
    /// Added to the clock when signing: server time minus ours, learnt from
    /// a 403's `Date`.
    skew_ms: AtomicI64,
    endpoints: RwLock<HashMap<String, Arc<Endpoint>>>,
}

/// What is fixed per @connections endpoint, and its connections.
struct Endpoint {
    origin: Origin,
    /// The `Host` header.
    host: HeaderValue,
    /// `/{stage}/@connections/`, as sent.
    path_prefix: String,
    /// What the signature fixes per endpoint.
    target: Target,
}

impl LeanPush {
    /// A client for the region and credentials of `sdk` (its connect timeout
    /// too); each attempt may take up to `timeout`.
    pub fn new(sdk: &SdkConfig, timeout: Duration) -> Self {
        let connect = sdk
            .timeout_config()
            .and_then(|t| t.connect_timeout())
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        LeanPush {
            inner: Arc::new(Inner {
                tls: Arc::new(tls_config()),
                connect_timeout: connect,
                credentials: Credentials::new(sdk.credentials_provider()),
                region: sdk.region().map(|r| r.as_ref().to_owned()),
                timeout,
                clock: Arc::new(SystemTime::now),
                skew_ms: AtomicI64::new(0),
                endpoints: RwLock::default(),
            }),
        }
    }

    /// The same client signing with `clock` instead of the system clock
    /// (tests compare signatures at a fixed time).
    pub fn with_clock(self, clock: Clock) -> Self {
        let inner = Arc::into_inner(self.inner).expect("with_clock before the client is shared");
        LeanPush {
            inner: Arc::new(Inner { clock, ..inner }),
        }
    }

    /// The clock correction learnt from the service, in milliseconds
    /// (server time minus ours).
    pub fn clock_skew_ms(&self) -> i64 {
        self.inner.skew_ms.load(Ordering::Relaxed)
    }

    /// The same client trusting the roots of `tls` for `https://`
    /// endpoints instead of the platform's (tests with their own CA).
    pub fn with_tls_config(self, tls: rustls::ClientConfig) -> Self {
        let inner =
            Arc::into_inner(self.inner).expect("with_tls_config before the client is shared");
        LeanPush {
            inner: Arc::new(Inner {
                tls: Arc::new(tls),
                ..inner
            }),
        }
    }

    /// The SigV4 canonical request of what this client would send for
    /// `data` to `connection_id` at `endpoint` now (the parity tests compare
    /// it with the SDK's).
    pub async fn canonical_request(
        &self,
        endpoint: &str,
        connection_id: &str,
        data: Bytes,
    ) -> Result<String> {
        let ep = self.inner.endpoint(endpoint)?;
        let frame = Frame::new(data);
        let signer = self.inner.signer().await?;
        let mut canonical = String::new();
        self.inner
            .sign(&ep, &signer, connection_id, &frame, Some(&mut canonical))?;
        Ok(canonical)
    }
}

#[async_trait]
impl Push for LeanPush {
    async fn post(&self, endpoint: &str, connection_id: &str, data: Bytes) -> Result<()> {
        self.post_frame(endpoint, connection_id, &Frame::new(data))
            .await
    }

    async fn post_frame(&self, endpoint: &str, connection_id: &str, frame: &Frame) -> Result<()> {
        let inner = &self.inner;
        let ep = inner.endpoint(endpoint)?;
        let mut skew_retried = false;
        loop {
            let signer = inner.signer().await?;
            let signed = inner.sign(&ep, &signer, connection_id, frame, None)?;
            let sent = tokio::time::timeout(
                inner.timeout,
                inner.send(&ep, &signer, &signed, connection_id, frame),
            )
            .await;
            let answer = match sent {
                Ok(answer) => answer?,
                Err(_) => return Err(inner.timed_out()),
            };
            match inner.judge(answer, &signed, skew_retried) {
                Next::Done(result) => return result,
                Next::SignAgain => skew_retried = true,
            }
        }
    }

    /// Pipelined: the requests go out on one keep-alive connection in one
    /// write and their answers are read in order ([`Origin::send_many`]).
    /// Frames of [`PIPELINE_BODY_UNDER`] bytes or more go one by one.
    async fn post_frame_many(
        &self,
        endpoint: &str,
        connection_ids: &[&str],
        frame: &Frame,
    ) -> Vec<Result<()>> {
        let inner = &self.inner;
        let n = connection_ids.len();
        if n < 2 || frame.bytes().len() >= PIPELINE_BODY_UNDER {
            return crate::backend::post_each(self, endpoint, connection_ids, frame).await;
        }
        let ep = match inner.endpoint(endpoint) {
            Ok(ep) => ep,
            Err(e) => return vec![Err(e); n],
        };
        let signer = match inner.signer().await {
            Ok(s) => s,
            Err(e) => return vec![Err(e); n],
        };
        // One result per id, in order; `Ok` stands in for the signed ones
        // until their answers are read.
        let mut results: Vec<Result<()>> = Vec::with_capacity(n);
        let mut signed = Vec::with_capacity(n);
        for (i, id) in connection_ids.iter().enumerate() {
            match inner.sign(&ep, &signer, id, frame, None) {
                Ok(s) => {
                    results.push(Ok(()));
                    signed.push((i, s));
                }
                Err(e) => results.push(Err(e)),
            }
        }
        let body = frame.bytes();
        let head = |k: usize, w: &mut Vec<u8>| {
            let (i, s) = &signed[k];
            write_head(w, &ep, &signer, s, connection_ids[*i], body.len());
        };
        let sent =
            tokio::time::timeout(inner.timeout, ep.origin.send_many(signed.len(), head, body))
                .await;
        // Timed out: no answers, so each signed one is a timeout.
        let mut answers = sent.unwrap_or_default().into_iter();
        let mut again = Vec::new();
        for (i, s) in &signed {
            results[*i] = match answers.next().map(answer_of) {
                None => Err(inner.timed_out()),
                Some(Err(e)) => Err(e),
                Some(Ok(answer)) => match inner.judge(answer, s, false) {
                    Next::Done(result) => result,
                    // The clock is corrected: this one is signed again.
                    Next::SignAgain => {
                        again.push(*i);
                        continue;
                    }
                },
            };
        }
        for i in again {
            results[i] = self.post_frame(endpoint, connection_ids[i], frame).await;
        }
        results
    }
}

/// Frames this long or longer are not pipelined: each pipelined request
/// carries a copy of the frame in the connection's write buffer.
const PIPELINE_BODY_UNDER: usize = 16 * 1024;

/// What to do after an attempt.
enum Next {
    Done(Result<()>),
    /// A 403 showed our clock off; it is corrected: sign once more.
    SignAgain,
}

/// What an attempt came back with.
enum Answer {
    Ok,
    Failed {
        status: u16,
        code: Option<String>,
        message: String,
        /// The answer's `Date`, epoch ms.
        date: Option<i64>,
    },
}

impl Inner {
    fn now(&self) -> SystemTime {
        let skew = self.skew_ms.load(Ordering::Relaxed);
        let now = (self.clock)();
        if skew >= 0 {
            now + Duration::from_millis(skew.unsigned_abs())
        } else {
            now - Duration::from_millis(skew.unsigned_abs())
        }
    }

    fn endpoint(&self, endpoint: &str) -> Result<Arc<Endpoint>> {
        if let Some(ep) = read(&self.endpoints).get(endpoint) {
            return Ok(ep.clone());
        }
        let ep = Arc::new(Endpoint::parse(endpoint, &self.tls, self.connect_timeout)?);
        write(&self.endpoints)
            .entry(endpoint.to_owned())
            .or_insert_with(|| ep.clone());
        Ok(ep)
    }

    /// The current credentials (by the clock without skew: expiry is ours).
    async fn signer(&self) -> Result<Arc<Signer>> {
        self.credentials.signer((self.clock)()).await
    }

    /// Signs the request to `connection_id`; the canonical request is
    /// copied into `canonical_out` when asked for.
    fn sign(
        &self,
        ep: &Endpoint,
        signer: &Signer,
        connection_id: &str,
        frame: &Frame,
        canonical_out: Option<&mut String>,
    ) -> Result<Signed> {
        if connection_id.is_empty() || connection_id == "." || connection_id == ".." {
            return Err(BackendError::new(
                ErrorKind::Validation,
                OP,
                format!("`{connection_id}` is not a connection id"),
            ));
        }
        let Some(region) = self.region.as_deref() else {
            return Err(BackendError::new(
                ErrorKind::Validation,
                OP,
                "no AWS region is configured",
            ));
        };
        let now_ms = system_ms(self.now());
        let secs = now_ms.div_euclid(1000);
        let amz_date = crate::clock::amz_date(now_ms);
        let date = std::str::from_utf8(&amz_date).unwrap_or_default();
        let day = signer.day_key(secs.div_euclid(86_400), &date[..8], region);
        let signature = sign::signature(
            &day,
            date,
            &ep.target,
            connection_id,
            frame,
            signer.token(),
            canonical_out,
        );
        Ok(Signed {
            amz_date,
            day,
            signature,
        })
    }

    fn timed_out(&self) -> BackendError {
        BackendError::new(
            ErrorKind::Timeout,
            OP,
            format!("no answer within {:?}", self.timeout),
        )
    }

    /// The outcome of an answer to the request signed as `signed`: a 403
    /// whose `Date` is far from our signing time corrects the clock and
    /// asks to sign again, once (`skew_retried` says it was done).
    fn judge(&self, answer: Answer, signed: &Signed, skew_retried: bool) -> Next {
        let Answer::Failed {
            status,
            code,
            message,
            date,
        } = answer
        else {
            return Next::Done(Ok(()));
        };
        if status == 403
            && !skew_retried
            && let (Some(server_ms), Some(signed_ms)) = (date, sign::amz_time_ms(&signed.amz_date))
            && (server_ms - signed_ms).abs() > SKEW_THRESHOLD_MS
        {
            let own = system_ms((self.clock)());
            self.skew_ms.store(server_ms - own, Ordering::Relaxed);
            tracing::warn!(
                skew_ms = server_ms - own,
                "clock skew: @connections refused a signature; correcting the signing clock"
            );
            return Next::SignAgain;
        }
        let kind = ErrorKind::from_status_and_code(status, code.as_deref());
        let code = code.as_deref().unwrap_or("unknown error");
        Next::Done(Err(BackendError::new(
            kind,
            OP,
            format!("service error: {code} (HTTP {status}): {message}"),
        )))
    }

    /// Sends the signed request and reads the answer.
    async fn send(
        &self,
        ep: &Endpoint,
        signer: &Signer,
        signed: &Signed,
        connection_id: &str,
        frame: &Frame,
    ) -> Result<Answer> {
        let body = frame.bytes();
        let head = |w: &mut Vec<u8>| write_head(w, ep, signer, signed, connection_id, body.len());
        answer_of(ep.origin.send(head, body).await)
    }
}

/// The head of the request signed as `signed`. Every part is checked or
/// encoded to be a valid request line and header value: the path by
/// `sign::push_label`, the host when the endpoint was parsed, the credentials
/// when they were loaded.
fn write_head(
    w: &mut Vec<u8>,
    ep: &Endpoint,
    signer: &Signer,
    signed: &Signed,
    connection_id: &str,
    body_len: usize,
) {
    w.extend_from_slice(b"POST ");
    w.extend_from_slice(ep.path_prefix.as_bytes());
    sign::push_label(w, connection_id);
    w.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    w.extend_from_slice(ep.host.as_bytes());
    let _ = write!(
        w,
        "\r\ncontent-type: {CONTENT_TYPE_VALUE}\r\ncontent-length: {body_len}\r\nx-amz-date: "
    );
    w.extend_from_slice(&signed.amz_date);
    if let Some(t) = &signer.session_token {
        w.extend_from_slice(b"\r\nx-amz-security-token: ");
        w.extend_from_slice(t.as_bytes());
    }
    w.extend_from_slice(b"\r\nauthorization: ");
    w.extend_from_slice(signed.day.authorization_prefix.as_bytes());
    w.extend_from_slice(signed.signature.as_bytes());
    w.extend_from_slice(b"\r\nuser-agent: ");
    w.extend_from_slice(USER_AGENT_VALUE.as_bytes());
    w.extend_from_slice(b"\r\n\r\n");
}

/// An exchange's result as the client's typed outcome.
fn answer_of(sent: std::result::Result<super::http1::Answer, SendError>) -> Result<Answer> {
    let answer = sent.map_err(|e| {
        let kind = match &e {
            SendError::ConnectTimeout => ErrorKind::Timeout,
            SendError::Connect(io) | SendError::Io(io)
                if io.kind() == std::io::ErrorKind::TimedOut =>
            {
                ErrorKind::Timeout
            }
            // Refused, reset, TLS, DNS, a garbled answer: the next
            // attempt may work.
            _ => ErrorKind::Network,
        };
        BackendError::new(kind, OP, format!("dispatch failure: {e}"))
    })?;
    if (200..300).contains(&answer.status) {
        return Ok(Answer::Ok);
    }
    let (code, message) = error_code_and_message(answer.error_type.as_deref(), &answer.body);
    Ok(Answer::Failed {
        status: answer.status,
        code,
        message,
        date: answer.date.as_deref().and_then(parse_http_date),
    })
}

/// A request's signature and what went into it.
struct Signed {
    /// `YYYYMMDDTHHMMSSZ`.
    amz_date: [u8; 16],
    day: Arc<DayKey>,
    signature: String,
}

/// Sent for operators' access logs; not signed (the SDK excludes it too).
const USER_AGENT_VALUE: &str = concat!("switchboard/", env!("CARGO_PKG_VERSION"));

impl Endpoint {
    fn parse(
        endpoint: &str,
        tls: &Arc<rustls::ClientConfig>,
        connect_timeout: Duration,
    ) -> Result<Self> {
        let uri: Uri = endpoint
            .parse()
            .map_err(|e| validation(format!("endpoint `{endpoint}` is not a URL: {e}")))?;
        let scheme = uri
            .scheme()
            .filter(|s| **s == Scheme::HTTP || **s == Scheme::HTTPS)
            .cloned()
            .ok_or_else(|| validation(format!("endpoint `{endpoint}` is not http(s)://")))?;
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| validation(format!("endpoint `{endpoint}` has no host")))?;
        if uri.query().is_some() || authority.as_str().contains('@') {
            return Err(validation(format!(
                "endpoint `{endpoint}` has a query or user info"
            )));
        }
        // Host as SigV4 (and HTTP) have it: the default port left out.
        let default_port = if scheme == Scheme::HTTPS { 443 } else { 80 };
        let host = match authority.port_u16() {
            Some(p) if p != default_port => authority.as_str().to_owned(),
            _ => authority.host().to_owned(),
        };
        let stage = uri.path().trim_end_matches('/');
        let path_prefix = format!("{stage}/@connections/");
        // SigV4 normalizes dot segments and empty segments away; a stage
        // path that has them would be signed as another path.
        if path_prefix[1..path_prefix.len() - 1]
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
        {
            return Err(validation(format!(
                "endpoint `{endpoint}` has an empty or dot path segment"
            )));
        }
        let port = authority.port_u16().unwrap_or(default_port);
        let origin = Origin::new(
            authority.host(),
            port,
            (scheme == Scheme::HTTPS).then(|| tls.clone()),
            connect_timeout,
        )
        .map_err(|e| validation(format!("endpoint `{endpoint}`: {e}")))?;
        Ok(Endpoint {
            origin,
            host: HeaderValue::from_str(&host)
                .map_err(|_| validation(format!("endpoint `{endpoint}`: bad host")))?,
            target: Target::new(&path_prefix, &host),
            path_prefix,
        })
    }
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), epoch ms.
fn parse_http_date(s: &str) -> Option<i64> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let mut it = s.split_ascii_whitespace().skip(1);
    let day: u32 = it.next()?.parse().ok()?;
    let month = it.next()?;
    let month = MONTHS.iter().position(|m| *m == month)? as u32 + 1;
    let year: i64 = it.next()?.parse().ok()?;
    let mut hms = it.next()?.split(':').map(|p| p.parse::<u32>().ok());
    let (h, m, sec) = (hms.next()??, hms.next()??, hms.next()??);
    crate::clock::epoch_ms(year, month, day, h, m, sec)
}

fn system_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

/// The error code (restJson1: `x-amzn-ErrorType`, else the body's `__type`
/// or `code`, without namespace) and message of an error answer.
fn error_code_and_message(error_type: Option<&str>, body: &[u8]) -> (Option<String>, String) {
    let json: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let field = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| json.as_ref()?.get(*n)?.as_str().map(str::to_owned))
    };
    let code = error_type
        .map(str::to_owned)
        .or_else(|| field(&["__type", "code", "Code"]))
        .map(|c| {
            let c = c.split(':').next().unwrap_or(&c);
            c.rsplit('#').next().unwrap_or(c).to_owned()
        })
        .filter(|c| !c.is_empty());
    let message = field(&["message", "Message"])
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned());
    (code, message)
}

fn validation(message: impl Into<String>) -> BackendError {
    BackendError::new(ErrorKind::Validation, OP, message)
}

/// TLS for `https://` endpoints: rustls on aws-lc-rs with the platform's
/// roots (the stack the SDK already builds), HTTP/1.1 by ALPN.
fn tls_config() -> rustls::ClientConfig {
    let mut config = crate::tls::client_config("@connections endpoints");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_keep_their_stage_and_drop_default_ports() {
        let tls = Arc::new(tls_config());
        let parse = |e: &str| Endpoint::parse(e, &tls, Duration::from_secs(1));
        let ep = parse("https://abc.execute-api.eu-west-1.amazonaws.com:443/prod/").unwrap();
        assert_eq!(ep.path_prefix, "/prod/@connections/");
        assert_eq!(ep.host, "abc.execute-api.eu-west-1.amazonaws.com");
        let local = parse("http://127.0.0.1:8080/dev").unwrap();
        assert_eq!(local.host, "127.0.0.1:8080");
        assert!(parse("ftp://x/dev").is_err());
        assert!(parse("http://x/a//b").is_err());
        assert!(parse("http://x/a/../b").is_err());
    }

    #[test]
    fn dates() {
        assert_eq!(
            parse_http_date("Wed, 27 Nov 2024 15:00:00 GMT"),
            Some(1_732_719_600_000)
        );
        assert_eq!(
            parse_http_date("Sun, 06 Jan 2030 08:49:37 GMT"),
            crate::clock::epoch_ms(2030, 1, 6, 8, 49, 37)
        );
        assert_eq!(parse_http_date("yesterday"), None);
    }

    #[test]
    fn error_codes_come_from_the_header_or_the_body() {
        let (code, message) = error_code_and_message(
            Some("GoneException:http://internal.amazon.com/coral/"),
            br#"{"message":"gone"}"#,
        );
        assert_eq!(code.as_deref(), Some("GoneException"));
        assert_eq!(message, "gone");
        let (code, _) = error_code_and_message(
            None,
            br#"{"__type":"com.amazon#LimitExceededException","message":"slow"}"#,
        );
        assert_eq!(code.as_deref(), Some("LimitExceededException"));
        let (code, message) = error_code_and_message(None, b"<html>");
        assert_eq!(code, None);
        assert_eq!(message, "<html>");
    }
}
