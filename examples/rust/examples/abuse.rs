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
//!   checks in flight each, for `--duration` seconds (this program's own
//!   clients, or h2load with `--h2load`), while a probe on a connection,
//!   a thread and a runtime of its own checks health one call at a time;
//!   the probe's latency is reported for 3 s before and during the flood.
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
    /// health-flood: flood with h2load (Debian's nghttp2-client) instead
    /// of this program's own HTTP/2 clients.
    #[arg(long)]
    h2load: bool,
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
    F: Fn(SocketAddr, Instant, Connecting) -> Fut,
    Fut: std::future::Future<Output = End> + Send + 'static,
{
    let watch_until = Instant::now() + Duration::from_secs(args.duration);
    let connecting = Arc::new(Semaphore::new(CONNECTING_AT_ONCE));
    let mut tasks = JoinSet::new();
    for _ in 0..args.connections {
        let permit = connecting.clone().acquire_owned().await.expect("open");
        tasks.spawn(open_one(args.addr, watch_until, permit));
    }
    let mut ends = Ends::default();
    while let Some(end) = tasks.join_next().await {
        ends.add(end.unwrap_or(End::Failed));
    }
    ends
}

/// A place among the connections being opened; dropped once connected.
type Connecting = tokio::sync::OwnedSemaphorePermit;

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

async fn idle_connection(addr: SocketAddr, until: Instant, connecting: Connecting) -> End {
    let opened = Instant::now();
    let Ok(h2) = H2::connect(addr).await else {
        return End::Refused;
    };
    if h2.call(HEALTH_CHECK, None, &[]).await != "0" {
        return End::Refused;
    }
    drop(connecting);
    // Idle from now on: the connection's task ends when the server closes it.
    match tokio::time::timeout_at(until, h2.connection).await {
        Ok(_) => End::Closed(opened.elapsed()),
        Err(_) => End::Open,
    }
}

async fn half_handshake_connection(
    addr: SocketAddr,
    until: Instant,
    connecting: Connecting,
) -> End {
    let opened = Instant::now();
    let Ok(mut tcp) = TcpStream::connect(addr).await else {
        return End::Failed;
    };
    if tcp.write_all(b"PRI * HTTP/2.0\r\n").await.is_err() {
        return End::Refused;
    }
    drop(connecting);
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
    // The server takes each call's headers in its own time: let it have
    // seen all of them before the whole call.
    tokio::time::sleep(Duration::from_millis(500)).await;
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

/// What the probe measured: latencies of answered checks, other answers by
/// status.
struct Probed {
    latencies: Histogram<u64>,
    other: BTreeMap<String, u64>,
}

/// Checks health one call at a time until `until`.
async fn probe(h2: &H2, until: Instant) -> Probed {
    let mut probed = Probed {
        latencies: histogram(),
        other: BTreeMap::new(),
    };
    while Instant::now() < until {
        let started = Instant::now();
        let status = h2.call(HEALTH_CHECK, None, &[]).await;
        if status == "0" {
            let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            probed.latencies.saturating_record(us.max(1));
        } else {
            *probed.other.entry(status).or_insert(0) += 1;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    probed
}

/// The health probe, on a thread and runtime of its own, so that its
/// latencies are the server's and not those of the flood's tasks in this
/// process: `baseline` of checks, then `flood_starts` is told, then checks
/// for `duration`.
fn spawn_probe(
    addr: SocketAddr,
    baseline: Duration,
    duration: Duration,
    flood_starts: tokio::sync::oneshot::Sender<()>,
) -> std::thread::JoinHandle<Result<(Probed, Probed), String>> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime.block_on(async move {
            let h2 = H2::connect(addr).await?;
            let before = probe(&h2, Instant::now() + baseline).await;
            let _ = flood_starts.send(());
            let during = probe(&h2, Instant::now() + duration).await;
            Ok((before, during))
        })
    })
}

#[derive(Default)]
struct FloodCounts {
    ok: AtomicU64,
    refused: AtomicU64,
    failed: AtomicU64,
}

impl FloodCounts {
    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "ok": self.ok.load(Ordering::Relaxed),
            "refused": self.refused.load(Ordering::Relaxed),
            "failed": self.failed.load(Ordering::Relaxed),
        })
    }
}

