//! WebSocket load client for bench/gateway.sh (real tokio-tungstenite clients
//! against a running `switchboard dev`). Modes:
//!
//!   ws_load idle URL N SECONDS          open N connections, print "open N", hold them
//!   ws_load broadcast URL MEMBERS ROUNDS one sender, MEMBERS receivers in one session:
//!                                      per-receiver latency of each message (p50/p99)
//!   ws_load sustained URL CLIENTS SECONDS every client in its own session sends with
//!                                      up to 8 in flight; messages/s received back
//!   ws_load paced URL CLIENTS RATE SECONDS every client in its own session sends RATE
//!                                      messages/s for SECONDS; every message must come
//!                                      back (lost = sent − received), p50/p99 latency
//!
//! URL is the stage URL without query, e.g. ws://127.0.0.1:8080/dev. Connections
//! are spread over source addresses 127.0.0.1–127.0.0.8 so that more than one
//! ephemeral port range's worth can be opened.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{WebSocketStream, client_async_with_config};

/// Each client's read chunk. tungstenite's default (128 KiB) is zeroed
/// before every read, also before one that finds nothing: that `memset` was
/// 56 % of this tool's CPU in a broadcast (docs/benchmarks.md). The frames
/// read here are a few hundred bytes; larger ones arrive over more reads.
const READ_CHUNK: usize = 4 * 1024;

type Ws = WebSocketStream<tokio::net::TcpStream>;

async fn connect(url: &str, session: &str, n: usize) -> Ws {
    let rest = url.strip_prefix("ws://").expect("ws:// URL");
    let (hostport, path) = rest.split_once('/').expect("URL with a stage path");
    let server: SocketAddr = hostport.parse().expect("IP:PORT in the URL");
    let source = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + (n % 8) as u8));
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(source, 0)).unwrap();
    let stream = socket.connect(server).await.expect("TCP connect");
    let request = format!("ws://{hostport}/{path}?session={session}");
    let config = WebSocketConfig::default().read_buffer_size(READ_CHUNK);
    let (ws, _) = client_async_with_config(request, stream, Some(config))
        .await
        .expect("WebSocket handshake");
    ws
}

fn say(session: &str, seq: u64, sent_us: u128) -> Message {
    Message::text(
        serde_json::json!({
            "action": "sendMessage",
            "data": {"session": session, "seq": seq, "sentUs": sent_us.to_string()}
        })
        .to_string(),
    )
}

/// CPU seconds (user + system) used so far by the process whose pid is in
/// `SWITCHBOARD_BENCH_DEV_PID` (bench/gateway.sh sets it to `dev`'s); `None`
/// without it.
fn dev_cpu_s() -> Option<f64> {
    cpu_s(&std::env::var("SWITCHBOARD_BENCH_DEV_PID").ok()?)
}

/// CPU seconds (user + system) used so far by process `pid` (or `self`).
fn cpu_s(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after `(comm) `, which may hold spaces, start at field 3;
    // utime and stime are fields 14 and 15, in clock ticks.
    let fields: Vec<&str> = stat.get(stat.rfind(')')? + 2..)?.split(' ').collect();
    let ticks = |i: usize| fields.get(i - 3)?.parse::<f64>().ok();
    Some((ticks(14)? + ticks(15)?) / clock_ticks_per_s()?)
}

/// USER_HZ, the unit of /proc's CPU times: 100 on the usual kernels, but
/// asked rather than assumed.
#[cfg(target_os = "linux")]
fn clock_ticks_per_s() -> Option<f64> {
    // SAFETY: sysconf only reads a configuration value; no pointers.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then_some(hz as f64)
}

#[cfg(not(target_os = "linux"))]
fn clock_ticks_per_s() -> Option<f64> {
    None
}

/// ` dev_cpu_us_per_<what>=… load_cpu_us_per_<what>=…`: `dev`'s and this
/// load client's CPU since `before` (both, from [`cpu_before`]), per unit of work.
fn cpu_per(before: (Option<f64>, Option<f64>), units: usize, what: &str) -> String {
    let per = |b: Option<f64>, a: Option<f64>, who: &str| match (b, a) {
        (Some(b), Some(a)) if units > 0 => {
            format!(
                " {who}_cpu_us_per_{what}={:.1}",
                1e6 * (a - b) / units as f64
            )
        }
        _ => String::new(),
    };
    per(before.0, dev_cpu_s(), "dev") + &per(before.1, cpu_s("self"), "load")
}

fn cpu_before() -> (Option<f64>, Option<f64>) {
    (dev_cpu_s(), cpu_s("self"))
}

