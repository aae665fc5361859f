//! Cross-site requests (issue 15, item 2): a web page on another origin must
//! not drive the loopback @connections API (a "simple" text/plain POST, or
//! a DNS-rebinding page whose `Host` is its own name), while the SDK's calls
//! (no `Origin`, `Host` = the endpoint) still work; WebSocket handshakes
//! accept any `Origin` unless the stage lists `allowed_origins`.

mod support;

use std::net::SocketAddr;

use serde_json::json;
use support::embedded::TempDir;
use support::secure::{Secured, accepted, config_text, refused, request};
use support::unique;
use support::ws::{next_text, whoami};

/// A raw HTTP/1.1 POST of `body` to `path` with exactly `headers`; the status.
async fn post(addr: SocketAddr, path: &str, headers: &[(&str, &str)], body: &str) -> u16 {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake::<
        _,
        http_body_util::Full<bytes::Bytes>,
    >(hyper_util::rt::TokioIo::new(stream))
    .await
    .unwrap();
    tokio::spawn(conn);
    let mut req = axum::http::Request::post(path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(http_body_util::Full::new(bytes::Bytes::from(
            body.to_owned(),
        )))
        .unwrap();
    sender.send_request(req).await.unwrap().status().as_u16()
}

#[tokio::test]
async fn connections_api_refuses_other_origins_and_rebound_hosts() {
    let s = Secured::start(&config_text("", "", ""), TempDir::new("sb-xsite"), &[]).await;
    let addr = s.gw.addr;
    let mut victim = accepted(request(&s.url("dev", &unique("room"), ""), &[])).await;
    let id = whoami(&mut victim).await;
    let path = format!("/dev/@connections/{id}");
    let host = addr.to_string();
    let forged = r#"{"type":"message","from":{"userId":"admin","connectionId":"SYSTEM"}}"#;

    // The browser's "simple" cross-origin POST: refused.
    let status = post(
        addr,
        &path,
        &[
            ("host", &host),
            ("origin", "http://evil.example"),
            ("content-type", "text/plain"),
        ],
        forged,
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(
        s.metric(
            "switchboard_gateway_cross_site_refusals_total{check=\"origin\",surface=\"management\"}"
        ),
        1
    );

    // DNS rebinding: the page's own name resolves to 127.0.0.1, so its
    // request is same-origin to the browser, but Host names the page.
    let status = post(
        addr,
        &path,
        &[
            ("host", &format!("rebind.evil.example:{}", addr.port())),
            (
                "origin",
                &format!("http://rebind.evil.example:{}", addr.port()),
            ),
        ],
        forged,
    )
    .await;
    assert_eq!(status, 403);
    // Without Origin (a GET-like or old client) the Host check alone refuses.
    let status = post(
        addr,
        &path,
        &[("host", &format!("rebind.evil.example:{}", addr.port()))],
        forged,
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(
        s.metric(
            "switchboard_gateway_cross_site_refusals_total{check=\"host\",surface=\"management\"}"
        ),
        2
    );

    // What the SDK sends (no Origin, Host = the endpoint), and a page of
    // the gateway's own origin, and `localhost`: delivered, in that order,
    // and nothing forged arrived before them.
    for (n, headers) in [
        vec![("host", host.clone())],
        vec![("host", host.clone()), ("origin", format!("http://{host}"))],
        vec![("host", format!("localhost:{}", addr.port()))],
    ]
    .into_iter()
    .enumerate()
    {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(post(addr, &path, &headers, &format!("ok {n}")).await, 200);
        assert_eq!(next_text(&mut victim).await, format!("ok {n}"));
    }
}

#[tokio::test]
async fn allowed_origins_limit_browser_handshakes_of_that_stage_only() {
    let s = Secured::start(
        &config_text(
            "",
            "",
            "[stages.dev]\n[stages.app]\nallowed_origins = [\"https://app.example.com\"]\n",
        ),
        TempDir::new("sb-xsite"),
        &[],
    )
    .await;
    let room = unique("room");
    // Any origin on a stage without the list, as on API Gateway.
    accepted(request(
        &s.url("dev", &room, ""),
        &[("origin", "http://evil.example")],
    ))
    .await;
    // The listed origin, and clients that send none (not browsers).
    accepted(request(
        &s.url("app", &room, ""),
        &[("origin", "https://app.example.com")],
    ))
    .await;
    accepted(request(&s.url("app", &room, ""), &[])).await;
    // Any other page: refused before $connect, so no record is written.
    let other = unique("room");
    let (status, body) = refused(request(
        &s.url("app", &other, ""),
        &[("origin", "http://evil.example")],
    ))
    .await;
    assert_eq!((status, body), (403, json!({"message": "Forbidden"})));
    s.assert_no_record(&other).await;
    assert_eq!(
        s.metric(
            "switchboard_gateway_cross_site_refusals_total{check=\"origin\",surface=\"connect\"}"
        ),
        1
    );
}
