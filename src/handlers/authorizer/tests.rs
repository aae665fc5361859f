//! The authorizer on the real-shape REQUEST event (`apigw-ws-authorizer.json`)
//! with tokens signed by keys generated for the run.
//!
//! Over 400 lines: unit tests only, one scenario each; no production code.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use jsonwebtoken::jwk::JwkSet;
use serde_json::{Value, json};

use super::*;

use super::test_jwt as jwt;
use jwt::{Issuer, SECRET, Sign, claims, hs256, now, tampered, token};

const FIXTURE: &str = include_str!("../../../tests/fixtures/apigw-ws-authorizer.json");
const ISS: &str = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_EXAMPLE";
const AUD: &str = "example-client-id";

fn event_with(token: &str) -> AuthorizerEvent {
    serde_json::from_str(&FIXTURE.replace("TOKEN", token)).unwrap()
}

fn header_source() -> Vec<IdentitySource> {
    vec![IdentitySource::parse("route.request.header.Authorization").unwrap()]
}

fn hs_config() -> AuthorizerConfig {
    let mut c = AuthorizerConfig::new(header_source(), vec![Algorithm::HS256]);
    c.secret = Some(Secret::new(SECRET));
    c.issuer = Some(ISS.into());
    c.audience = vec![AUD.into()];
    c
}

fn jwks_of(issuer: &Issuer) -> JwkSet {
    JwksSource::parse_document(&issuer.jwks().to_string()).unwrap()
}

fn rs_config(issuer: &Issuer) -> AuthorizerConfig {
    let mut c = AuthorizerConfig::new(header_source(), vec![Algorithm::RS256, Algorithm::ES256]);
    c.jwks = Some(JwksSource::Keys(jwks_of(issuer)));
    c.issuer = Some(ISS.into());
    c.audience = vec![AUD.into()];
    c
}

async fn reason(a: &Authorizer, token: &str) -> String {
    match a.authorize(&event_with(token)).await {
        Err(AuthorizerError::Unauthorized(why)) => why,
        other => panic!("expected Unauthorized, got {other:?}"),
    }
}

#[tokio::test]
async fn a_valid_hs256_token_is_allowed_with_its_user_and_session() {
    let a = Authorizer::new(hs_config());
    let mut c = claims("alice", ISS, AUD);
    c["sessionId"] = json!("room-42");
    let d = a.authorize(&event_with(&hs256(&c, SECRET))).await.unwrap();
    let arn = "arn:aws:execute-api:eu-west-1:123456789012:a1b2c3d4e5/prod/$connect";
    assert_eq!(d.response.principal_id, "alice");
    assert!(d.response.policy_document.allows(arn));
    assert_eq!(
        Value::Object(d.response.context.clone()),
        json!({"userId": "alice", "sessionId": "room-42"})
    );
    assert_eq!(d.expires_at, c["exp"].as_i64());
    // The answer is exactly what a Lambda authorizer returns.
    let v = serde_json::to_value(&d.response).unwrap();
    assert_eq!(v["policyDocument"]["Statement"][0]["Effect"], "Allow");
    assert_eq!(v["policyDocument"]["Statement"][0]["Resource"], arn);
    assert_eq!(
        v["policyDocument"]["Statement"][0]["Action"],
        "execute-api:Invoke"
    );
}

#[tokio::test]
async fn the_json_entry_point_takes_the_fixture_as_a_lambda_would() {
    let a = Authorizer::new(hs_config());
    let t = hs256(&claims("bob", ISS, AUD), SECRET);
    let r = a
        .authorize_json(&FIXTURE.replace("TOKEN", &t))
        .await
        .unwrap();
    assert_eq!(r.principal_id, "bob");
    assert!(r.context.get("sessionId").is_none(), "the token has none");
    let bad = a
        .authorize_json("{\"type\": \"REQUEST\"}")
        .await
        .unwrap_err();
    assert!(matches!(bad, AuthorizerError::Failed(_)), "{bad:?}");
}

