//! `switchboard healthcheck`: the container health check. The runtime image has
//! no shell and no curl (distroless), so the binary checks itself: one HTTP/1.1
//! GET of `/healthz` on the local telemetry port, success only on 200.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest answer read; `/healthz` answers a few bytes.
const MAX_RESPONSE: u64 = 64 * 1024;

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
        /// The status line (or what came instead).
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
        let mut stream = TcpStream::connect(addr).await.map_err(io)?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.map_err(io)?;
        let mut answer = Vec::new();
        stream
            .take(MAX_RESPONSE)
            .read_to_end(&mut answer)
            .await
            .map_err(io)?;
        let text = String::from_utf8_lossy(&answer);
        let status_line = text.lines().next().unwrap_or_default().trim().to_owned();
        let code = status_line.split_whitespace().nth(1);
        if status_line.starts_with("HTTP/1.") && code == Some("200") {
            Ok(())
        } else {
            Err(CheckError::Status {
                addr,
                path: path.to_owned(),
                status_line,
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
