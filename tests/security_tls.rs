//! Transport and management security: `wss://`/`https://` with a certificate
//! generated for the test (no plaintext on the port), @connections callers
//! verified with SigV4 through the real `aws-sdk-apigatewaymanagement`
//! client, and a gateway that would expose @connections without
//! authentication refusing to start (exit 2).

mod support;

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_apigatewaymanagement::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_apigatewaymanagement::error::ProvideErrorMetadata;
use aws_sdk_apigatewaymanagement::primitives::Blob;
use axum::http::Request;
use futures::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use support::embedded::TempDir;
use support::secure::{Secured, accepted, config_text, request};
use support::unique;
use support::ws::{next_text, whoami};
use tokio::net::TcpStream;
use tokio::process::Command;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::Message;

/// A self-signed certificate for `localhost`, written as cert.pem/key.pem.
fn certificate(files: &TempDir) -> rcgen::CertifiedKey<rcgen::KeyPair> {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    std::fs::write(files.path().join("cert.pem"), ck.cert.pem()).unwrap();
    std::fs::write(files.path().join("key.pem"), ck.signing_key.serialize_pem()).unwrap();
    ck
}

/// A TLS connection to the gateway trusting only `cert`.
async fn tls(addr: std::net::SocketAddr, cert: &rcgen::Certificate) -> TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await.unwrap();
    TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake")
}

#[tokio::test]
async fn wss_and_https_with_a_user_supplied_certificate_and_no_plaintext() {
    let files = TempDir::new("sb-sec-tls");
    let ck = certificate(&files);
    let text = config_text("", "", "[tls]\ncert = \"cert.pem\"\nkey = \"key.pem\"\n");
    let s = Secured::start(&text, files, &[]).await;
    let addr = s.gw.addr;

    // wss:// with a client that trusts the generated certificate.
    let room = unique("room");
    let url = format!("wss://localhost:{}/dev?session={room}", addr.port());
    let (mut client, resp) = tokio_tungstenite::client_async(url, tls(addr, &ck.cert).await)
        .await
        .expect("wss handshake");
    assert_eq!(resp.status(), 101);
    client
        .send(Message::text(r#"{"action":"whoami"}"#))
        .await
        .unwrap();
    let id = match tokio::time::timeout(Duration::from_secs(10), client.next()).await {
        Ok(Some(Ok(Message::Text(t)))) => t.to_string(),
        other => panic!("no whoami answer over wss: {other:?}"),
    };
    assert_eq!(id.len(), 16);
    assert_eq!(s.records(&room).await.len(), 1);

    // https:// on the same port: @connections GetConnection.
    let (mut sender, conn) = hyper::client::conn::http1::handshake::<_, Empty<bytes::Bytes>>(
        TokioIo::new(tls(addr, &ck.cert).await),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = Request::get(format!("/dev/@connections/{id}"))
        .header("host", "localhost")
        .body(Empty::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let info: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(info["identity"]["sourceIp"], "127.0.0.1");

    // Plaintext on the TLS port gets no HTTP answer at all.
    match tokio_tungstenite::connect_async(s.gw.ws_url("dev?session=plain")).await {
        Ok(_) => panic!("a plaintext handshake was accepted"),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
            panic!("plaintext got an HTTP answer: {}", r.status())
        }
        Err(_) => {}
    }
    // A client that does not trust the certificate does not get in either.
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(other.cert.der().clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let refused = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await;
    assert!(refused.is_err(), "an untrusted certificate was accepted");
    s.assert_no_record("plain").await;
    s.gw.stop().await;
}

fn management_client(
    endpoint: &str,
    key_id: &str,
    secret: &str,
) -> aws_sdk_apigatewaymanagement::Client {
    let conf = aws_sdk_apigatewaymanagement::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("eu-west-1"))
        .credentials_provider(Credentials::new(key_id, secret, None, None, "tests"))
        .endpoint_url(endpoint)
        .retry_config(aws_sdk_apigatewaymanagement::config::retry::RetryConfig::disabled())
        .build();
    aws_sdk_apigatewaymanagement::Client::from_conf(conf)
}

const KEY_ID: &str = "AKIDSWITCHBOARDTEST";
const SECRET: &str = "c2VjcmV0LWFjY2Vzcy1rZXktZm9yLXRoZS10ZXN0cw";

#[tokio::test]
async fn connections_api_callers_must_sign_with_the_configured_credentials() {
    let text = config_text(
        "",
        "",
        &format!(
            "[management]\nbind = \"any\"\naccess_key_id = \"{KEY_ID}\"\nsecret_access_key = \"env:SB_MGMT_SECRET\"\n"
        ),
    );
    let s = Secured::start(
        &text,
        TempDir::new("sb-sec-mgmt"),
        &[("SB_MGMT_SECRET", SECRET)],
    )
    .await;
    let room = unique("room");
    let mut c = accepted(request(&s.url("dev", &room, ""), &[])).await;
    let id = whoami(&mut c).await;
    let endpoint = s.gw.endpoint("dev");

    // Signed with the right key: delivered.
    let good = management_client(&endpoint, KEY_ID, SECRET);
    good.post_to_connection()
        .connection_id(&id)
        .data(Blob::new("signed hello"))
        .send()
        .await
        .expect("a correctly signed post");
    assert_eq!(next_text(&mut c).await, "signed hello");
    let info = good
        .get_connection()
        .connection_id(&id)
        .send()
        .await
        .unwrap();
    assert_eq!(info.identity().unwrap().source_ip(), Some("127.0.0.1"));

    // Another secret, another key id: 403 InvalidSignatureException.
    for client in [
        management_client(&endpoint, KEY_ID, "wrong-secret"),
        management_client(&endpoint, "AKIDSOMEONEELSE", SECRET),
    ] {
        let err = client
            .post_to_connection()
            .connection_id(&id)
            .data(Blob::new("forged"))
            .send()
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some("InvalidSignatureException"), "{err:?}");
        assert_eq!(err.raw_response().unwrap().status().as_u16(), 403);
        let err = client
            .delete_connection()
            .connection_id(&id)
            .send()
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some("InvalidSignatureException"), "{err:?}");
    }

    // Not signed at all: 403 MissingAuthenticationTokenException.
    let (mut sender, conn) = hyper::client::conn::http1::handshake::<
        _,
        http_body_util::Full<bytes::Bytes>,
    >(TokioIo::new(TcpStream::connect(s.gw.addr).await.unwrap()))
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = Request::post(format!("/dev/@connections/{id}"))
        .header("host", s.gw.addr.to_string())
        .body(http_body_util::Full::new(bytes::Bytes::from_static(
            b"unsigned",
        )))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(
        resp.headers()["x-amzn-errortype"],
        "MissingAuthenticationTokenException"
    );
    assert_eq!(
        s.metric("switchboard_gateway_management_auth_failures_total{reason=\"invalid\"}"),
        4
    );
    assert_eq!(
        s.metric("switchboard_gateway_management_auth_failures_total{reason=\"missing\"}"),
        1
    );
    // Nothing forged reached the client, which is still connected.
    assert_eq!(whoami(&mut c).await, id);
    s.gw.stop().await;
}

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

async fn gateway_exit(config: &str) -> (i32, String) {
    let files = TempDir::new("sb-sec-cli");
    let path = files.path().join("gw.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(BIN)
        .args(["gateway", "--listen", "127.0.0.1:0", "--config"])
        .arg(&path)
        .env_remove("SB_UNSET_SECRET")
        .env_remove("SWITCHBOARD_QUEUE_URL")
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).trim_end().to_owned(),
    )
}

