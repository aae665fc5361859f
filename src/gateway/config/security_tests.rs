//! The security sections: a full file, and each mistake with its line and fix.

use std::path::{Path, PathBuf};

use super::*;

const SECRET_VAR: &str = "SB_TEST_JWT_SECRET";

/// A directory with a JWKS file and a TLS certificate and key, removed on drop.
struct Files(PathBuf);

impl Files {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "sb-config-{}-{:08x}",
            std::process::id(),
            fastrand::u32(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let issuer = jwt::Issuer::new();
        std::fs::write(dir.join("jwks.json"), issuer.jwks().to_string()).unwrap();
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        std::fs::write(dir.join("cert.pem"), ck.cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), ck.signing_key.serialize_pem()).unwrap();
        let other = rcgen::generate_simple_self_signed(vec!["other".to_string()]).unwrap();
        std::fs::write(dir.join("other-key.pem"), other.signing_key.serialize_pem()).unwrap();
        Files(dir)
    }

    fn dir(&self) -> &Path {
        &self.0
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

use crate::handlers::authorizer::test_jwt as jwt;

fn var(name: &str) -> Option<String> {
    match name {
        SECRET_VAR => Some("0123456789abcdef0123456789abcdef".into()),
        "SB_SHORT" => Some("short".into()),
        "SB_EMPTY" => Some(String::new()),
        "SB_MGMT_SECRET" => Some("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into()),
        _ => None,
    }
}

fn parse_in(files: &Files, text: &str) -> Result<GatewayConfig, String> {
    let env = Environment {
        base_dir: files.dir(),
        var: &var,
    };
    GatewayConfig::parse_in(text, "gw.toml", &env).map_err(|e| e.0)
}

fn key_hash(key: &str) -> String {
    format!(
        "sha256:{}",
        data_encoding::HEXLOWER.encode(&KeyHash::of(key).0)
    )
}

#[test]
fn a_full_security_file() {
    let files = Files::new();
    let text = format!(
        r#"
[api]
api_key_selection_expression = "$request.header.x-api-key"

[[routes]]
key = "$connect"
integration = {{ type = "mock" }}
authorizer = "cognito"
api_key_required = true

[[routes]]
key = "sendMessage"
integration = {{ type = "mock" }}
throttle = {{ rate = 100.0, burst = 50 }}
api_key_required = true

[authorizers.cognito]
identity_sources = ["route.request.querystring.token"]
algorithms = ["RS256", "ES256"]
jwks = "jwks.json"
issuer = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_EXAMPLE"
audience = ["example-client-id"]
token_use = "id"
allowed_groups = ["players"]
cache_ttl_secs = 0

[authorizers.shared]
identity_sources = ["route.request.header.Authorization"]
algorithms = ["HS256"]
secret = "env:{SECRET_VAR}"

[stages.dev]

[stages.prod]
ip_allow = ["203.0.113.0/24", "2001:db8::/32", "198.51.100.7"]
ip_deny = ["203.0.113.66/32"]
trusted_proxy = true
throttle = {{ rate = 1000.0, burst = 500 }}
connect_throttle_per_ip = {{ rate = 5.0, burst = 10 }}
route_throttle = {{ sendMessage = {{ rate = 10.0, burst = 5 }} }}

[usage_plans.basic]
stages = ["prod"]
throttle = {{ rate = 10.0, burst = 20 }}
quota = {{ limit = 10000, period = "DAY" }}
api_keys = ["{}"]

[limits]
new_connections_per_second = 50

[tls]
cert = "cert.pem"
key = "key.pem"

[management]
bind = "any"
access_key_id = "AKIDEXAMPLE"
secret_access_key = "env:SB_MGMT_SECRET"
"#,
        key_hash("my-key")
    );
    let c = parse_in(&files, &text).unwrap();
    assert_eq!(c.api_key_source, ApiKeySource::Header);
    let connect = &c.routes["$connect"];
    assert_eq!(connect.authorizer.as_deref(), Some("cognito"));
    assert!(connect.api_key_required);
    assert_eq!(
        c.routes["sendMessage"].throttle,
        Some(Throttle {
            rate: 100.0,
            burst: 50
        })
    );
    let cognito = &c.authorizers["cognito"];
    assert_eq!(cognito.cache_ttl, Duration::ZERO);
    assert!(matches!(
        cognito.config.jwks,
        Some(crate::handlers::authorizer::JwksSource::Keys(_))
    ));
    assert_eq!(cognito.config.token_use.as_deref(), Some("id"));
    let shared = &c.authorizers["shared"];
    assert_eq!(shared.cache_ttl, Duration::from_secs(300));
    assert_eq!(
        shared.config.secret.as_ref().unwrap().expose(),
        b"0123456789abcdef0123456789abcdef"
    );
    let prod = c.stage("prod");
    assert_eq!(prod.ip_allow.len(), 3);
    assert_eq!(prod.ip_allow[2].to_string(), "198.51.100.7/32");
    assert!(prod.trusted_proxy);
    assert_eq!(prod.throttle.burst, 500);
    assert_eq!(prod.connect_throttle_per_ip.unwrap().rate, 5.0);
    assert_eq!(prod.route_throttle["sendMessage"].burst, 5);
    // A stage without settings has the account defaults.
    assert_eq!(c.stage("dev").throttle, Throttle::ACCOUNT_DEFAULT);
    let plan = &c.usage_plans["basic"];
    assert_eq!(plan.api_keys, [KeyHash::of("my-key")]);
    assert_eq!(
        plan.quota,
        Some(Quota {
            limit: 10_000,
            period: QuotaPeriod::Day
        })
    );
    assert_eq!(c.limits.new_connections_per_second, 50);
    let tls = c.tls.as_ref().unwrap();
    assert_eq!(tls.cert, files.dir().join("cert.pem"));
    assert_eq!(tls.server.alpn_protocols, [b"http/1.1".to_vec()]);
    match &c.management {
        Management::SigV4 {
            credentials,
            any_address,
        } => {
            assert!(any_address);
            assert_eq!(credentials.access_key_id, "AKIDEXAMPLE");
        }
        other => panic!("{other:?}"),
    }
    // Secrets and key hashes stay out of debug output.
    let dump = format!("{c:?}");
    assert!(!dump.contains("0123456789abcdef0123"), "{dump}");
    assert!(!dump.contains("wJalrXUtnFEMI"), "{dump}");
    assert!(!dump.contains(&key_hash("my-key")[7..]), "{dump}");
}

#[test]
fn security_mistakes_name_the_line_and_the_fix() {
    let files = Files::new();
    let auth = |extra: &str| {
        format!(
            "[authorizers.a]\nidentity_sources = [\"route.request.querystring.token\"]\n{extra}"
        )
    };
    let cases: Vec<(String, &str)> = vec![
        (
            "[stages.prod]\nip_allow = [\"203.0.113.0/33\"]\n".into(),
            "gw.toml line 2: stages.prod.ip_allow: `203.0.113.0/33` is not a CIDR or IP address",
        ),
        (
            "[stages.prod]\nip_deny = [\"10.0.0.0/8\", \"nope\"]\n".into(),
            "line 2: stages.prod.ip_deny: `nope`",
        ),
        (
            "[stages.prod]\nthrottle = { rate = -1.0, burst = 1 }\n".into(),
            "line 2: stages.prod.throttle: rate = -1 must be 0 to 1000000",
        ),
        (
            "[stages.prod]\nroute_throttle = { nope = { rate = 1.0, burst = 1 } }\n".into(),
            "stages.prod.route_throttle: there is no route `nope`",
        ),
        (
            auth("algorithms = [\"RS257\"]\njwks = \"jwks.json\"\n"),
            "line 3: authorizers.a.algorithms: unknown algorithm `RS257`: use HS256, HS384",
        ),
        (
            auth("algorithms = [\"none\"]\n"),
            "line 3: authorizers.a.algorithms: `none` is never accepted",
        ),
        (
            auth("algorithms = [\"HS256\"]\nsecret = \"env:SB_UNSET_VAR\"\n"),
            "line 4: authorizers.a.secret: environment variable SB_UNSET_VAR is not set: export SB_UNSET_VAR=",
        ),
        (
            auth("algorithms = [\"HS256\"]\nsecret = \"env:SB_EMPTY\"\n"),
            "environment variable SB_EMPTY is empty",
        ),
        (
            auth("algorithms = [\"HS256\"]\nsecret = \"env:SB_SHORT\"\n"),
            "line 4: authorizers.a.secret: the secret is 5 bytes; HS algorithms need at least 32",
        ),
        (
            auth("algorithms = [\"HS256\"]\nsecret = \"hunter2hunter2hunter2hunter2hunter2\"\n"),
            "line 4: authorizers.a.secret must be \"env:VARIABLE\"",
        ),
        (
            auth("algorithms = [\"HS256\"]\n"),
            "HS algorithms need secret = \"env:VARIABLE\"",
        ),
        (
            auth("algorithms = [\"RS256\"]\njwks = \"missing.json\"\n"),
            "line 4: authorizers.a.jwks: cannot read",
        ),
        (
            auth("algorithms = [\"RS256\"]\njwks = \"cert.pem\"\n"),
            "line 4: authorizers.a.jwks",
        ),
        (
            auth("algorithms = [\"ES384\"]\njwks = \"jwks.json\"\n"),
            "has no key for [ES384]",
        ),
        (
            auth("algorithms = [\"RS256\"]\n"),
            "RS/PS/ES algorithms need jwks",
        ),
        (
            auth("algorithms = [\"RS256\"]\njwks = \"jwks.json\"\nsecret = \"env:SB_TEST_JWT_SECRET\"\n"),
            "line 5: authorizers.a.secret: no HS algorithm is listed",
        ),
        (
            auth("algorithms = [\"RS256\"]\njwks = \"jwks.json\"\ncache_ttl_secs = 3601\n"),
            "line 5: authorizers.a.cache_ttl_secs = 3601 is out of range: use 0 (off) to 3600",
        ),
        (
            "[authorizers.a]\nidentity_sources = [\"stageVariables.x\"]\nalgorithms = [\"RS256\"]\njwks = \"jwks.json\"\n".into(),
            "line 2: authorizers.a.identity_sources: identity source `stageVariables.x`",
        ),
        (
            "[[routes]]\nkey = \"$connect\"\nintegration = { type = \"mock\" }\nauthorizer = \"jwt\"\n".into(),
            "line 4: authorizer `jwt` is not defined: add [authorizers.jwt]",
        ),
        (
            format!("{}\n[[routes]]\nkey = \"a\"\nintegration = {{ type = \"mock\" }}\nauthorizer = \"a\"\n",
                auth("algorithms = [\"RS256\"]\njwks = \"jwks.json\"\n")),
            "line 9: route `a`: authorizers run on $connect only",
        ),
        (
            "[[routes]]\nkey = \"$disconnect\"\nintegration = { type = \"mock\" }\napi_key_required = true\n".into(),
            "`$disconnect` cannot require an API key",
        ),
        (
            "[api]\napi_key_selection_expression = \"$request.querystring.key\"\n".into(),
            "line 2: api_key_selection_expression = \"$request.querystring.key\": use",
        ),
        (
            "[stages.prod]\n[usage_plans.p]\nstages = [\"prod\"]\napi_keys = [\"my-plain-key\"]\n".into(),
            "line 4: usage_plans.p.api_keys: API keys are given as \"sha256:<hex>\"",
        ),
        (
            "[stages.prod]\n[usage_plans.p]\nstages = [\"prod\"]\napi_keys = [\"sha256:abc\"]\n".into(),
            "is not sha256: followed by 64 hex digits",
        ),
        (
            "[stages.prod]\n[usage_plans.p]\nstages = [\"qa\"]\napi_keys = []\n".into(),
            "line 3: usage_plans.p.stages: there is no stage `qa` (stages: prod)",
        ),
        (
            "[stages.prod]\n[usage_plans.p]\nstages = [\"prod\"]\nquota = { limit = 5, period = \"YEAR\" }\napi_keys = []\n".into(),
            "line 4: usage_plans.p.quota: period = \"YEAR\": use DAY, WEEK or MONTH",
        ),
        (
            format!("[stages.prod]\n[usage_plans.a]\nstages = [\"prod\"]\napi_keys = [\"{k}\"]\n[usage_plans.b]\nstages = [\"prod\"]\napi_keys = [\"{k}\"]\n", k = key_hash("k")),
            "line 7: usage_plans.b.api_keys: this key is also in usage plan `a`",
        ),
        (
            "[tls]\ncert = \"nope.pem\"\nkey = \"key.pem\"\n".into(),
            "line 2: tls.cert: cannot read a PEM certificate chain from",
        ),
        (
            "[tls]\ncert = \"cert.pem\"\nkey = \"nope.pem\"\n".into(),
            "line 3: tls.key: cannot read a PEM private key from",
        ),
        (
            "[tls]\ncert = \"cert.pem\"\nkey = \"other-key.pem\"\n".into(),
            "does not fit the certificate",
        ),
        (
            "[tls]\ncert = \"jwks.json\"\nkey = \"key.pem\"\n".into(),
            "line 2: tls.cert",
        ),
        (
            "[management]\nbind = \"any\"\n".into(),
            "line 2: management.bind = \"any\" would let any host post to, read and close connections: set access_key_id",
        ),
        (
            "[management]\nbind = \"lan\"\n".into(),
            "use \"loopback\" or \"any\"",
        ),
        (
            "[management]\naccess_key_id = \"AKID\"\n".into(),
            "line 2: [management] needs both access_key_id and secret_access_key",
        ),
        (
            "[management]\naccess_key_id = \"AKID\"\nsecret_access_key = \"env:SB_UNSET_VAR\"\n".into(),
            "line 3: management.secret_access_key: environment variable SB_UNSET_VAR is not set",
        ),
        (
            "[limits]\nnew_connections_per_second = 0\n".into(),
            "`limits.new_connections_per_second` = 0 is out of range",
        ),
    ];
    for (text, want) in &cases {
        let err = parse_in(&files, text).unwrap_err();
        assert!(err.contains(want), "{text:?}\n  got: {err}\n want: {want}");
        assert!(!err.contains('\n'), "one line: {err}");
    }
    // Loopback with credentials: signatures are checked, callers stay local.
    let c = parse_in(
        &files,
        "[management]\nbind = \"loopback\"\naccess_key_id = \"AKID\"\nsecret_access_key = \"env:SB_MGMT_SECRET\"\n",
    )
    .unwrap();
    assert!(matches!(
        c.management,
        Management::SigV4 {
            any_address: false,
            ..
        }
    ));
}
