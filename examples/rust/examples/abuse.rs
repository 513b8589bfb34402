//! Abuse scenarios against a running keysmith server on loopback: what a
//! client that holds connections, never finishes a handshake or a request,
//! or floods health checks costs the server, and whether health checks
//! keep answering. Each scenario is bounded in time and stops by itself.
//!
//! ```text
//! cargo run --release -- serve &
//! cargo run --release -p keysmith-examples --example abuse -- \
//!     --scenario health-flood --server-pid $!
//! ```
//!
//! Scenarios (`--scenario`):
//!
//! - `idle`: `--connections` HTTP/2 connections each make one health check
//!   and then stay open without a call.
//! - `half-handshake`: `--connections` TCP connections each send half of
//!   the HTTP/2 preface and nothing more.
//! - `half-open`: one connection opens `--streams` calls with the token
//!   (`--token` or LOADGEN_TOKEN; none in development mode): their headers
//!   and half a message, never the end. Then the same token makes a whole
//!   call, whose answer is reported, and the unfinished calls' answers
//!   are counted by status.
//! - `health-flood`: `--connections` connections with `--streams` health
//!   checks in flight each, for `--duration` seconds, while a probe on a
//!   connection of its own checks health one call at a time; the probe's
//!   latency is reported before and during the flood.
//!
//! In `idle` and `half-handshake` the connections are watched for
//! `--duration` seconds: how many the server refused (closed before
//! anything was answered, at once), how many it closed later, and when.
//! With `--server-pid`, the server's resident memory (VmRSS) is read every
//! 100 ms: before, its peak during, and `--after` seconds after the
//! scenario ends. Each scenario prints a human-readable line and a JSON
//! line prefixed by `RESULT `.
use std::{
    collections::BTreeMap,
    net::SocketAddr,
    process::ExitCode,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use bytes::Bytes;
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use prost::Message;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::Semaphore,
    task::JoinSet,
    time::{timeout, Instant},
};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const HEALTH_CHECK: &str = "/grpc.health.v1.Health/Check";
const LIST_KEYS: &str = "/keysmith.v1.AccessService/ListKeys";
/// Connections being opened at once.
const CONNECTING_AT_ONCE: usize = 256;
/// How long any one exchange may take before it counts as failed.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection closed sooner than this after it was opened was refused at
/// accept (the server's timeouts are seconds).
const REFUSED_WITHIN: Duration = Duration::from_millis(500);

#[derive(Parser, Debug, Clone)]
#[command(about = "Abuse scenarios against a keysmith server on loopback")]
struct Args {
    /// The server: a loopback address only.
    #[arg(long, default_value = "127.0.0.1:50051")]
    addr: SocketAddr,
    #[arg(long, value_enum)]
    scenario: Scenario,
    /// Connections the scenario opens.
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    /// Calls in flight per connection (health-flood), or unfinished calls
    /// (half-open).
    #[arg(long, default_value_t = 100)]
    streams: usize,
    /// How long the flood lasts, or the connections are watched, in seconds.
    #[arg(long, default_value_t = 20)]
    duration: u64,
    /// How long after the scenario the server's memory is read again.
    #[arg(long, default_value_t = 10)]
    after: u64,
    /// The server's process id, to read its resident memory.
    #[arg(long)]
    server_pid: Option<u32>,
    /// A bearer token for half-open (keys.read for the property).
    #[arg(long, env = "LOADGEN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[arg(long, default_value = "demo-hotel")]
    property: String,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Idle,
    HalfHandshake,
    HalfOpen,
    HealthFlood,
}

/// The server's resident memory, sampled in the background.
struct Rss {
    pid: Option<u32>,
    peak_kb: Arc<AtomicU64>,
    sampling: Arc<AtomicBool>,
}

