//! The lean @connections client (`LeanPush`) against its oracles: for a fixed
//! clock and fixed credentials (with and without a session token) it must
//! send what `aws-sdk-apigatewaymanagement` sends for PostToConnection, byte
//! for byte: path, `Authorization`, `x-amz-date`, `x-amz-security-token`,
//! body, and the same SigV4 canonical request. Both requests are captured by
//! a 127.0.0.1 recorder; the gateway's SigV4 verification must accept both;
//! and (with `aws-tests`, where the test venv exists) botocore's signer must
//! compute the same signature for the same request.
//!
//! The SDK also sends, and signs, three telemetry headers of its own
//! (`amz-sdk-invocation-id`, a random id per call; `amz-sdk-request`;
//! `x-amz-user-agent`) that the lean client leaves out. The SDK client here
//! removes them before signing (an interceptor), so the two requests have the
//! same headers and the signatures can be compared byte for byte.

mod support;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_apigatewaymanagement::config::interceptors::BeforeTransmitInterceptorContextMut;
use aws_sdk_apigatewaymanagement::config::{
    BehaviorVersion, ConfigBag, Credentials, Intercept, Region, RuntimeComponents,
};
use aws_sdk_apigatewaymanagement::primitives::Blob;
use aws_smithy_async::time::StaticTimeSource;
use axum::http::{HeaderMap, Method, Uri};
use bytes::Bytes;
use support::recorder::{Recorded, Recorder, Reply};
use switchboard::backend::aws::LeanPush;
use switchboard::backend::{ErrorKind, Push};
use switchboard::gateway::config::ManagementCredentials;
use switchboard::gateway::sigv4;
use switchboard::handlers::authorizer::Secret;

const AKID: &str = "AKIDEXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const TOKEN: &str = "IQoJb3JpZ2luX2VjEXAMPLE//////////wEaCXVzLWVhc3QtMSJHMEUCIQD+token=";
/// 2024-11-27T15:00:07Z.
const T: u64 = 1_732_719_607;

/// Ids as API Gateway makes them, and every character class the encoders
/// treat differently: `+`, `/`, `=`, `%`, reserved, space and non-ASCII.
const IDS: &[&str] = &[
    "L0SM9cOFvHcCIhw=",
    "abc",
    "a+b/c=d",
    "++//==",
    "%41%2F",
    "with space",
    "a:b@c!$&'()*,;?#[]",
    "-_.~",
    "..x",
    "é",
    "世界/中=",
    "emoji-😀",
];

/// Removes the SDK's own telemetry headers before it signs (see the module docs).
#[derive(Debug)]
struct WithoutSdkTelemetry;

impl Intercept for WithoutSdkTelemetry {
    fn name(&self) -> &'static str {
        "WithoutSdkTelemetry"
    }

    fn modify_before_signing(
        &self,
        ctx: &mut BeforeTransmitInterceptorContextMut<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let h = ctx.request_mut().headers_mut();
        for name in [
            "amz-sdk-invocation-id",
            "amz-sdk-request",
            "x-amz-user-agent",
        ] {
            h.remove(name);
        }
        Ok(())
    }
}

fn fixed_time() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(T)
}

fn credentials(token: Option<&str>) -> Credentials {
    Credentials::new(AKID, SECRET, token.map(str::to_owned), None, "parity")
}

fn sdk_client(endpoint: &str, token: Option<&str>) -> aws_sdk_apigatewaymanagement::Client {
    let conf = aws_sdk_apigatewaymanagement::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("eu-west-1"))
        .credentials_provider(credentials(token))
        .endpoint_url(endpoint)
        .time_source(StaticTimeSource::new(fixed_time()))
        .interceptor(WithoutSdkTelemetry)
        .retry_config(aws_sdk_apigatewaymanagement::config::retry::RetryConfig::disabled())
        .build();
    aws_sdk_apigatewaymanagement::Client::from_conf(conf)
}

async fn lean_client(token: Option<&str>, clock: fn() -> SystemTime) -> LeanPush {
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("eu-west-1"))
        .credentials_provider(credentials(token))
        .load()
        .await;
    LeanPush::new(&sdk, Duration::from_secs(10)).with_clock(Arc::new(clock))
}

