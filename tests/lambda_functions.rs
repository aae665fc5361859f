//! The Lambda functions as their binaries' `service_fn` calls them
//! (`switchboard::lambda::{connect, disconnect, default, send, authorizer}`),
//! fed the real-shape fixtures as `lambda_runtime` hands them over, each
//! configured from the same `SWITCHBOARD_*` variables the template sets:
//! connect stores the record, send enqueues envelope v1 on the FIFO queue,
//! default lists the actions, disconnect deletes, all on moto; the
//! authorizer answers Allow/Deny policies or the `Unauthorized` that API
//! Gateway turns into 401.
#![cfg(feature = "lambda")]

mod support;

use lambda_runtime::{Context, Diagnostic, LambdaEvent};
use serde_json::{Value, json};
use support::jwt::{self, Issuer, SECRET};
use switchboard::handlers::HandlerKind;
use switchboard::handlers::authorizer::{Authorizer, AuthorizerEvent, AuthorizerResponse};
use switchboard::lambda::{self, Function, FunctionConfig, LambdaEnv, config};

use support::fixtures::AUTHORIZER as AUTHORIZER_FIXTURE;
const ISSUER: &str = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_TEST";
const AUDIENCE: &str = "test-client";

/// An invocation as the runtime hands it to the function.
fn invocation<T: serde::de::DeserializeOwned>(event: &Value) -> LambdaEvent<T> {
    let payload = serde_json::from_value(event.clone()).expect("the fixture deserializes");
    LambdaEvent::new(payload, Context::default())
}

fn authorizer_from(pairs: &[(&str, &str)]) -> Authorizer {
    let env = LambdaEnv::from_pairs(pairs.iter().copied());
    match FunctionConfig::from_env(Function::Authorizer, &env).expect("valid configuration") {
        FunctionConfig::Authorizer(c) => Authorizer::new(*c),
        other => panic!("{other:?}"),
    }
}

/// The authorizer fixture with `token` in its query string and header.
fn authorizer_event(token: &str) -> Value {
    let mut event: Value = serde_json::from_str(AUTHORIZER_FIXTURE).unwrap();
    event["queryStringParameters"]["token"] = json!(token);
    event["multiValueQueryStringParameters"]["token"] = json!([token]);
    event["headers"]["Authorization"] = json!(format!("Bearer {token}"));
    event["multiValueHeaders"]["Authorization"] = json!([format!("Bearer {token}")]);
    event
}

async fn authorize(a: &Authorizer, token: &str) -> Result<AuthorizerResponse, Diagnostic> {
    lambda::authorizer(a, invocation::<AuthorizerEvent>(&authorizer_event(token))).await
}

/// The JSON API Gateway receives: `principalId`, `policyDocument` and a
/// `context` of strings, numbers and booleans only.
fn assert_api_gateway_shape(r: &AuthorizerResponse, effect: &str) -> Value {
    let v = serde_json::to_value(r).unwrap();
    let method_arn = "arn:aws:execute-api:eu-west-1:123456789012:a1b2c3d4e5/prod/$connect";
    assert_eq!(
        v["policyDocument"],
        json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Action": "execute-api:Invoke",
                "Effect": effect,
                "Resource": method_arn,
            }]
        })
    );
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert!(
        keys.iter().all(|k| [
            "principalId",
            "policyDocument",
            "context",
            "usageIdentifierKey"
        ]
        .contains(k)),
        "{keys:?}"
    );
    for (k, value) in v["context"].as_object().unwrap() {
        assert!(
            value.is_string() || value.is_number() || value.is_boolean(),
            "context.{k} = {value}: API Gateway accepts only strings, numbers and booleans"
        );
    }
    v
}