/// `--connections` connections with `--streams` callers each, checking
/// health until `until`.
async fn builtin_flood(args: &Args, until: Instant) -> serde_json::Value {
    let counts = Arc::new(FloodCounts::default());
    let mut flood = JoinSet::new();
    for _ in 0..args.connections {
        let counts = counts.clone();
        let (addr, streams) = (args.addr, args.streams);
        flood.spawn(async move {
            let Ok(h2) = H2::connect(addr).await else {
                counts.failed.fetch_add(1, Ordering::Relaxed);
                return;
            };
            let h2 = Arc::new(h2);
            let mut calls = JoinSet::new();
            for _ in 0..streams {
                let (h2, counts) = (h2.clone(), counts.clone());
                calls.spawn(async move {
                    while Instant::now() < until {
                        let counter = match h2.call(HEALTH_CHECK, None, &[]).await.as_str() {
                            "0" => &counts.ok,
                            "8" => &counts.refused,
                            _ => &counts.failed,
                        };
                        counter.fetch_add(1, Ordering::Relaxed);
                        // A connection the server closed (or refused) is
                        // not used again.
                        if h2.connection.is_finished() {
                            return;
                        }
                    }
                });
            }
            while calls.join_next().await.is_some() {}
            h2.connection.abort();
        });
    }
    while flood.join_next().await.is_some() {}
    counts.json()
}

/// The same flood by h2load (Debian's nghttp2-client), as the figures
/// before these limits were measured; its summary lines.
async fn h2load_flood(args: &Args) -> Result<serde_json::Value, String> {
    let body = std::env::temp_dir().join("keysmith-abuse-health-check.grpc");
    std::fs::write(&body, grpc_frame(&[])).map_err(|e| e.to_string())?;
    let output = tokio::process::Command::new("h2load")
        .args(["-c", &args.connections.to_string()])
        .args(["-m", &args.streams.to_string()])
        .args(["-D", &args.duration.to_string()])
        .args(["-t", "1"])
        .arg("--data")
        .arg(&body)
        .args(["-H", "content-type: application/grpc", "-H", "te: trailers"])
        .arg(format!("http://{}{HEALTH_CHECK}", args.addr))
        .output()
        .await
        .map_err(|e| format!("h2load: {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let summary: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("requests:") || l.starts_with("finished in"))
        .collect();
    Ok(serde_json::json!({ "h2load": summary }))
}

async fn health_flood_scenario(args: &Args) -> Result<serde_json::Value, String> {
    let duration = Duration::from_secs(args.duration);
    let (flood_starts, starting) = tokio::sync::oneshot::channel();
    let prober = spawn_probe(args.addr, Duration::from_secs(3), duration, flood_starts);
    starting
        .await
        .map_err(|_| "the probe could not connect".to_string())?;
    let before = Rss::read(args.server_pid).map(|kb| kb as f64 / 1024.0);
    let rss = Rss::sample(args.server_pid);
    let flood = if args.h2load {
        h2load_flood(args).await?
    } else {
        builtin_flood(args, Instant::now() + duration).await
    };
    let peak = rss.peak_mb();
    rss.stop();
    let (baseline, during) = prober
        .join()
        .map_err(|_| "the probe failed".to_string())??;
    tokio::time::sleep(Duration::from_secs(args.after)).await;
    let after = rss.now_mb();
    let q = |h: &Histogram<u64>, q: f64| {
        if h.is_empty() {
            0.0
        } else {
            ms(h.value_at_quantile(q))
        }
    };
    let (b, d) = (&baseline.latencies, &during.latencies);
    println!(
        "health-flood: {} connections x {} streams for {} s, flood {flood}; probe p50/p99 before \
         {:.2}/{:.2} ms, during {:.2}/{:.2} ms ({} answered, other {:?}); server RSS MB before \
         {before:?} peak {peak:?} after {after:?}",
        args.connections,
        args.streams,
        args.duration,
        q(b, 0.5),
        q(b, 0.99),
        q(d, 0.5),
        q(d, 0.99),
        d.len(),
        during.other,
    );
    Ok(serde_json::json!({
        "connections": args.connections,
        "streams": args.streams,
        "flood": flood,
        "probe_p50_ms_before": q(b, 0.5),
        "probe_p99_ms_before": q(b, 0.99),
        "probe_p50_ms": q(d, 0.5),
        "probe_p99_ms": q(d, 0.99),
        "probe_answered": d.len(),
        "probe_other": during.other,
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
