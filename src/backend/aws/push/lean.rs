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
//! Over 400 lines (about 125 are unit tests): the signer, the credential cache
//! and the pooled sender share the clock-skew state. A split into
//! `push/{sign,credentials,send}.rs` is left for the next change to this file.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{
    AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, DATE, HOST, HeaderName, HeaderValue, USER_AGENT,
};
use hyper::http::uri::{Authority, PathAndQuery, Scheme};
use hyper::{Method, Request, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::backend::{BackendError, ErrorKind, Frame, Push, Result};

/// The operation name in errors and logs (as with the SDK client).
const OP: &str = "apigateway.PostToConnection";
/// The service the @connections API is signed for.
const SERVICE: &str = "execute-api";
/// The SDK's content type for PostToConnection's blob payload.
const CONTENT_TYPE_VALUE: &str = "application/octet-stream";
/// The SDK's default connect timeout.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_millis(3100);
/// Credentials without an expiry are fetched again after this long (the
/// SDK's lazy identity cache default).
const DEFAULT_EXPIRATION: Duration = Duration::from_secs(15 * 60);
/// Credentials are refreshed this long (plus up to half again, jittered)
/// before they expire, like the SDK's lazy identity cache.
const REFRESH_BUFFER: Duration = Duration::from_secs(10);
/// How much of an error answer is read (its JSON `message`).
const MAX_ERROR_BODY: usize = 64 * 1024;
/// A 403 whose `Date` is further than this from our signing time is taken
/// as clock skew: the clock is corrected and the request signed again.
const SKEW_THRESHOLD_MS: i64 = 60_000;
/// x-amz-security-token.
const SECURITY_TOKEN: HeaderName = HeaderName::from_static("x-amz-security-token");
/// x-amz-date.
const AMZ_DATE: HeaderName = HeaderName::from_static("x-amz-date");

/// The clock requests are signed with (tests fix it).
pub type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

type HttpsClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Posts frames to `@connections` with one pooled keep-alive HTTP/1.1
/// client, signing each request with SigV4 (see the module docs).
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
    http: HttpsClient,
    provider: Option<SharedCredentialsProvider>,
    region: Option<String>,
    timeout: Duration,
    clock: Clock,
    /// Added to the clock when signing: server time minus ours, learnt from
    /// a 403's `Date`.
    skew_ms: AtomicI64,
    signer: RwLock<Option<Arc<Signer>>>,
    refreshing: tokio::sync::Mutex<()>,
    endpoints: RwLock<HashMap<String, Arc<Endpoint>>>,
}

/// One set of credentials and what is derived from them.
struct Signer {
    access_key_id: String,
    secret: String,
    session_token: Option<HeaderValue>,
    /// When to fetch credentials again (before they expire).
    refresh_at: SystemTime,
    /// Hard expiry, if the provider gave one.
    expires_at: Option<SystemTime>,
    /// The signing key and `Authorization` prefix of the last day signed.
    day: RwLock<Option<Arc<DayKey>>>,
}

/// Derived once per (credentials, date, region, service).
struct DayKey {
    /// Days since the epoch.
    day: i64,
    key: [u8; 32],
    /// `AWS4-HMAC-SHA256 Credential=…/aws4_request, SignedHeaders=…, Signature=`.
    authorization_prefix: String,
    /// `20240101/us-east-1/execute-api/aws4_request`.
    scope: String,
}

/// What is fixed per @connections endpoint.
struct Endpoint {
    scheme: Scheme,
    authority: Authority,
    host: HeaderValue,
    /// `/{stage}/@connections/`, as sent.
    path_prefix: String,
    /// `POST\n` and the canonical (SigV4-encoded) form of `path_prefix`.
    canonical_prefix: String,
    /// `host:{host}\n`.
    host_line: String,
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
                http: https_client(connect),
                provider: sdk.credentials_provider(),
                region: sdk.region().map(|r| r.as_ref().to_owned()),
                timeout,
                clock: Arc::new(SystemTime::now),
                skew_ms: AtomicI64::new(0),
                signer: RwLock::default(),
                refreshing: tokio::sync::Mutex::new(()),
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

