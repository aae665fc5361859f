//! Stage IP rules, API keys and usage plans, and throttling, through a real
//! WebSocket client: the exact refusal, no connection record for it, and for
//! throttles the recovery once the bucket refills.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::embedded::TempDir;
use support::secure::{Secured, accepted, config_text, refused, request};
use support::unique;
use support::ws::{Client, next_json, next_text, send, whoami};

/// The hex SHA-256 of a key, as the configuration holds it.
fn hashed(key: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key.as_bytes());
    format!("sha256:{}", data_encoding::HEXLOWER.encode(d.as_ref()))
}

async fn start(connect: &str, ping: &str, rest: &str) -> Secured {
    Secured::start(
        &config_text(connect, ping, rest),
        TempDir::new("sb-sec-net"),
        &[],
    )
    .await
}

#[tokio::test]
async fn ip_rules_deny_wins_and_allow_lists_keep_others_out() {
    let s = start(
        "",
        "",
        r#"
[stages.open]
[stages.denied]
ip_allow = ["127.0.0.0/8"]
ip_deny = ["127.0.0.1/32"]
[stages.prod]
ip_allow = ["203.0.113.0/24", "2001:db8::/32"]
"#,
    )
    .await;
    // Deny wins over a matching allow.
    let room = unique("room");
    let (status, body) = refused(request(&s.url("denied", &room, ""), &[])).await;
    assert_eq!((status, body), (403, json!({"message": "Forbidden"})));
    s.assert_no_record(&room).await;
    // Not in the allow list.
    let (status, body) = refused(request(&s.url("prod", &room, ""), &[])).await;
    assert_eq!((status, body), (403, json!({"message": "Forbidden"})));
    s.assert_no_record(&room).await;
    // A forged X-Forwarded-For does not help: no trusted proxy on this stage.
    let spoofed = request(
        &s.url("prod", &room, ""),
        &[("X-Forwarded-For", "203.0.113.5")],
    );
    assert_eq!(refused(spoofed).await.0, 403);
    s.assert_no_record(&room).await;
    assert_eq!(s.rejections("connect", "ip_denied"), 1);
    assert_eq!(s.rejections("connect", "ip_not_allowed"), 2);
    // A stage without rules lets us in.
    accepted(request(&s.url("open", &room, ""), &[])).await;
    assert_eq!(s.records(&room).await.len(), 1);
    s.gw.stop().await;
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_last_forwarded_address_is_the_client() {
    let s = start(
        "",
        "",
        r#"
[stages.edge]
ip_allow = ["203.0.113.0/24"]
trusted_proxy = true
"#,
    )
    .await;
    let room = unique("room");
    // The proxy appends the address it saw; that one counts.
    let via_proxy = request(
        &s.url("edge", &room, ""),
        &[("X-Forwarded-For", "198.51.100.1, 203.0.113.5")],
    );
    accepted(via_proxy).await;
    let records = s.records(&room).await;
    assert_eq!(records[0].source_ip.as_deref(), Some("203.0.113.5"));
    // A client writing an allowed address first gains nothing.
    let other = unique("room");
    let spoofed = request(
        &s.url("edge", &other, ""),
        &[("X-Forwarded-For", "203.0.113.5, 198.51.100.1")],
    );
    assert_eq!(refused(spoofed).await.0, 403);
    // No header: the peer (127.0.0.1) is the client.
    assert_eq!(
        refused(request(&s.url("edge", &other, ""), &[])).await.0,
        403
    );
    s.assert_no_record(&other).await;
    s.gw.stop().await;
}

#[tokio::test]
async fn api_keys_are_required_checked_and_metered() {
    let s = start(
        "api_key_required = true",
        "api_key_required = true",
        &format!(
            r#"
[stages.dev]
[usage_plans.basic]
stages = ["dev"]
quota = {{ limit = 3, period = "DAY" }}
api_keys = ["{}"]
"#,
            hashed("good-key")
        ),
    )
    .await;
    let room = unique("room");
    let (status, body) = refused(request(&s.url("dev", &room, ""), &[])).await;
    assert_eq!((status, body), (403, json!({"message": "Forbidden"})));
    let unknown = request(&s.url("dev", &room, ""), &[("x-api-key", "guessed-key")]);
    let (status, body) = refused(unknown).await;
    assert_eq!((status, body), (403, json!({"message": "Forbidden"})));
    s.assert_no_record(&room).await;
    assert_eq!(s.rejections("connect", "api_key_missing"), 1);
    assert_eq!(s.rejections("connect", "api_key_invalid"), 1);

    // A valid key: the handshake (1) and a message (2) count against the quota.
    let with_key = || request(&s.url("dev", &room, ""), &[("x-api-key", "good-key")]);
    let mut c = accepted(with_key()).await;
    assert_eq!(s.records(&room).await.len(), 1);
    send(&mut c, r#"{"action":"ping"}"#).await;
    assert_eq!(next_text(&mut c).await, "pong");
    // Routes that do not require the key are not metered.
    let id = whoami(&mut c).await;
    // 3: the last request of the day.
    send(&mut c, r#"{"action":"ping"}"#).await;
    assert_eq!(next_text(&mut c).await, "pong");
    // Over quota: an error frame, the connection stays open.
    send(&mut c, r#"{"action":"ping"}"#).await;
    let frame = next_json(&mut c).await;
    assert_eq!(frame["message"], "Limit Exceeded");
    assert_eq!(frame["connectionId"], id.as_str());
    assert_eq!(frame["requestId"].as_str().unwrap().len(), 16);
    assert_eq!(whoami(&mut c).await, id);
    // And a new handshake with the key is refused with 429.
    let other = unique("room");
    let (status, body) = refused(request(
        &s.url("dev", &other, ""),
        &[("x-api-key", "good-key")],
    ))
    .await;
    assert_eq!((status, body), (429, json!({"message": "Limit Exceeded"})));
    s.assert_no_record(&other).await;
    assert_eq!(s.rejections("connect", "quota_exceeded"), 1);
    assert_eq!(s.rejections("message", "quota_exceeded"), 1);
    s.gw.stop().await;
}

#[tokio::test]
async fn keys_can_come_from_the_authorizer() {
    let issuer = support::jwt::Issuer::new();
    let files = TempDir::new("sb-sec-net");
    std::fs::write(files.path().join("jwks.json"), issuer.jwks().to_string()).unwrap();
    let text = config_text(
        "authorizer = \"jwt\"\napi_key_required = true",
        "",
        &format!(
            r#"
[api]
api_key_selection_expression = "$context.authorizer.usageIdentifierKey"
[authorizers.jwt]
identity_sources = ["route.request.querystring.token"]
algorithms = ["RS256"]
jwks = "jwks.json"
api_key_claim = "custom:apiKey"
[stages.dev]
[usage_plans.gold]
stages = ["dev"]
api_keys = ["{}"]
"#,
            hashed("tenant-key")
        ),
    );
    let s = Secured::start(&text, files, &[]).await;
    let mut claims = support::jwt::claims("alice", "iss", "aud");
    claims["custom:apiKey"] = json!("tenant-key");
    let room = unique("room");
    let t = issuer.rs256(&claims);
    // The header is ignored with this selection expression; the claim counts.
    accepted(request(
        &s.url("dev", &room, &format!("token={t}")),
        &[("x-api-key", "whatever")],
    ))
    .await;
    assert_eq!(s.records(&room).await.len(), 1);
    claims["custom:apiKey"] = json!("other-key");
    let other = unique("room");
    let t = issuer.rs256(&claims);
    let (status, _) = refused(request(&s.url("dev", &other, &format!("token={t}")), &[])).await;
    assert_eq!(status, 403);
    s.assert_no_record(&other).await;
    s.gw.stop().await;
}

/// Connects until refused (at most 50 times); returns the accepted clients
/// (kept open) and the refusal.
async fn connect_until_refused(s: &Secured, stage: &str, room: &str) -> (Vec<Client>, u16, Value) {
    let mut open = Vec::new();
    for _ in 0..50 {
        match tokio_tungstenite::connect_async(request(&s.url(stage, room, ""), &[])).await {
            Ok((c, _)) => open.push(c),
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                let body = serde_json::from_slice(resp.body().as_deref().unwrap_or_default())
                    .unwrap_or(Value::Null);
                return (open, resp.status().as_u16(), body);
            }
            Err(e) => panic!("{e}"),
        }
    }
    panic!("never throttled");
}

#[tokio::test]
async fn connection_bursts_get_429_and_recover_after_refill() {
    let s = start(
        "",
        "",
        r#"
[stages.perip]
connect_throttle_per_ip = { rate = 4.0, burst = 2 }
[stages.small]
throttle = { rate = 4.0, burst = 3 }
"#,
    )
    .await;
    for (stage, burst, reason) in [("perip", 2, "ip_rate"), ("small", 3, "stage_throttled")] {
        let room = unique("room");
        let (ok, status, body) = connect_until_refused(&s, stage, &room).await;
        assert_eq!(ok.len(), burst, "{stage}: the burst passes");
        assert_eq!(
            (status, body),
            (429, json!({"message": "Too Many Requests"})),
            "{stage}"
        );
        assert_eq!(
            s.records(&room).await.len(),
            burst,
            "{stage}: only the accepted were stored"
        );
        assert_eq!(s.rejections("connect", reason), 1);
        // A token comes back after 1/rate = 250 ms.
        let url = s.url(stage, &room, "");
        support::eventually(Duration::from_secs(5), "the bucket to refill", || {
            let url = url.clone();
            async move { tokio_tungstenite::connect_async(url).await.ok().map(|_| ()) }
        })
        .await;
    }
    s.gw.stop().await;
}

#[tokio::test]
async fn new_connections_per_second_bound_the_whole_gateway() {
    let s = start("", "", "[limits]\nnew_connections_per_second = 2\n").await;
    let room = unique("room");
    let (ok, status, _) = connect_until_refused(&s, "dev", &room).await;
    assert_eq!((ok.len(), status), (2, 429));
    assert_eq!(s.rejections("connect", "connection_rate"), 1);
    s.gw.stop().await;
}

#[tokio::test]
async fn throttled_messages_get_an_error_frame_and_the_connection_stays_open() {
    let s = start("", "throttle = { rate = 2.0, burst = 2 }", "[stages.dev]\n").await;
    let room = unique("room");
    let mut c = accepted(request(&s.url("dev", &room, ""), &[])).await;
    let id = whoami(&mut c).await;
    for _ in 0..3 {
        send(&mut c, r#"{"action":"ping"}"#).await;
    }
    assert_eq!(next_text(&mut c).await, "pong");
    assert_eq!(next_text(&mut c).await, "pong");
    let frame = next_json(&mut c).await;
    assert_eq!(frame["message"], "Too Many Requests");
    assert_eq!(frame["connectionId"], id.as_str());
    assert_eq!(frame["requestId"].as_str().unwrap().len(), 16);
    assert_eq!(s.rejections("message", "route_throttled"), 1);
    // Other routes are not throttled by this route's bucket.
    assert_eq!(whoami(&mut c).await, id);
    // After the refill (a token per 500 ms), ping answers again: polled with
    // a deadline, each refused try answered with the same error frame.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        send(&mut c, r#"{"action":"ping"}"#).await;
        let reply = next_text(&mut c).await;
        if reply == "pong" {
            break;
        }
        assert!(reply.contains("Too Many Requests"), "{reply}");
        assert!(tokio::time::Instant::now() < deadline, "never refilled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.gw.stop().await;
}

#[tokio::test]
async fn a_stage_can_throttle_a_route_its_own_way() {
    let s = start(
        "",
        "",
        r#"
[stages.dev]
[stages.prod]
route_throttle = { ping = { rate = 0.001, burst = 1 } }
"#,
    )
    .await;
    let room = unique("room");
    let mut prod = accepted(request(&s.url("prod", &room, ""), &[])).await;
    send(&mut prod, r#"{"action":"ping"}"#).await;
    assert_eq!(next_text(&mut prod).await, "pong");
    send(&mut prod, r#"{"action":"ping"}"#).await;
    assert_eq!(next_json(&mut prod).await["message"], "Too Many Requests");
    // dev has no such limit.
    let mut dev = accepted(request(&s.url("dev", &room, ""), &[])).await;
    for _ in 0..5 {
        send(&mut dev, r#"{"action":"ping"}"#).await;
        assert_eq!(next_text(&mut dev).await, "pong");
    }
    s.gw.stop().await;
}
