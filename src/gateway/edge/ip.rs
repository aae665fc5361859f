//! Who the client is and whether its address may come in: per-stage allow and
//! deny lists of CIDRs, like a WAF IP set rule. Deny wins; an empty allow list
//! allows every address not denied.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;
use ipnet::IpNet;

use crate::gateway::config::StageSettings;

/// An IPv4-mapped IPv6 address (`::ffff:203.0.113.7`, what a dual-stack
/// socket reports) as the IPv4 address it is, so that IPv4 rules apply.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// The client's address: the socket peer, or with `trusted_proxy` the last
/// `X-Forwarded-For` entry, the address the proxy itself saw (entries before
/// it are whatever the client wrote, so they are never trusted). Without a
/// usable header the peer (the proxy) is the client.
pub fn client_ip(peer: SocketAddr, headers: &HeaderMap, trusted_proxy: bool) -> IpAddr {
    let peer = canonical(peer.ip());
    if !trusted_proxy {
        return peer;
    }
    let last = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .rfind(|v| !v.is_empty());
    match last.map(str::parse::<IpAddr>) {
        Some(Ok(ip)) => canonical(ip),
        Some(Err(_)) => {
            tracing::warn!(%peer, "unparsable X-Forwarded-For from the trusted proxy; using the peer");
            peer
        }
        None => peer,
    }
}

/// Why an address was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpRefusal {
    /// In `ip_deny`.
    Denied,
    /// `ip_allow` is set and the address is not in it.
    NotAllowed,
}

/// Checks `ip` against the stage's lists.
pub fn check(stage: &StageSettings, ip: IpAddr) -> Result<(), IpRefusal> {
    let within = |nets: &[IpNet]| nets.iter().any(|n| n.contains(&ip));
    if within(&stage.ip_deny) {
        return Err(IpRefusal::Denied);
    }
    if !stage.ip_allow.is_empty() && !within(&stage.ip_allow) {
        return Err(IpRefusal::NotAllowed);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(allow: &[&str], deny: &[&str]) -> StageSettings {
        StageSettings {
            ip_allow: allow.iter().map(|c| c.parse().unwrap()).collect(),
            ip_deny: deny.iter().map(|c| c.parse().unwrap()).collect(),
            ..StageSettings::default()
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn deny_wins_over_allow_for_v4_and_v6() {
        let s = stage(
            &["203.0.113.0/24", "2001:db8::/32"],
            &["203.0.113.66/32", "2001:db8:bad::/48"],
        );
        assert_eq!(check(&s, ip("203.0.113.7")), Ok(()));
        assert_eq!(check(&s, ip("203.0.113.66")), Err(IpRefusal::Denied));
        assert_eq!(check(&s, ip("198.51.100.1")), Err(IpRefusal::NotAllowed));
        assert_eq!(check(&s, ip("2001:db8:1::1")), Ok(()));
        assert_eq!(check(&s, ip("2001:db8:bad::1")), Err(IpRefusal::Denied));
        assert_eq!(check(&s, ip("2001:db9::1")), Err(IpRefusal::NotAllowed));
        // No allow list: everything not denied.
        let open = stage(&[], &["10.0.0.0/8"]);
        assert_eq!(check(&open, ip("192.0.2.1")), Ok(()));
        assert_eq!(check(&open, ip("10.1.2.3")), Err(IpRefusal::Denied));
    }

    #[test]
    fn forwarded_for_counts_only_behind_a_trusted_proxy() {
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let mut h = HeaderMap::new();
        h.append(
            "x-forwarded-for",
            "198.51.100.9, 203.0.113.7".parse().unwrap(),
        );
        assert_eq!(client_ip(peer, &h, false), ip("127.0.0.1"));
        // The last entry: what the proxy appended.
        assert_eq!(client_ip(peer, &h, true), ip("203.0.113.7"));
        h.append("x-forwarded-for", "::ffff:192.0.2.5".parse().unwrap());
        assert_eq!(client_ip(peer, &h, true), ip("192.0.2.5"));
        h.insert("x-forwarded-for", "garbage".parse().unwrap());
        assert_eq!(client_ip(peer, &h, true), ip("127.0.0.1"));
        let mapped: SocketAddr = "[::ffff:203.0.113.1]:1".parse().unwrap();
        assert_eq!(
            client_ip(mapped, &HeaderMap::new(), false),
            ip("203.0.113.1")
        );
    }
}
