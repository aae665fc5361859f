//! The real function binaries run as Lambda runs them: a clean environment
//! with the `AWS_LAMBDA_*` variables and the template's `SWITCHBOARD_*` ones,
//! talking to a Runtime API (`support::runtime_api`) that hands them real-shape
//! events and records what they post back. Proves each binary boots, reads
//! its configuration from the environment, handles events, posts responses
//! and errors in the protocol's shape, logs JSON lines, and fails its init
//! with one line (and an `init/error` report) when the configuration is bad.
#![cfg(feature = "lambda")]

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::jwt::{self, SECRET};
use support::process::Proc;
use support::runtime_api::{Outcome, RuntimeApi};
use tokio::process::Command;

use support::fixtures::{self, AUTHORIZER as AUTHORIZER_FIXTURE, fresh};
const ISSUER: &str = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_TEST";
const AUDIENCE: &str = "test-client";
const WAIT: Duration = Duration::from_secs(30);

/// `exe` started like Lambda starts a function: nothing inherited, only the
/// runtime's variables, JSON logs at info, and `vars`.
fn start(exe: &str, api: &RuntimeApi, name: &str, vars: &[(&str, &str)]) -> Proc {
    let mut cmd = Command::new(exe);
    cmd.env_clear()
        .envs(api.lambda_env(name))
        .env("RUST_LOG", "info")
        .env("SWITCHBOARD_LOG_FORMAT", "json")
        .envs(vars.iter().copied());
    Proc::spawn_command(cmd)
}

fn authorizer_event(token: &str) -> Value {
    let mut event: Value = serde_json::from_str(AUTHORIZER_FIXTURE).unwrap();
    event["queryStringParameters"]["token"] = json!(token);
    event["multiValueQueryStringParameters"]["token"] = json!([token]);
    event
}

#[tokio::test]
async fn the_authorizer_binary_answers_policies_and_unauthorized_over_the_runtime_api() {
    let api = RuntimeApi::start().await;
    let secret = std::str::from_utf8(SECRET).unwrap();
    let proc = start(
        env!("CARGO_BIN_EXE_switchboard-authorizer"),
        &api,
        "switchboard-authorizer",
        &[
            (
                "SWITCHBOARD_AUTH_IDENTITY_SOURCES",
                "route.request.querystring.token",
            ),
            ("SWITCHBOARD_AUTH_ALGORITHMS", "HS256"),
            ("SWITCHBOARD_AUTH_SECRET", secret),
            ("SWITCHBOARD_AUTH_ISSUER", ISSUER),
            ("SWITCHBOARD_AUTH_AUDIENCE", AUDIENCE),
            // Empty: as an optional template parameter left blank arrives.
            ("SWITCHBOARD_AUTH_ALLOWED_GROUPS", ""),
        ],
    );
    let mut claims = jwt::claims("alice", ISSUER, AUDIENCE);
    claims["sessionId"] = json!("room-7");
    api.invoke("req-allow", authorizer_event(&jwt::hs256(&claims, SECRET)));
    let expired = {
        let mut c = jwt::claims("alice", ISSUER, AUDIENCE);
        c["exp"] = json!(jwt::now() - 600);
        jwt::hs256(&c, SECRET)
    };
    api.invoke("req-expired", authorizer_event(&expired));

    let method_arn = "arn:aws:execute-api:eu-west-1:123456789012:a1b2c3d4e5/prod/$connect";
    assert_eq!(
        api.outcome(WAIT).await,
        Outcome::Response {
            request_id: "req-allow".into(),
            body: json!({
                "principalId": "alice",
                "policyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [{
                        "Action": "execute-api:Invoke",
                        "Effect": "Allow",
                        "Resource": method_arn,
                    }]
                },
                "context": {"userId": "alice", "sessionId": "room-7"},
            }),
        }
    );
    match api.outcome(WAIT).await {
        Outcome::Error {
            request_id, body, ..
        } => {
            assert_eq!(request_id, "req-expired");
            assert_eq!(body["errorMessage"], "Unauthorized", "API Gateway's 401");
        }
        other => panic!("expected an invocation error, got {other:?}"),
    }
    // JSON log lines for CloudWatch, tagged with Lambda's request id; the
    // reason for the 401 is logged, never sent.
    let ready = proc.log_line(WAIT, "ready").await;
    assert_eq!(ready["function"], "switchboard-authorizer");
    let refused = proc.log_line(WAIT, "unauthorized").await;
    assert_eq!(refused["level"], "INFO");
    assert_eq!(refused["reason"], "token expired");
    assert_eq!(refused["span"]["requestId"], "req-expired");
    assert!(!proc.log().contains(secret), "the secret is never logged");
}

