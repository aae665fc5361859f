//! The security suite's fixture: the local gateway on 127.0.0.1:0 with the
//! builtin `$connect`/`$disconnect` handlers on the embedded backend (so that
//! a test sees whether a connection record was written), a configuration
//! parsed from TOML with its files in a temp dir and its `env:` secrets from
//! a fixed map, and handshakes with chosen headers.

use std::collections::HashMap;
use std::sync::Arc;

use switchboard::backend::embedded::{EmbeddedStore, QueueSettings};
use switchboard::backend::{Connection, Connections};
use switchboard::gateway::config::Environment;
use switchboard::gateway::{GatewayConfig, HandlerBackend};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::{self, http::HeaderValue};

use super::embedded::TempDir;
use super::ws::{Client, TestGateway};

/// The routes every security test starts from: the builtin connection
/// handlers, `whoami` and a `ping` route (mocks). `{connect}` and `{ping}`
/// are replaced by extra lines for those routes.
pub const ROUTES: &str = r#"
[[routes]]
key = "$connect"
integration = { type = "builtin", handler = "connect" }
{connect}

[[routes]]
key = "$disconnect"
integration = { type = "builtin", handler = "disconnect" }

[[routes]]
key = "whoami"
integration = { type = "mock", response_template = "$context.connectionId" }
route_response_selection_expression = "$default"

[[routes]]
key = "ping"
integration = { type = "mock", response_template = "pong" }
route_response_selection_expression = "$default"
{ping}
"#;

/// `ROUTES` with extra lines for `$connect` and `ping`, then `rest`.
pub fn config_text(connect: &str, ping: &str, rest: &str) -> String {
    ROUTES.replace("{connect}", connect).replace("{ping}", ping) + rest
}

/// A gateway under attack.
pub struct Secured {
    /// The gateway.
    pub gw: TestGateway,
    /// The connections table the builtin `$connect` writes.
    pub conns: Arc<dyn Connections>,
    /// Files the configuration refers to.
    pub files: TempDir,
    _store: EmbeddedStore,
}

/// Parses `text` with relative paths in `files` and `env:` variables from `vars`.
pub fn parse(text: &str, files: &TempDir, vars: &[(&str, &str)]) -> GatewayConfig {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let lookup = move |name: &str| vars.get(name).cloned();
    let env = Environment {
        base_dir: files.path(),
        var: &lookup,
    };
    GatewayConfig::parse_in(text, "security.toml", &env).unwrap_or_else(|e| panic!("{e}"))
}

impl Secured {
    /// Starts a gateway for `text`; `files` holds what it refers to.
    pub async fn start(text: &str, files: TempDir, vars: &[(&str, &str)]) -> Self {
        let config = parse(text, &files, vars);
        let store = EmbeddedStore::in_memory().await.unwrap();
        let queue = store
            .create_queue("inbound.fifo", QueueSettings::default())
            .await
            .unwrap();
        let conns: Arc<dyn Connections> =
            Arc::new(store.connections("switchboard-connections", None));
        let gw = TestGateway::start(
            config,
            Some(HandlerBackend {
                queue: Arc::new(queue),
                connections: conns.clone(),
            }),
        )
        .await;
        Secured {
            gw,
            conns,
            files,
            _store: store,
        }
    }

    /// `ws://addr/{stage}?session={session}` plus `query`.
    pub fn url(&self, stage: &str, session: &str, query: &str) -> String {
        let q = if query.is_empty() {
            String::new()
        } else {
            format!("&{query}")
        };
        self.gw.ws_url(&format!("{stage}?session={session}{q}"))
    }

    /// The records of `session`.
    pub async fn records(&self, session: &str) -> Vec<Connection> {
        self.conns.by_session(session, None).await.unwrap().items
    }

    /// Asserts nothing was written for `session`.
    pub async fn assert_no_record(&self, session: &str) {
        let r = self.records(session).await;
        assert!(r.is_empty(), "a connection record was written: {r:?}");
    }

    /// The value of a metric series in the gateway's exposition, e.g.
    /// `switchboard_gateway_rejections_total{phase="connect",reason="ip_denied"}`.
    pub fn metric(&self, series: &str) -> u64 {
        let text = self.gw.gateway.metrics().render();
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no series {series} in:\n{text}")) as u64
    }

    /// `rejections_total` for a reason.
    pub fn rejections(&self, phase: &str, reason: &str) -> u64 {
        self.metric(&format!(
            "switchboard_gateway_rejections_total{{phase=\"{phase}\",reason=\"{reason}\"}}"
        ))
    }
}

/// A handshake request to `url` with extra headers.
pub fn request(url: &str, headers: &[(&str, &str)]) -> Request {
    let mut req = url.into_client_request().unwrap();
    for (k, v) in headers {
        req.headers_mut().append(
            tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    req
}

/// A refused handshake: status, JSON body.
pub async fn refused(req: Request) -> (u16, serde_json::Value) {
    match tokio_tungstenite::connect_async(req).await {
        Ok(_) => panic!("the handshake was accepted"),
        Err(tungstenite::Error::Http(resp)) => {
            let body = resp.body().clone().unwrap_or_default();
            let json = serde_json::from_slice(&body).unwrap_or_else(|_| {
                serde_json::Value::String(String::from_utf8_lossy(&body).into_owned())
            });
            (resp.status().as_u16(), json)
        }
        Err(e) => panic!("the handshake failed without an HTTP answer: {e}"),
    }
}

/// An accepted handshake.
pub async fn accepted(req: Request) -> Client {
    let uri = req.uri().to_string();
    match tokio_tungstenite::connect_async(req).await {
        Ok((client, resp)) => {
            assert_eq!(resp.status(), 101);
            client
        }
        Err(tungstenite::Error::Http(resp)) => panic!(
            "{uri} refused with {}: {}",
            resp.status(),
            String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default())
        ),
        Err(e) => panic!("{uri}: {e}"),
    }
}