    /// The request this client would send for `data` to `connection_id` at
    /// `endpoint` now, and its SigV4 canonical request (the parity tests
    /// compare both with the SDK's).
    pub async fn signed_request(
        &self,
        endpoint: &str,
        connection_id: &str,
        data: Bytes,
    ) -> Result<(Request<Full<Bytes>>, String)> {
        let ep = self.inner.endpoint(endpoint)?;
        let frame = Frame::new(data);
        let signer = self.inner.signer().await?;
        let mut canonical = String::new();
        let req = self
            .inner
            .build(&ep, &signer, connection_id, &frame, Some(&mut canonical))?;
        Ok((req, canonical))
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
            let req = inner.build(&ep, &signer, connection_id, frame, None)?;
            let signed_at = amz_time_ms(&req);
            let sent = tokio::time::timeout(inner.timeout, inner.send(req)).await;
            let answer = match sent {
                Ok(Ok(a)) => a,
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    return Err(BackendError::new(
                        ErrorKind::Timeout,
                        OP,
                        format!("no answer within {:?}", inner.timeout),
                    ));
                }
            };
            let Answer::Failed {
                status,
                code,
                message,
                date,
            } = answer
            else {
                return Ok(());
            };
            // A signature refused at a time far from ours: our clock is off.
            // Correct it from the answer's Date and sign once more.
            if status == 403
                && !skew_retried
                && let (Some(server_ms), Some(signed_ms)) = (date, signed_at)
                && (server_ms - signed_ms).abs() > SKEW_THRESHOLD_MS
            {
                let own = system_ms((inner.clock)());
                inner.skew_ms.store(server_ms - own, Ordering::Relaxed);
                tracing::warn!(
                    skew_ms = server_ms - own,
                    "clock skew: @connections refused a signature; correcting the signing clock"
                );
                skew_retried = true;
                continue;
            }
            let kind = ErrorKind::from_status_and_code(status, code.as_deref());
            let code = code.as_deref().unwrap_or("unknown error");
            return Err(BackendError::new(
                kind,
                OP,
                format!("service error: {code} (HTTP {status}): {message}"),
            ));
        }
    }
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

