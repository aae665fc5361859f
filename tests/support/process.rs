//! The `switchboard` binary as a child process (a worker on an embedded store,
//! or `dev`) that a test can SIGTERM or `kill -9`: its output is collected
//! line by line and can be waited on; its telemetry address is read from its
//! log; its resident memory from `/proc`.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::Notify;

/// The default embedded queue of `switchboard worker --data-dir` and `dev`.
pub const EMBEDDED_QUEUE: &str = "embedded://switchboard-inbound.fifo";

/// Lines a child wrote to one of its streams.
#[derive(Default)]
struct Lines {
    lines: Mutex<Vec<String>>,
    changed: Notify,
    closed: std::sync::atomic::AtomicBool,
}

impl Lines {
    fn collect(self: &Arc<Self>, stream: impl AsyncRead + Unpin + Send + 'static) {
        let me = self.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                me.lines.lock().unwrap().push(line);
                me.changed.notify_waiters();
            }
            me.closed.store(true, std::sync::atomic::Ordering::SeqCst);
            me.changed.notify_waiters();
        });
    }

    async fn wait_for<T>(
        &self,
        deadline: Duration,
        what: &str,
        mut find: impl FnMut(&str) -> Option<T>,
    ) -> T {
        let end = tokio::time::Instant::now() + deadline;
        let mut from = 0;
        loop {
            let notified = self.changed.notified();
            {
                let lines = self.lines.lock().unwrap();
                for line in &lines[from..] {
                    if let Some(v) = find(line) {
                        return v;
                    }
                }
                from = lines.len();
            }
            if self.closed.load(std::sync::atomic::Ordering::SeqCst) {
                panic!("the process closed its output before {what}");
            }
            if tokio::time::timeout_at(end, notified).await.is_err() {
                panic!("timed out after {deadline:?} waiting for {what}");
            }
        }
    }

    fn text(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }
}

/// A running `switchboard` process, killed if dropped.
pub struct Proc {
    child: Child,
    /// Its process id.
    pub pid: u32,
    stdout: Arc<Lines>,
    stderr: Arc<Lines>,
}

impl Proc {
    /// Starts `switchboard ARGS` with JSON logs at `info` (plus `env`).
    pub fn spawn(args: &[String], env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
        cmd.args(args)
            .env("SWITCHBOARD_LOG_FORMAT", "json")
            .env("RUST_LOG", "info");
        for (k, v) in env {
            cmd.env(k, v);
        }
        Self::spawn_command(cmd)
    }

    /// Starts `cmd` (any binary) with its output collected, killed if dropped.
    pub fn spawn_command(mut cmd: Command) -> Self {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("start the binary");
        let pid = child.id().expect("pid of a running child");
        let stdout = Arc::new(Lines::default());
        stdout.collect(child.stdout.take().unwrap());
        let stderr = Arc::new(Lines::default());
        stderr.collect(child.stderr.take().unwrap());
        Proc {
            child,
            pid,
            stdout,
            stderr,
        }
    }

    /// Waits for a stdout line for which `find` returns `Some`.
    pub async fn stdout_line<T>(
        &self,
        deadline: Duration,
        what: &str,
        find: impl FnMut(&str) -> Option<T>,
    ) -> T {
        self.stdout.wait_for(deadline, what, find).await
    }

    /// Waits for a JSON log line (stderr) whose `message` contains `message`;
    /// returns the parsed line.
    pub async fn log_line(&self, deadline: Duration, message: &str) -> serde_json::Value {
        self.stderr
            .wait_for(deadline, message, |line| {
                let v: serde_json::Value = serde_json::from_str(line).ok()?;
                v["message"].as_str()?.contains(message).then_some(v)
            })
            .await
    }

    /// Everything written to stderr so far.
    pub fn log(&self) -> String {
        self.stderr.text()
    }