#[tokio::test]
async fn unsafe_or_broken_security_settings_refuse_to_start() {
    let mock = "[[routes]]\nkey = \"$default\"\nintegration = { type = \"mock\" }\n";
    let cases = [
        (
            format!("{mock}[management]\nbind = \"any\"\n"),
            "gw.toml line 5: management.bind = \"any\" would let any host post to, read and close connections",
        ),
        (
            format!("{mock}[stages.prod]\nip_allow = [\"10.0.0.300/8\"]\n"),
            "gw.toml line 5: stages.prod.ip_allow: `10.0.0.300/8` is not a CIDR",
        ),
        (
            format!("{mock}[tls]\ncert = \"cert.pem\"\nkey = \"key.pem\"\n"),
            "gw.toml line 5: tls.cert: cannot read a PEM certificate chain from",
        ),
        (
            format!(
                "{mock}[authorizers.a]\nidentity_sources = [\"route.request.querystring.token\"]\n\
                 algorithms = [\"HS256\"]\nsecret = \"env:SB_UNSET_SECRET\"\n"
            ),
            "gw.toml line 7: authorizers.a.secret: environment variable SB_UNSET_SECRET is not set",
        ),
        (
            format!(
                "{mock}[authorizers.a]\nidentity_sources = [\"route.request.querystring.token\"]\n\
                 algorithms = [\"RS512X\"]\njwks = \"jwks.json\"\n"
            ),
            "gw.toml line 6: authorizers.a.algorithms: unknown algorithm `RS512X`",
        ),
    ];
    for (config, want) in &cases {
        let (code, stderr) = gateway_exit(config).await;
        assert_eq!(code, 2, "{stderr}");
        let last = stderr.lines().last().unwrap_or_default();
        assert!(last.contains(want), "got: {stderr}\nwant: {want}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    }
}