fn micros(start: Instant) -> u128 {
    start.elapsed().as_micros()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

async fn idle(url: &str, n: usize, seconds: u64) {
    let mut all = Vec::with_capacity(n);
    let started = Instant::now();
    let mut opening = futures::stream::iter(0..n)
        .map(|i| async move { connect(url, &format!("idle{}", i % 1000), i).await })
        .buffer_unordered(64);
    while let Some(ws) = opening.next().await {
        all.push(ws);
    }
    println!(
        "open {} in {:.1} s",
        all.len(),
        started.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    println!("closing");
}

/// The part of a broadcast frame the receivers read.
#[derive(serde::Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    payload: Option<Payload<'a>>,
}

#[derive(serde::Deserialize)]
struct Payload<'a> {
    #[serde(rename = "sentUs")]
    sent_us: &'a str,
    seq: u64,
}

async fn broadcast(url: &str, members: usize, rounds: u64) {
    let clock = Instant::now();
    let mut receivers = Vec::new();
    let mut opening = futures::stream::iter(0..members)
        .map(|i| async move { connect(url, "bcast", i).await })
        .buffer_unordered(64);
    while let Some(ws) = opening.next().await {
        receivers.push(ws);
    }
    let mut sender = connect(url, "bcast", members).await;
    // Frames received so far (each task keeps its own latencies until the end).
    let delivered = Arc::new(AtomicU64::new(0));
    // Receivers that have started (spawned and polled): the first message is
    // sent once all have, so the first round measures the system and not the
    // load client starting its own 1,000 tasks beside it.
    let started = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for mut ws in receivers {
        let delivered = delivered.clone();
        let started = started.clone();
        tasks.push(tokio::spawn(async move {
            started.fetch_add(1, Ordering::Relaxed);
            // The load client should cost little beside the system it
            // measures on the same two cores: a typed parse of the two fields
            // it needs, borrowed from the frame, into this task's own list.
            let mut lat = Vec::with_capacity(rounds as usize);
            while (lat.len() as u64) < rounds {
                let Some(Ok(Message::Text(t))) = ws.next().await else {
                    break;
                };
                let now = micros(clock);
                let Ok(Frame {
                    kind: "message",
                    payload: Some(p),
                }) = serde_json::from_str::<Frame>(&t)
                else {
                    continue;
                };
                let sent: u128 = p.sent_us.parse().unwrap();
                lat.push((p.seq, (now - sent) as f64 / 1000.0));
                delivered.fetch_add(1, Ordering::Relaxed);
            }
            (lat, ws)
        }));
    }
    let end = Instant::now() + Duration::from_secs(10);
    while started.load(Ordering::Relaxed) < members as u64 && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let cpu0 = cpu_before();
    for seq in 0..rounds {
        sender.send(say("bcast", seq, micros(clock))).await.unwrap();
        // One message at a time: wait until everyone has it (or 10 s).
        let want = members as u64 * (seq + 1);
        let end = Instant::now() + Duration::from_secs(10);
        while delivered.load(Ordering::Relaxed) < want && Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    // Every member stays connected until all are done: a member that left as
    // soon as it had the last frame would make `dev` handle its $disconnect
    // while the last round is still being delivered to the others.
    let mut all = Vec::with_capacity(members * rounds as usize);
    let mut open = Vec::with_capacity(members);
    for t in tasks {
        if let Ok(Ok((lat, ws))) = tokio::time::timeout(Duration::from_secs(10), t).await {
            all.extend(lat);
            open.push(ws);
        }
    }
    let cpu = cpu_per(cpu0, all.len(), "delivery");
    drop(open);
    let sorted = |keep: &dyn Fn(u64) -> bool| {
        let mut l: Vec<f64> = all
            .iter()
            .filter(|(r, _)| keep(*r))
            .map(|(_, ms)| *ms)
            .collect();
        l.sort_by(|a, b| a.partial_cmp(b).unwrap());
        l
    };
    let l = sorted(&|_| true);
    // The first round is shown apart: it also opens the worker's keep-alive
    // connections to the @connections API (up to --fanout-concurrency of
    // them), and it is the members' first frame (docs/benchmarks.md).
    let first = sorted(&|r| r == 0);
    let warm = sorted(&|r| r > 0);
    println!(
        "broadcast members={members} rounds={rounds} received={} p50_ms={:.2} p99_ms={:.2} max_ms={:.2} first_round_max_ms={:.2} warm_p99_ms={:.2}{cpu}",
        l.len(),
        percentile(&l, 0.5),
        percentile(&l, 0.99),
        l.last().copied().unwrap_or(f64::NAN),
        first.last().copied().unwrap_or(f64::NAN),
        percentile(&warm, 0.99),
    );
}

async fn sustained(url: &str, clients: usize, seconds: u64) {
    let received = Arc::new(AtomicU64::new(0));
    let stop_at = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for i in 0..clients {
        let ws = connect(url, &format!("sus{i}"), i).await;
        let received = received.clone();
        tasks.push(tokio::spawn(async move {
            let (mut tx, mut rx) = ws.split();
            let window = Arc::new(tokio::sync::Semaphore::new(8));
            let w = window.clone();
            let r = received.clone();
            let reader = tokio::spawn(async move {
                while let Some(Ok(m)) = rx.next().await {
                    if let Message::Text(t) = m
                        && t.contains("\"type\":\"message\"")
                    {
                        r.fetch_add(1, Ordering::Relaxed);
                        w.add_permits(1);
                    }
                }
            });
            let mut seq = 0;
            while Instant::now() < stop_at {
                let Ok(p) = tokio::time::timeout(Duration::from_secs(1), window.acquire()).await
                else {
                    continue;
                };
                p.expect("semaphore").forget();
                if tx.send(say("s", seq, 0)).await.is_err() {
                    break;
                }
                seq += 1;
            }
            reader.abort();
        }));
    }
    let start = Instant::now();
    let begin = received.load(Ordering::Relaxed);
    let cpu0 = cpu_before();
    for t in tasks {
        let _ = t.await;
    }
    let n = received.load(Ordering::Relaxed) - begin;
    let cpu = cpu_per(cpu0, n as usize, "message");
    println!(
        "sustained clients={clients} seconds={:.1} received={n} per_second={:.0}{cpu}",
        start.elapsed().as_secs_f64(),
        n as f64 / start.elapsed().as_secs_f64()
    );
}

async fn paced(url: &str, clients: usize, rate: u64, seconds: u64) {
    let clock = Instant::now();
    let latencies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sent = Arc::new(AtomicU64::new(0));
    let mut sockets = Vec::new();
    for i in 0..clients {
        sockets.push(connect(url, &format!("paced{i}-{}", std::process::id()), i).await);
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (i, ws) in sockets.into_iter().enumerate() {
        let (lat, sent) = (latencies.clone(), sent.clone());
        tasks.push(tokio::spawn(async move {
            let (mut tx, mut rx) = ws.split();
            let want = rate * seconds;
            let reader = tokio::spawn(async move {
                let mut got = 0;
                while got < want {
                    let Ok(Some(Ok(m))) =
                        tokio::time::timeout(Duration::from_secs(10), rx.next()).await
                    else {
                        break;
                    };
                    let Message::Text(t) = m else { continue };
                    let now = micros(clock);
                    let f: serde_json::Value = serde_json::from_str(&t).unwrap();
                    if f["type"] != "message" {
                        continue;
                    }
                    let at: u128 = f["payload"]["sentUs"].as_str().unwrap().parse().unwrap();
                    lat.lock().unwrap().push((now - at) as f64 / 1000.0);
                    got += 1;
                }
            });
            // Clients start spread over the first period, not all at once.
            let period = Duration::from_micros(1_000_000 / rate.max(1));
            tokio::time::sleep(period * i as u32 / clients.max(1) as u32).await;
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            for seq in 0..want {
                tick.tick().await;
                if tx.send(say("p", seq, micros(clock))).await.is_err() {
                    break;
                }
                sent.fetch_add(1, Ordering::Relaxed);
            }
            let _ = reader.await;
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let mut l = latencies.lock().unwrap().clone();
    l.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let sent = sent.load(Ordering::Relaxed);
    println!(
        "paced clients={clients} rate={rate}/s seconds={:.1} sent={sent} received={} lost={} p50_ms={:.2} p99_ms={:.2} max_ms={:.2}",
        start.elapsed().as_secs_f64(),
        l.len(),
        sent.saturating_sub(l.len() as u64),
        percentile(&l, 0.5),
        percentile(&l, 0.99),
        l.last().copied().unwrap_or(f64::NAN)
    );
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let num = |i: usize| -> u64 { args[i].parse().expect("a number") };
    match args.first().map(String::as_str) {
        Some("idle") => idle(&args[1], num(2) as usize, num(3)).await,
        Some("broadcast") => broadcast(&args[1], num(2) as usize, num(3)).await,
        Some("sustained") => sustained(&args[1], num(2) as usize, num(3)).await,
        Some("paced") => paced(&args[1], num(2) as usize, num(3), num(4)).await,
        _ => {
            eprintln!(
                "usage: ws_load idle|broadcast|sustained URL N SECONDS|ROUNDS, or paced URL CLIENTS RATE SECONDS"
            );
            std::process::exit(2);
        }
    }
}