#[tokio::test]
async fn identity_sources_header_with_or_without_bearer_and_query() {
    let t = hs256(&claims("carol", ISS, AUD), SECRET);
    let a = Authorizer::new(hs_config());
    // Without the Bearer prefix.
    let raw = FIXTURE.replace("Bearer TOKEN", &t).replace("TOKEN", "x");
    let e: AuthorizerEvent = serde_json::from_str(&raw).unwrap();
    assert_eq!(
        a.authorize(&e).await.unwrap().response.principal_id,
        "carol"
    );

    let mut c = hs_config();
    c.identity_sources = vec![IdentitySource::parse("route.request.querystring.token").unwrap()];
    let q = Authorizer::new(c.clone());
    let raw = FIXTURE
        .replace("Bearer TOKEN", "nothing")
        .replace("TOKEN", &t);
    let e: AuthorizerEvent = serde_json::from_str(&raw).unwrap();
    assert_eq!(
        q.authorize(&e).await.unwrap().response.principal_id,
        "carol"
    );

    // Every identity source must be present (API Gateway's rule).
    c.identity_sources
        .push(IdentitySource::parse("route.request.header.X-Device").unwrap());
    let both = Authorizer::new(c);
    assert_eq!(both.identity(&e), None);
    assert_eq!(reason(&both, &t).await, "no route.request.header.X-Device");
    assert!(IdentitySource::parse("stageVariables.x").is_err());
    assert!(IdentitySource::parse("route.request.header.").is_err());
}

#[tokio::test]
async fn rs256_and_es256_from_a_jwks() {
    let issuer = Issuer::new();
    let a = Authorizer::new(rs_config(&issuer));
    let c = claims("dave", ISS, AUD);
    for t in [issuer.rs256(&c), issuer.es256(&c)] {
        let d = a.authorize(&event_with(&t)).await.unwrap();
        assert_eq!(d.response.principal_id, "dave");
        assert_eq!(
            d.response.policy_document.statement[0].effect,
            Effect::Allow
        );
    }
    // A key id the set does not have.
    let t = token(
        &json!({"alg": "RS256", "kid": "rsa-2"}),
        &c,
        Sign::Rs256(&issuer.rsa),
    );
    assert_eq!(reason(&a, &t).await, "no key matches the token's kid");
    // Keys of another issuer.
    let other = Issuer::new();
    assert_eq!(reason(&a, &other.rs256(&c)).await, "bad signature");
}

#[tokio::test]
async fn forged_and_invalid_tokens_are_unauthorized() {
    let issuer = Issuer::new();
    let a = Authorizer::new(rs_config(&issuer));
    let good = claims("eve", ISS, AUD);
    let n = now();

    // alg: none, with and without a signature part.
    let none = token(&json!({"alg": "none", "typ": "JWT"}), &good, Sign::Unsigned);
    assert!(reason(&a, &none).await.starts_with("malformed token"));
    assert!(
        reason(&a, none.trim_end_matches('.'))
            .await
            .starts_with("malformed token")
    );
    // Not a JWT.
    assert!(reason(&a, "not-a-jwt").await.starts_with("malformed token"));
    // HS/RS confusion: HS256 signed with the public key's bytes.
    let public = issuer.rsa_jwk("rsa-1").to_string();
    let confused = token(
        &json!({"alg": "HS256", "kid": "rsa-1"}),
        &good,
        Sign::Hs256(public.as_bytes()),
    );
    assert_eq!(
        reason(&a, &confused).await,
        "algorithm HS256 is not accepted here"
    );
    // Expired, not yet valid (beyond the 60 s leeway).
    let mut c = good.clone();
    c["exp"] = json!(n - 120);
    assert_eq!(reason(&a, &issuer.rs256(&c)).await, "token expired");
    let mut c = good.clone();
    c["nbf"] = json!(n + 3600);
    assert_eq!(
        reason(&a, &issuer.rs256(&c)).await,
        "token not valid yet (nbf)"
    );
    // No exp at all.
    let mut c = good.clone();
    c.as_object_mut().unwrap().remove("exp");
    assert_eq!(reason(&a, &issuer.rs256(&c)).await, "missing claim `exp`");
    // Wrong issuer, wrong audience.
    assert_eq!(
        reason(
            &a,
            &issuer.rs256(&claims("eve", "https://evil.example", AUD))
        )
        .await,
        "wrong issuer"
    );
    assert_eq!(
        reason(&a, &issuer.rs256(&claims("eve", ISS, "other-client"))).await,
        "wrong audience"
    );
    // A payload swapped under a valid signature.
    let mut admin = good.clone();
    admin["sub"] = json!("admin");
    assert_eq!(
        reason(&a, &tampered(&issuer.rs256(&good), &admin)).await,
        "bad signature"
    );
    // No user claim.
    let mut c = good.clone();
    c.as_object_mut().unwrap().remove("sub");
    assert_eq!(reason(&a, &issuer.rs256(&c)).await, "no `sub` claim");
}