thread_local! {
    /// The canonical request and string to sign of the request being
    /// signed on this thread (reused: no allocation per recipient).
    static SCRATCH: RefCell<(String, String)> = const { RefCell::new((String::new(), String::new())) };
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
        let ep = Arc::new(Endpoint::parse(endpoint)?);
        write(&self.endpoints)
            .entry(endpoint.to_owned())
            .or_insert_with(|| ep.clone());
        Ok(ep)
    }

    /// The current credentials, fetched (once, for all callers) when there
    /// are none or they are about to expire.
    async fn signer(&self) -> Result<Arc<Signer>> {
        let now = (self.clock)();
        if let Some(s) = read(&self.signer).as_ref()
            && now < s.refresh_at
        {
            return Ok(s.clone());
        }
        let _one = self.refreshing.lock().await;
        let current = read(&self.signer).clone();
        if let Some(s) = &current
            && now < s.refresh_at
        {
            return Ok(s.clone());
        }
        let Some(provider) = &self.provider else {
            return Err(BackendError::new(
                ErrorKind::AccessDenied,
                OP,
                "no AWS credentials provider is configured",
            ));
        };
        match provider.provide_credentials().await {
            Ok(c) => {
                let expires_at = c.expiry();
                let until = expires_at.unwrap_or(now + DEFAULT_EXPIRATION);
                let buffer = REFRESH_BUFFER.mul_f64(1.0 + rand::random::<f64>() * 0.5);
                let session_token = c
                    .session_token()
                    .map(|t| HeaderValue::from_str(t.trim_matches(' ')))
                    .transpose()
                    .map_err(|_| {
                        BackendError::new(
                            ErrorKind::AccessDenied,
                            OP,
                            "the session token is not a valid header value",
                        )
                    })?;
                let signer = Arc::new(Signer {
                    access_key_id: c.access_key_id().to_owned(),
                    secret: c.secret_access_key().to_owned(),
                    session_token,
                    refresh_at: until.checked_sub(buffer).unwrap_or(now),
                    expires_at,
                    day: RwLock::default(),
                });
                *write(&self.signer) = Some(signer.clone());
                Ok(signer)
            }
            // Keep signing with credentials that have not expired yet.
            Err(e) => match current {
                Some(s) if s.expires_at.is_none_or(|t| now < t) => {
                    tracing::warn!(error = %DisplayCredentialsError(&e), "could not refresh AWS credentials; using the cached ones");
                    Ok(s)
                }
                _ => Err(credentials_error(&e)),
            },
        }
    }

    /// The signed request to `connection_id`; the canonical request is
    /// copied into `canonical_out` when asked for.
    fn build(
        &self,
        ep: &Endpoint,
        signer: &Signer,
        connection_id: &str,
        frame: &Frame,
        canonical_out: Option<&mut String>,
    ) -> Result<Request<Full<Bytes>>> {
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
        let amz_date = amz_date(secs);
        let amz_date = std::str::from_utf8(&amz_date).unwrap_or_default();
        let day = signer.day_key(secs.div_euclid(86_400), &amz_date[..8], region);

        let mut path = String::with_capacity(ep.path_prefix.len() + connection_id.len() * 3);
        path.push_str(&ep.path_prefix);
        label_encode(&mut path, connection_id, false);
        let len = frame.bytes().len();

        let authorization = SCRATCH.with_borrow_mut(|(creq, sts)| {
            creq.clear();
            creq.push_str(&ep.canonical_prefix);
            label_encode(creq, connection_id, true);
            // No query string; then the signed headers, sorted.
            let _ = write!(
                creq,
                "\n\ncontent-length:{len}\ncontent-type:{CONTENT_TYPE_VALUE}\n"
            );
            creq.push_str(&ep.host_line);
            creq.push_str("x-amz-date:");
            creq.push_str(amz_date);
            creq.push('\n');
            if let Some(t) = &signer.session_token {
                creq.push_str("x-amz-security-token:");
                creq.push_str(t.to_str().unwrap_or_default());
                creq.push('\n');
            }
            creq.push('\n');
            creq.push_str(signed_headers(signer.session_token.is_some()));
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
                std::str::from_utf8(&crate::backend::hex_lower(digest.as_ref()))
                    .unwrap_or_default(),
            );
            let signature = aws_sigv4::sign::v4::calculate_signature(day.key, sts.as_bytes());
            if let Some(out) = canonical_out {
                out.clone_from(creq);
            }
            let mut authorization =
                String::with_capacity(day.authorization_prefix.len() + signature.len());
            authorization.push_str(&day.authorization_prefix);
            authorization.push_str(&signature);
            authorization
        });

        let uri = Uri::builder()
            .scheme(ep.scheme.clone())
            .authority(ep.authority.clone())
            .path_and_query(
                PathAndQuery::from_maybe_shared(Bytes::from(path))
                    .map_err(|e| validation(format!("bad connection id: {e}")))?,
            )
            .build()
            .map_err(|e| validation(format!("bad connection id: {e}")))?;
        let mut req = Request::new(Full::new(frame.bytes().clone()));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = uri;
        let h = req.headers_mut();
        h.reserve(8);
        h.insert(HOST, ep.host.clone());
        h.insert(CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE_VALUE));
        h.insert(CONTENT_LENGTH, HeaderValue::from(len));
        h.insert(
            AMZ_DATE,
            HeaderValue::from_str(amz_date).map_err(|_| validation("bad date"))?,
        );
        if let Some(t) = &signer.session_token {
            h.insert(SECURITY_TOKEN, t.clone());
        }
        h.insert(
            AUTHORIZATION,
            HeaderValue::from_maybe_shared(Bytes::from(authorization))
                .map_err(|_| validation("the access key id is not a valid header value"))?,
        );
        h.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
        Ok(req)
    }

    async fn send(&self, req: Request<Full<Bytes>>) -> Result<Answer> {
        let resp = self.http.request(req).await.map_err(|e| {
            let kind = if is_timeout(&e) {
                ErrorKind::Timeout
            } else {
                // Refused, reset, TLS, DNS: the next attempt may work.
                ErrorKind::Network
            };
            BackendError::new(kind, OP, format!("dispatch failure: {}", error_chain(&e)))
        })?;
        let status = resp.status().as_u16();
        let (parts, body) = resp.into_parts();
        if (200..300).contains(&status) {
            // Read to the end so the connection goes back to the pool.
            body.collect()
                .await
                .map_err(|e| network(format!("reading the answer: {e}")))?;
            return Ok(Answer::Ok);
        }
        let body = Limited::new(body, MAX_ERROR_BODY)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let (code, message) = error_code_and_message(&parts.headers, &body);
        let date = parts
            .headers
            .get(DATE)
            .and_then(|d| d.to_str().ok())
            .and_then(parse_http_date);
        Ok(Answer::Failed {
            status,
            code,
            message,
            date,
        })
    }
}

