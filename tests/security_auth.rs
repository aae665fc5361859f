//! The `$connect` authorizer under attack, through a real WebSocket client:
//! each forged or invalid token is refused with API Gateway's status and
//! message, the builtin `$connect` never runs (no connection record), and a
//! valid token's user reaches the connection record.

mod support;

use serde_json::json;
use support::embedded::TempDir;
use support::jwt::{Issuer, SECRET, Sign, claims, hs256, now, tampered, token};
use support::secure::{Secured, accepted, config_text, refused, request};
use support::unique;

const ISS: &str = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_EXAMPLE";
const AUD: &str = "example-client-id";

/// A gateway whose `$connect` needs an RS256/ES256 token in `?token=`, keys
/// from a JWKS file; results cached for `ttl` seconds.
async fn rs_gateway(issuer: &Issuer, ttl: u64, extra: &str) -> Secured {
    let files = TempDir::new("sb-sec-auth");
    std::fs::write(files.path().join("jwks.json"), issuer.jwks().to_string()).unwrap();
    let text = config_text(
        "authorizer = \"jwt\"",
        "",
        &format!(
            r#"
[authorizers.jwt]
identity_sources = ["route.request.querystring.token"]
algorithms = ["RS256", "ES256"]
jwks = "jwks.json"
issuer = "{ISS}"
audience = ["{AUD}"]
cache_ttl_secs = {ttl}
{extra}
"#
        ),
    );
    Secured::start(&text, files, &[]).await
}

/// Asserts a handshake with `token` gets `status` and `message`, and that no
/// connection record exists for its session.
async fn assert_refused(s: &Secured, token: Option<&str>, status: u16, message: &str) {
    let session = unique("room");
    let query = token.map(|t| format!("token={t}")).unwrap_or_default();
    let (got, body) = refused(request(&s.url("dev", &session, &query), &[])).await;
    assert_eq!(got, status, "{body}");
    assert_eq!(body, json!({ "message": message }));
    s.assert_no_record(&session).await;
}

#[tokio::test]
async fn forged_and_invalid_tokens_are_refused_and_nothing_is_written() {
    let issuer = Issuer::new();
    let s = rs_gateway(&issuer, 0, "").await;
    let good = claims("alice", ISS, AUD);
    let n = now();

    // No token at all: 401 before the authorizer runs.
    assert_refused(&s, None, 401, "Unauthorized").await;
    assert_refused(&s, Some(""), 401, "Unauthorized").await;
    assert_eq!(s.rejections("connect", "missing_identity"), 2);

    // Malformed.
    assert_refused(&s, Some("abc.def"), 401, "Unauthorized").await;
    assert_refused(&s, Some("not-a-jwt"), 401, "Unauthorized").await;
    // alg: none.
    let none = token(&json!({"alg": "none", "typ": "JWT"}), &good, Sign::Unsigned);
    assert_refused(&s, Some(&none), 401, "Unauthorized").await;
    // HS/RS confusion: HS256 keyed with the published RSA key.
    let public = issuer.rsa_jwk("rsa-1").to_string();
    let confused = token(
        &json!({"alg": "HS256", "kid": "rsa-1"}),
        &good,
        Sign::Hs256(public.as_bytes()),
    );
    assert_refused(&s, Some(&confused), 401, "Unauthorized").await;
    // Expired; not valid yet.
    let mut c = good.clone();
    c["exp"] = json!(n - 3600);
    assert_refused(&s, Some(&issuer.rs256(&c)), 401, "Unauthorized").await;
    let mut c = good.clone();
    c["nbf"] = json!(n + 3600);
    assert_refused(&s, Some(&issuer.rs256(&c)), 401, "Unauthorized").await;
    // Wrong issuer; wrong audience.
    let wrong_iss = issuer.rs256(&claims("alice", "https://evil.example", AUD));
    assert_refused(&s, Some(&wrong_iss), 401, "Unauthorized").await;
    let wrong_aud = issuer.es256(&claims("alice", ISS, "someone-else"));
    assert_refused(&s, Some(&wrong_aud), 401, "Unauthorized").await;
    // A payload swapped under a valid signature.
    let mut admin = good.clone();
    admin["sub"] = json!("admin");
    let forged = tampered(&issuer.rs256(&good), &admin);
    assert_refused(&s, Some(&forged), 401, "Unauthorized").await;
    // Signed by someone else's key with our key id.
    let stranger = Issuer::new();
    assert_refused(&s, Some(&stranger.rs256(&good)), 401, "Unauthorized").await;

    assert_eq!(s.rejections("connect", "unauthorized"), 10);
    assert_eq!(
        s.metric("switchboard_gateway_authorizer_total{cache=\"miss\",result=\"unauthorized\"}"),
        10
    );
    assert_eq!(
        s.metric("switchboard_gateway_connections_total{outcome=\"accepted\"}"),
        0
    );
    s.gw.stop().await;
}