#[tokio::test]
async fn a_bad_configuration_fails_the_init_with_one_line() {
    let api = RuntimeApi::start().await;
    let mut proc = start(
        env!("CARGO_BIN_EXE_switchboard-send"),
        &api,
        "switchboard-send",
        &[
            // The queue URL is missing.
            ("SWITCHBOARD_CONNECTIONS_TABLE", "switchboard-connections"),
            ("AWS_REGION", "eu-west-1"),
        ],
    );
    match api.outcome(WAIT).await {
        Outcome::InitError { error_type, body } => {
            assert_eq!(error_type.as_deref(), Some("Runtime.ConfigError"));
            assert_eq!(body["errorType"], "Switchboard.ConfigError");
            let message = body["errorMessage"].as_str().unwrap();
            assert!(
                message.starts_with("SWITCHBOARD_QUEUE_URL is not set"),
                "{message}"
            );
        }
        other => panic!("expected an init error, got {other:?}"),
    }
    let status = proc.exit_within(WAIT).await;
    assert_eq!(status.code(), Some(2), "a configuration error exits 2");
    let log = proc.log();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 1, "one line:\n{log}");
    let line: Value = serde_json::from_str(lines[0]).expect("a JSON line");
    assert_eq!(line["level"], "ERROR");
    assert_eq!(line["function"], "switchboard-send");
    assert!(
        line["message"]
            .as_str()
            .unwrap()
            .contains("SWITCHBOARD_QUEUE_URL is not set"),
        "{line}"
    );

    // A variable the function does not read is refused the same way.
    let api = RuntimeApi::start().await;
    let mut proc = start(
        env!("CARGO_BIN_EXE_switchboard-connect"),
        &api,
        "switchboard-connect",
        &[
            ("SWITCHBOARD_CONECTIONS_TABLE", "typo"),
            ("AWS_REGION", "eu-west-1"),
        ],
    );
    let Outcome::InitError { body, .. } = api.outcome(WAIT).await else {
        panic!("expected an init error")
    };
    assert!(
        body["errorMessage"]
            .as_str()
            .unwrap()
            .starts_with("SWITCHBOARD_CONECTIONS_TABLE is not read by switchboard-connect"),
        "{body}"
    );
    assert_eq!(proc.exit_within(WAIT).await.code(), Some(2));
}

#[cfg(feature = "aws-tests")]
#[tokio::test]
async fn connect_and_send_binaries_store_and_enqueue_on_moto() {
    use support::aws::{self, peek_all};
    use switchboard::envelope::Envelope;

    let backend = aws::backend().await;
    let stack = aws::migrated_stack(&backend, "lbin").await;
    let endpoint = aws::endpoint();
    let table = stack.names.connections_table.clone();
    let aws_vars = [
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_SESSION_TOKEN", "test"),
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
    ];

    let connect_api = RuntimeApi::start().await;
    let mut vars = aws_vars.to_vec();
    vars.push(("SWITCHBOARD_CONNECTIONS_TABLE", &table));
    let connect = start(
        env!("CARGO_BIN_EXE_switchboard-connect"),
        &connect_api,
        "switchboard-connect",
        &vars,
    );
    connect_api.invoke("req-connect", fresh(fixtures::CONNECT));
    assert_eq!(
        connect_api.outcome(WAIT).await,
        Outcome::Response {
            request_id: "req-connect".into(),
            body: json!({"statusCode": 200, "isBase64Encoded": false}),
        }
    );

    let send_api = RuntimeApi::start().await;
    let mut vars = aws_vars.to_vec();
    vars.extend([
        ("SWITCHBOARD_QUEUE_URL", stack.queue_url.as_str()),
        ("SWITCHBOARD_CONNECTIONS_TABLE", &table),
    ]);
    let send = start(
        env!("CARGO_BIN_EXE_switchboard-send"),
        &send_api,
        "switchboard-send",
        &vars,
    );
    let message = fresh(fixtures::MESSAGE);
    send_api.invoke("req-send", message.clone());
    assert_eq!(
        send_api.outcome(WAIT).await,
        Outcome::Response {
            request_id: "req-send".into(),
            body: json!({"statusCode": 200, "isBase64Encoded": false}),
        }
    );
    let messages = peek_all(&backend, &stack.queue_url).await;
    assert_eq!(messages.len(), 1);
    let env = Envelope::parse(messages[0].body().unwrap()).unwrap();
    assert_eq!(
        env.session_id, "room1",
        "the session stored by the connect binary"
    );
    assert_eq!(
        env.id,
        message["requestContext"]["requestId"].as_str().unwrap()
    );
    let line = send.log_line(WAIT, "ready").await;
    assert_eq!(line["queue_url"], stack.queue_url.as_str());
    drop(connect);
}
