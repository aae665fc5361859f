//! Cross-site checks (issue 15, item 2). A web page on another origin could
//! drive the loopback-only @connections API through the user's browser: a
//! "simple" cross-origin POST (`Content-Type: text/plain`, no preflight)
//! forged frames to any connection; a DNS-rebinding page (its own name
//! resolving to 127.0.0.1) could even read the answers. So:
//!
//! - @connections refuses a request whose `Origin` is present and is not the
//!   gateway's own (`http(s)://` + the request's `Host`), and, when it answers
//!   unsigned calls, one whose `Host` is neither a loopback name or address nor
//!   the address the connection came in on (a rebinding page's `Host` is its
//!   own name). The SDK sends no `Origin` and `Host` = the endpoint, so it is
//!   unaffected; a signed call cannot come from a page (it has no key).
//! - WebSocket handshakes accept any `Origin`, as API Gateway does (there
//!   the authorizer is where origin is checked), unless the stage lists
//!   `allowed_origins`.

use std::net::{IpAddr, SocketAddr};

use axum::http::{HeaderMap, header};

use super::edge::ip::canonical;

/// The local address of the connection a request came in on (an extension
/// the gateway's listener adds to every request).
#[derive(Clone, Copy, Debug)]
pub struct LocalAddr(pub SocketAddr);

/// Why a request was refused as cross-site; the `check` label of
/// `switchboard_gateway_cross_site_refusals_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrossSite {
    /// A foreign `Origin`.
    Origin,
    /// A `Host` that is not loopback or the listen address.
    Host,
}

impl CrossSite {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            CrossSite::Origin => "origin",
            CrossSite::Host => "host",
        }
    }
}

/// The host part of a `Host` header value (no port, no IPv6 brackets).
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        // One colon: host:port. More: a bare IPv6 address.
        Some((h, port)) if !h.contains(':') && port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => host,
    }
}

/// Whether `host` (a `Host` header value) names loopback (`localhost`,
/// 127.0.0.0/8, ::1) or the address the connection came in on.
pub fn host_allowed(host: &str, local: Option<SocketAddr>) -> bool {
    let name = host_name(host.trim());
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let Ok(ip) = name.parse::<IpAddr>() else {
        return false;
    };
    let ip = canonical(ip);
    ip.is_loopback() || local.is_some_and(|l| canonical(l.ip()) == ip)
}

/// The request's `Origin`, if it sent one (an unreadable one counts as foreign).
fn origin(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::ORIGIN)
        .map(|v| v.to_str().unwrap_or("\u{fffd}"))
}

/// The check for @connections: `None` when the request may proceed.
/// `check_host` is off when calls must be SigV4-signed.
pub fn management(
    headers: &HeaderMap,
    local: Option<SocketAddr>,
    check_host: bool,
) -> Option<CrossSite> {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if check_host && !host_allowed(host, local) {
        return Some(CrossSite::Host);
    }
    if let Some(origin) = origin(headers) {
        let own = ["http://", "https://"].iter().any(|scheme| {
            origin
                .strip_prefix(scheme)
                .is_some_and(|o| o.eq_ignore_ascii_case(host))
        });
        if host.is_empty() || !own {
            return Some(CrossSite::Origin);
        }
    }
    None
}

/// The check for a handshake on a stage with `allowed_origins`: a request
/// with an `Origin` must name one of them; one without (not a browser) passes.
pub fn handshake_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    match origin(headers) {
        None => true,
        Some(o) => allowed.iter().any(|a| a.eq_ignore_ascii_case(o)),
    }
}

/// Checks one `allowed_origins` entry: `http(s)://host[:port]`, nothing else
/// (an origin has no path, not even `/`). The error says what to write.
pub fn parse_allowed_origin(entry: &str) -> Result<String, String> {
    let rest = entry
        .strip_prefix("https://")
        .or_else(|| entry.strip_prefix("http://"))
        .ok_or_else(|| format!("`{entry}` is not an origin: write scheme://host[:port], e.g. \"https://app.example.com\""))?;
    let ok = !rest.is_empty()
        && !rest
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '/' | '?' | '#' | '*' | '@'));
    if !ok {
        return Err(format!(
            "`{entry}` is not an origin: only scheme://host[:port], without path, \
             trailing slash or wildcard (e.g. \"https://app.example.com\")"
        ));
    }
    Ok(entry.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn hosts() {
        let local: SocketAddr = "192.0.2.7:9000".parse().unwrap();
        for ok in [
            "127.0.0.1:9000",
            "127.3.2.1",
            "localhost:9000",
            "LOCALHOST",
            "[::1]:9000",
            "::1",
            "192.0.2.7:9000",
        ] {
            assert!(host_allowed(ok, Some(local)), "{ok}");
        }
        for bad in [
            "evil.example:9000",
            "192.0.2.8:9000",
            "",
            "localhost.evil.example",
        ] {
            assert!(!host_allowed(bad, Some(local)), "{bad}");
        }
    }

    #[test]
    fn management_requests() {
        let sdk = headers(&[("host", "127.0.0.1:9000")]);
        assert_eq!(management(&sdk, None, true), None);
        let same = headers(&[
            ("host", "127.0.0.1:9000"),
            ("origin", "http://127.0.0.1:9000"),
        ]);
        assert_eq!(management(&same, None, true), None);
        let page = headers(&[
            ("host", "127.0.0.1:9000"),
            ("origin", "http://evil.example"),
        ]);
        assert_eq!(management(&page, None, true), Some(CrossSite::Origin));
        let null = headers(&[("host", "127.0.0.1:9000"), ("origin", "null")]);
        assert_eq!(management(&null, None, true), Some(CrossSite::Origin));
        // DNS rebinding: the page's own origin, with its own name as Host.
        let rebound = headers(&[
            ("host", "evil.example:9000"),
            ("origin", "http://evil.example:9000"),
        ]);
        assert_eq!(management(&rebound, None, true), Some(CrossSite::Host));
        // Signed calls: any Host (a proxy's name), still no foreign Origin.
        assert_eq!(management(&rebound, None, false), None);
        assert_eq!(management(&page, None, false), Some(CrossSite::Origin));
    }

    #[test]
    fn allowed_origins() {
        assert_eq!(
            parse_allowed_origin("https://App.example.com").unwrap(),
            "https://app.example.com"
        );
        assert!(parse_allowed_origin("http://localhost:5173").is_ok());
        for bad in [
            "app.example.com",
            "https://app.example.com/",
            "https://*.example.com",
            "ftp://x",
            "https://",
        ] {
            assert!(parse_allowed_origin(bad).is_err(), "{bad}");
        }
        let allowed = vec!["https://app.example.com".to_owned()];
        assert!(handshake_allowed(&headers(&[]), &allowed));
        assert!(handshake_allowed(
            &headers(&[("origin", "https://APP.example.com")]),
            &allowed
        ));
        assert!(!handshake_allowed(
            &headers(&[("origin", "https://evil.example")]),
            &allowed
        ));
    }
}