#[tokio::test]
async fn hs_and_rs_together_never_cross_keys() {
    let issuer = Issuer::new();
    let mut c = rs_config(&issuer);
    c.algorithms.push(Algorithm::HS256);
    c.secret = Some(Secret::new(SECRET));
    let a = Authorizer::new(c);
    let good = claims("frank", ISS, AUD);
    // HS256 is verified with the secret only, never with a JWKS key.
    let public = issuer.rsa_jwk("rsa-1").to_string();
    let confused = token(
        &json!({"alg": "HS256", "kid": "rsa-1"}),
        &good,
        Sign::Hs256(public.as_bytes()),
    );
    assert_eq!(reason(&a, &confused).await, "bad signature");
    assert!(
        a.authorize(&event_with(&hs256(&good, SECRET)))
            .await
            .is_ok()
    );
    assert!(a.authorize(&event_with(&issuer.rs256(&good))).await.is_ok());
}

#[tokio::test]
async fn cognito_access_tokens_users_and_groups() {
    let mut c = hs_config();
    c.token_use = Some("access".into());
    c.allowed_groups = vec!["admins".into(), "staff".into()];
    let a = Authorizer::new(c);
    let n = now();
    // Access tokens carry client_id instead of aud.
    let access = |groups: Value| {
        hs256(
            &json!({"sub": "gina", "iss": ISS, "client_id": AUD, "token_use": "access",
                    "cognito:groups": groups, "exp": n + 600}),
            SECRET,
        )
    };
    let arn = "arn:aws:execute-api:eu-west-1:123456789012:a1b2c3d4e5/prod/$connect";
    let d = a
        .authorize(&event_with(&access(json!(["staff"]))))
        .await
        .unwrap();
    assert!(d.response.policy_document.allows(arn));
    // Valid token, not in an allowed group: a Deny policy (403), not 401.
    let d = a
        .authorize(&event_with(&access(json!(["guests"]))))
        .await
        .unwrap();
    assert_eq!(d.response.policy_document.statement[0].effect, Effect::Deny);
    assert!(!d.response.policy_document.allows(arn));
    // An id token where access tokens are required.
    let id = hs256(
        &json!({"sub": "gina", "iss": ISS, "aud": AUD, "token_use": "id",
                "cognito:groups": ["staff"], "exp": n + 600}),
        SECRET,
    );
    assert_eq!(reason(&a, &id).await, "token_use is not `access`");

    let mut c = hs_config();
    c.allowed_users = vec!["henry".into()];
    c.claims.api_key = Some("custom:apiKey".into());
    let a = Authorizer::new(c);
    let mut cl = claims("henry", ISS, AUD);
    cl["custom:apiKey"] = json!("k-123");
    let d = a.authorize(&event_with(&hs256(&cl, SECRET))).await.unwrap();
    assert!(d.response.policy_document.allows(arn));
    assert_eq!(d.response.usage_identifier_key.as_deref(), Some("k-123"));
    let d = a
        .authorize(&event_with(&hs256(&claims("ivan", ISS, AUD), SECRET)))
        .await
        .unwrap();
    assert!(!d.response.policy_document.allows(arn));
}