/// The SDK's (label) encoding of an id: unreserved bytes as they are, every
/// other byte `%XX`.
fn label(id: &str) -> String {
    id.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn sha256_hex(data: &[u8]) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The SigV4 canonical request of a received request, straight from AWS's
/// description (not from either client's code): the path URI-encoded once
/// more (`/` kept), no query, the signed headers (lowercase, trimmed, sorted
/// as listed in `SignedHeaders`), the list, the body's SHA-256.
fn reference_canonical(r: &Recorded) -> String {
    let auth = r.headers["authorization"].to_str().unwrap();
    let signed = auth
        .split("SignedHeaders=")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap();
    let path: String = r
        .uri
        .split('?')
        .next()
        .unwrap()
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let mut out = format!("POST\n{path}\n\n");
    for name in signed.split(';') {
        let v = r.headers[name].to_str().unwrap().trim();
        out.push_str(&format!("{name}:{v}\n"));
    }
    out.push_str(&format!("\n{signed}\n{}", sha256_hex(r.body.as_bytes())));
    out
}

fn header<'a>(r: &'a Recorded, name: &str) -> Option<&'a str> {
    r.headers.get(name).map(|v| v.to_str().unwrap())
}

/// One frame through both clients to the recorder; returns (sdk, lean)
/// requests as received and the lean client's canonical request.
async fn both(
    rec: &Recorder,
    token: Option<&str>,
    id: &str,
    body: &str,
) -> (Recorded, Recorded, String) {
    let endpoint = rec.url("/dev");
    let path = format!("/dev/@connections/{}", label(id));
    let before = rec.requests_to(&path).len();
    sdk_client(&endpoint, token)
        .post_to_connection()
        .connection_id(id)
        .data(Blob::new(body.as_bytes().to_vec()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("SDK post to {id:?}: {e:?}"));
    let lean = lean_client(token, fixed_time).await;
    lean.post(&endpoint, id, Bytes::from(body.to_owned()))
        .await
        .unwrap_or_else(|e| panic!("lean post to {id:?}: {e}"));
    let canonical = lean
        .canonical_request(&endpoint, id, Bytes::from(body.to_owned()))
        .await
        .unwrap();
    let got = rec.requests_to(&path);
    assert_eq!(got.len(), before + 2, "both requests reach {path}");
    (got[before].clone(), got[before + 1].clone(), canonical)
}

#[tokio::test]
async fn the_lean_client_signs_byte_for_byte_like_the_sdk() {
    let rec = Recorder::start().await;
    let body = r#"{"type":"message","payload":{"text":"héllo"}}"#;
    for token in [None, Some(TOKEN)] {
        for id in IDS {
            let (sdk, lean, canonical) = both(&rec, token, id, body).await;
            let what = format!("id {id:?}, token {}", token.is_some());
            assert_eq!(lean.uri, sdk.uri, "path, {what}");
            assert_eq!(lean.method, sdk.method, "{what}");
            assert_eq!(lean.body, sdk.body, "{what}");
            for name in [
                "authorization",
                "x-amz-date",
                "x-amz-security-token",
                "content-type",
                "content-length",
                "host",
            ] {
                assert_eq!(header(&lean, name), header(&sdk, name), "{name}, {what}");
            }
            assert_eq!(header(&sdk, "x-amz-date"), Some("20241127T150007Z"));
            assert_eq!(
                header(&sdk, "x-amz-security-token"),
                token,
                "session token sent, {what}"
            );
            // The canonical request: the lean client's own, and the one AWS's
            // description gives for what each client sent.
            assert_eq!(canonical, reference_canonical(&sdk), "canonical, {what}");
            assert_eq!(canonical, reference_canonical(&lean), "canonical, {what}");
        }
    }
}

#[tokio::test]
async fn the_gateway_verifies_both_clients_signatures() {
    let rec = Recorder::start().await;
    let creds = ManagementCredentials {
        access_key_id: AKID.into(),
        secret_access_key: Secret::new(SECRET),
    };
    for id in IDS {
        let (sdk, lean, _) = both(&rec, None, id, "frame").await;
        for (who, r) in [("sdk", &sdk), ("lean", &lean)] {
            let uri: Uri = r.uri.parse().unwrap();
            let checked = sigv4::verify(
                &Method::POST,
                &uri,
                &r.headers,
                r.body.as_bytes(),
                &creds,
                fixed_time(),
            );
            assert_eq!(checked, Ok(()), "{who}, id {id:?}");
            // And a changed body is refused: the check can fail.
            let tampered = sigv4::verify(
                &Method::POST,
                &uri,
                &r.headers,
                b"other",
                &creds,
                fixed_time(),
            );
            assert!(tampered.is_err(), "{who}, id {id:?}");
        }
    }
}

/// botocore's SigV4 signer (the Python SDK) over the request the lean client
/// sent: same canonical request, same `Authorization`.
#[cfg(feature = "aws-tests")]
#[tokio::test]
async fn botocore_computes_the_same_signature() {
    let python = std::env::var("SWITCHBOARD_TEST_PYTHON").expect(
        "SWITCHBOARD_TEST_PYTHON: a Python with botocore (scripts/test.sh sets it to .venv-test/bin/python)",
    );
    let rec = Recorder::start().await;
    let mut cases = Vec::new();
    let mut expected = Vec::new();
    for token in [None, Some(TOKEN)] {
        for id in IDS {
            let (_, lean, canonical) = both(&rec, token, id, "frame ✓").await;
            let signed: Vec<(String, String)> =
                ["content-length", "content-type", "host", "x-amz-date"]
                    .iter()
                    .chain(token.iter().map(|_| &"x-amz-security-token"))
                    .map(|n| (n.to_string(), header(&lean, n).unwrap().to_owned()))
                    .collect();
            cases.push(serde_json::json!({
                "url": format!("{}{}", rec.base_url, lean.uri),
                "headers": signed,
                "body": lean.body,
                "token": token,
                "amz_date": header(&lean, "x-amz-date"),
            }));
            expected.push((
                header(&lean, "authorization").unwrap().to_owned(),
                canonical,
            ));
        }
    }
    let input = serde_json::json!({ "akid": AKID, "secret": SECRET, "cases": cases });
    let script = r#"
import json, sys
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
d = json.load(sys.stdin)
out = []
for c in d["cases"]:
    req = AWSRequest(method="POST", url=c["url"], data=c["body"].encode("utf-8"))
    for k, v in c["headers"]:
        req.headers[k] = v
    # add_auth() takes the time from the clock, then runs these steps.
    req.context["timestamp"] = c["amz_date"]
    auth = SigV4Auth(Credentials(d["akid"], d["secret"], c["token"]), "execute-api", "eu-west-1")
    canonical = auth.canonical_request(req)
    sts = auth.string_to_sign(req, canonical)
    sig = auth.signature(sts, req)
    signed = auth.signed_headers(auth.headers_to_sign(req))
    out.append({
        "authorization": "AWS4-HMAC-SHA256 Credential=%s, SignedHeaders=%s, Signature=%s" % (auth.scope(req), signed, sig),
        "canonical": canonical,
    })
json.dump(out, sys.stdout)
"#;
    let mut child = std::process::Command::new(&python)
        .arg("-c")
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "botocore script failed");
    let got: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got.len(), expected.len());
    for ((authorization, canonical), b) in expected.iter().zip(&got) {
        assert_eq!(b["canonical"].as_str().unwrap(), canonical);
        assert_eq!(b["authorization"].as_str().unwrap(), authorization);
    }
}

