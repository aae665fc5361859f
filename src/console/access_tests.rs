//! Unit tests of the console's access decision ([`super::access::decide`]):
//! loopback, tokens, and off-loopback callers, which a test cannot be.

use super::access::*;
use crate::gateway::Management;
use crate::gateway::config::ManagementCredentials;
use crate::handlers::authorizer::Secret;
use axum::http::{HeaderMap, Method, Uri};

const TOKEN: &str = "0123abcd";

fn creds(any_address: bool) -> Management {
    Management::SigV4 {
        credentials: ManagementCredentials {
            access_key_id: "AKIDCONSOLE".into(),
            secret_access_key: Secret::new(b"console-secret".to_vec()),
        },
        any_address,
    }
}

fn decide_for(
    management: &Management,
    tls: bool,
    peer: &str,
    method: Method,
    headers: &[(&str, &str)],
) -> Result<(), Refusal> {
    let mut h = HeaderMap::new();
    for (k, v) in headers {
        h.insert(
            axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    let uri: Uri = "/@console/api/connections".parse().unwrap();
    let req = Request {
        peer: peer.parse().unwrap(),
        local: Some("10.0.0.5:8080".parse().unwrap()),
        method: &method,
        uri: &uri,
        headers: &h,
        body: b"",
    };
    decide(management, tls, &req, TOKEN).map_err(|(r, _)| r)
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        data_encoding::BASE64.encode(format!("{user}:{password}").as_bytes())
    )
}

#[test]
fn loopback_only_by_default() {
    let m = Management::Loopback;
    let host = [("host", "127.0.0.1:8080")];
    assert_eq!(
        decide_for(&m, false, "127.0.0.1:5000", Method::GET, &host),
        Ok(())
    );
    let off = decide_for(
        &m,
        false,
        "192.0.2.9:5000",
        Method::GET,
        &[("host", "10.0.0.5:8080")],
    );
    assert!(
        matches!(off, Err(Refusal::Forbidden(ref w)) if w.contains("loopback")),
        "{off:?}"
    );
    // Loopback, but a rebinding page's Host or another origin.
    assert!(
        decide_for(
            &m,
            false,
            "127.0.0.1:5000",
            Method::GET,
            &[("host", "evil.example:8080")]
        )
        .is_err()
    );
    assert!(
        decide_for(
            &m,
            false,
            "127.0.0.1:5000",
            Method::GET,
            &[
                ("host", "127.0.0.1:8080"),
                ("origin", "http://evil.example")
            ]
        )
        .is_err()
    );
}

#[test]
fn posts_need_the_pages_token() {
    let m = Management::Loopback;
    let host = ("host", "127.0.0.1:8080");
    let none = decide_for(&m, false, "127.0.0.1:5000", Method::POST, &[host]);
    assert!(matches!(none, Err(Refusal::Forbidden(ref w)) if w.contains(TOKEN_HEADER)));
    let wrong = decide_for(
        &m,
        false,
        "127.0.0.1:5000",
        Method::POST,
        &[host, (TOKEN_HEADER, "0123abce")],
    );
    assert!(wrong.is_err());
    let right = decide_for(
        &m,
        false,
        "127.0.0.1:5000",
        Method::POST,
        &[host, (TOKEN_HEADER, TOKEN)],
    );
    assert_eq!(right, Ok(()));
}

#[test]
fn off_loopback_needs_bind_any_and_the_management_credentials() {
    let host = ("host", "10.0.0.5:8080");
    let good = basic("AKIDCONSOLE", "console-secret");
    // bind = "loopback" with credentials: never off loopback.
    assert!(
        decide_for(
            &creds(false),
            true,
            "192.0.2.9:5000",
            Method::GET,
            &[host, ("authorization", &good)]
        )
        .is_err()
    );
    // bind = "any": nothing, or wrong credentials, is refused.
    let none = decide_for(&creds(true), true, "192.0.2.9:5000", Method::GET, &[host]);
    assert!(matches!(none, Err(Refusal::Unauthorized(_))), "{none:?}");
    let bad = basic("AKIDCONSOLE", "guess");
    assert!(matches!(
        decide_for(
            &creds(true),
            true,
            "192.0.2.9:5000",
            Method::GET,
            &[host, ("authorization", &bad)]
        ),
        Err(Refusal::Unauthorized(_))
    ));
    // Right credentials over TLS: answered. Without TLS Basic would show
    // the secret on the network: refused (a SigV4 signature still works).
    assert_eq!(
        decide_for(
            &creds(true),
            true,
            "192.0.2.9:5000",
            Method::GET,
            &[host, ("authorization", &good)]
        ),
        Ok(())
    );
    assert!(matches!(
        decide_for(&creds(true), false, "192.0.2.9:5000", Method::GET, &[host, ("authorization", &good)]),
        Err(Refusal::Forbidden(ref w)) if w.contains("TLS")
    ));
    // With credentials configured, loopback callers need them too.
    assert!(
        decide_for(
            &creds(false),
            false,
            "127.0.0.1:5000",
            Method::GET,
            &[("host", "127.0.0.1:8080")]
        )
        .is_err()
    );
    assert_eq!(
        decide_for(
            &creds(false),
            false,
            "127.0.0.1:5000",
            Method::GET,
            &[("host", "127.0.0.1:8080"), ("authorization", &good)]
        ),
        Ok(())
    );
}
