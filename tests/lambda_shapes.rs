//! Our event and response types against AWS's own definitions of the same
//! JSON (`aws_lambda_events`, from the `aws-lambda-rust-runtime` repository):
//! every WebSocket fixture reads the same through both, what we serialize
//! (the local gateway's events, the functions' answers) reads back through
//! AWS's types with the same values, and the authorizer's Allow and Deny
//! answers are policies AWS's response type understands. An independent
//! check that "the real JSON shape" is real, not only self-consistent.

mod support;

use aws_lambda_events::apigw::{
    ApiGatewayCustomAuthorizerRequestTypeRequest, ApiGatewayCustomAuthorizerResponse,
    ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest,
};
use aws_lambda_events::encodings::Body;
use aws_lambda_events::iam::IamPolicyEffect;
use serde_json::{Map, Value, json};
use support::fixtures::{self, AUTHORIZER as AUTHORIZER_FIXTURE};
use support::jwt::{self, SECRET};
use switchboard::handlers::authorizer::{
    Authorizer, AuthorizerConfig, AuthorizerEvent, IdentitySource, Secret,
};
use switchboard::handlers::{EventType, ProxyResponse, WebSocketEvent};

const FIXTURES: [(&str, &str); 4] = [
    ("apigw-ws-connect.json", fixtures::CONNECT),
    ("apigw-ws-message.json", fixtures::MESSAGE),
    ("apigw-ws-default.json", fixtures::DEFAULT),
    ("apigw-ws-disconnect.json", fixtures::DISCONNECT),
];

/// Every field the handlers read agrees between the two readings of `json`.
fn assert_same_event(name: &str, json: &str) {
    let ours: WebSocketEvent = serde_json::from_str(json).unwrap_or_else(|e| panic!("{name}: {e}"));
    let aws: ApiGatewayWebsocketProxyRequest =
        serde_json::from_str(json).unwrap_or_else(|e| panic!("{name} (aws_lambda_events): {e}"));
    let (o, a) = (&ours.request_context, &aws.request_context);
    assert_eq!(Some(&o.route_key), a.route_key.as_ref(), "{name}");
    let event_type = match o.event_type {
        EventType::Connect => "CONNECT",
        EventType::Message => "MESSAGE",
        EventType::Disconnect => "DISCONNECT",
    };
    assert_eq!(Some(event_type), a.event_type.as_deref(), "{name}");
    assert_eq!(Some(&o.connection_id), a.connection_id.as_ref(), "{name}");
    assert_eq!(Some(&o.request_id), a.request_id.as_ref(), "{name}");
    assert_eq!(o.request_time_epoch, a.request_time_epoch, "{name}");
    assert_eq!(o.connected_at, a.connected_at, "{name}");
    assert_eq!(Some(&o.domain_name), a.domain_name.as_ref(), "{name}");
    assert_eq!(Some(&o.stage), a.stage.as_ref(), "{name}");
    assert_eq!(o.api_id, a.apiid, "{name}");
    assert_eq!(o.message_id, a.message_id, "{name}");
    assert_eq!(
        Some(&o.identity.source_ip),
        a.identity.source_ip.as_ref(),
        "{name}"
    );
    assert_eq!(o.identity.user_agent, a.identity.user_agent, "{name}");
    assert_eq!(o.disconnect_status_code, a.disconnect_status_code, "{name}");
    assert_eq!(o.disconnect_reason, a.disconnect_reason, "{name}");
    assert_eq!(ours.body, aws.body, "{name}");
    assert_eq!(ours.is_base64_encoded, aws.is_base64_encoded, "{name}");
    for (k, v) in ours.request.query_string_parameters.iter().flatten() {
        assert_eq!(
            aws.query_string_parameters.first(k),
            Some(v.as_str()),
            "{name}: ?{k}"
        );
    }
    for (k, v) in ours.request.headers.iter().flatten() {
        let theirs = aws.headers.get(k.as_str()).map(|h| h.to_str().unwrap());
        assert_eq!(theirs, Some(v.as_str()), "{name}: header {k}");
    }
}