/// Answers like API Gateway: SigV4 checked by the gateway's own verifier
/// against this machine's clock; a refused signature gets 403
/// InvalidSignatureException (with the server's `Date`, as hyper sends it).
async fn verifying_server() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = seen.clone();
    let app = axum::Router::new().fallback(
        move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let creds = ManagementCredentials {
                    access_key_id: AKID.into(),
                    secret_access_key: Secret::new(SECRET),
                };
                match sigv4::verify(&method, &uri, &headers, &body, &creds, SystemTime::now()) {
                    Ok(()) => (axum::http::StatusCode::OK, HeaderMap::new(), String::new()),
                    Err(e) => {
                        let mut h = HeaderMap::new();
                        h.insert(
                            "x-amzn-ErrorType",
                            "InvalidSignatureException".parse().unwrap(),
                        );
                        (
                            axum::http::StatusCode::FORBIDDEN,
                            h,
                            serde_json::json!({ "message": e.to_string() }).to_string(),
                        )
                    }
                }
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/dev", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

fn twenty_minutes_slow() -> SystemTime {
    SystemTime::now() - Duration::from_secs(20 * 60)
}

#[tokio::test]
async fn a_skewed_clock_is_corrected_from_the_403s_date() {
    let (endpoint, seen) = verifying_server().await;
    let lean = lean_client(None, twenty_minutes_slow).await;
    lean.post(&endpoint, "abc=", Bytes::from_static(b"hi"))
        .await
        .expect("signed again with the corrected clock");
    assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 2);
    let skew = lean.clock_skew_ms();
    assert!(
        (19 * 60_000..=21 * 60_000).contains(&skew),
        "learnt a skew of {skew} ms"
    );
    // From then on one request each.
    lean.post(&endpoint, "abc=", Bytes::from_static(b"again"))
        .await
        .unwrap();
    assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_refused_signature_at_the_right_time_is_access_denied_without_a_retry() {
    let (endpoint, seen) = verifying_server().await;
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("eu-west-1"))
        .credentials_provider(Credentials::new(AKID, "not-the-secret", None, None, "t"))
        .load()
        .await;
    let lean = LeanPush::new(&sdk, Duration::from_secs(10));
    let err = lean
        .post(&endpoint, "abc=", Bytes::from_static(b"hi"))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::AccessDenied, "{err}");
    assert!(
        err.to_string().contains("InvalidSignatureException"),
        "{err}"
    );
    assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(lean.clock_skew_ms(), 0);
}

