use jsonwebtoken::Algorithm;

use super::*;
use crate::handlers::authorizer::test_jwt::Issuer;
use crate::handlers::authorizer::{ClaimNames, IdentitySource, JwksSource, MIN_SECRET_BYTES};

const QUEUE: &str = "https://sqs.eu-west-1.amazonaws.com/123456789012/switchboard-inbound.fifo";
const JWKS_URL: &str =
    "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_X/.well-known/jwks.json";

fn env(pairs: &[(&str, &str)]) -> LambdaEnv {
    LambdaEnv::from_pairs(pairs.iter().copied())
}

fn edge(function: Function, pairs: &[(&str, &str)]) -> Result<EdgeConfig, String> {
    match FunctionConfig::from_env(function, &env(pairs)) {
        Ok(FunctionConfig::Edge(c)) => Ok(c),
        Ok(other) => panic!("not an edge config: {other:?}"),
        Err(e) => Err(e.0),
    }
}

fn auth(pairs: &[(&str, &str)]) -> Result<AuthorizerConfig, String> {
    match FunctionConfig::from_env(Function::Authorizer, &env(pairs)) {
        Ok(FunctionConfig::Authorizer(c)) => Ok(*c),
        Ok(other) => panic!("not an authorizer config: {other:?}"),
        Err(e) => Err(e.0),
    }
}

const RS256: [(&str, &str); 3] = [
    (auth::IDENTITY_SOURCES, "route.request.querystring.token"),
    (auth::ALGORITHMS, "RS256"),
    (auth::JWKS, JWKS_URL),
];

#[test]
fn binaries_are_named_like_the_template_expects() {
    let names: Vec<&str> = Function::ALL.iter().map(|f| f.binary()).collect();
    assert_eq!(
        names,
        [
            "switchboard-connect",
            "switchboard-disconnect",
            "switchboard-default",
            "switchboard-send",
            "switchboard-authorizer"
        ]
    );
}

#[test]
fn edge_functions_read_their_table_and_queue() {
    let c = edge(Function::Connect, &[(CONNECTIONS_TABLE, "app-connections")]).unwrap();
    assert_eq!(c.kind(), HandlerKind::Connect);
    assert_eq!(c.connections_table.as_deref(), Some("app-connections"));
    assert_eq!(c.queue_url, None);
    // The default name of `switchboard migrate`.
    let c = edge(Function::Disconnect, &[]).unwrap();
    assert_eq!(
        c.connections_table.as_deref(),
        Some("switchboard-connections")
    );
    let c = edge(
        Function::Send,
        &[(QUEUE_URL, QUEUE), (CONNECTIONS_TABLE, "app-connections")],
    )
    .unwrap();
    assert_eq!(c.kind(), HandlerKind::Send);
    assert_eq!(c.queue_url.as_deref(), Some(QUEUE));
    assert_eq!(c.connections_table.as_deref(), Some("app-connections"));
    assert_eq!(c.settings.region, None);
    // The region Lambda sets: callbacks of frames from a custom domain.
    let c = edge(
        Function::Send,
        &[(QUEUE_URL, QUEUE), ("AWS_REGION", "eu-west-1")],
    )
    .unwrap();
    assert_eq!(c.settings.region.as_deref(), Some("eu-west-1"));
    let c = edge(Function::Default, &[]).unwrap();
    assert_eq!(c.connections_table, None);
    assert_eq!(
        c.settings.known_actions,
        ["sendMessage", "history", "direct", "resume", "presence"]
    );
    let c = edge(Function::Default, &[(ACTIONS, " sendMessage , typing,,")]).unwrap();
    assert_eq!(c.settings.known_actions, ["sendMessage", "typing"]);
}

#[test]
fn the_send_function_needs_a_fifo_queue_url() {
    let e = edge(Function::Send, &[]).unwrap_err();
    assert!(e.starts_with("SWITCHBOARD_QUEUE_URL is not set"), "{e}");
    // Empty is unset: what an empty template parameter gives.
    let e = edge(Function::Send, &[(QUEUE_URL, "  ")]).unwrap_err();
    assert!(e.contains("is not set"), "{e}");
    let e = edge(
        Function::Send,
        &[(QUEUE_URL, "https://sqs.eu-west-1.amazonaws.com/1/inbound")],
    )
    .unwrap_err();
    assert!(e.contains("ending in .fifo"), "{e}");
    let e = edge(Function::Send, &[(QUEUE_URL, "embedded://inbound.fifo")]).unwrap_err();
    assert!(e.contains("SQS FIFO queue URL"), "{e}");
}