#[test]
fn every_websocket_fixture_reads_the_same_through_aws_types() {
    for (name, json) in FIXTURES {
        assert_same_event(name, json);
        // What we write (the local gateway's events) is AWS's shape too.
        let ours: WebSocketEvent = serde_json::from_str(json).unwrap();
        assert_same_event(name, &serde_json::to_string(&ours).unwrap());
    }
    let connect: ApiGatewayWebsocketProxyRequest = serde_json::from_str(FIXTURES[0].1).unwrap();
    assert_eq!(
        connect.query_string_parameters.first("session"),
        Some("room1")
    );
}

#[test]
fn proxy_responses_are_what_api_gateway_reads() {
    for ours in [
        ProxyResponse::status(200),
        ProxyResponse::json(400, &json!({"type": "error", "code": "unknown_route"})),
    ] {
        let text = serde_json::to_string(&ours).unwrap();
        let aws: ApiGatewayProxyResponse = serde_json::from_str(&text).unwrap();
        assert_eq!(aws.status_code, i64::from(ours.status_code), "{text}");
        let body = match aws.body {
            None | Some(Body::Empty) => None,
            Some(Body::Text(t)) => Some(t),
            Some(other) => panic!("not a text body ({other:?}): {text}"),
        };
        assert_eq!(body, ours.body, "{text}");
        assert!(!aws.is_base64_encoded);
    }
}

fn hs256_authorizer(allowed_groups: &[&str]) -> Authorizer {
    let mut config = AuthorizerConfig::new(
        vec![IdentitySource::Query("token".into())],
        vec![jsonwebtoken::Algorithm::HS256],
    );
    config.secret = Some(Secret::new(SECRET));
    config.allowed_groups = allowed_groups.iter().map(|g| g.to_string()).collect();
    Authorizer::new(config)
}

#[tokio::test]
async fn authorizer_events_and_answers_read_the_same_through_aws_types() {
    let mut claims = jwt::claims("alice", "https://issuer", "client");
    claims["sessionId"] = json!("room-7");
    let token = jwt::hs256(&claims, SECRET);
    let mut event: Value = serde_json::from_str(AUTHORIZER_FIXTURE).unwrap();
    event["queryStringParameters"]["token"] = json!(token);
    let text = event.to_string();

    let ours: AuthorizerEvent = serde_json::from_str(&text).unwrap();
    let aws: ApiGatewayCustomAuthorizerRequestTypeRequest = serde_json::from_str(&text).unwrap();
    assert_eq!(aws.method_arn.as_ref(), Some(&ours.method_arn));
    assert_eq!(
        aws.query_string_parameters.first("token"),
        ours.query("token")
    );
    assert_eq!(
        aws.headers
            .get("authorization")
            .map(|h| h.to_str().unwrap()),
        ours.header("Authorization")
    );

    for (groups, effect) in [
        (vec![], IamPolicyEffect::Allow),
        (vec!["admins"], IamPolicyEffect::Deny),
    ] {
        let answer = hs256_authorizer(&groups)
            .authorize(&ours)
            .await
            .unwrap()
            .response;
        let aws: ApiGatewayCustomAuthorizerResponse<Map<String, Value>> =
            serde_json::from_str(&serde_json::to_string(&answer).unwrap()).unwrap();
        assert_eq!(aws.principal_id.as_deref(), Some("alice"));
        let policy = &aws.policy_document;
        assert_eq!(policy.version.as_deref(), Some("2012-10-17"));
        assert_eq!(policy.statement.len(), 1);
        let statement = &policy.statement[0];
        assert_eq!(statement.action, ["execute-api:Invoke"]);
        // AWS's type defaults a missing Effect to Allow: Deny proves ours is read.
        assert_eq!(statement.effect, effect);
        assert_eq!(statement.resource, std::slice::from_ref(&ours.method_arn));
        assert_eq!(statement.condition, None);
        assert_eq!(
            Value::Object(aws.context),
            json!({"userId": "alice", "sessionId": "room-7"})
        );
    }
}
