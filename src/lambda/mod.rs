//! The edge handlers as AWS Lambda functions: five binaries
//! (`src/bin/switchboard-*.rs`, feature `lambda`) for the `provided.al2023`
//! runtime, each a `main` that calls [`run`], with the same
//! [`Handlers`](crate::handlers::Handlers) and
//! [`Authorizer`](crate::handlers::authorizer::Authorizer) the local gateway
//! runs in-process.
//!
//! - [`config`]: what each function reads from its environment, checked once
//!   at cold start (always compiled, so the template check runs without the
//!   feature).
//! - With `lambda`: [`run`] is a binary's whole `main`: the cold start (logs,
//!   configuration, AWS clients; a wrong configuration fails it with one log
//!   line), then the invocations. [`edge`] (connect, disconnect, default,
//!   send) and [`authorizer`] handle one invocation as `lambda_runtime` hands
//!   it over and answer what API Gateway expects.
//!
//! The payload is deserialized straight into our own event types
//! ([`WebSocketEvent`](crate::handlers::WebSocketEvent),
//! [`AuthorizerEvent`](crate::handlers::authorizer::AuthorizerEvent)): they
//! are the contract the handlers and the local gateway already share, checked
//! against the real-shape fixtures, and they fail loudly on a missing
//! `connectionId` or `routeKey`. `aws_lambda_events`' types would need a
//! field-by-field conversion (headers as `HeaderMap`, every field optional)
//! for no gain; the tests use them as an independent check of the shapes.

pub mod config;

pub use config::{EdgeConfig, Function, FunctionConfig, LambdaEnv};

#[cfg(feature = "lambda")]
mod function;
#[cfg(feature = "lambda")]
mod init;
#[cfg(feature = "lambda")]
mod unconfigured;

#[cfg(feature = "lambda")]
pub use function::{authorizer, edge};
#[cfg(feature = "lambda")]
pub use init::{edge_handlers, run};
