//! Fault suite, fuzzing with `proptest`: arbitrary input to the three
//! parsers that take what clients and queues send. No input panics; every
//! refusal is a clean, typed error that says what is wrong; what is accepted
//! keeps its invariants.
//!
//! - the envelope parser (`Envelope::parse`): arbitrary bytes, arbitrary
//!   JSON, and valid envelopes with fields replaced by arbitrary JSON;
//! - route selection (`RouteSelection::parse` / `select`): arbitrary
//!   expressions, arbitrary frames, and paths that must select their value;
//! - frame handling: the send handler's `envelope_for` on arbitrary frame
//!   bodies, and arbitrary text frames through a real gateway (builtin
//!   handlers on an embedded queue): each is answered with nothing (queued)
//!   or a clean `error` frame, never `Internal server error`; the connection
//!   stays open; everything queued is an envelope the worker accepts.
//!
//! `PROPTEST_CASES` sets the cases per property (default 256; 2,560 with
//! `SWITCHBOARD_HEAVY_FAULTS=1`). The `cargo fuzz` targets in `fuzz/` run the
//! same checks coverage-guided (docs/reliability.md).

mod support;

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};

use switchboard::backend::embedded::EmbeddedStore;
use switchboard::backend::{Queue, ReceiveRequest};
use switchboard::envelope::{Envelope, MAX_ID_CHARS, MAX_PAYLOAD_BYTES, encoded_len};
use switchboard::gateway::route::RouteSelection;
use switchboard::gateway::{GatewayConfig, HandlerBackend, Integration, Route};
use switchboard::handlers::{WebSocketEvent, envelope_for};
use switchboard::ops::migrate::Names;

use support::stream::heavy;
use support::ws::{self, TestGateway};

fn config() -> Config {
    let default = Config::default();
    Config {
        // PROPTEST_CASES, when set, is already in the default.
        cases: if heavy() {
            default.cases * 10
        } else {
            default.cases
        },
        // Failures are kept in tests/faults_fuzz.proptest-regressions and
        // replayed first on every run.
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"),
        )),
        ..default
    }
}

/// Field names of envelopes and frames, so that generated objects often hit
/// the paths the parsers look at.
const KEYS: &[&str] = &[
    "v",
    "id",
    "action",
    "sessionId",
    "sender",
    "connectionId",
    "userId",
    "callback",
    "domainName",
    "stage",
    "receivedAt",
    "payload",
    "data",
    "to",
    "userIds",
    "connectionIds",
    "limit",
    "type",
    "meta",
    "kind",
];

/// Route keys a frame may name (plus arbitrary text).
const ACTIONS: &[&str] = &[
    "sendMessage",
    "history",
    "direct",
    "$default",
    "$connect",
    "$disconnect",
    "",
    "SENDMESSAGE",
];

fn short_text() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::collection::vec(any::<char>(), 0..24).prop_map(String::from_iter),
        prop::sample::select(KEYS).prop_map(str::to_owned),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(KEYS).prop_map(str::to_owned),
        1 => short_text(),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("JSON has no NaN or infinity", |f| {
            serde_json::Number::from_f64(f).map(Value::Number)
        }),
        short_text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// Arbitrary bytes read as text the way a queue body or frame would be.
fn arbitrary_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        prop::collection::vec(any::<u8>(), 0..256)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        json_value().prop_map(|v| v.to_string()),
    ]
}

fn valid_envelope() -> impl Strategy<Value = Value> {
    let id = prop::collection::vec(any::<char>(), 1..=MAX_ID_CHARS).prop_map(String::from_iter);
    (
        id.clone(),
        id,
        short_text().prop_filter("non-empty", |s| !s.is_empty()),
        short_text().prop_filter("non-empty", |s| !s.is_empty()),
        prop::option::of(short_text()),
        0..i64::MAX,
        json_value(),
    )
        .prop_map(|(id, session, action, conn, user, at, payload)| {
            let mut sender = json!({ "connectionId": conn });
            if let Some(u) = user {
                sender["userId"] = json!(u);
            }
            json!({
                "v": 1, "id": id, "action": action, "sessionId": session,
                "sender": sender, "receivedAt": at, "payload": payload,
            })
        })
}