#[test]
fn unknown_switchboard_variables_are_errors_and_others_are_ignored() {
    let e = edge(
        Function::Default,
        &[
            (QUEUE_URL, QUEUE),
            ("PATH", "/usr/bin"),
            ("AWS_REGION", "eu-west-1"),
        ],
    )
    .unwrap_err();
    assert!(
        e.starts_with("SWITCHBOARD_QUEUE_URL is not read by switchboard-default"),
        "{e}"
    );
    assert!(e.contains("SWITCHBOARD_ACTIONS"), "{e}");
    let mut pairs = RS256.to_vec();
    pairs.push(("SWITCHBOARD_AUTH_ISUER", "https://issuer"));
    let e = auth(&pairs).unwrap_err();
    assert!(e.starts_with("SWITCHBOARD_AUTH_ISUER is not read"), "{e}");
    assert!(edge(Function::Connect, &[("PATH", "/usr/bin")]).is_ok());
}

#[test]
fn log_format_is_checked() {
    assert!(edge(Function::Connect, &[(LOG_FORMAT, "json")]).is_ok());
    assert!(edge(Function::Connect, &[(LOG_FORMAT, "JSON")]).is_ok());
    let e = edge(Function::Connect, &[(LOG_FORMAT, "xml")]).unwrap_err();
    assert!(e.contains("use json"), "{e}");
}

#[test]
fn default_rejects_route_keys_that_are_not_custom() {
    let e = edge(Function::Default, &[(ACTIONS, "sendMessage,$connect")]).unwrap_err();
    assert!(e.contains("`$connect` is not a custom route key"), "{e}");
}

#[test]
fn an_rs256_authorizer_from_the_template_variables() {
    let mut pairs = RS256.to_vec();
    pairs.extend([
        (
            auth::ISSUER,
            "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_X",
        ),
        (auth::AUDIENCE, "client-a, client-b"),
        (auth::TOKEN_USE, "id"),
        (auth::ALLOWED_GROUPS, "players,admins"),
        (auth::ALLOWED_USERS, ""),
        (auth::USER_CLAIM, "email"),
        (auth::GROUPS_CLAIM, ""),
        (auth::SESSION_CLAIM, "custom:room"),
        (auth::API_KEY_CLAIM, "custom:apiKey"),
        (LOG_FORMAT, "json"),
    ]);
    let c = auth(&pairs).unwrap();
    assert_eq!(c.identity_sources, [IdentitySource::Query("token".into())]);
    assert_eq!(c.algorithms, [Algorithm::RS256]);
    assert!(matches!(&c.jwks, Some(JwksSource::Url(u)) if *u == JWKS_URL));
    assert_eq!(c.secret, None);
    assert_eq!(
        c.issuer.as_deref(),
        Some("https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_X")
    );
    assert_eq!(c.audience, ["client-a", "client-b"]);
    assert_eq!(c.token_use.as_deref(), Some("id"));
    assert_eq!(c.allowed_groups, ["players", "admins"]);
    assert!(c.allowed_users.is_empty());
    assert_eq!(
        c.claims,
        ClaimNames {
            user: "email".into(),
            groups: "cognito:groups".into(),
            session: "custom:room".into(),
            api_key: Some("custom:apiKey".into()),
        }
    );
}

#[test]
fn an_hs256_authorizer_reads_its_secret() {
    let secret = "s".repeat(MIN_SECRET_BYTES);
    let c = auth(&[
        (auth::IDENTITY_SOURCES, "route.request.header.Authorization"),
        (auth::ALGORITHMS, "HS256,HS256"),
        (auth::SECRET, &secret),
        (auth::JWKS, ""),
    ])
    .unwrap();
    assert_eq!(c.algorithms, [Algorithm::HS256]);
    assert_eq!(c.secret.unwrap().expose(), secret.as_bytes());
    assert_eq!(
        c.identity_sources,
        [IdentitySource::Header("Authorization".into())]
    );
}

