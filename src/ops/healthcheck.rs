//! `switchboard healthcheck`: the container health check. The runtime image has
//! no shell and no curl (distroless), so the binary checks itself: one HTTP/1.1
//! GET of `/healthz` on the local telemetry port, success only on 200, with the
//! hyper client the gateway's integrations use too.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper::{StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Why the check failed (exit 1, one line).
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// Nothing answered in time.
    #[error("no answer from http://{addr}{path} within {timeout:?}")]
    Timeout {
        /// Address checked.
        addr: SocketAddr,
        /// Path checked.
        path: String,
        /// The limit.
        timeout: Duration,
    },
    /// Connection or read failed.
    #[error("http://{addr}{path}: {error}")]
    Io {
        /// Address checked.
        addr: SocketAddr,
        /// Path checked.
        path: String,
        /// The failure (not a `source`: the one-line message already says it).
        error: std::io::Error,
    },
    /// It answered, but not 200.
    #[error("http://{addr}{path} answered {status_line:?}")]
    Status {
        /// Address checked.
        addr: SocketAddr,
        /// Path checked.
        path: String,
        /// The status line (version and status).
        status_line: String,
    },
}

/// Where to connect for a server bound to `bind`: an unspecified address
/// (`0.0.0.0`, `::`) listens on every interface, loopback included.
pub fn target(bind: SocketAddr) -> SocketAddr {
    let ip = match bind.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, bind.port())
}

/// GETs `path` on `addr`; Ok when the answer is `200`.
pub async fn check(addr: SocketAddr, path: &str, timeout: Duration) -> Result<(), CheckError> {
    let io = |error| CheckError::Io {
        addr,
        path: path.to_owned(),
        error,
    };
    let get = async {
        let uri: Uri = format!("http://{addr}{path}")
            .parse()
            .map_err(|e| io(std::io::Error::new(std::io::ErrorKind::InvalidInput, e)))?;
        // One request: no idle connection is worth keeping.
        let client: Client<HttpConnector, Empty<Bytes>> = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build_http();
        let response = client.get(uri).await.map_err(|e| io(io_error(&e)))?;
        if response.status() == StatusCode::OK {
            Ok(())
        } else {
            Err(CheckError::Status {
                addr,
                path: path.to_owned(),
                status_line: format!("{:?} {}", response.version(), response.status()),
            })
        }
    };
    tokio::time::timeout(timeout, get)
        .await
        .unwrap_or_else(|_| {
            Err(CheckError::Timeout {
                addr,
                path: path.to_owned(),
                timeout,
            })
        })
}

/// The I/O error under a client error (the cause, like "Connection refused",
/// said once), or the client error itself when there is none.
fn io_error(e: &hyper_util::client::legacy::Error) -> std::io::Error {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            return std::io::Error::new(io.kind(), io.to_string());
        }
        cause = c.source();
    }
    std::io::Error::other(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_binds_are_checked_on_loopback() {
        assert_eq!(
            target("0.0.0.0:9464".parse().unwrap()),
            "127.0.0.1:9464".parse().unwrap()
        );
        assert_eq!(
            target("[::]:9464".parse().unwrap()),
            "[::1]:9464".parse().unwrap()
        );
        assert_eq!(
            target("10.0.0.5:9000".parse().unwrap()),
            "10.0.0.5:9000".parse().unwrap()
        );
    }

    #[tokio::test]
    async fn ok_only_on_200_from_the_real_telemetry_server() {
        use crate::telemetry::{Health, Metrics, serve};
        use std::sync::Arc;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(
            listener,
            Arc::new(Metrics::new()),
            Arc::new(Health::default()),
            async {
                let _ = stopped.await;
            },
        ));
        let t = Duration::from_secs(5);
        check(addr, "/healthz", t).await.unwrap();
        // Not ready before the first successful poll: 503.
        let e = check(addr, "/readyz", t).await.unwrap_err();
        assert!(e.to_string().contains("503"), "{e}");
        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
        // Nothing listening any more.
        let e = check(addr, "/healthz", t).await.unwrap_err();
        assert!(matches!(e, CheckError::Io { .. }), "{e}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_server_times_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Accepts (the kernel does) but never answers.
        let e = check(addr, "/healthz", Duration::from_secs(3))
            .await
            .unwrap_err();
        assert!(matches!(e, CheckError::Timeout { .. }), "{e}");
        drop(listener);
    }
}