#[tokio::test]
async fn the_authorizer_allows_a_valid_rs256_token_with_the_methods_policy() {
    let issuer = Issuer::new();
    let dir = std::env::temp_dir().join(support::unique("lambda-jwks"));
    std::fs::create_dir_all(&dir).unwrap();
    let jwks = dir.join("jwks.json");
    std::fs::write(&jwks, issuer.jwks().to_string()).unwrap();
    let a = authorizer_from(&[
        (
            config::auth::IDENTITY_SOURCES,
            "route.request.querystring.token",
        ),
        (config::auth::ALGORITHMS, "RS256,ES256"),
        (config::auth::JWKS, jwks.to_str().unwrap()),
        (config::auth::ISSUER, ISSUER),
        (config::auth::AUDIENCE, AUDIENCE),
        (config::auth::ALLOWED_GROUPS, "players"),
    ]);
    let mut claims = jwt::claims("alice", ISSUER, AUDIENCE);
    claims["cognito:groups"] = json!(["players"]);
    claims["sessionId"] = json!("room-7");
    let r = authorize(&a, &issuer.rs256(&claims)).await.unwrap();
    assert_eq!(r.principal_id, "alice");
    let v = assert_api_gateway_shape(&r, "Allow");
    assert_eq!(
        v["context"],
        json!({"userId": "alice", "sessionId": "room-7"})
    );

    // ES256 from the same JWKS; a user outside the allowed groups: Deny.
    let mut outsider = jwt::claims("mallory", ISSUER, AUDIENCE);
    outsider["cognito:groups"] = json!(["guests"]);
    let r = authorize(&a, &issuer.es256(&outsider)).await.unwrap();
    assert_eq!(r.principal_id, "mallory");
    assert_api_gateway_shape(&r, "Deny");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn bad_tokens_fail_with_exactly_unauthorized_and_unreachable_keys_otherwise() {
    let a = authorizer_from(&[
        (
            config::auth::IDENTITY_SOURCES,
            "route.request.querystring.token",
        ),
        (config::auth::ALGORITHMS, "HS256"),
        (config::auth::SECRET, std::str::from_utf8(SECRET).unwrap()),
        (config::auth::ISSUER, ISSUER),
        (config::auth::AUDIENCE, AUDIENCE),
    ]);
    let good = jwt::hs256(&jwt::claims("alice", ISSUER, AUDIENCE), SECRET);
    assert_api_gateway_shape(&authorize(&a, &good).await.unwrap(), "Allow");

    let mut expired = jwt::claims("alice", ISSUER, AUDIENCE);
    expired["exp"] = json!(jwt::now() - 3600);
    let cases = [
        jwt::hs256(&expired, SECRET),
        jwt::hs256(&jwt::claims("alice", ISSUER, "another-client"), SECRET),
        jwt::hs256(&jwt::claims("alice", "https://evil", AUDIENCE), SECRET),
        jwt::hs256(
            &jwt::claims("alice", ISSUER, AUDIENCE),
            b"another-secret-another-secret-xx",
        ),
        jwt::tampered(&good, &jwt::claims("admin", ISSUER, AUDIENCE)),
        "not-a-jwt".to_owned(),
    ];
    for token in cases {
        let e = authorize(&a, &token).await.unwrap_err();
        // API Gateway answers 401 only for this exact message.
        assert_eq!(e.error_message, "Unauthorized", "{token}");
    }

    // Keys that cannot be fetched: the invocation fails otherwise (500).
    let a = authorizer_from(&[
        (
            config::auth::IDENTITY_SOURCES,
            "route.request.querystring.token",
        ),
        (config::auth::ALGORITHMS, "RS256"),
        (
            config::auth::JWKS,
            "http://127.0.0.1:9/.well-known/jwks.json",
        ),
    ]);
    let e = authorize(
        &a,
        &Issuer::new().rs256(&jwt::claims("alice", ISSUER, AUDIENCE)),
    )
    .await
    .unwrap_err();
    assert_ne!(e.error_message, "Unauthorized");
    assert_eq!(e.error_type, "Switchboard.AuthorizerFailed");
    assert!(e.error_message.contains("JWKS"), "{}", e.error_message);
}

#[cfg(feature = "aws-tests")]
mod on_moto {
    use super::*;
    use aws_sdk_sqs::types::MessageSystemAttributeName;
    use support::aws::{self, Stack, connection_item, peek_all};
    use switchboard::backend::aws::AwsBackend;
    use switchboard::envelope::Envelope;
    use switchboard::handlers::{Handlers, ProxyResponse};

    use support::fixtures::{CONNECT, DEFAULT, DISCONNECT, MESSAGE, fresh};

    /// The function's handlers, configured from `vars` as at cold start.
    fn handlers(backend: &AwsBackend, function: Function, vars: &[(&str, &str)]) -> Handlers {
        let env = LambdaEnv::from_pairs(vars.iter().copied());
        match FunctionConfig::from_env(function, &env).expect("valid configuration") {
            FunctionConfig::Edge(c) => lambda::edge_handlers(&c, backend),
            other => panic!("{other:?}"),
        }
    }

    struct Functions {
        connect: Handlers,
        disconnect: Handlers,
        default: Handlers,
        send: Handlers,
    }

    /// The four edge functions with the template's variables for `stack`.
    fn functions(backend: &AwsBackend, stack: &Stack) -> Functions {
        let table = stack.names.connections_table.as_str();
        Functions {
            connect: handlers(
                backend,
                Function::Connect,
                &[(config::CONNECTIONS_TABLE, table)],
            ),
            disconnect: handlers(
                backend,
                Function::Disconnect,
                &[(config::CONNECTIONS_TABLE, table)],
            ),
            default: handlers(
                backend,
                Function::Default,
                &[(config::ACTIONS, "sendMessage,history,direct")],
            ),
            send: handlers(
                backend,
                Function::Send,
                &[
                    (config::QUEUE_URL, stack.queue_url.as_str()),
                    (config::CONNECTIONS_TABLE, table),
                ],
            ),
        }
    }

    fn body(r: &ProxyResponse) -> Value {
        serde_json::from_str(r.body.as_deref().expect("a body")).unwrap()
    }

    #[tokio::test]
    async fn connect_send_default_disconnect_through_the_lambda_functions() {
        let backend = aws::backend().await;
        let stack = aws::migrated_stack(&backend, "lfn").await;
        let f = functions(&backend, &stack);
        let connect = fresh(CONNECT);
        let id = connect["requestContext"]["connectionId"]
            .as_str()
            .unwrap()
            .to_owned();

        let r = lambda::edge(&f.connect, HandlerKind::Connect, invocation(&connect))
            .await
            .unwrap();
        assert_eq!(r.status_code, 200);
        let item = connection_item(&backend, &stack, &id)
            .await
            .expect("stored");
        assert_eq!(item["sessionId"].as_s().unwrap(), "room1");
        assert_eq!(item["stage"].as_s().unwrap(), "dev");

        let message = fresh(MESSAGE);
        let r = lambda::edge(&f.send, HandlerKind::Send, invocation(&message))
            .await
            .unwrap();
        assert_eq!(r.status_code, 200);
        let messages = peek_all(&backend, &stack.queue_url).await;
        assert_eq!(messages.len(), 1);
        let env = Envelope::parse(messages[0].body().unwrap()).expect("envelope v1");
        let ctx = &message["requestContext"];
        assert_eq!(env.v, 1);
        assert_eq!(env.id, ctx["requestId"].as_str().unwrap());
        assert_eq!(env.session_id, "room1");
        assert_eq!(env.sender.connection_id, id);
        assert_eq!(env.payload, json!({"text": "hi"}));
        use aws_sdk_sqs::types::MessageSystemAttributeName as A;
        let attrs = messages[0].attributes().unwrap();
        assert_eq!(attrs[&A::MessageGroupId], "room1");
        assert_eq!(attrs[&A::MessageDeduplicationId], env.id);

        // $default answers with an error frame listing SWITCHBOARD_ACTIONS;
        // it has no queue or table at all.
        let r = lambda::edge(
            &f.default,
            HandlerKind::Default,
            invocation(&serde_json::from_str(DEFAULT).unwrap()),
        )
        .await
        .unwrap();
        assert_eq!(r.status_code, 400);
        let frame = body(&r);
        assert_eq!(frame["code"], "unknown_route");
        assert_eq!(
            frame["actions"],
            json!(["sendMessage", "history", "direct"])
        );

        let disconnect: Value = serde_json::from_str(DISCONNECT).unwrap();
        let r = lambda::edge(
            &f.disconnect,
            HandlerKind::Disconnect,
            invocation(&disconnect),
        )
        .await
        .unwrap();
        assert_eq!(r.status_code, 200);
        assert!(
            connection_item(&backend, &stack, &id).await.is_none(),
            "deleted"
        );
        assert_eq!(
            peek_all(&backend, &stack.queue_url).await.len(),
            1,
            "nothing else was enqueued"
        );
    }

    /// As the template configures them: connect and disconnect also get the
    /// queue, and put `$join` / `$leave` in the session's group.
    #[tokio::test]
    async fn connect_and_disconnect_with_the_queue_enqueue_join_and_leave() {
        let backend = aws::backend().await;
        let stack = aws::migrated_stack(&backend, "lpres").await;
        let vars = [
            (
                config::CONNECTIONS_TABLE,
                stack.names.connections_table.as_str(),
            ),
            (config::QUEUE_URL, stack.queue_url.as_str()),
            (config::PRESENCE_EVENTS, "on"),
        ];
        let connect_fn = handlers(&backend, Function::Connect, &vars);
        let disconnect_fn = handlers(&backend, Function::Disconnect, &vars);
        let connect = fresh(CONNECT);
        let id = connect["requestContext"]["connectionId"]
            .as_str()
            .unwrap()
            .to_owned();
        let r = lambda::edge(&connect_fn, HandlerKind::Connect, invocation(&connect))
            .await
            .unwrap();
        assert_eq!(r.status_code, 200);
        let disconnect: Value = serde_json::from_str(DISCONNECT).unwrap();
        let r = lambda::edge(
            &disconnect_fn,
            HandlerKind::Disconnect,
            invocation(&disconnect),
        )
        .await
        .unwrap();
        assert_eq!(r.status_code, 200);
        let queued = peek_all(&backend, &stack.queue_url).await;
        let events: Vec<(String, String, String)> = queued
            .iter()
            .map(|m| {
                let env = Envelope::parse(m.body().unwrap()).expect("envelope v1");
                (env.action, env.session_id, env.sender.connection_id)
            })
            .collect();
        assert_eq!(
            events,
            [
                ("$join".to_owned(), "room1".to_owned(), id.clone()),
                ("$leave".to_owned(), "room1".to_owned(), id.clone()),
            ]
        );
        // The leave's id and deduplication id are the connection's, the
        // ones a worker that prunes the record uses too.
        let leave = &queued[1];
        let want = format!("$leave:{id}");
        assert_eq!(Envelope::parse(leave.body().unwrap()).unwrap().id, want);
        let dedup = leave
            .attributes()
            .and_then(|a| a.get(&MessageSystemAttributeName::MessageDeduplicationId));
        assert_eq!(dedup, Some(&want));
    }

    #[tokio::test]
    async fn a_function_wired_to_the_wrong_route_refuses_and_writes_nothing() {
        let backend = aws::backend().await;
        let stack = aws::migrated_stack(&backend, "lwrong").await;
        let f = functions(&backend, &stack);
        let connect = fresh(CONNECT);
        let id = connect["requestContext"]["connectionId"].as_str().unwrap();
        lambda::edge(&f.connect, HandlerKind::Connect, invocation(&connect))
            .await
            .unwrap();

        // The connect function given a $disconnect, the disconnect function a
        // $connect, the send function a $default frame.
        let disconnect: Value = serde_json::from_str(DISCONNECT).unwrap();
        let e = lambda::edge(&f.connect, HandlerKind::Connect, invocation(&disconnect))
            .await
            .unwrap_err();
        assert_eq!(e.error_type, "Switchboard.WrongRoute");
        assert!(
            e.error_message.contains("route $disconnect"),
            "{}",
            e.error_message
        );
        let e = lambda::edge(&f.disconnect, HandlerKind::Disconnect, invocation(&connect))
            .await
            .unwrap_err();
        assert_eq!(e.error_type, "Switchboard.WrongRoute");
        assert!(
            connection_item(&backend, &stack, id).await.is_some(),
            "not deleted"
        );
        let default: Value = serde_json::from_str(DEFAULT).unwrap();
        let e = lambda::edge(&f.send, HandlerKind::Send, invocation(&default))
            .await
            .unwrap_err();
        assert_eq!(e.error_type, "Switchboard.WrongRoute");
        assert!(peek_all(&backend, &stack.queue_url).await.is_empty());
    }

    #[tokio::test]
    async fn a_backend_failure_fails_the_invocation() {
        let backend = aws::backend().await;
        let stack = aws::migrated_stack(&backend, "lfail").await;
        // A queue that does not exist: the invocation fails (API Gateway
        // answers the client `Internal server error`), naming the call.
        let missing = format!("{}-missing.fifo", stack.queue_url.trim_end_matches(".fifo"));
        let send = handlers(
            &backend,
            Function::Send,
            &[
                (config::QUEUE_URL, missing.as_str()),
                (
                    config::CONNECTIONS_TABLE,
                    stack.names.connections_table.as_str(),
                ),
            ],
        );
        let mut message = fresh(MESSAGE);
        message["requestContext"]["authorizer"] =
            json!({"principalId": "alice", "userId": "alice", "sessionId": "room1"});
        let e = lambda::edge(&send, HandlerKind::Send, invocation(&message))
            .await
            .unwrap_err();
        assert_eq!(e.error_type, "Switchboard.BackendError");
        assert!(
            e.error_message.contains("sqs.SendMessage"),
            "{}",
            e.error_message
        );
    }
}
