//! The edge handlers as AWS Lambda functions: five binaries
//! (`src/bin/switchboard-*.rs`, feature `lambda`) for the `provided.al2023`
//! runtime, each a thin `main` around one function of this module, the same
//! [`Handlers`](crate::handlers::Handlers) and
//! [`Authorizer`](crate::handlers::authorizer::Authorizer) the local gateway
//! runs in-process.
//!
//! - [`config`]: what each function reads from its environment, checked once
//!   at cold start (always compiled, so the template check runs without the
//!   feature).
//! - With `lambda`: [`connect`], [`disconnect`], [`default`], [`send`] and
//!   [`authorizer`] take the invocation as `lambda_runtime` hands it over and
//!   answer what API Gateway expects; [`init_edge`] and [`init_authorizer`]
//!   do the cold start (logs, configuration, AWS clients) and fail it with
//!   one log line when the configuration is wrong.
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
mod unused;

#[cfg(feature = "lambda")]
pub use function::{authorizer, connect, default, disconnect, send};
#[cfg(feature = "lambda")]
pub use init::{edge_handlers, exit, init_authorizer, init_edge};
