//! The cold start of a function: logs, configuration, AWS clients. Everything
//! is read and checked once, before the first invocation; a mistake fails the
//! init with one log line, reported to the Runtime API's `init/error` too so
//! that Lambda shows it as the reason the function could not start.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{Request, Uri};
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use lambda_runtime::service_fn;

use super::config::{self, EdgeConfig, Function, FunctionConfig, LambdaEnv};
use super::function::{authorizer as authorize, edge};
use super::unconfigured::Unconfigured;
use crate::backend::aws::AwsBackend;
use crate::backend::{Connections, Queue};
use crate::handlers::Handlers;
use crate::handlers::authorizer::Authorizer;
use crate::telemetry::{self, LogFormat};
use crate::usage::UsageError;

/// What the process exits with when its configuration is wrong (as the CLI).
const CONFIG_ERROR: u8 = 2;

/// The Lambda Runtime API answers within milliseconds; it runs on the same host.
const RUNTIME_API_TIMEOUT: Duration = Duration::from_secs(2);

/// The variables Lambda sets that `lambda_runtime` needs (it panics without them).
const RUNTIME_VARS: [&str; 4] = [
    "AWS_LAMBDA_RUNTIME_API",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
];

/// The whole life of a function binary: the cold start, then invocations
/// until the Runtime API fails. Each `src/bin/switchboard-*.rs` is one call.
pub async fn run(function: Function) -> ExitCode {
    let ended = match function.handler() {
        Some(kind) => {
            let handlers = match init_edge(function).await {
                Ok(handlers) => handlers,
                Err(code) => return code,
            };
            lambda_runtime::run(service_fn(|event| edge(&handlers, kind, event))).await
        }
        None => {
            let authorizer = match init_authorizer().await {
                Ok(authorizer) => authorizer,
                Err(code) => return code,
            };
            lambda_runtime::run(service_fn(|event| authorize(&authorizer, event))).await
        }
    };
    exit(ended)
}

/// Cold start of connect, disconnect, default or send: the handlers, or the
/// exit code after the failure was logged and reported.
async fn init_edge(function: Function) -> Result<Handlers, ExitCode> {
    let env = LambdaEnv::process();
    let FunctionConfig::Edge(config) = start(function, &env).await? else {
        unreachable!("{} is an edge function", function.binary())
    };
    let aws = if config.connections_table.is_some() || config.queue_url.is_some() {
        Some(aws(function, &env).await?)
    } else {
        None
    };
    tracing::info!(
        function = function.binary(),
        connections_table = config.connections_table.as_deref(),
        queue_url = config.queue_url.as_deref(),
        "ready"
    );
    Ok(match aws {
        Some(aws) => edge_handlers(&config, &aws),
        None => Handlers::new(
            Arc::new(Unconfigured { function }),
            Arc::new(Unconfigured { function }),
            config.settings.clone(),
        ),
    })
}

/// The handlers of an edge function on `aws`, with only the queue and table
/// its configuration names.
pub fn edge_handlers(config: &EdgeConfig, aws: &AwsBackend) -> Handlers {
    let unconfigured = Unconfigured {
        function: config.function,
    };
    let queue: Arc<dyn Queue> = match &config.queue_url {
        Some(url) => Arc::new(aws.queue(url)),
        None => Arc::new(unconfigured),
    };
    let connections: Arc<dyn Connections> = match &config.connections_table {
        Some(table) => Arc::new(aws.connections(table, None)),
        None => Arc::new(unconfigured),
    };
    Handlers::new(queue, connections, config.settings.clone())
}

/// Cold start of the authorizer: its configuration (a JWKS file is read
/// now; a JWKS URL is fetched on the first token), or the exit code.
async fn init_authorizer() -> Result<Authorizer, ExitCode> {
    let env = LambdaEnv::process();
    let FunctionConfig::Authorizer(config) = start(Function::Authorizer, &env).await? else {
        unreachable!("the authorizer's config")
    };
    tracing::info!(
        function = Function::Authorizer.binary(),
        algorithms = ?config.algorithms,
        identity_sources = ?config.identity_sources.iter().map(ToString::to_string).collect::<Vec<_>>(),
        issuer = config.issuer.as_deref(),
        "ready"
    );
    Ok(Authorizer::new(*config))
}

/// The exit code for the end of `lambda_runtime::run` (it returns only when
/// the Runtime API fails), logged.
fn exit(result: Result<(), lambda_runtime::Error>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "the Lambda runtime stopped");
            ExitCode::FAILURE
        }
    }
}

/// Logs set up, then the configuration read and checked.
async fn start(function: Function, env: &LambdaEnv) -> Result<FunctionConfig, ExitCode> {
    // A bad format is reported below, in JSON: CloudWatch is the likely reader.
    telemetry::init(config::log_format(env).unwrap_or(LogFormat::Json));
    let checked = runtime_vars(env).and_then(|()| FunctionConfig::from_env(function, env));
    match checked {
        Ok(config) => Ok(config),
        Err(e) => Err(fail_init(function, env, &e.0).await),
    }
}

/// The AWS clients, from the standard chain (Lambda sets the Region and the
/// role's credentials in the environment).
async fn aws(function: Function, env: &LambdaEnv) -> Result<AwsBackend, ExitCode> {
    let aws = AwsBackend::from_env().await;
    if aws.sdk_config().region().is_none() {
        return Err(fail_init(
            function,
            env,
            "no AWS Region: set AWS_REGION (Lambda sets it; elsewhere, export it)",
        )
        .await);
    }
    Ok(aws)
}

fn runtime_vars(env: &LambdaEnv) -> Result<(), UsageError> {
    match RUNTIME_VARS.iter().find(|v| env.get(v).is_none()) {
        None => Ok(()),
        Some(missing) => Err(UsageError(format!(
            "{missing} is not set: this binary runs inside AWS Lambda (provided.al2023); \
             to run it locally, use `cargo lambda watch` (docs/operations.md)"
        ))),
    }
}

/// Logs the one line that says why, tells the Runtime API, and gives the
/// exit code.
async fn fail_init(function: Function, env: &LambdaEnv, message: &str) -> ExitCode {
    tracing::error!(
        function = function.binary(),
        "cannot start, configuration error: {message}"
    );
    if let Some(api) = env.get("AWS_LAMBDA_RUNTIME_API")
        && let Err(e) = report_init_error(api, message).await
    {
        tracing::warn!(error = %e, "could not report the init error to the Runtime API");
    }
    ExitCode::from(CONFIG_ERROR)
}

/// `POST /2018-06-01/runtime/init/error`: Lambda then fails the init with
/// this message instead of only "Runtime exited".
async fn report_init_error(api: &str, message: &str) -> Result<(), String> {
    let uri: Uri = format!("http://{api}/2018-06-01/runtime/init/error")
        .parse()
        .map_err(|e| format!("AWS_LAMBDA_RUNTIME_API `{api}`: {e}"))?;
    let body = serde_json::json!({
        "errorType": "Switchboard.ConfigError",
        "errorMessage": message,
    });
    let request = Request::post(uri)
        .header("Lambda-Runtime-Function-Error-Type", "Runtime.ConfigError")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .map_err(|e| e.to_string())?;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let response = tokio::time::timeout(RUNTIME_API_TIMEOUT, client.request(request))
        .await
        .map_err(|_| format!("no answer within {RUNTIME_API_TIMEOUT:?}"))?
        .map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("answered {}", response.status()));
    }
    Ok(())
}