#[tokio::test]
async fn answers_map_to_the_same_typed_outcomes_as_the_sdks() {
    let rec = Recorder::start().await;
    let endpoint = rec.url("/dev");
    let cases = [
        ("gone", 410, "GoneException", ErrorKind::Gone),
        (
            "forbidden",
            403,
            "ForbiddenException",
            ErrorKind::AccessDenied,
        ),
        ("big", 413, "PayloadTooLargeException", ErrorKind::TooLarge),
        ("slow", 429, "LimitExceededException", ErrorKind::Throttled),
        (
            "broken",
            500,
            "InternalServerErrorException",
            ErrorKind::Server,
        ),
        ("down", 503, "", ErrorKind::Server),
    ];
    let lean = lean_client(None, SystemTime::now).await;
    for (id, status, code, kind) in cases {
        let mut reply = Reply::new(status, r#"{"message":"nope"}"#);
        if !code.is_empty() {
            reply.headers.push(("x-amzn-ErrorType".into(), code.into()));
        }
        rec.reply(&format!("/dev/@connections/{id}"), reply);
        let err = lean
            .post(&endpoint, id, Bytes::from_static(b"x"))
            .await
            .unwrap_err();
        assert_eq!(err.kind, kind, "{id}: {err}");
        // The SDK client classifies the same answer the same way.
        let sdk = switchboard::backend::aws::AwsBackend::new(
            aws_config::defaults(aws_config::BehaviorVersion::latest())
                .region(aws_config::Region::new("eu-west-1"))
                .credentials_provider(credentials(None))
                .load()
                .await,
        )
        .sdk_push();
        let sdk_err = sdk
            .post(&endpoint, id, Bytes::from_static(b"x"))
            .await
            .unwrap_err();
        assert_eq!(sdk_err.kind, kind, "sdk, {id}: {sdk_err}");
    }
}

#[tokio::test]
async fn a_reset_connection_is_a_network_error_and_a_hung_one_a_timeout() {
    // Accepts and closes at once: reset / closed before an answer.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            drop(s);
        }
    });
    let lean = lean_client(None, SystemTime::now).await;
    let err = lean
        .post(
            &format!("http://{addr}/dev"),
            "abc",
            Bytes::from_static(b"x"),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Network, "{err}");
    assert!(err.is_retriable());

    // Holds the answer: the attempt times out.
    let rec = Recorder::start().await;
    let mut held = Reply::new(200, "");
    held.hold = Some(Arc::new(tokio::sync::Semaphore::new(0)));
    rec.reply("/dev/@connections/held", held);
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("eu-west-1"))
        .credentials_provider(credentials(None))
        .load()
        .await;
    let short = LeanPush::new(&sdk, Duration::from_millis(300));
    let err = short
        .post(&rec.url("/dev"), "held", Bytes::from_static(b"x"))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Timeout, "{err}");
}
