//! Who may use the console: the callers the @connections API answers.
//!
//! - `[management] bind = "loopback"` (default): loopback callers only, no
//!   credentials.
//! - With management credentials: a valid SigV4 signature (scripts), or HTTP
//!   Basic with the access key id and secret access key (a browser).
//!   Basic is refused off loopback unless the gateway serves TLS: it would
//!   send the secret in clear. Off loopback only with `bind = "any"`.
//! - Always: no foreign `Origin`; from loopback, a `Host` that is loopback or
//!   the listen address (a DNS-rebinding page could otherwise read the page
//!   and its token); POSTs carry the page's per-process token.

use std::net::SocketAddr;
use std::time::SystemTime;

use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use crate::gateway::config::ManagementCredentials;
use crate::gateway::origin::{self, CrossSite};
use crate::gateway::{Gateway, Management, edge, sigv4};

/// The header a mutating request carries the page's token in.
pub const TOKEN_HEADER: &str = "x-switchboard-console-token";

/// Why a console request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// 403 with a reason.
    Forbidden(String),
    /// 401: credentials needed (asks the browser for them).
    Unauthorized(String),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Forbidden(why) => (
                StatusCode::FORBIDDEN,
                axum::Json(serde_json::json!({ "error": why })),
            )
                .into_response(),
            Refusal::Unauthorized(why) => (
                StatusCode::UNAUTHORIZED,
                [(
                    header::WWW_AUTHENTICATE,
                    "Basic realm=\"switchboard console\", charset=\"UTF-8\"",
                )],
                axum::Json(serde_json::json!({ "error": why })),
            )
                .into_response(),
        }
    }
}

/// One request as the checks see it.
pub struct Request<'a> {
    /// The caller.
    pub peer: SocketAddr,
    /// The address it came in on.
    pub local: Option<SocketAddr>,
    /// Method.
    pub method: &'a Method,
    /// URI as received.
    pub uri: &'a Uri,
    /// Headers.
    pub headers: &'a HeaderMap,
    /// Body bytes (empty for GET).
    pub body: &'a [u8],
}

/// `Ok` when `req` may use the console of `gw`; `token` is the page's.
/// Cross-site refusals are counted (`surface="console"`).
pub fn check(gw: &Gateway, req: &Request<'_>, token: &str) -> Result<(), Refusal> {
    decide(
        &gw.config().management,
        gw.config().tls.is_some(),
        req,
        token,
    )
    .map_err(|(refusal, cross_site)| {
        if let Some(check) = cross_site {
            gw.metrics()
                .cross_site
                .with_label_values(&["console", check.label()])
                .inc();
        }
        refusal
    })
}

/// The decision of [`check`] under `management`, `tls` telling whether the
/// listener serves TLS.
pub fn decide(
    management: &Management,
    tls: bool,
    req: &Request<'_>,
    token: &str,
) -> Result<(), (Refusal, Option<CrossSite>)> {
    let loopback = edge::ip::canonical(req.peer.ip()).is_loopback();
    if let Some(check) = origin::management(req.headers, req.local, loopback) {
        let why = match check {
            CrossSite::Origin => "the console does not answer requests from other origins",
            CrossSite::Host => {
                "the console only answers requests addressed to loopback or the listen address (Host)"
            }
        };
        return Err((Refusal::Forbidden(why.into()), Some(check)));
    }
    match management {
        Management::Loopback if !loopback => {
            return Err((
                Refusal::Forbidden(
                    "the console only answers callers on loopback, like @connections \
                     ([management] bind = \"loopback\")"
                        .into(),
                ),
                None,
            ));
        }
        Management::Loopback => {}
        Management::SigV4 {
            credentials,
            any_address,
        } => {
            if !loopback && !any_address {
                return Err((
                    Refusal::Forbidden(
                        "the console only answers callers on loopback ([management] bind = \"loopback\")"
                            .into(),
                    ),
                    None,
                ));
            }
            authenticate(req, credentials, loopback || tls).map_err(|r| (r, None))?;
        }
    }
    if req.method == Method::POST {
        let sent = req
            .headers
            .get(TOKEN_HEADER)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        if aws_lc_rs::constant_time::verify_slices_are_equal(sent, token.as_bytes()).is_err() {
            return Err((
                Refusal::Forbidden(format!(
                    "a console action needs the page's token in `{TOKEN_HEADER}`: reload the console page"
                )),
                None,
            ));
        }
    }
    Ok(())
}

fn authenticate(
    req: &Request<'_>,
    credentials: &ManagementCredentials,
    basic_allowed: bool,
) -> Result<(), Refusal> {
    let auth = req
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if let Some(encoded) = auth.strip_prefix("Basic ") {
        if !basic_allowed {
            return Err(Refusal::Forbidden(
                "Basic credentials off loopback need TLS ([tls]): they carry the secret; \
                 sign the requests (SigV4) or use an SSH tunnel"
                    .into(),
            ));
        }
        let decoded = data_encoding::BASE64
            .decode(encoded.trim().as_bytes())
            .unwrap_or_default();
        let (id, secret) = match decoded.iter().position(|b| *b == b':') {
            Some(i) => (&decoded[..i], &decoded[i + 1..]),
            None => (&decoded[..], &[][..]),
        };
        let id_ok = aws_lc_rs::constant_time::verify_slices_are_equal(
            id,
            credentials.access_key_id.as_bytes(),
        )
        .is_ok();
        let secret_ok = aws_lc_rs::constant_time::verify_slices_are_equal(
            secret,
            credentials.secret_access_key.expose(),
        )
        .is_ok();
        return if id_ok && secret_ok {
            Ok(())
        } else {
            Err(Refusal::Unauthorized(
                "wrong access key id or secret for the console ([management] credentials)".into(),
            ))
        };
    }
    if auth.is_empty() {
        return Err(Refusal::Unauthorized(
            "the console needs the [management] credentials: user = access key id, \
             password = secret access key (or a SigV4 signature)"
                .into(),
        ));
    }
    sigv4::verify(
        req.method,
        req.uri,
        req.headers,
        req.body,
        credentials,
        SystemTime::now(),
    )
    .map_err(|e| Refusal::Unauthorized(format!("console request refused: {e}")))
}
