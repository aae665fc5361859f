//! Slow and idle HTTP clients against `switchboard dev` (issue 15, item 1):
//! the binary runs under a lowered file-descriptor limit (`prlimit`) with
//! short `[limits]` timeouts, and a crowd of sockets that send half a
//! request line must not lock everyone else out. Also: the descriptor table
//! is grown to the limit at start (issue 11).

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::embedded::TempDir;
use support::process::{Proc, http_get, sum_samples};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The process's descriptor limit in the test: well under what the crowd needs.
const NOFILE: u32 = 80;
/// Sockets that send a partial request line and then wait.
const CROWD: usize = 200;

const LIMITS: &str = "[limits]\nheader_timeout_secs = 1\nbody_timeout_secs = 1\n\
                      keepalive_timeout_secs = 1\nmax_handshakes = 64\n";

/// `switchboard dev --ephemeral` under `prlimit --nofile=NOFILE`, with `LIMITS`.
async fn start(dir: &TempDir) -> (Proc, SocketAddr) {
    start_with_nofile(dir, NOFILE).await
}

/// `switchboard dev --ephemeral` under `prlimit --nofile=nofile`, with `LIMITS`.
async fn start_with_nofile(dir: &TempDir, nofile: u32) -> (Proc, SocketAddr) {
    let config = dir.path().join("gateway.toml");
    std::fs::write(&config, LIMITS).unwrap();
    let mut cmd = tokio::process::Command::new("prlimit");
    cmd.arg(format!("--nofile={nofile}:{nofile}"))
        .arg(env!("CARGO_BIN_EXE_switchboard"))
        .args(["dev", "--ephemeral", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .current_dir(dir.path())
        .env("SWITCHBOARD_LOG_FORMAT", "json")
        .env("RUST_LOG", "info");
    let proc = Proc::spawn_command(cmd);
    let addr = proc
        .stdout_line(Duration::from_secs(30), "the WebSocket URL", |line| {
            let url = line.trim().strip_prefix("WebSocket API")?.trim();
            url.strip_prefix("ws://")?.split('/').next()?.parse().ok()
        })
        .await;
    proc.log_line(Duration::from_secs(30), "worker started")
        .await;
    (proc, addr)
}

/// Reads until the server closes the connection; what it sent, or `None`
/// if it was still open after `deadline`.
async fn closed_within(s: &mut TcpStream, deadline: Duration) -> Option<String> {
    let mut out = Vec::new();
    let read = tokio::time::timeout(deadline, async {
        let mut buf = [0u8; 1024];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    read.ok()
        .map(|()| String::from_utf8_lossy(&out).into_owned())
}

/// The descriptor table is grown to the limit when the process starts, so
/// that no accept waits for the kernel to grow it under load (src/fds.rs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_descriptor_table_is_grown_at_start() {
    let dir = TempDir::new("sb-fdtable");
    // Far above what `dev` opens by itself (its table would be 128 or 256).
    let (proc, addr) = start_with_nofile(&dir, 4096).await;
    // Grown before anything else runs; answered, so surely started.
    let (status, _) = http_get(addr, "/healthz").await;
    assert_eq!(status, 200);
    assert!(
        proc.fd_table_size() >= 4096,
        "FDSize {}",
        proc.fd_table_size()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crowd_of_partial_requests_does_not_lock_out_healthz() {
    let dir = TempDir::new("sb-slowloris");
    let (proc, addr) = start(&dir).await;

    // More half-sent requests than the process has descriptors.
    let mut crowd = Vec::new();
    for _ in 0..CROWD {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        crowd.push(s);
    }
    // Today's code never closed them: healthz timed out for as long as they
    // stayed open. With 1 s header timeouts, 64 handshakes at a time, the
    // crowd is cleared in about four rounds.
    let started = Instant::now();
    let (status, body) = tokio::time::timeout(Duration::from_secs(20), http_get(addr, "/healthz"))
        .await
        .expect("/healthz answered while the crowd held its sockets");
    assert_eq!(status, 200, "{body}");
    eprintln!("/healthz answered after {:?}", started.elapsed());

    // The crowd's sockets were closed by the server, none answered.
    for s in crowd.iter_mut().take(5) {
        let got = closed_within(s, Duration::from_secs(10)).await;
        assert_eq!(got.as_deref(), Some(""), "closed without an answer");
    }
    drop(crowd);

    // Near the descriptor limit: warned, and counted.
    proc.log_line(Duration::from_secs(10), "file-descriptor limit")
        .await;
    let (_, metrics) = http_get(addr, "/metrics").await;
    eprintln!(
        "open fds now: {}",
        sum_samples(&metrics, "switchboard_gateway_open_fds")
    );
    assert_eq!(
        sum_samples(&metrics, "switchboard_gateway_fd_limit"),
        f64::from(NOFILE)
    );
    assert!(sum_samples(&metrics, "switchboard_gateway_fd_pressure_total") >= 1.0);
    assert!(
        sum_samples(
            &metrics,
            "switchboard_gateway_http_timeouts_total{phase=\"header\"}"
        ) >= 40.0,
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keepalive_and_slow_bodies_are_cut() {
    let dir = TempDir::new("sb-slowloris");
    let (_proc, addr) = start(&dir).await;

    // A kept-alive connection that sends no next request is closed.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let got = closed_within(&mut idle, Duration::from_secs(10))
        .await
        .expect("the idle keep-alive connection was closed");
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");

    // A body that stops halfway: 408, then the connection is closed.
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(
        format!(
            "POST /dev/@connections/abc HTTP/1.1\r\nHost: {addr}\r\n\
             Content-Length: 100\r\n\r\nhalf"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let got = closed_within(&mut slow, Duration::from_secs(10))
        .await
        .expect("the slow body's connection was closed");
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");

    // Headers dripped a byte at a time still have one deadline in all.
    let mut drip = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    let closed = async {
        for b in b"GET /healthz HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter()
        {
            if drip.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut buf = [0u8; 64];
        let _ = drip.read(&mut buf).await;
    };
    tokio::time::timeout(Duration::from_secs(10), closed)
        .await
        .expect("the dripping client was cut off");
    assert!(started.elapsed() < Duration::from_secs(5));
}