/// What `Envelope::parse` must guarantee for any body.
fn check_envelope(body: &str) -> Result<(), TestCaseError> {
    match Envelope::parse(body) {
        Ok(env) => {
            prop_assert_eq!(env.v, 1);
            prop_assert!(!env.id.is_empty() && env.id.chars().count() <= MAX_ID_CHARS);
            prop_assert!(
                !env.session_id.is_empty() && env.session_id.chars().count() <= MAX_ID_CHARS
            );
            prop_assert!(!env.action.is_empty());
            prop_assert!(!env.sender.connection_id.is_empty());
            prop_assert!(env.received_at >= 0);
            prop_assert!(encoded_len(&env.payload) <= MAX_PAYLOAD_BYTES);
            // What the worker writes back parses to the same envelope.
            let again = Envelope::parse(&serde_json::to_string(&env).unwrap())
                .map_err(|e| TestCaseError::fail(format!("re-encoded envelope refused: {e}")))?;
            prop_assert_eq!(again, env);
        }
        Err(e) => {
            prop_assert!(
                [
                    "malformed",
                    "unknown_version",
                    "invalid",
                    "payload_too_large"
                ]
                .contains(&e.kind()),
                "unknown kind {}",
                e.kind()
            );
            prop_assert!(!e.to_string().is_empty());
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn envelope_parse_never_panics_on_any_text(body in arbitrary_text()) {
        check_envelope(&body)?;
    }

    #[test]
    fn valid_envelopes_parse_and_round_trip(env in valid_envelope()) {
        let body = env.to_string();
        prop_assert!(Envelope::parse(&body).is_ok(), "refused: {body}");
        check_envelope(&body)?;
    }

    #[test]
    fn envelopes_with_a_field_replaced_parse_or_are_cleanly_refused(
        env in valid_envelope(),
        field in key(),
        value in prop::option::of(json_value()),
    ) {
        let mut env = env;
        let map = env.as_object_mut().unwrap();
        match value {
            Some(v) => { map.insert(field, v); }
            None => { map.remove(&field); }
        }
        check_envelope(&env.to_string())?;
    }

    #[test]
    fn route_selection_parse_never_panics(
        parts in prop::collection::vec(
            prop_oneof![
                Just("$request.body.".to_owned()),
                Just("${request.body.".to_owned()),
                Just("${".to_owned()),
                Just("}".to_owned()),
                Just(".".to_owned()),
                Just("$".to_owned()),
                short_text(),
            ],
            0..8,
        )
    ) {
        let expr: String = parts.concat();
        match RouteSelection::parse(&expr) {
            Ok(sel) => {
                // Any frame: a key or nothing, never a panic.
                let _ = sel.select(&expr);
                let _ = sel.select(r#"{"action":"x","request":{"body":1}}"#);
            }
            Err(e) => prop_assert!(!e.is_empty()),
        }
    }

    #[test]
    fn route_selection_select_never_panics_on_any_frame(frame in arbitrary_text()) {
        for expr in ["$request.body.action", "$request.body.meta.kind", "${request.body.type}/${request.body.op}"] {
            let sel = RouteSelection::parse(expr).unwrap();
            if let Some(key) = sel.select(&frame) {
                // A key comes only from a JSON frame.
                prop_assert!(serde_json::from_str::<Value>(&frame).is_ok(), "{key} from non-JSON");
            }
        }
    }

    #[test]
    fn a_body_path_selects_the_scalar_at_that_path(
        path in prop::collection::vec("[A-Za-z0-9_$-]{1,8}", 1..5),
        scalar in prop_oneof![
            short_text().prop_map(Value::String),
            any::<i64>().prop_map(Value::from),
            any::<bool>().prop_map(Value::Bool),
        ],
        noise in json_value(),
    ) {
        let sel = RouteSelection::parse(&format!("$request.body.{}", path.join("."))).unwrap();
        let mut body = scalar.clone();
        for segment in path.iter().rev() {
            let mut object = serde_json::Map::new();
            object.insert(segment.clone(), body);
            object.insert("zz-noise".to_owned(), noise.clone());
            body = Value::Object(object);
        }
        let want = match &scalar {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        prop_assert_eq!(sel.select(&body.to_string()), Some(want));
    }

    #[test]
    fn the_send_handler_turns_any_frame_into_an_envelope_or_a_clean_refusal(
        body in prop_oneof![
            arbitrary_text(),
            (prop::sample::select(ACTIONS), json_value())
                .prop_map(|(a, d)| json!({"action": a, "data": d}).to_string()),
        ]
    ) {
        let mut event: WebSocketEvent =
            serde_json::from_str(include_str!("fixtures/apigw-ws-message.json")).unwrap();
        event.body = Some(body.clone());
        match envelope_for(&event, "room", Some("alice".into()), None) {
            Ok(env) => {
                prop_assert!(serde_json::from_str::<Value>(&body).is_ok());
                check_envelope(&serde_json::to_string(&env).unwrap())?;
            }
            Err(refusal) => {
                prop_assert!((400..500).contains(&refusal.status_code), "{}", refusal.status_code);
                let frame: Value = serde_json::from_str(refusal.body.as_deref().unwrap_or_default())
                    .map_err(|e| TestCaseError::fail(format!("refusal body is not JSON: {e}")))?;
                prop_assert_eq!(&frame["type"], "error");
                prop_assert!(frame["code"].as_str().is_some_and(|c| !c.is_empty()));
                prop_assert!(frame["message"].as_str().is_some_and(|m| !m.is_empty()));
            }
        }
    }
}

/// Arbitrary text frames through a real gateway, one connection, in order.
#[test]
fn any_text_frame_through_the_gateway_is_queued_or_cleanly_refused() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let store = rt.block_on(EmbeddedStore::in_memory()).unwrap();
    let names = Names::default();
    let migrated = rt.block_on(store.migrate(&names)).unwrap();
    let queue = store.queue(&migrated.queue_url).unwrap();
    // The default API plus a probe route: its answer marks the end of
    // whatever the frame before it produced.
    let mut config = GatewayConfig::default();
    config.routes.insert(
        "zz-probe".into(),
        Route::new(
            "zz-probe",
            Integration::mock(200, Some("probe")).unwrap(),
            true,
        ),
    );
    let backend = HandlerBackend {
        queue: Arc::new(queue.clone()),
        connections: Arc::new(store.connections(&names.connections_table, None)),
    };
    let gw = rt.block_on(TestGateway::start(config, Some(backend)));
    // The runner takes a `Fn`; every case (shrinking included) runs on the
    // one connection, in turn.
    let client = std::cell::RefCell::new(rt.block_on(ws::connect(&gw.ws_url("dev?session=fuzz"))));
    let selection = RouteSelection::parse("$request.body.action").unwrap();
    let expected_queued = std::cell::Cell::new(0usize);

    let frames = prop_oneof![
        arbitrary_text(),
        (prop::sample::select(ACTIONS), json_value())
            .prop_map(|(a, d)| json!({"action": a, "data": d}).to_string()),
        (short_text(), json_value()).prop_map(|(a, d)| json!({"action": a, "data": d}).to_string()),
    ];
    let mut runner = TestRunner::new(config_for_gateway());
    let result = runner.run(&frames, |frame| {
        let queues = matches!(
            selection.select(&frame).as_deref(),
            Some("sendMessage" | "history" | "direct")
        );
        let mut client = client.borrow_mut();
        let answers = rt.block_on(async {
            ws::send(&mut client, frame.clone()).await;
            ws::send(&mut client, r#"{"action":"zz-probe"}"#).await;
            let mut answers = Vec::new();
            loop {
                let text = ws::next_text(&mut client).await;
                if text == "probe" {
                    return answers;
                }
                answers.push(text);
            }
        });
        if queues {
            expected_queued.set(expected_queued.get() + 1);
            prop_assert!(
                answers.is_empty(),
                "a queued frame is not answered: {answers:?}"
            );
        }
        for a in &answers {
            let v: Value = serde_json::from_str(a)
                .map_err(|e| TestCaseError::fail(format!("answer is not JSON ({e}): {a}")))?;
            prop_assert_eq!(&v["type"], "error", "a clean error frame, not {}", a);
            prop_assert!(
                ["unknown_route", "bad_request"].contains(&v["code"].as_str().unwrap_or_default()),
                "{}",
                a
            );
        }
        prop_assert!(answers.len() <= 1, "one answer per frame: {answers:?}");
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }

    // Everything queued is an envelope the worker accepts, once per frame.
    let queued = rt.block_on(async {
        let mut bodies = Vec::new();
        loop {
            let batch = queue
                .receive(ReceiveRequest {
                    max_messages: 10,
                    wait: Duration::ZERO,
                    visibility: Duration::from_secs(60),
                })
                .await
                .unwrap();
            if batch.is_empty() {
                return bodies;
            }
            let handles: Vec<&str> = batch.iter().map(|m| m.receipt_handle.as_str()).collect();
            queue.delete_batch(&handles).await.unwrap();
            bodies.extend(batch.into_iter().map(|m| m.body));
        }
    });
    assert_eq!(
        queued.len(),
        expected_queued.get(),
        "one message per routed frame"
    );
    for body in &queued {
        let env =
            Envelope::parse(body).unwrap_or_else(|e| panic!("queued but refused ({e}): {body}"));
        assert_eq!(env.session_id, "fuzz");
    }
    rt.block_on(gw.stop());
}

fn config_for_gateway() -> Config {
    Config {
        // Persisted failures are for the pure properties above; this one
        // needs the connection it runs on.
        failure_persistence: None,
        ..config()
    }
}
