use super::*;

fn parse(text: &str) -> Result<GatewayConfig, String> {
    GatewayConfig::parse(text, "gw.toml").map_err(|e| e.0)
}

#[test]
fn default_is_the_design_default() {
    let c = GatewayConfig::default();
    assert_eq!(c.stages, ["dev"]);
    let keys: Vec<&str> = c.routes.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "$connect",
            "$default",
            "$disconnect",
            "direct",
            "history",
            "presence",
            "resume",
            "sendMessage"
        ]
    );
    assert_eq!(
        c.custom_route_keys(),
        ["direct", "history", "presence", "resume", "sendMessage"]
    );
    assert_eq!(c.route_selection.as_str(), "$request.body.action");
    assert_eq!(c.limits.message_bytes, 131_072);
    assert_eq!(c.limits.frame_bytes, 32_768);
    assert_eq!(c.limits.idle_timeout, Duration::from_secs(600));
    assert_eq!(c.limits.max_connection, Duration::from_secs(7200));
    assert!(c.uses_builtin());
    assert!(c.routes["$default"].route_response);
    assert!(!c.routes["$connect"].route_response);
    // An empty file is the default too.
    assert_eq!(parse("").unwrap(), c);
}

#[test]
fn the_shipped_example_parses() {
    let text = include_str!("../../../switchboard.example.toml");
    let c = parse(text).unwrap();
    assert!(c.routes.contains_key("sendMessage"));
    // The routes and the dev stage are the built-in default.
    assert_eq!(c.routes, GatewayConfig::default().routes);
    assert_eq!(c.stage("dev"), GatewayConfig::default().stage("dev"));
    // prod allows only listed CIDRs.
    let prod = c.stage("prod");
    let listed: Vec<String> = prod.ip_allow.iter().map(|n| n.to_string()).collect();
    assert_eq!(listed, ["203.0.113.0/24", "2001:db8::/32"]);
    assert!(!prod.trusted_proxy);
    assert!(c.authorizers.contains_key("cognito"));
    assert_eq!(c.usage_plans["basic"].stages, ["prod"]);
    assert_eq!(c.management, Management::Loopback);
    assert!(c.tls.is_none());
}

#[test]
fn a_full_file() {
    let c = parse(
        r#"
[api]
route_selection_expression = "${request.body.type}/${request.body.op}"

[[routes]]
key = "$connect"
integration = { type = "http_proxy", uri = "http://127.0.0.1:9/connect", timeout_ms = 500 }

[[routes]]
key = "room/join"
integration = { type = "mock", status_code = 200, response_template = "joined $context.connectionId" }
route_response_selection_expression = "$default"

[[routes]]
key = "$default"
integration = { type = "http", uri = "http://127.0.0.1:9/x", method = "put", request_template = "{\"b\": $input.body}", request_parameters = { "integration.request.header.connectionId" = "context.connectionId" } }

[stages.dev]
[stages.prod]

[limits]
message_bytes = 1000
frame_bytes = 500
idle_timeout_secs = 5
max_connection_secs = 60
outbound_buffer_frames = 4
header_timeout_secs = 2
body_timeout_secs = 3
keepalive_timeout_secs = 4
max_handshakes = 16

[management]
bind = "loopback"
"#,
    )
    .unwrap();
    assert_eq!(c.stages, ["dev", "prod"]);
    assert_eq!(c.routes.len(), 3);
    assert!(!c.uses_builtin());
    assert_eq!(
        c.routes["$connect"].integration.timeout,
        Duration::from_millis(500)
    );
    assert!(matches!(
        c.routes["room/join"].integration.spec,
        IntegrationSpec::Mock {
            status_code: 200,
            ..
        }
    ));
    assert!(c.routes["room/join"].route_response);
    assert!(!c.routes["$default"].route_response);
    assert_eq!(
        c.limits,
        Limits {
            message_bytes: 1000,
            frame_bytes: 500,
            idle_timeout: Duration::from_secs(5),
            max_connection: Duration::from_secs(60),
            outbound_buffer_frames: 4,
            new_connections_per_second: 500,
            header_timeout: Duration::from_secs(2),
            body_timeout: Duration::from_secs(3),
            keepalive_timeout: Duration::from_secs(4),
            max_handshakes: 16,
        }
    );
}

