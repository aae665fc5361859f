//! The checks that turn the file as written ([`File`]) into a [`GatewayConfig`],
//! in the order their references need: stages, authorizers, routes (which name
//! authorizers), stage settings (which name routes), usage plans, limits, TLS
//! and the management API.

use std::time::Duration;

use toml::Spanned;

use super::file::{Ctx, File, LimitsSection, RouteSection};
use super::{
    ApiKeySource, Environment, GatewayConfig, Integration, IntegrationSpec, Limits, Route,
    aws_limits, validate, validate_authorizer,
};
use crate::gateway::route::RouteSelection;
use crate::handlers::HandlerKind;
use crate::usage::UsageError;

impl File {
    pub(super) fn validate(
        self,
        text: &str,
        origin: &str,
        env: &Environment<'_>,
    ) -> Result<GatewayConfig, UsageError> {
        let cx = Ctx { text, origin };
        let mut config = GatewayConfig::default();
        if let Some(expr) = &self.api.route_selection_expression {
            config.route_selection = RouteSelection::parse(expr.get_ref())
                .map_err(|e| cx.err(expr.span(), format!("route_selection_expression: {e}")))?;
        }
        if let Some(expr) = &self.api.api_key_selection_expression {
            config.api_key_source = match expr.get_ref().as_str() {
                "$request.header.x-api-key" => ApiKeySource::Header,
                "$context.authorizer.usageIdentifierKey" => ApiKeySource::Authorizer,
                other => {
                    return Err(cx.err(
                        expr.span(),
                        format!(
                            "api_key_selection_expression = \"{other}\": use \
                             \"$request.header.x-api-key\" or \
                             \"$context.authorizer.usageIdentifierKey\" (API Gateway's two)"
                        ),
                    ));
                }
            };
        }
        let mut stage_sections = Vec::new();
        if let Some(stages) = self.stages {
            config.stages.clear();
            for (name, stage) in stages {
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
                config.stages.push(name.clone());
                stage_sections.push((name, stage));
            }
            if config.stages.is_empty() {
                return Err(UsageError(format!(
                    "{origin}: [stages] is empty: add a stage, e.g. [stages.dev]"
                )));
            }
        }
        for (name, section) in self.authorizers {
            let settings = validate_authorizer::authorizer(&cx, env, &name, section)?;
            config.authorizers.insert(name, settings);
        }
        if let Some(routes) = self.routes {
            config.routes.clear();
            for spanned in routes {
                let span = spanned.span();
                let route = validate_route(&cx, &config, span.clone(), spanned.into_inner())?;
                if config.routes.contains_key(&route.key) {
                    return Err(cx.err(span, format!("route `{}` is defined twice", route.key)));
                }
                config.routes.insert(route.key.clone(), route);
            }
        }
        // Stage settings may name routes, so they come after them.
        for (name, stage) in stage_sections {
            let settings = validate::stage(&cx, &config, &name, stage.into_inner())?;
            config.stage_settings.insert(name, settings);
        }
        for (name, plan) in self.usage_plans {
            let plan = validate::usage_plan(&cx, &config, &name, plan)?;
            config.usage_plans.insert(name, plan);
        }
        config.limits = validate_limits(&cx, &self.limits)?;
        if let Some(tls) = self.tls {
            config.tls = Some(validate::tls(&cx, env, tls.into_inner())?);
        }
        config.management = validate::management(&cx, env, self.management)?;
        Ok(config)
    }
}

fn validate_limits(cx: &Ctx<'_>, l: &LimitsSection) -> Result<Limits, UsageError> {
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
    Ok(Limits {
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
        new_connections_per_second: cx.range(
            &l.new_connections_per_second,
            "limits.new_connections_per_second",
            1,
            1_000_000,
            u64::from(defaults.new_connections_per_second),
        )? as u32,
        header_timeout: secs(
            cx,
            &l.header_timeout_secs,
            "header",
            defaults.header_timeout,
        )?,
        body_timeout: secs(cx, &l.body_timeout_secs, "body", defaults.body_timeout)?,
        keepalive_timeout: secs(
            cx,
            &l.keepalive_timeout_secs,
            "keepalive",
            defaults.keepalive_timeout,
        )?,
        max_handshakes: cx.range(
            &l.max_handshakes,
            "limits.max_handshakes",
            1,
            65_536,
            defaults.max_handshakes as u64,
        )? as usize,
    })
}

/// `limits.{what}_timeout_secs`: 1 s to 1 h.
fn secs(
    cx: &Ctx<'_>,
    v: &Option<Spanned<u64>>,
    what: &str,
    default: Duration,
) -> Result<Duration, UsageError> {
    let key = format!("limits.{what}_timeout_secs");
    Ok(Duration::from_secs(cx.range(
        v,
        &key,
        1,
        3600,
        default.as_secs(),
    )?))
}

/// One `[[routes]]` entry, checked.
fn validate_route(
    cx: &Ctx<'_>,
    config: &GatewayConfig,
    span: std::ops::Range<usize>,
    r: RouteSection,
) -> Result<Route, UsageError> {
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
    let authorizer = match r.authorizer {
        None => None,
        Some(a) if key != "$connect" => {
            return Err(cx.err(
                a.span(),
                format!(
                    "route `{key}`: authorizers run on $connect only (as on API Gateway); \
                     later messages carry its answer in requestContext.authorizer"
                ),
            ));
        }
        Some(a) if !config.authorizers.contains_key(a.get_ref()) => {
            let known: Vec<&str> = config.authorizers.keys().map(String::as_str).collect();
            return Err(cx.err(
                a.span(),
                format!(
                    "authorizer `{}` is not defined: add [authorizers.{}]{}",
                    a.get_ref(),
                    a.get_ref(),
                    if known.is_empty() {
                        String::new()
                    } else {
                        format!(" or use one of: {}", known.join(", "))
                    }
                ),
            ));
        }
        Some(a) => Some(a.into_inner()),
    };
    if key == "$disconnect" && (r.api_key_required || r.throttle.is_some()) {
        return fail(
            "route `$disconnect` cannot require an API key or be throttled: it runs after \
             every close, best effort"
                .into(),
        );
    }
    let throttle = r
        .throttle
        .map(|t| validate::throttle(cx, &t, &format!("route `{key}` throttle")))
        .transpose()?;
    Ok(Route {
        key,
        integration,
        route_response,
        authorizer,
        api_key_required: r.api_key_required,
        throttle,
    })
}