    /// Sends SIGTERM (the drain).
    pub fn sigterm(&self) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {}", self.pid);
    }

    /// `kill -9`: no drain, no flush, no cleanup; waits until it is gone.
    pub async fn kill9(mut self) {
        // tokio's start_kill sends SIGKILL on Unix.
        self.child.start_kill().expect("SIGKILL");
        let status = tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .expect("gone within 10 s of SIGKILL")
            .unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9), "{status:?}");
    }

    /// Waits for the process to exit on its own.
    pub async fn exit_within(&mut self, deadline: Duration) -> ExitStatus {
        match tokio::time::timeout(deadline, self.child.wait()).await {
            Ok(status) => status.unwrap(),
            Err(_) => panic!(
                "still running {deadline:?} later; log:\n{}",
                tail(&self.log(), 30)
            ),
        }
    }

    /// Resident memory now, in KiB (`VmRSS` of `/proc/PID/status`).
    pub fn rss_kib(&self) -> u64 {
        self.status_number("VmRSS:")
    }

    /// The size of the process's descriptor table (`FDSize`).
    pub fn fd_table_size(&self) -> u64 {
        self.status_number("FDSize:")
    }

    /// The number on line `key` of `/proc/PID/status` (a "kB" unit dropped).
    fn status_number(&self, key: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{key} in /proc/PID/status"))
    }
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// `switchboard worker --data-dir DIR` on the embedded queue, with its
/// telemetry on a free port.
pub struct WorkerProc {
    /// The process.
    pub proc: Proc,
    /// Where `/metrics`, `/healthz` and `/readyz` answer.
    pub metrics_addr: SocketAddr,
}

impl WorkerProc {
    /// Starts the worker on the store in `dir` (default queue and table
    /// names), posting to `callback`; `extra` flags come last.
    pub async fn start(dir: &Path, callback: &str, extra: &[&str]) -> Self {
        let mut args: Vec<String> = [
            "worker",
            "--data-dir",
            dir.to_str().unwrap(),
            "--queue-url",
            EMBEDDED_QUEUE,
            "--callback-url",
            callback,
            "--metrics-addr",
            "127.0.0.1:0",
            "--wait-time-seconds",
            "1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        let proc = Proc::spawn(&args, &[]);
        let line = proc
            .log_line(Duration::from_secs(30), "serving /metrics")
            .await;
        let metrics_addr = line["addr"].as_str().unwrap().parse().unwrap();
        proc.log_line(Duration::from_secs(30), "worker started")
            .await;
        WorkerProc { proc, metrics_addr }
    }

    /// One sample of `/metrics`, e.g. `switchboard_deliveries_total{outcome="ok"}`.
    pub async fn metric(&self, sample: &str) -> f64 {
        metric(self.metrics_addr, "/metrics", sample).await
    }
}

/// `switchboard dev --data-dir DIR --listen 127.0.0.1:0`.
pub struct DevProc {
    /// The process.
    pub proc: Proc,
    /// Where the gateway (and /metrics) listens.
    pub addr: SocketAddr,
}

impl DevProc {
    /// Starts `dev` on the state in `dir`; `extra` flags come last.
    pub async fn start(dir: &Path, extra: &[&str]) -> Self {
        Self::start_with_env(dir, extra, &[]).await
    }

    /// [`DevProc::start`] with `env` set for the process.
    pub async fn start_with_env(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let mut args: Vec<String> = [
            "dev",
            "--data-dir",
            dir.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        let proc = Proc::spawn(&args, env);
        let addr = proc
            .stdout_line(Duration::from_secs(30), "the WebSocket URL", |line| {
                let url = line.trim().strip_prefix("WebSocket API")?.trim();
                url.strip_prefix("ws://")?.split('/').next()?.parse().ok()
            })
            .await;
        proc.log_line(Duration::from_secs(30), "worker started")
            .await;
        DevProc { proc, addr }
    }

    /// `ws://ADDR/dev?session=SESSION`.
    pub fn ws_url(&self, session: &str) -> String {
        format!("ws://{}/dev?session={session}", self.addr)
    }

    /// One sample of its `/metrics`.
    pub async fn metric(&self, sample: &str) -> f64 {
        metric(self.addr, "/metrics", sample).await
    }
}

/// Minimal HTTP/1.1 GET over a fresh TCP connection; returns (status, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The value of `sample` in the Prometheus text at `addr` + `path`; 0 when
/// absent (a counter never incremented is not exported).
pub async fn metric(addr: SocketAddr, path: &str, sample: &str) -> f64 {
    let (status, body) = http_get(addr, path).await;
    assert_eq!(status, 200, "GET {path}: {body}");
    sum_samples(&body, sample)
}

/// The value of `sample` in Prometheus text: a full sample
/// (`switchboard_deliveries_total{outcome="ok"}`, labels in the exporter's
/// alphabetical order), or a metric name, which sums all its labelled samples.
pub fn sum_samples(text: &str, sample: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            let family = !sample.contains('{')
                && name
                    .strip_prefix(sample)
                    .is_some_and(|labels| labels.starts_with('{'));
            (name == sample || family).then(|| value.parse::<f64>().ok())?
        })
        .sum()
}