/// Sent for operators' access logs; not signed (the SDK excludes it too).
const USER_AGENT_VALUE: &str = concat!("switchboard/", env!("CARGO_PKG_VERSION"));

fn signed_headers(with_token: bool) -> &'static str {
    if with_token {
        "content-length;content-type;host;x-amz-date;x-amz-security-token"
    } else {
        "content-length;content-type;host;x-amz-date"
    }
}

impl Signer {
    /// The signing key of `day` (derived on the first request of the day).
    fn day_key(&self, day: i64, yyyymmdd: &str, region: &str) -> Arc<DayKey> {
        if let Some(k) = read(&self.day).as_ref()
            && k.day == day
        {
            return k.clone();
        }
        let time = UNIX_EPOCH + Duration::from_secs(u64::try_from(day * 86_400).unwrap_or(0));
        let derived =
            aws_sigv4::sign::v4::generate_signing_key(&self.secret, time, region, SERVICE);
        let mut key = [0u8; 32];
        key.copy_from_slice(&derived.as_ref()[..32]);
        let scope = format!("{yyyymmdd}/{region}/{SERVICE}/aws4_request");
        let k = Arc::new(DayKey {
            day,
            key,
            authorization_prefix: format!(
                "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={}, Signature=",
                self.access_key_id,
                signed_headers(self.session_token.is_some())
            ),
            scope,
        });
        *write(&self.day) = Some(k.clone());
        k
    }
}

impl Endpoint {
    fn parse(endpoint: &str) -> Result<Self> {
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
        let mut canonical_prefix = String::from("POST\n");
        for b in path_prefix.bytes() {
            if b == b'/' || is_unreserved(b) {
                canonical_prefix.push(char::from(b));
            } else {
                push_pct(&mut canonical_prefix, b);
            }
        }
        Ok(Endpoint {
            host_line: format!("host:{host}\n"),
            host: HeaderValue::from_str(&host)
                .map_err(|_| validation(format!("endpoint `{endpoint}`: bad host")))?,
            scheme,
            authority,
            path_prefix,
            canonical_prefix,
        })
    }
}

/// RFC 3986 unreserved: what the SDK leaves as is in a path label.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn push_pct(out: &mut String, b: u8) {
    out.push('%');
    push_hex(out, b);
}

fn push_hex(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push(char::from(HEX[usize::from(b >> 4)]));
    out.push(char::from(HEX[usize::from(b & 0xf)]));
}