#[test]
fn symmetric_keys_in_a_jwks_are_refused() {
    let doc = json!({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "h"}]}).to_string();
    assert!(
        JwksSource::parse_document(&doc)
            .unwrap_err()
            .contains("symmetric")
    );
    assert!(JwksSource::parse_document("[]").is_err());
}

/// A JWKS endpoint on 127.0.0.1 serving `doc`, counting requests.
async fn jwks_server(doc: Arc<std::sync::Mutex<Value>>, hits: Arc<AtomicUsize>) -> String {
    use axum::routing::get;
    let app = axum::Router::new().route(
        "/.well-known/jwks.json",
        get(move || {
            let doc = doc.clone();
            let hits = hits.clone();
            async move {
                hits.fetch_add(1, Ordering::SeqCst);
                axum::Json(doc.lock().unwrap().clone())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/.well-known/jwks.json")
}

#[tokio::test]
async fn a_jwks_url_is_fetched_once_and_refreshed_for_new_keys_at_a_limited_rate() {
    let issuer = Issuer::new();
    let rotated = Issuer::new();
    let doc = Arc::new(std::sync::Mutex::new(
        json!({"keys": [issuer.rsa_jwk("rsa-1")]}),
    ));
    let hits = Arc::new(AtomicUsize::new(0));
    let url = jwks_server(doc.clone(), hits.clone()).await;
    let config = |refresh: Duration| {
        let mut c = rs_config(&issuer);
        c.jwks = Some(JwksSource::Url(url.parse().unwrap()));
        c.jwks_refresh_interval = refresh;
        c
    };
    let c = claims("judy", ISS, AUD);
    let new_key_token = token(
        &json!({"alg": "RS256", "kid": "rsa-2"}),
        &c,
        Sign::Rs256(&rotated.rsa),
    );

    // Both fetch once and then use their cached keys.
    let limited = Authorizer::new(config(Duration::from_secs(3600)));
    let fresh = Authorizer::new(config(Duration::ZERO));
    for _ in 0..3 {
        assert!(
            limited
                .authorize(&event_with(&issuer.rs256(&c)))
                .await
                .is_ok()
        );
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "cached after the first fetch"
    );
    assert!(
        fresh
            .authorize(&event_with(&issuer.rs256(&c)))
            .await
            .is_ok()
    );
    assert_eq!(hits.load(Ordering::SeqCst), 2);

    // The issuer rotates a key in.
    doc.lock().unwrap().as_object_mut().unwrap().insert(
        "keys".into(),
        json!([issuer.rsa_jwk("rsa-1"), rotated.rsa_jwk("rsa-2")]),
    );
    // Within the refresh interval an unknown kid is refused without a fetch.
    for _ in 0..3 {
        assert_eq!(
            reason(&limited, &new_key_token).await,
            "no key matches the token's kid"
        );
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        2,
        "no refresh within the interval"
    );
    // Past it, an unknown kid refreshes once and the rotated key works.
    let d = fresh.authorize(&event_with(&new_key_token)).await.unwrap();
    assert_eq!(d.response.principal_id, "judy");
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    assert!(fresh.authorize(&event_with(&new_key_token)).await.is_ok());
    assert_eq!(hits.load(Ordering::SeqCst), 3, "the new key is cached");

    // An unreachable JWKS is an authorizer failure (500), not a 401.
    let mut c2 = rs_config(&issuer);
    c2.jwks = Some(JwksSource::Url(
        "http://127.0.0.1:9/jwks.json".parse().unwrap(),
    ));
    let down = Authorizer::new(c2);
    match down.authorize(&event_with(&issuer.rs256(&c))).await {
        Err(AuthorizerError::Failed(why)) => assert!(why.contains("127.0.0.1:9"), "{why}"),
        other => panic!("expected Failed, got {other:?}"),
    }
}