#[test]
fn authorizer_mistakes_are_refused_with_the_variable_named() {
    let secret = "s".repeat(MIN_SECRET_BYTES);
    let short = "s".repeat(MIN_SECRET_BYTES - 1);
    let src = (auth::IDENTITY_SOURCES, "route.request.querystring.token");
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![(auth::ALGORITHMS, "RS256"), (auth::JWKS, JWKS_URL)],
            "SWITCHBOARD_AUTH_IDENTITY_SOURCES: not set",
        ),
        (
            vec![
                (auth::IDENTITY_SOURCES, "query.token"),
                (auth::ALGORITHMS, "RS256"),
                (auth::JWKS, JWKS_URL),
            ],
            "SWITCHBOARD_AUTH_IDENTITY_SOURCES: identity source `query.token`",
        ),
        (
            vec![src, (auth::JWKS, JWKS_URL)],
            "SWITCHBOARD_AUTH_ALGORITHMS: not set",
        ),
        (
            vec![src, (auth::ALGORITHMS, "none")],
            "`none` is never accepted",
        ),
        (
            vec![src, (auth::ALGORITHMS, "RS257"), (auth::JWKS, JWKS_URL)],
            "unknown algorithm `RS257`: use HS256",
        ),
        (
            vec![src, (auth::ALGORITHMS, "HS256")],
            "SWITCHBOARD_AUTH_SECRET: not set",
        ),
        (
            vec![src, (auth::ALGORITHMS, "HS256"), (auth::SECRET, &short)],
            "the secret is 31 bytes",
        ),
        (
            vec![
                src,
                (auth::ALGORITHMS, "RS256"),
                (auth::JWKS, JWKS_URL),
                (auth::SECRET, &secret),
            ],
            "SWITCHBOARD_AUTH_SECRET: no HS algorithm",
        ),
        (
            vec![src, (auth::ALGORITHMS, "RS256")],
            "SWITCHBOARD_AUTH_JWKS: not set",
        ),
        (
            vec![
                src,
                (auth::ALGORITHMS, "HS256"),
                (auth::SECRET, &secret),
                (auth::JWKS, JWKS_URL),
            ],
            "SWITCHBOARD_AUTH_JWKS: no RS/PS/ES algorithm",
        ),
        (
            vec![src, (auth::ALGORITHMS, "RS256"), (auth::JWKS, "https://")],
            "is not a URL",
        ),
        (
            vec![
                src,
                (auth::ALGORITHMS, "RS256"),
                (auth::JWKS, "/nonexistent/jwks.json"),
            ],
            "cannot read /nonexistent/jwks.json",
        ),
    ];
    for (pairs, expected) in cases {
        let e = auth(&pairs).unwrap_err();
        assert!(e.contains(expected), "{pairs:?}: {e}");
        assert!(!e.contains('\n'), "one line: {e}");
        assert!(!e.contains(&secret), "the secret is never echoed: {e}");
    }
}

#[test]
fn a_jwks_file_is_read_and_checked_at_start() {
    let dir = std::env::temp_dir().join(format!(
        "switchboard-lambda-jwks-{}-{}",
        std::process::id(),
        fastrand::u32(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let issuer = Issuer::new();
    let good = dir.join("jwks.json");
    std::fs::write(&good, issuer.jwks().to_string()).unwrap();
    let only_rsa = dir.join("rsa.json");
    std::fs::write(
        &only_rsa,
        serde_json::json!({"keys": [issuer.rsa_jwk("rsa-1")]}).to_string(),
    )
    .unwrap();
    let src = (auth::IDENTITY_SOURCES, "route.request.querystring.token");
    let c = auth(&[
        src,
        (auth::ALGORITHMS, "ES256"),
        (auth::JWKS, good.to_str().unwrap()),
    ])
    .unwrap();
    assert!(matches!(c.jwks, Some(JwksSource::Keys(ref set)) if set.keys.len() == 2));
    let e = auth(&[
        src,
        (auth::ALGORITHMS, "ES256"),
        (auth::JWKS, only_rsa.to_str().unwrap()),
    ])
    .unwrap_err();
    assert!(e.contains("has no key for [ES256]"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn connect_and_disconnect_send_presence_events_when_given_the_queue() {
    for f in [Function::Connect, Function::Disconnect] {
        let c = edge(f, &[]).unwrap();
        assert!(!c.settings.presence_events, "no queue: off");
        assert_eq!(c.queue_url, None);
        let c = edge(f, &[(QUEUE_URL, QUEUE)]).unwrap();
        assert!(c.settings.presence_events, "queue given: on by default");
        assert_eq!(c.queue_url.as_deref(), Some(QUEUE));
        let c = edge(f, &[(QUEUE_URL, QUEUE), (PRESENCE_EVENTS, "off")]).unwrap();
        assert!(!c.settings.presence_events);
        let e = edge(f, &[(PRESENCE_EVENTS, "on")]).unwrap_err();
        assert!(e.contains(QUEUE_URL), "{e}");
        let e = edge(f, &[(QUEUE_URL, QUEUE), (PRESENCE_EVENTS, "yes")]).unwrap_err();
        assert!(e.contains("not on or off"), "{e}");
    }
}