#[tokio::test]
async fn a_valid_token_connects_and_its_user_and_session_reach_the_record() {
    let issuer = Issuer::new();
    let s = rs_gateway(&issuer, 300, "[stages.dev]\n[stages.prod]").await;
    let mut c = claims("alice", ISS, AUD);
    c["sessionId"] = json!(unique("vouched"));
    let t = issuer.rs256(&c);
    // `?session=` says one room, the token another: the token wins.
    let asked = unique("room");
    let mut client = accepted(request(&s.url("dev", &asked, &format!("token={t}")), &[])).await;
    let records = s.records(c["sessionId"].as_str().unwrap()).await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].user_id.as_deref(), Some("alice"));
    s.assert_no_record(&asked).await;

    // ES256 works too, and the same token again is answered from the cache.
    let bob = issuer.es256(&claims("bob", ISS, AUD));
    let room = unique("room");
    let _b1 = accepted(request(&s.url("dev", &room, &format!("token={bob}")), &[])).await;
    let _b2 = accepted(request(&s.url("dev", &room, &format!("token={bob}")), &[])).await;
    let records = s.records(&room).await;
    assert_eq!(records.len(), 2);
    assert!(records.iter().all(|r| r.user_id.as_deref() == Some("bob")));
    assert_eq!(
        s.metric("switchboard_gateway_authorizer_total{cache=\"hit\",result=\"allow\"}"),
        1
    );
    assert_eq!(
        s.metric("switchboard_gateway_authorizer_total{cache=\"miss\",result=\"allow\"}"),
        2
    );
    // Another stage has its own method ARN, so its own cache entry: the
    // answer for dev is not reused (and denied) on prod.
    let _b3 = accepted(request(&s.url("prod", &room, &format!("token={bob}")), &[])).await;
    assert_eq!(
        s.metric("switchboard_gateway_authorizer_total{cache=\"miss\",result=\"allow\"}"),
        3
    );

    // Closing removes the record ($disconnect ran with the same identity).
    client.close(None).await.unwrap();
    let session = c["sessionId"].as_str().unwrap().to_owned();
    support::eventually(std::time::Duration::from_secs(10), "record deleted", || {
        let s = &s;
        let session = session.clone();
        async move { s.records(&session).await.is_empty().then_some(()) }
    })
    .await;
    s.gw.stop().await;
}

#[tokio::test]
async fn a_user_outside_the_allowed_groups_is_denied_with_403() {
    let issuer = Issuer::new();
    let s = rs_gateway(&issuer, 300, "allowed_groups = [\"players\"]").await;
    let mut c = claims("mallory", ISS, AUD);
    c["cognito:groups"] = json!(["spectators"]);
    let t = issuer.rs256(&c);
    assert_refused(&s, Some(&t), 403, "Forbidden").await;
    // A cached Deny is still a Deny.
    assert_refused(&s, Some(&t), 403, "Forbidden").await;
    assert_eq!(s.rejections("connect", "denied"), 2);
    assert_eq!(
        s.metric("switchboard_gateway_authorizer_total{cache=\"hit\",result=\"deny\"}"),
        1
    );

    c["cognito:groups"] = json!(["players"]);
    let room = unique("room");
    let t = issuer.rs256(&c);
    accepted(request(&s.url("dev", &room, &format!("token={t}")), &[])).await;
    assert_eq!(s.records(&room).await.len(), 1);
    s.gw.stop().await;
}

#[tokio::test]
async fn an_authorizer_that_cannot_get_its_keys_answers_500() {
    let files = TempDir::new("sb-sec-auth");
    let text = config_text(
        "authorizer = \"jwt\"",
        "",
        r#"
[authorizers.jwt]
identity_sources = ["route.request.querystring.token"]
algorithms = ["RS256"]
jwks = "http://127.0.0.1:9/.well-known/jwks.json"
"#,
    );
    let s = Secured::start(&text, files, &[]).await;
    let t = Issuer::new().rs256(&claims("alice", ISS, AUD));
    assert_refused(&s, Some(&t), 500, "Internal server error").await;
    assert_eq!(s.rejections("connect", "authorizer_error"), 1);
    s.gw.stop().await;
}

#[tokio::test]
async fn an_hs256_bearer_token_in_the_authorization_header() {
    let files = TempDir::new("sb-sec-auth");
    let text = config_text(
        "authorizer = \"shared\"",
        "",
        r#"
[authorizers.shared]
identity_sources = ["route.request.header.Authorization"]
algorithms = ["HS256"]
secret = "env:SB_JWT_SECRET"
"#,
    );
    let secret = std::str::from_utf8(SECRET).unwrap();
    let s = Secured::start(&text, files, &[("SB_JWT_SECRET", secret)]).await;
    let t = hs256(&claims("carol", ISS, AUD), SECRET);
    let room = unique("room");
    let bearer = format!("Bearer {t}");
    accepted(request(
        &s.url("dev", &room, ""),
        &[("Authorization", &bearer)],
    ))
    .await;
    assert_eq!(s.records(&room).await[0].user_id.as_deref(), Some("carol"));
    // Without the Bearer prefix too.
    accepted(request(&s.url("dev", &room, ""), &[("Authorization", &t)])).await;
    // A token in the query string does not count: the source is the header.
    let other = unique("room");
    let (status, _) = refused(request(&s.url("dev", &other, &format!("token={t}")), &[])).await;
    assert_eq!(status, 401);
    // Signed with another secret.
    let forged = hs256(
        &claims("carol", ISS, AUD),
        b"another-secret-another-secret-32b",
    );
    let (status, body) = refused(request(
        &s.url("dev", &other, ""),
        &[("Authorization", &format!("Bearer {forged}"))],
    ))
    .await;
    assert_eq!((status, body), (401, json!({"message": "Unauthorized"})));
    s.assert_no_record(&other).await;
    s.gw.stop().await;
}