impl Rss {
    fn read(pid: Option<u32>) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    /// Starts sampling every 100 ms, keeping the peak.
    fn sample(pid: Option<u32>) -> Self {
        let peak_kb = Arc::new(AtomicU64::new(Self::read(pid).unwrap_or(0)));
        let sampling = Arc::new(AtomicBool::new(true));
        let (peak, on) = (peak_kb.clone(), sampling.clone());
        tokio::spawn(async move {
            while on.load(Ordering::Relaxed) {
                if let Some(kb) = Self::read(pid) {
                    peak.fetch_max(kb, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Self {
            pid,
            peak_kb,
            sampling,
        }
    }

    fn peak_mb(&self) -> Option<f64> {
        self.pid?;
        Some(self.peak_kb.load(Ordering::Relaxed) as f64 / 1024.0)
    }

    fn now_mb(&self) -> Option<f64> {
        Self::read(self.pid).map(|kb| kb as f64 / 1024.0)
    }

    fn stop(&self) {
        self.sampling.store(false, Ordering::Relaxed);
    }
}

/// One uncompressed gRPC message frame.
fn grpc_frame(message: &[u8]) -> Bytes {
    let mut frame = Vec::with_capacity(message.len() + 5);
    frame.push(0);
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(message);
    frame.into()
}

/// An HTTP/2 connection; its task ends when the connection does.
struct H2 {
    client: h2::client::SendRequest<Bytes>,
    connection: tokio::task::JoinHandle<()>,
}

impl H2 {
    async fn connect(addr: SocketAddr) -> Result<Self, String> {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        let (client, connection) = h2::client::handshake(tcp)
            .await
            .map_err(|e| e.to_string())?;
        let connection = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Self { client, connection })
    }

    /// Starts a call: headers and `body`, ending the request if `end`.
    async fn start(
        &self,
        path: &str,
        token: Option<&str>,
        body: Bytes,
        end: bool,
    ) -> Result<(h2::client::ResponseFuture, h2::SendStream<Bytes>), String> {
        let mut request = http::Request::post(format!("http://keysmith{path}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers");
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = request.body(()).map_err(|e| e.to_string())?;
        let mut client = self
            .client
            .clone()
            .ready()
            .await
            .map_err(|e| e.to_string())?;
        let (response, mut send) = client
            .send_request(request, false)
            .map_err(|e| e.to_string())?;
        send.send_data(body, end).map_err(|e| e.to_string())?;
        Ok((response, send))
    }

    /// A whole unary call; its grpc-status ("transport" if none came).
    async fn call(&self, path: &str, token: Option<&str>, message: &[u8]) -> String {
        let answer = async {
            let (response, _send) = self.start(path, token, grpc_frame(message), true).await?;
            grpc_status(response).await
        };
        match timeout(EXCHANGE_TIMEOUT, answer).await {
            Ok(Ok(status)) => status,
            Ok(Err(_)) => "transport".into(),
            Err(_) => "timeout".into(),
        }
    }
}

/// The grpc-status of an answer, from its headers or its trailers.
async fn grpc_status(response: h2::client::ResponseFuture) -> Result<String, String> {
    let response = response.await.map_err(|e| e.to_string())?;
    if let Some(status) = response.headers().get("grpc-status") {
        return Ok(status.to_str().unwrap_or("?").to_owned());
    }
    let mut body = response.into_body();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    let trailers = body.trailers().await.map_err(|e| e.to_string())?;
    Ok(trailers
        .and_then(|t| t.get("grpc-status").cloned())
        .map(|s| s.to_str().unwrap_or("?").to_owned())
        .unwrap_or_else(|| "none".into()))
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// How the connections of `idle` or `half-handshake` ended.
#[derive(Default)]
struct Ends {
    /// Closed by the server at once: refused at accept.
    refused: u64,
    /// Closed by the server later, with the seconds after opening.
    closed_after_s: Vec<f64>,
    /// Still open when the watch ended.
    open: u64,
    /// Could not even connect.
    failed: u64,
}

enum End {
    Refused,
    Closed(Duration),
    Open,
    Failed,
}

impl Ends {
    fn add(&mut self, end: End) {
        match end {
            End::Refused => self.refused += 1,
            End::Closed(after) => self.closed_after_s.push(after.as_secs_f64()),
            End::Open => self.open += 1,
            End::Failed => self.failed += 1,
        }
    }

    fn median_closed_after_s(&mut self) -> Option<f64> {
        self.closed_after_s.sort_by(f64::total_cmp);
        self.closed_after_s
            .get(self.closed_after_s.len() / 2)
            .copied()
    }
}

/// Opens `--connections` connections with `open_one`, at most
/// `CONNECTING_AT_ONCE` at a time, each watched until `watch_until`.
async fn hold_connections<F, Fut>(args: &Args, open_one: F) -> Ends
where
    F: Fn(SocketAddr, Instant) -> Fut,
    Fut: std::future::Future<Output = End> + Send + 'static,
{
    let watch_until = Instant::now() + Duration::from_secs(args.duration);
    let connecting = Arc::new(Semaphore::new(CONNECTING_AT_ONCE));
    let mut tasks = JoinSet::new();
    for _ in 0..args.connections {
        let permit = connecting.clone().acquire_owned().await.expect("open");
        let watched = open_one(args.addr, watch_until);
        tasks.spawn(async move {
            let _connecting = permit;
            watched.await
        });
    }
    let mut ends = Ends::default();
    while let Some(end) = tasks.join_next().await {
        ends.add(end.unwrap_or(End::Failed));
    }
    ends
}

/// Reads until the server closes `stream` or `until` passes.
async fn watch(mut stream: TcpStream, opened: Instant, until: Instant) -> End {
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout_at(until, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await;
    match closed {
        Err(_) => End::Open,
        Ok(()) if opened.elapsed() < REFUSED_WITHIN => End::Refused,
        Ok(()) => End::Closed(opened.elapsed()),
    }
}

async fn idle_connection(addr: SocketAddr, until: Instant) -> End {
    let opened = Instant::now();
    let Ok(h2) = H2::connect(addr).await else {
        return End::Refused;
    };
    if h2.call(HEALTH_CHECK, None, &[]).await != "0" {
        return End::Refused;
    }
    // Idle from now on: the connection's task ends when the server closes it.
    match tokio::time::timeout_at(until, h2.connection).await {
        Ok(_) => End::Closed(opened.elapsed()),
        Err(_) => End::Open,
    }
}

async fn half_handshake_connection(addr: SocketAddr, until: Instant) -> End {
    let opened = Instant::now();
    let Ok(mut tcp) = TcpStream::connect(addr).await else {
        return End::Failed;
    };
    if tcp.write_all(b"PRI * HTTP/2.0\r\n").await.is_err() {
        return End::Refused;
    }
    watch(tcp, opened, until).await
}

async fn connections_scenario(args: &Args) -> serde_json::Value {
    let before = Rss::read(args.server_pid).map(|kb| kb as f64 / 1024.0);
    let rss = Rss::sample(args.server_pid);
    let started = Instant::now();
    let mut ends = match args.scenario {
        Scenario::Idle => hold_connections(args, idle_connection).await,
        _ => hold_connections(args, half_handshake_connection).await,
    };
    let held = started.elapsed();
    let during = rss.peak_mb();
    rss.stop();
    tokio::time::sleep(Duration::from_secs(args.after)).await;
    let after = rss.now_mb();
    let median = ends.median_closed_after_s();
    println!(
        "{:?}: {} connections: {} refused at accept, {} closed by the server (median {:.1} s \
         after opening), {} still open after {:.0} s, {} failed; server RSS MB before {:?} \
         peak {:?} after {:?}",
        args.scenario,
        args.connections,
        ends.refused,
        ends.closed_after_s.len(),
        median.unwrap_or(0.0),
        ends.open,
        held.as_secs_f64(),
        ends.failed,
        before,
        during,
        after,
    );
    serde_json::json!({
        "connections": args.connections,
        "refused_at_accept": ends.refused,
        "closed_by_server": ends.closed_after_s.len(),
        "closed_median_s": median,
        "still_open": ends.open,
        "failed": ends.failed,
        "rss_mb_before": before,
        "rss_mb_peak": during,
        "rss_mb_after": after,
    })
}

async fn half_open_scenario(args: &Args) -> Result<serde_json::Value, String> {
    let token = args.token.as_deref();
    let request = keysmith_api::v1::ListKeysRequest {
        property_id: args.property.clone(),
        page_size: 1,
        ..Default::default()
    }
    .encode_to_vec();
    let h2 = H2::connect(args.addr).await?;
    let half = grpc_frame(&request).slice(..3);
    let mut unfinished = JoinSet::new();
    for _ in 0..args.streams {
        let (response, send) = h2.start(LIST_KEYS, token, half.clone(), false).await?;
        unfinished.spawn(async move {
            let _keep_open = send;
            match timeout(EXCHANGE_TIMEOUT * 6, grpc_status(response)).await {
                Ok(Ok(status)) => status,
                Ok(Err(_)) => "transport".into(),
                Err(_) => "no answer".into(),
            }
        });
    }
    let started = Instant::now();
    let whole = h2.call(LIST_KEYS, token, &request).await;
    let took = started.elapsed();
    let mut by_status = BTreeMap::<String, u64>::new();
    while let Some(status) = unfinished.join_next().await {
        *by_status
            .entry(status.unwrap_or_else(|_| "panicked".into()))
            .or_default() += 1;
    }
    let answered_after = started.elapsed();
    println!(
        "half-open: {} unfinished calls with one token; the token's whole call: grpc-status {whole} \
         in {:.2} ms; the unfinished ones answered {by_status:?} after {:.1} s",
        args.streams,
        took.as_secs_f64() * 1000.0,
        answered_after.as_secs_f64(),
    );
    Ok(serde_json::json!({
        "unfinished": args.streams,
        "whole_call_status": whole,
        "whole_call_ms": took.as_secs_f64() * 1000.0,
        "unfinished_answers": by_status,
        "unfinished_answered_after_s": answered_after.as_secs_f64(),
    }))
}

/// Checks health one call at a time until `until`; the latencies of the
/// answered ones, and the other answers by status.
async fn probe(h2: &H2, until: Instant) -> (Histogram<u64>, BTreeMap<String, u64>) {
    let mut latencies = histogram();
    let mut other = BTreeMap::new();
    while Instant::now() < until {
        let started = Instant::now();
        let status = h2.call(HEALTH_CHECK, None, &[]).await;
        if status == "0" {
            let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            latencies.saturating_record(us.max(1));
        } else {
            *other.entry(status).or_insert(0) += 1;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (latencies, other)
}

#[derive(Default)]
struct FloodCounts {
    ok: AtomicU64,
    refused: AtomicU64,
    failed: AtomicU64,
}

async fn health_flood_scenario(args: &Args) -> Result<serde_json::Value, String> {
    let probe_connection = H2::connect(args.addr).await?;
    let (baseline, _) = probe(&probe_connection, Instant::now() + Duration::from_secs(3)).await;
    let before = Rss::read(args.server_pid).map(|kb| kb as f64 / 1024.0);
    let rss = Rss::sample(args.server_pid);
    let counts = Arc::new(FloodCounts::default());
    let flood_until = Instant::now() + Duration::from_secs(args.duration);
    let connections_refused = Arc::new(AtomicU64::new(0));
    let mut flood = JoinSet::new();
    for _ in 0..args.connections {
        let (counts, refused) = (counts.clone(), connections_refused.clone());
        let (addr, streams) = (args.addr, args.streams);
        flood.spawn(async move {
            let Ok(h2) = H2::connect(addr).await else {
                refused.fetch_add(1, Ordering::Relaxed);
                return;
            };
            let h2 = Arc::new(h2);
            let mut calls = JoinSet::new();
            for _ in 0..streams {
                let (h2, counts) = (h2.clone(), counts.clone());
                calls.spawn(async move {
                    while Instant::now() < flood_until {
                        match h2.call(HEALTH_CHECK, None, &[]).await.as_str() {
                            "0" => counts.ok.fetch_add(1, Ordering::Relaxed),
                            "8" => counts.refused.fetch_add(1, Ordering::Relaxed),
                            _ => {
                                counts.failed.fetch_add(1, Ordering::Relaxed);
                                // The connection is gone: stop this caller.
                                if h2.connection.is_finished() {
                                    return;
                                }
                                0
                            }
                        };
                    }
                });
            }
            while calls.join_next().await.is_some() {}
            h2.connection.abort();
        });
    }
    let (during, probe_other) = probe(&probe_connection, flood_until).await;
    while flood.join_next().await.is_some() {}
    let peak = rss.peak_mb();
    rss.stop();
    tokio::time::sleep(Duration::from_secs(args.after)).await;
    let after = rss.now_mb();
    let q = |h: &Histogram<u64>, q: f64| {
        if h.is_empty() {
            0.0
        } else {
            ms(h.value_at_quantile(q))
        }
    };
    let flood_ok = counts.ok.load(Ordering::Relaxed);
    println!(
        "health-flood: {} connections x {} streams for {} s ({} connections refused): flood \
         answered {flood_ok} ({:.0}/s), refused {}, failed {}; probe p50/p99 before {:.2}/{:.2} ms, \
         during {:.2}/{:.2} ms ({} answered, other {probe_other:?}); server RSS MB before {before:?} \
         peak {peak:?} after {after:?}",
        args.connections,
        args.streams,
        args.duration,
        connections_refused.load(Ordering::Relaxed),
        flood_ok as f64 / args.duration as f64,
        counts.refused.load(Ordering::Relaxed),
        counts.failed.load(Ordering::Relaxed),
        q(&baseline, 0.5),
        q(&baseline, 0.99),
        q(&during, 0.5),
        q(&during, 0.99),
        during.len(),
    );
    Ok(serde_json::json!({
        "connections": args.connections,
        "streams": args.streams,
        "connections_refused": connections_refused.load(Ordering::Relaxed),
        "flood_ok": flood_ok,
        "flood_refused": counts.refused.load(Ordering::Relaxed),
        "flood_failed": counts.failed.load(Ordering::Relaxed),
        "probe_p50_ms_before": q(&baseline, 0.5),
        "probe_p99_ms_before": q(&baseline, 0.99),
        "probe_p50_ms": q(&during, 0.5),
        "probe_p99_ms": q(&during, 0.99),
        "probe_answered": during.len(),
        "probe_other": probe_other,
        "rss_mb_before": before,
        "rss_mb_peak": peak,
        "rss_mb_after": after,
    }))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    if !args.addr.ip().is_loopback() {
        eprintln!("abuse: --addr must be a loopback address");
        return ExitCode::FAILURE;
    }
    let result = match args.scenario {
        Scenario::Idle | Scenario::HalfHandshake => Ok(connections_scenario(&args).await),
        Scenario::HalfOpen => half_open_scenario(&args).await,
        Scenario::HealthFlood => health_flood_scenario(&args).await,
    };
    match result {
        Ok(mut json) => {
            json["scenario"] = serde_json::json!(format!("{:?}", args.scenario));
            println!("RESULT {json}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("abuse: {e}");
            ExitCode::FAILURE
        }
    }
}
