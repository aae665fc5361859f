//! Validation of the security sections: every mistake names the line and the
//! fix, and files and secrets are read here, up front, so that a gateway that
//! starts has everything it needs.

use std::str::FromStr;
use std::sync::Arc;

use ipnet::IpNet;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use toml::Spanned;

use super::file::{
    Ctx, ManagementSection, StageSection, ThrottleSection, TlsSection, UsagePlanSection,
};
use super::{
    Environment, GatewayConfig, KeyHash, Management, ManagementCredentials, Quota, QuotaPeriod,
    StageSettings, Throttle, TlsSettings, UsagePlan,
};
use crate::handlers::authorizer::Secret;
use crate::usage::UsageError;

/// A `{ rate, burst }` table.
pub(super) fn throttle(
    cx: &Ctx<'_>,
    t: &Spanned<ThrottleSection>,
    what: &str,
) -> Result<Throttle, UsageError> {
    let ThrottleSection { rate, burst } = *t.get_ref();
    if !rate.is_finite() || !(0.0..=1_000_000.0).contains(&rate) {
        return Err(cx.err(
            t.span(),
            format!("{what}: rate = {rate} must be 0 to 1000000 requests per second"),
        ));
    }
    if !(0..=1_000_000).contains(&burst) {
        return Err(cx.err(
            t.span(),
            format!("{what}: burst = {burst} must be 0 to 1000000 requests"),
        ));
    }
    Ok(Throttle {
        rate,
        burst: burst as u32,
    })
}

/// A CIDR (`203.0.113.0/24`, `2001:db8::/32`) or a single address.
fn cidr(cx: &Ctx<'_>, s: &Spanned<String>, what: &str) -> Result<IpNet, UsageError> {
    let text = s.get_ref().trim();
    IpNet::from_str(text)
        .or_else(|_| std::net::IpAddr::from_str(text).map(IpNet::from))
        // Host bits are ignored: 203.0.113.7/24 is 203.0.113.0/24.
        .map(|n| n.trunc())
        .map_err(|_| {
            cx.err(
                s.span(),
                format!(
                    "{what}: `{text}` is not a CIDR or IP address: write e.g. \
                     \"203.0.113.0/24\", \"198.51.100.7\" or \"2001:db8::/32\""
                ),
            )
        })
}

/// One `[stages.NAME]` table.
pub(super) fn stage(
    cx: &Ctx<'_>,
    config: &GatewayConfig,
    name: &str,
    s: StageSection,
) -> Result<StageSettings, UsageError> {
    let mut out = StageSettings {
        trusted_proxy: s.trusted_proxy,
        ..StageSettings::default()
    };
    for c in &s.ip_allow {
        out.ip_allow
            .push(cidr(cx, c, &format!("stages.{name}.ip_allow"))?);
    }
    for c in &s.ip_deny {
        out.ip_deny
            .push(cidr(cx, c, &format!("stages.{name}.ip_deny"))?);
    }
    if let Some(t) = &s.throttle {
        out.throttle = throttle(cx, t, &format!("stages.{name}.throttle"))?;
    }
    if let Some(t) = &s.connect_throttle_per_ip {
        out.connect_throttle_per_ip = Some(throttle(
            cx,
            t,
            &format!("stages.{name}.connect_throttle_per_ip"),
        )?);
    }
    for (route, t) in &s.route_throttle {
        if !config.routes.contains_key(route) {
            return Err(cx.err(
                t.span(),
                format!("stages.{name}.route_throttle: there is no route `{route}`"),
            ));
        }
        if route == "$disconnect" {
            return Err(cx.err(
                t.span(),
                format!("stages.{name}.route_throttle: `$disconnect` cannot be throttled"),
            ));
        }
        let what = format!("stages.{name}.route_throttle.{route}");
        out.route_throttle
            .insert(route.clone(), throttle(cx, t, &what)?);
    }
    for o in &s.allowed_origins {
        let origin = crate::gateway::origin::parse_allowed_origin(o.get_ref())
            .map_err(|e| cx.err(o.span(), format!("stages.{name}.allowed_origins: {e}")))?;
        out.allowed_origins.push(origin);
    }
    Ok(out)
}

/// `env:NAME`: the value of an environment variable, required and not empty.
pub(super) fn secret(
    cx: &Ctx<'_>,
    env: &Environment<'_>,
    s: &Spanned<String>,
    key: &str,
) -> Result<Secret, UsageError> {
    let Some(var) = s.get_ref().strip_prefix("env:").filter(|v| !v.is_empty()) else {
        return Err(cx.err(
            s.span(),
            format!(
                "{key} must be \"env:VARIABLE\": secrets are read from the environment, \
                 never written in the file"
            ),
        ));
    };
    match (env.var)(var) {
        Some(v) if !v.is_empty() => Ok(Secret::new(v)),
        Some(_) => Err(cx.err(
            s.span(),
            format!("{key}: environment variable {var} is empty: set it to the secret"),
        )),
        None => Err(cx.err(
            s.span(),
            format!("{key}: environment variable {var} is not set: export {var}=<the secret>"),
        )),
    }
}

