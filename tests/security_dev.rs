//! `switchboard dev` with edge security on: its own worker signs @connections
//! calls with the gateway's credentials (so messages still arrive while
//! unsigned callers are refused), and `[tls]`, which its loopback worker
//! cannot use, is refused up front.

mod support;

use std::time::Duration;

use clap::Parser;
use serde_json::json;
use support::dev::Dev;
use support::embedded::TempDir;
use support::secure::parse;
use support::ws::{connect, next_json, send};
use switchboard::app::dev_config;
use switchboard::backend::embedded::EmbeddedStore;
use switchboard::cli::{Cli, Command};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dev_worker_signs_with_the_gateways_credentials() {
    let files = TempDir::new("sb-sec-dev");
    let gateway = parse(
        "[management]\nbind = \"loopback\"\naccess_key_id = \"AKIDDEV\"\n\
         secret_access_key = \"env:SB_DEV_SECRET\"\n",
        &files,
        &[("SB_DEV_SECRET", "dev-secret-for-the-test")],
    );
    let dev = Dev::start(gateway, EmbeddedStore::in_memory().await.unwrap()).await;
    let addr = dev.addr;

    let room = support::unique("room");
    let mut a = connect(&format!("ws://{addr}/dev?session={room}")).await;
    send(
        &mut a,
        json!({"action": "sendMessage", "data": {"text": "signed"}}).to_string(),
    )
    .await;
    // Delivered through @connections: the worker's signature was accepted.
    let frame = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let f = next_json(&mut a).await;
            if f["type"] == "message" {
                return f;
            }
        }
    })
    .await
    .expect("the message came back");
    assert_eq!(frame["payload"], json!({"text": "signed"}));

    // An unsigned call to the same API is refused.
    let status = {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake::<
            _,
            http_body_util::Full<bytes::Bytes>,
        >(hyper_util::rt::TokioIo::new(stream))
        .await
        .unwrap();
        tokio::spawn(conn);
        let req = axum::http::Request::post("/dev/@connections/abc")
            .header("host", addr.to_string())
            .body(http_body_util::Full::new(bytes::Bytes::from_static(b"x")))
            .unwrap();
        sender.send_request(req).await.unwrap().status()
    };
    assert_eq!(status, 403);

    dev.stop().await;
}

#[test]
fn dev_refuses_tls_with_a_clear_reason() {
    let files = TempDir::new("sb-sec-dev");
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    std::fs::write(files.path().join("cert.pem"), ck.cert.pem()).unwrap();
    std::fs::write(files.path().join("key.pem"), ck.signing_key.serialize_pem()).unwrap();
    let path = files.path().join("gw.toml");
    std::fs::write(&path, "[tls]\ncert = \"cert.pem\"\nkey = \"key.pem\"\n").unwrap();
    let cli =
        Cli::try_parse_from(["switchboard", "dev", "--config", path.to_str().unwrap()]).unwrap();
    let Command::Dev(args) = cli.command else {
        unreachable!()
    };
    let err = dev_config(&args).unwrap_err();
    assert!(
        err.0.contains("[tls] is for `switchboard gateway`"),
        "{err}"
    );
    assert!(err.0.contains("gw.toml"), "{err}");
}
