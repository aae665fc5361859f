//! The configuration file as written, and its validation into [`GatewayConfig`].

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{GatewayConfig, Limits, Route, aws_limits};
use crate::config::UsageError;
use crate::gateway::integration::{Integration, IntegrationSection, IntegrationSpec};
use crate::gateway::route::RouteSelection;
use crate::handlers::HandlerKind;

type Later = Option<Spanned<toml::Value>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct File {
    #[serde(default)]
    api: ApiSection,
    routes: Option<Vec<Spanned<RouteSection>>>,
    stages: Option<BTreeMap<String, Spanned<StageSection>>>,
    #[serde(default)]
    limits: LimitsSection,
    #[serde(default)]
    management: ManagementSection,
    authorizers: Later,
    usage_plans: Later,
    tls: Later,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ApiSection {
    route_selection_expression: Option<Spanned<String>>,
    api_key_selection_expression: Later,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteSection {
    key: String,
    integration: IntegrationSection,
    route_response_selection_expression: Option<String>,
    authorizer: Later,
    api_key_required: Option<Spanned<bool>>,
    throttle: Later,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StageSection {
    throttle: Later,
    ip_allow: Later,
    ip_deny: Later,
    trusted_proxy: Later,
    connect_throttle_per_ip: Later,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LimitsSection {
    message_bytes: Option<Spanned<u64>>,
    frame_bytes: Option<Spanned<u64>>,
    idle_timeout_secs: Option<Spanned<u64>>,
    max_connection_secs: Option<Spanned<u64>>,
    outbound_buffer_frames: Option<Spanned<u64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ManagementSection {
    bind: Option<Spanned<String>>,
}

/// Line of a byte offset, 1-based.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

struct Ctx<'a> {
    text: &'a str,
    origin: &'a str,
}

impl Ctx<'_> {
    fn err(&self, span: std::ops::Range<usize>, msg: impl std::fmt::Display) -> UsageError {
        UsageError(format!(
            "{} line {}: {msg}",
            self.origin,
            line_of(self.text, span.start)
        ))
    }

    fn not_yet<T>(&self, value: &Option<Spanned<T>>, key: &str) -> Result<(), UsageError> {
        match value {
            Some(v) => Err(self.err(
                v.span(),
                format!(
                    "`{key}` is recognised but not supported by this version of the local \
                     gateway yet (edge security comes with issue 5); remove it"
                ),
            )),
            None => Ok(()),
        }
    }

    fn range(
        &self,
        v: &Option<Spanned<u64>>,
        key: &str,
        min: u64,
        max: u64,
        default: u64,
    ) -> Result<u64, UsageError> {
        match v {
            None => Ok(default),
            Some(s) if (min..=max).contains(s.get_ref()) => Ok(*s.get_ref()),
            Some(s) => Err(self.err(
                s.span(),
                format!(
                    "`{key}` = {} is out of range: use {min} to {max}",
                    s.get_ref()
                ),
            )),
        }
    }
}

impl File {
    pub(super) fn validate(self, text: &str, origin: &str) -> Result<GatewayConfig, UsageError> {
        let cx = Ctx { text, origin };
        let mut config = GatewayConfig::default();
        cx.not_yet(&self.authorizers, "[authorizers]")?;
        cx.not_yet(&self.usage_plans, "[usage_plans]")?;
        cx.not_yet(&self.tls, "[tls]")?;
        cx.not_yet(
            &self.api.api_key_selection_expression,
            "api.api_key_selection_expression",
        )?;
        if let Some(expr) = &self.api.route_selection_expression {
            config.route_selection = RouteSelection::parse(expr.get_ref())
                .map_err(|e| cx.err(expr.span(), format!("route_selection_expression: {e}")))?;
        }
        if let Some(stages) = self.stages {
            config.stages.clear();
            for (name, stage) in stages {
                let s = stage.get_ref();
                for (v, key) in [
                    (&s.throttle, "throttle"),
                    (&s.ip_allow, "ip_allow"),
                    (&s.ip_deny, "ip_deny"),
                    (&s.trusted_proxy, "trusted_proxy"),
                    (&s.connect_throttle_per_ip, "connect_throttle_per_ip"),
                ] {
                    cx.not_yet(v, &format!("stages.{name}.{key}"))?;
                }
                let valid = !name.is_empty()
                    && name.len() <= 128
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
                if !valid || name.starts_with('@') {
                    return Err(cx.err(
                        stage.span(),
                        format!(
                            "stage name `{name}`: use letters, digits, - and _ (it is the URL path)"
                        ),
                    ));
                }
                config.stages.push(name);
            }
            if config.stages.is_empty() {
                return Err(UsageError(format!(
                    "{origin}: [stages] is empty: add a stage, e.g. [stages.dev]"
                )));
            }
        }
        if let Some(routes) = self.routes {
            config.routes.clear();
            for spanned in routes {
                let span = spanned.span();
                let route = validate_route(&cx, span.clone(), spanned.into_inner())?;
                if config.routes.contains_key(&route.key) {
                    return Err(cx.err(span, format!("route `{}` is defined twice", route.key)));
                }
                config.routes.insert(route.key.clone(), route);
            }
        }
        let l = &self.limits;
        let defaults = Limits::default();
        let message_bytes = cx.range(
            &l.message_bytes,
            "limits.message_bytes",
            1,
            aws_limits::MESSAGE_BYTES as u64,
            defaults.message_bytes as u64,
        )?;
        let frame_bytes = cx.range(
            &l.frame_bytes,
            "limits.frame_bytes",
            1,
            message_bytes,
            defaults.frame_bytes.min(message_bytes as usize) as u64,
        )?;
        config.limits = Limits {
            message_bytes: message_bytes as usize,
            frame_bytes: frame_bytes as usize,
            idle_timeout: Duration::from_secs(cx.range(
                &l.idle_timeout_secs,
                "limits.idle_timeout_secs",
                1,
                aws_limits::IDLE_TIMEOUT.as_secs(),
                aws_limits::IDLE_TIMEOUT.as_secs(),
            )?),
            max_connection: Duration::from_secs(cx.range(
                &l.max_connection_secs,
                "limits.max_connection_secs",
                1,
                aws_limits::MAX_CONNECTION.as_secs(),
                aws_limits::MAX_CONNECTION.as_secs(),
            )?),
            outbound_buffer_frames: cx.range(
                &l.outbound_buffer_frames,
                "limits.outbound_buffer_frames",
                1,
                65_536,
                defaults.outbound_buffer_frames as u64,
            )? as usize,
        };
        if let Some(bind) = &self.management.bind {
            match bind.get_ref().as_str() {
                "loopback" => {}
                "any" => {
                    return Err(cx.err(
                        bind.span(),
                        "management.bind = \"any\" needs SigV4 verification of @connections \
                         callers, which this version does not have yet (issue 5): use \"loopback\"",
                    ));
                }
                other => {
                    return Err(cx.err(
                        bind.span(),
                        format!("management.bind = \"{other}\": use \"loopback\""),
                    ));
                }
            }
        }
        Ok(config)
    }
}

/// One `[[routes]]` entry, checked; the error is the message without the line.
fn validate_route(
    cx: &Ctx<'_>,
    span: std::ops::Range<usize>,
    r: RouteSection,
) -> Result<Route, UsageError> {
    cx.not_yet(&r.authorizer, "authorizer")?;
    cx.not_yet(&r.throttle, "throttle")?;
    if let Some(req) = r.api_key_required.as_ref().filter(|r| *r.get_ref()) {
        cx.not_yet(&Some(req.clone()), "api_key_required")?;
    }
    let fail = |msg: String| Err(cx.err(span.clone(), msg));
    let key = r.key;
    if key.is_empty() || key.len() > 128 {
        return fail("route key must be 1 to 128 characters".into());
    }
    if key.starts_with('$') && !["$connect", "$disconnect", "$default"].contains(&key.as_str()) {
        return fail(format!(
            "route key `{key}`: the only keys starting with $ are $connect, $disconnect and $default"
        ));
    }
    let route_response = match r.route_response_selection_expression.as_deref() {
        None => false,
        Some("$default") if key == "$connect" || key == "$disconnect" => {
            return fail(format!("route `{key}` cannot have a route response"));
        }
        Some("$default") => true,
        Some(other) => {
            return fail(format!(
                "route_response_selection_expression = \"{other}\": the only supported value is \"$default\""
            ));
        }
    };
    let integration = match Integration::from_section(r.integration) {
        Ok(i) => i,
        Err(e) => return fail(format!("route `{key}` integration: {e}")),
    };
    if let IntegrationSpec::Builtin(kind) = integration.spec {
        let fits = match kind {
            HandlerKind::Connect => key == "$connect",
            HandlerKind::Disconnect => key == "$disconnect",
            HandlerKind::Send | HandlerKind::Default => !key.starts_with("$") || key == "$default",
        };
        if !fits {
            return fail(format!(
                "route `{key}` cannot use the builtin `{}` handler: use connect on $connect, \
                 disconnect on $disconnect, and send or default on the others",
                kind.name()
            ));
        }
    }
    Ok(Route {
        key,
        integration,
        route_response,
    })
}