/// One `[usage_plans.NAME]` table.
pub(super) fn usage_plan(
    cx: &Ctx<'_>,
    config: &GatewayConfig,
    name: &str,
    section: Spanned<UsagePlanSection>,
) -> Result<UsagePlan, UsageError> {
    let p = section.into_inner();
    let at = |what: &str| format!("usage_plans.{name}.{what}");
    let mut stages = Vec::new();
    for s in &p.stages {
        if !config.stages.contains(s.get_ref()) {
            return Err(cx.err(
                s.span(),
                format!(
                    "{}: there is no stage `{}` (stages: {})",
                    at("stages"),
                    s.get_ref(),
                    config.stages.join(", ")
                ),
            ));
        }
        stages.push(s.get_ref().clone());
    }
    let throttle = p
        .throttle
        .as_ref()
        .map(|t| throttle(cx, t, &at("throttle")))
        .transpose()?;
    let quota = match &p.quota {
        None => None,
        Some(q) => {
            let period = match q.get_ref().period.to_ascii_uppercase().as_str() {
                "DAY" => QuotaPeriod::Day,
                "WEEK" => QuotaPeriod::Week,
                "MONTH" => QuotaPeriod::Month,
                other => {
                    return Err(cx.err(
                        q.span(),
                        format!(
                            "{}: period = \"{other}\": use DAY, WEEK or MONTH",
                            at("quota")
                        ),
                    ));
                }
            };
            if q.get_ref().limit == 0 {
                return Err(cx.err(
                    q.span(),
                    format!("{}: limit must be at least 1", at("quota")),
                ));
            }
            Some(Quota {
                limit: q.get_ref().limit,
                period,
            })
        }
    };
    let mut api_keys = Vec::new();
    for k in &p.api_keys {
        let hash = KeyHash::parse(k.get_ref())
            .map_err(|e| cx.err(k.span(), format!("{}: {e}", at("api_keys"))))?;
        // A key belongs to one plan per stage, as on API Gateway.
        for (other, plan) in &config.usage_plans {
            if plan.api_keys.contains(&hash) && plan.stages.iter().any(|s| stages.contains(s)) {
                return Err(cx.err(
                    k.span(),
                    format!(
                        "{}: this key is also in usage plan `{other}` for a common stage; \
                         a key can be in one plan per stage",
                        at("api_keys")
                    ),
                ));
            }
        }
        api_keys.push(hash);
    }
    Ok(UsagePlan {
        stages,
        throttle,
        quota,
        api_keys,
    })
}

/// `[tls]`: reads the PEM files and builds the server configuration.
pub(super) fn tls(
    cx: &Ctx<'_>,
    env: &Environment<'_>,
    t: TlsSection,
) -> Result<TlsSettings, UsageError> {
    let cert_path = env.path(t.cert.get_ref());
    let key_path = env.path(t.key.get_ref());
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            cx.err(
                t.cert.span(),
                format!(
                    "tls.cert: cannot read a PEM certificate chain from {}: {e}",
                    cert_path.display()
                ),
            )
        })?;
    if certs.is_empty() {
        return Err(cx.err(
            t.cert.span(),
            format!(
                "tls.cert: {} holds no CERTIFICATE block",
                cert_path.display()
            ),
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| {
        cx.err(
            t.key.span(),
            format!(
                "tls.key: cannot read a PEM private key from {}: {e}",
                key_path.display()
            ),
        )
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| UsageError(format!("{}: TLS setup: {e}", cx.origin)))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            cx.err(
                t.key.span(),
                format!(
                    "tls: the key {} does not fit the certificate {}: {e}",
                    key_path.display(),
                    cert_path.display()
                ),
            )
        })?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsSettings {
        cert: cert_path,
        key: key_path,
        server: Arc::new(server),
    })
}

/// `[management]`.
pub(super) fn management(
    cx: &Ctx<'_>,
    env: &Environment<'_>,
    m: ManagementSection,
) -> Result<Management, UsageError> {
    let any_address = match &m.bind {
        None => false,
        Some(b) => match b.get_ref().as_str() {
            "loopback" => false,
            "any" => true,
            other => {
                return Err(cx.err(
                    b.span(),
                    format!("management.bind = \"{other}\": use \"loopback\" or \"any\""),
                ));
            }
        },
    };
    let credentials = match (&m.access_key_id, &m.secret_access_key) {
        (None, None) => None,
        (Some(id), Some(key)) => {
            if id.get_ref().trim().is_empty() {
                return Err(cx.err(id.span(), "management.access_key_id is empty"));
            }
            Some(ManagementCredentials {
                access_key_id: id.get_ref().clone(),
                secret_access_key: secret(cx, env, key, "management.secret_access_key")?,
            })
        }
        (Some(s), None) | (None, Some(s)) => {
            return Err(cx.err(
                s.span(),
                "[management] needs both access_key_id and secret_access_key = \"env:VARIABLE\"",
            ));
        }
    };
    match (credentials, any_address) {
        (None, false) => Ok(Management::Loopback),
        (None, true) => Err(cx.err(
            m.bind.as_ref().map(|b| b.span()).unwrap_or_default(),
            "management.bind = \"any\" would let any host post to, read and close \
             connections: set access_key_id and secret_access_key = \"env:VARIABLE\" \
             (callers must SigV4-sign with them), or use bind = \"loopback\"",
        )),
        (Some(credentials), any_address) => Ok(Management::SigV4 {
            credentials,
            any_address,
        }),
    }
}