/// The connection id as a path label, encoded as the SDK encodes it (every
/// byte but unreserved ones as `%XX`, `/` included); `twice` gives SigV4's
/// canonical form of that (each `%` again as `%25`).
fn label_encode(out: &mut String, id: &str, twice: bool) {
    for b in id.bytes() {
        if is_unreserved(b) {
            out.push(char::from(b));
        } else {
            if twice {
                // `%` is itself encoded: `%25` then the two hex digits.
                out.push_str("%25");
            } else {
                out.push('%');
            }
            push_hex(out, b);
        }
    }
}

/// `YYYYMMDDTHHMMSSZ` of epoch seconds.
fn amz_date(secs: i64) -> [u8; 16] {
    let iso = crate::clock::iso_time(secs * 1000); // 2024-11-27T15:00:00.000Z
    let b = iso.as_bytes();
    let mut out = *b"00000000T000000Z";
    if b.len() == 24 {
        out[0..4].copy_from_slice(&b[0..4]);
        out[4..6].copy_from_slice(&b[5..7]);
        out[6..8].copy_from_slice(&b[8..10]);
        out[9..11].copy_from_slice(&b[11..13]);
        out[11..13].copy_from_slice(&b[14..16]);
        out[13..15].copy_from_slice(&b[17..19]);
    }
    out
}

/// The signing time of a built request (from its `x-amz-date`), epoch ms.
fn amz_time_ms(req: &Request<Full<Bytes>>) -> Option<i64> {
    let s = req.headers().get(AMZ_DATE)?.to_str().ok()?;
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<u32>().ok();
    crate::clock::epoch_ms(
        i64::from(n(0..4)?),
        n(4..6)?,
        n(6..8)?,
        n(9..11)?,
        n(11..13)?,
        n(13..15)?,
    )
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
fn error_code_and_message(headers: &hyper::HeaderMap, body: &[u8]) -> (Option<String>, String) {
    let json: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let field = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| json.as_ref()?.get(*n)?.as_str().map(str::to_owned))
    };
    let code = headers
        .get("x-amzn-errortype")
        .and_then(|v| v.to_str().ok())
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

fn is_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::TimedOut
        {
            return true;
        }
        cur = err.source();
    }
    false
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(err) = cur {
        let _ = write!(s, ": {err}");
        cur = err.source();
    }
    s
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn validation(message: impl Into<String>) -> BackendError {
    BackendError::new(ErrorKind::Validation, OP, message)
}

fn network(message: impl Into<String>) -> BackendError {
    BackendError::new(ErrorKind::Network, OP, message)
}

struct DisplayCredentialsError<'a>(&'a CredentialsError);

impl std::fmt::Display for DisplayCredentialsError<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&error_chain(self.0))
    }
}

/// A provider that timed out or failed may work next time; missing or
/// invalid credentials will not.
fn credentials_error(e: &CredentialsError) -> BackendError {
    let kind = match e {
        CredentialsError::ProviderTimedOut(_) => ErrorKind::Timeout,
        CredentialsError::ProviderError(_) => ErrorKind::Network,
        _ => ErrorKind::AccessDenied,
    };
    BackendError::new(
        kind,
        OP,
        format!(
            "cannot load AWS credentials: {}",
            DisplayCredentialsError(e)
        ),
    )
}

