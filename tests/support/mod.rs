//! Shared test support: unique names, polling with a deadline, a test
//! @connections server, test tokens and the security suite's fixture, the one
//! test SDK configuration, (with `otel`) a test OTLP receiver, and
//! (with `aws-tests`) the moto-backed AWS stack, and (with `lambda`) a Lambda
//! Runtime API to run the function binaries against; the sessions scenarios
//! (`sessions.rs`: resume after a reconnect) every backend runs.
#![allow(dead_code)]

#[cfg(feature = "browser-tests")]
pub mod cdp;
pub mod connections_server;
pub mod console;
pub mod dev;
pub mod embedded;
pub mod fixtures;
pub mod gateway;
pub mod jwt;
pub mod ledger;
#[cfg(feature = "otel")]
pub mod otlp;
pub mod process;
pub mod recorder;
#[cfg(feature = "lambda")]
pub mod runtime_api;
pub mod sdk;
pub mod secure;
pub mod sessions;
pub mod stream;
pub mod ws;

#[cfg(feature = "aws-tests")]
pub mod aws;
#[cfg(feature = "aws-tests")]
pub mod fault_proxy;

use std::future::Future;
use std::time::Duration;

/// A name nobody else in this test run uses: `prefix-<pid>-<random>`.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}-{:08x}", std::process::id(), fastrand::u32(..))
}

/// Polls `check` every 20 ms until it returns `Some`, or panics with `what`
/// after `deadline`. The way tests wait for asynchronous effects.
pub async fn eventually<T, F, Fut>(deadline: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let end = tokio::time::Instant::now() + deadline;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() >= end {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the counter that `read` returns is `want`; fails at once if it
/// passes `want`, and after `deadline` if it never gets there. Counters are
/// bumped *after* the effect a test sees: a frame reaches its client before
/// the worker has the 200 for it, a dead letter is on the DLQ and a record is
/// gone before the worker counts them. One read right after the effect races
/// the count; this does not.
pub async fn counter_reaches<F, Fut>(deadline: Duration, what: &str, want: f64, mut read: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = f64>,
{
    let end = tokio::time::Instant::now() + deadline;
    loop {
        let got = read().await;
        assert!(got <= want, "{what}: counted {got}, more than {want}");
        if got == want {
            return;
        }
        if tokio::time::Instant::now() >= end {
            panic!("{what}: counted {got} after {deadline:?}, want {want}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