#[test]
fn mistakes_name_the_line_and_the_fix() {
    let cases: &[(&str, &str)] = &[
        (
            "[api]\nroute_selection = \"x\"\n",
            "gw.toml line 2: unknown field `route_selection`",
        ),
        (
            "[limits]\n\nidle_timeout = 5\n",
            "line 3: unknown field `idle_timeout`",
        ),
        (
            "[limits]\nidle_timeout_secs = 601\n",
            "line 2: `limits.idle_timeout_secs` = 601 is out of range: use 1 to 600",
        ),
        ("[limits]\nmessage_bytes = 200000\n", "use 1 to 131072"),
        (
            "[limits]\nheader_timeout_secs = 0\n",
            "line 2: `limits.header_timeout_secs` = 0 is out of range: use 1 to 3600",
        ),
        (
            "[limits]\nmax_handshakes = 0\n",
            "`limits.max_handshakes` = 0 is out of range: use 1 to 65536",
        ),
        (
            "[limits]\nmessage_bytes = 100\nframe_bytes = 200\n",
            "line 3: `limits.frame_bytes` = 200 is out of range: use 1 to 100",
        ),
        (
            "[api]\nroute_selection_expression = \"$request.header.x\"\n",
            "line 2: route_selection_expression: `$request.header.x` selects no part",
        ),
        (
            "[[routes]]\nkey = \"a\"\nintegration = { type = \"builtin\", handler = \"sned\" }\n",
            "line 1: route `a` integration: unknown builtin handler `sned`",
        ),
        (
            "[[routes]]\nkey = \"a\"\nintegration = { type = \"lambda\" }\n",
            "unknown variant `lambda`",
        ),
        (
            "[[routes]]\nkey = \"a\"\nintegration = { type = \"mock\", timeout_ms = 10 }\n",
            "timeout_ms = 10 is out of API Gateway's range: use 50 to 29000",
        ),
        (
            "[[routes]]\nkey = \"a\"\nintegration = { type = \"mock\", status = 200 }\n",
            "unknown field `status`",
        ),
        (
            "[[routes]]\nkey = \"a\"\nintegration = { type = \"http_proxy\", uri = \"https://x/\" }\n",
            "http:// endpoints only",
        ),
        (
            "[[routes]]\nkey = \"$connect\"\nintegration = { type = \"builtin\", handler = \"send\" }\n",
            "cannot use the builtin `send` handler",
        ),
        (
            "[[routes]]\nkey = \"$foo\"\nintegration = { type = \"mock\" }\n",
            "the only keys starting with $",
        ),
        (
            "[[routes]]\nkey = \"a\"\nintegration = { type = \"mock\" }\n[[routes]]\nkey = \"a\"\nintegration = { type = \"mock\" }\n",
            "line 4: route `a` is defined twice",
        ),
        (
            "[[routes]]\nkey = \"$disconnect\"\nintegration = { type = \"mock\" }\nroute_response_selection_expression = \"$default\"\n",
            "cannot have a route response",
        ),
        (
            "[[routes]]\nkey = \"a\"\nintegration = { type = \"mock\", response_template = \"$context.nope\" }\n",
            "unknown template variable `$context.nope`",
        ),
        ("[stages]\n", "[stages] is empty"),
        ("[stages.\"a b\"]\n", "stage name `a b`"),
    ];
    for (text, want) in cases {
        let err = parse(text).unwrap_err();
        assert!(err.contains(want), "{text:?}\n  got: {err}\n want: {want}");
        assert!(!err.contains('\n'), "one line: {err}");
    }
}