/// A pooled keep-alive HTTP/1.1 client for `http://` and `https://` (rustls
/// on aws-lc-rs, the platform's roots: the stack the SDK already builds).
fn https_client(connect_timeout: Duration) -> HttpsClient {
    let builder = crate::tls::connector_builder("@connections endpoints");
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    let connector = builder.https_or_http().enable_http1().wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .build(connector)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_encoded_like_the_sdk_and_twice_for_sigv4() {
        let mut once = String::new();
        label_encode(&mut once, "ab+/=cd-_.~é", false);
        assert_eq!(once, "ab%2B%2F%3Dcd-_.~%C3%A9");
        let mut twice = String::new();
        label_encode(&mut twice, "ab+/=cd-_.~é", true);
        assert_eq!(twice, "ab%252B%252F%253Dcd-_.~%25C3%25A9");
    }

    #[test]
    fn endpoints_keep_their_stage_and_drop_default_ports() {
        let ep =
            Endpoint::parse("https://abc.execute-api.eu-west-1.amazonaws.com:443/prod/").unwrap();
        assert_eq!(ep.path_prefix, "/prod/@connections/");
        assert_eq!(ep.canonical_prefix, "POST\n/prod/%40connections/");
        assert_eq!(
            ep.host_line,
            "host:abc.execute-api.eu-west-1.amazonaws.com\n"
        );
        let local = Endpoint::parse("http://127.0.0.1:8080/dev").unwrap();
        assert_eq!(local.host_line, "host:127.0.0.1:8080\n");
        assert!(Endpoint::parse("ftp://x/dev").is_err());
        assert!(Endpoint::parse("http://x/a//b").is_err());
        assert!(Endpoint::parse("http://x/a/../b").is_err());
    }

    /// Counts fetches; its credentials expire `ttl` after each fetch.
    #[derive(Debug)]
    struct Counting {
        fetches: Arc<std::sync::atomic::AtomicUsize>,
        ttl: Option<Duration>,
    }

    impl ProvideCredentials for Counting {
        fn provide_credentials<'a>(
            &'a self,
        ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            let n = self.fetches.fetch_add(1, Ordering::SeqCst);
            aws_credential_types::provider::future::ProvideCredentials::ready(Ok(
                aws_credential_types::Credentials::new(
                    format!("AKID{n}"),
                    "secret",
                    Some("token".into()),
                    self.ttl.map(|t| SystemTime::now() + t),
                    "counting",
                ),
            ))
        }
    }

    async fn fetches_for(ttl: Option<Duration>) -> (usize, String) {
        let fetches = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let provider = Counting {
            fetches: fetches.clone(),
            ttl,
        };
        let sdk = SdkConfig::builder()
            .region(aws_config::Region::new("eu-west-1"))
            .credentials_provider(SharedCredentialsProvider::new(provider))
            .build();
        let push = LeanPush::new(&sdk, Duration::from_secs(1));
        let mut last = String::new();
        for _ in 0..3 {
            let s = push.inner.signer().await.unwrap();
            assert_eq!(s.session_token.as_ref().unwrap(), "token");
            last = s.access_key_id.clone();
        }
        (fetches.load(Ordering::SeqCst), last)
    }

    #[tokio::test]
    async fn credentials_are_cached_until_shortly_before_they_expire() {
        // An hour left: fetched once. No expiry: once (kept 15 minutes).
        assert_eq!(
            fetches_for(Some(Duration::from_secs(3600))).await,
            (1, "AKID0".into())
        );
        assert_eq!(fetches_for(None).await, (1, "AKID0".into()));
        // Inside the refresh buffer: fetched again each time.
        assert_eq!(
            fetches_for(Some(Duration::from_secs(5))).await,
            (3, "AKID2".into())
        );
    }

    #[test]
    fn dates() {
        assert_eq!(&amz_date(1_732_719_600), b"20241127T150000Z");
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
        let mut h = hyper::HeaderMap::new();
        h.insert(
            "x-amzn-errortype",
            HeaderValue::from_static("GoneException:http://internal.amazon.com/coral/"),
        );
        let (code, message) = error_code_and_message(&h, br#"{"message":"gone"}"#);
        assert_eq!(code.as_deref(), Some("GoneException"));
        assert_eq!(message, "gone");
        let (code, _) = error_code_and_message(
            &hyper::HeaderMap::new(),
            br#"{"__type":"com.amazon#LimitExceededException","message":"slow"}"#,
        );
        assert_eq!(code.as_deref(), Some("LimitExceededException"));
        let (code, message) = error_code_and_message(&hyper::HeaderMap::new(), b"<html>");
        assert_eq!(code, None);
        assert_eq!(message, "<html>");
    }
}
