//! Load generator for a running keysmith server.
//!
//! Start the server in one terminal:
//!
//! ```text
//! cargo run --release -- serve
//! ```
//!
//! then, in another terminal:
//!
//! ```text
//! cargo run --release -p keysmith-examples --example loadgen -- --clients 64 --duration 10
//! ```
//!
//! Scenarios (`--scenario issue|list|both`, default `both`, which runs the
//! issue phase and then the list phase):
//!
//! - `issue`: every client loops on `Issue`, one key per request for a
//!   guest with the credential `--mode` (CARD by default, or PIN), on the
//!   entrances of the property that take it (taken round-robin from
//!   `ListEntrances`, only those of `--driver` when given), valid from now
//!   for two days. A key for an entrance that can belong to a reservation
//!   is a stay of its own: it carries a reservation_key of its own, as a
//!   hotel's would.
//! - `list`: every client pages through `ListKeys` with `--page-size`,
//!   following `next_page_token` and wrapping to the first page. It reads
//!   only the token: the keys are skipped undecoded, to leave the shared
//!   cores to the server. If the
//!   property holds fewer than 1,000 keys, enough keys are issued first (not
//!   measured).
//!
//! With `--watchers N`, N `WatchKeys` streams of the property are opened
//! first (on connections of their own, `--watchers-per-connection` each)
//! and held through the phases. Each reads every change as a client would,
//! resuming from its last token when the server ends it with
//! `WATCH_BUFFER_OVERFLOW`; `--watch-holder` makes them watch one holder's
//! keys only (a filter the issued keys do not match). After each phase a
//! `watch:` line counts the changes they received, the resumes and the
//! failures.
//!
//! Each phase runs `--warmup` seconds (not recorded) and then `--duration`
//! seconds (recorded). The `--clients` clients share `--connections` HTTP/2
//! channels round-robin. `--addr` may name several servers (replicas of
//! one keysmith on one database), comma-separated: the connections are
//! spread over them round-robin, and so are the watchers' connections. Latencies of successful requests are recorded in
//! microseconds; errors are counted by gRPC code (a request that does not
//! answer within a few seconds after the end of the phase is counted as
//! `ClientTimeout`). `requests` counts every answer of the measured window,
//! errors included; `throughput` is successful answers per second. Each
//! phase prints a human-readable line and a JSON line prefixed by `RESULT `.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Parser, ValueEnum};

// The server's allocator: glibc's malloc was a large share of the load
// generator's own CPU, which it shares with the server (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use hdrhistogram::Histogram;
use keysmith_api::v1::access_service_client::AccessServiceClient;
use keysmith_api::v1::{
    CredentialMode, IssueRequest, ListEntrancesRequest, ListKeysRequest, Role, WatchKeysRequest,
};
use tokio::time::{timeout, timeout_at, Instant};
use tonic::transport::{Channel, Endpoint};

/// Keys the list scenario wants in the property before it starts.
const LIST_MIN_KEYS: usize = 1_000;
/// How long a request may still run after the end of its phase.
const GRACE: Duration = Duration::from_secs(5);
/// Timeout of the requests made outside the measured loops.
const SETUP_TIMEOUT: Duration = Duration::from_secs(15);
/// Pause of a client after an UNAVAILABLE answer.
const UNAVAILABLE_PAUSE: Duration = Duration::from_millis(10);
/// Highest latency the histograms track, in microseconds (one minute).
const MAX_LATENCY_US: u64 = 60_000_000;

#[derive(Parser, Debug, Clone)]
#[command(about = "Load generator for a running keysmith server")]
struct Args {
    /// Address of the keysmith server; several, comma-separated, for
    /// replicas: the connections go to each in turn.
    #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:50051")]
    addr: Vec<String>,
    /// Property to issue and list keys in.
    #[arg(long, default_value = "demo-hotel")]
    property: String,
    /// Concurrent clients.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    clients: u32,
    /// Measured duration of each phase, in seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    duration: u64,
    /// Warm-up before each phase, in seconds (not recorded).
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Which scenario to run.
    #[arg(long, value_enum, default_value_t = Scenario::Both)]
    scenario: Scenario,
    /// Page size of ListKeys in the list scenario.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i32).range(1..=500))]
    page_size: i32,
    /// HTTP/2 connections shared round-robin by the clients.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    connections: u32,
    /// Write gRPC-framed request bodies for h2load into this directory
    /// (issue.grpc, list.grpc) and exit. h2load sends one body over and over,
    /// so the Issue body has no request_id: every request issues a new key.
    #[arg(long, value_name = "DIR")]
    h2load_bodies: Option<std::path::PathBuf>,
    /// The entrance of the h2load Issue body: one that takes guest keys
    /// without a reservation_key (the body is sent unchanged every time).
    #[arg(long, default_value = "gym")]
    h2load_entrance: String,
    /// The credential mode of the issued keys.
    #[arg(long, value_enum, default_value_t = Mode::Card)]
    mode: Mode,
    /// Only the entrances of this driver (as ListEntrances names it).
    #[arg(long)]
    driver: Option<String>,
    /// A bearer token, for a server with `auth.mode = "tokens"`. It needs
    /// keys.issue, keys.read and keysmith.admin (for ListEntrances); with
    /// keys.read_secrets too, every listed page is a secret read, which the
    /// server audits.
    #[arg(long, env = "LOADGEN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// WatchKeys streams held open through the phases (0: none).
    #[arg(long, default_value_t = 0)]
    watchers: u32,
    /// Watchers per HTTP/2 connection of their own (at most the server's
    /// server.concurrency_per_connection).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    watchers_per_connection: u32,
    /// Watch only this holder's keys (the issued keys have other holders,
    /// so the watchers receive no change; each still looks at every one).
    #[arg(long)]
    watch_holder: Option<String>,
}

/// A request carrying `--token`, when given.
fn authorized<T>(args: &Args, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(token) = &args.token {
        match format!("Bearer {token}").parse() {
            Ok(value) => {
                request.metadata_mut().insert("authorization", value);
            }
            Err(_) => eprintln!("--token is not valid ASCII metadata: sent without it"),
        }
    }
    request
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Card,
    Pin,
}

impl Mode {
    fn proto(self) -> CredentialMode {
        match self {
            Mode::Card => CredentialMode::Card,
            Mode::Pin => CredentialMode::Pin,
        }
    }
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Issue,
    List,
    Both,
}

/// What one client measured.
struct ClientStats {
    hist: Histogram<u64>,
    /// Answers received in the measured window, errors included.
    requests: u64,
    /// Successful answers.
    ok: u64,
    errors: BTreeMap<String, u64>,
}

impl ClientStats {
    fn new() -> Self {
        Self {
            hist: new_histogram(),
            requests: 0,
            ok: 0,
            errors: BTreeMap::new(),
        }
    }

    fn ok(&mut self, started: Instant) {
        self.requests += 1;
        self.ok += 1;
        let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.hist.saturating_record(us.max(1));
    }

    fn error(&mut self, code: String) {
        self.requests += 1;
        *self.errors.entry(code).or_insert(0) += 1;
    }

    fn merge(&mut self, other: ClientStats) {
        self.requests += other.requests;
        self.ok += other.ok;
        for (code, n) in other.errors {
            *self.errors.entry(code).or_insert(0) += n;
        }
        // Same bounds on both sides: adding cannot fail.
        self.hist
            .add(&other.hist)
            .expect("histograms with the same bounds");
    }
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds")
}

/// The deadlines of one phase.
#[derive(Clone, Copy)]
struct Phase {
    /// Requests started before this are not recorded.
    warm_end: Instant,
    /// No request starts after this.
    deadline: Instant,
    /// A request still running at this point is abandoned.
    hard_deadline: Instant,
}

impl Phase {
    fn new(warmup: Duration, duration: Duration) -> Self {
        let now = Instant::now();
        let warm_end = now + warmup;
        let deadline = warm_end + duration;
        Self {
            warm_end,
            deadline,
            hard_deadline: deadline + GRACE,
        }
    }
}

fn code_name(status: &tonic::Status) -> String {
    format!("{:?}", status.code())
}

/// An entrance the load generator issues keys for.
struct Target {
    entrance_id: String,
    /// Whether it can belong to a reservation: its guest keys then carry a
    /// reservation_key, one stay per key.
    reservation: bool,
}

fn issue_request(args: &Args, run: &str, client: &str, n: u64, target: &Target) -> IssueRequest {
    let now = SystemTime::now();
    let id = format!("lg-{run}-{client}-{n}");
    IssueRequest {
        property_id: args.property.clone(),
        reservation_key: if target.reservation {
            id.clone()
        } else {
            String::new()
        },
        request_id: id,
        holder_id: format!("guest-{client}-{n}"),
        entrance_ids: vec![target.entrance_id.clone()],
        starts_at: Some(prost_types::Timestamp::from(now)),
        ends_at: Some(prost_types::Timestamp::from(
            now + Duration::from_secs(2 * 24 * 3600),
        )),
        role: Role::Guest as i32,
        modes: vec![args.mode.proto() as i32],
        ..Default::default()
    }
}

async fn issue_client(
    channel: Channel,
    args: Arc<Args>,
    run: Arc<str>,
    entrances: Arc<Vec<Target>>,
    index: usize,
    phase: Phase,
) -> ClientStats {
    let mut client = AccessServiceClient::new(channel);
    let mut stats = ClientStats::new();
    let name = index.to_string();
    let mut n: u64 = 0;
    loop {
        let started = Instant::now();
        if started >= phase.deadline {
            break;
        }
        let entrance = &entrances[(index + n as usize) % entrances.len()];
        let request = issue_request(&args, &run, &name, n, entrance);
        n += 1;
        let result = timeout_at(
            phase.hard_deadline,
            client.issue(authorized(&args, request)),
        )
        .await;
        record(&mut stats, &phase, started, result).await;
    }
    stats
}

/// A `ListKeysResponse` as the load generator reads it: the keys (field 1)
/// are skipped undecoded, since decoding 50 keys cost the client about as
/// much CPU as the server spent listing them, on the same cores.
#[derive(Clone, PartialEq, prost::Message)]
struct ListKeysPage {
    #[prost(string, tag = "2")]
    next_page_token: String,
}

async fn list_keys_page(
    client: &mut tonic::client::Grpc<Channel>,
    request: tonic::Request<ListKeysRequest>,
) -> Result<tonic::Response<ListKeysPage>, tonic::Status> {
    client
        .ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let codec = tonic_prost::ProstCodec::<ListKeysRequest, ListKeysPage>::default();
    let path =
        tonic::codegen::http::uri::PathAndQuery::from_static("/keysmith.v1.AccessService/ListKeys");
    client.unary(request, path, codec).await
}

async fn list_client(channel: Channel, args: Arc<Args>, phase: Phase) -> ClientStats {
    let mut client = tonic::client::Grpc::new(channel);
    let mut stats = ClientStats::new();
    let mut page_token = String::new();
    loop {
        let started = Instant::now();
        if started >= phase.deadline {
            break;
        }
        let request = ListKeysRequest {
            property_id: args.property.clone(),
            page_size: args.page_size,
            page_token: std::mem::take(&mut page_token),
            ..Default::default()
        };
        let result = timeout_at(
            phase.hard_deadline,
            list_keys_page(&mut client, authorized(&args, request)),
        )
        .await;
        if let Ok(Ok(response)) = &result {
            // An empty token wraps to the first page.
            page_token = response.get_ref().next_page_token.clone();
        }
        record(&mut stats, &phase, started, result).await;
    }
    stats
}

/// Records one answer, unless its request started during the warm-up. After
/// a transport failure (the server is gone), pauses briefly so that the
/// clients do not spin on a dead connection.
async fn record<T>(
    stats: &mut ClientStats,
    phase: &Phase,
    started: Instant,
    result: Result<Result<T, tonic::Status>, tokio::time::error::Elapsed>,
) {
    let unavailable = matches!(&result, Ok(Err(s)) if s.code() == tonic::Code::Unavailable);
    if started >= phase.warm_end {
        match result {
            Ok(Ok(_)) => stats.ok(started),
            Ok(Err(status)) => stats.error(code_name(&status)),
            Err(_) => stats.error("ClientTimeout".to_string()),
        }
    }
    if unavailable {
        let until = (Instant::now() + UNAVAILABLE_PAUSE).min(phase.deadline);
        tokio::time::sleep_until(until).await;
    }
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn report(scenario: &str, args: &Args, stats: &ClientStats, measured: Duration) {
    let secs = measured.as_secs_f64().max(1e-9);
    // Successful answers per second: errors (a dead server answers fast)
    // do not count as throughput.
    let throughput = stats.ok as f64 / secs;
    let errors: u64 = stats.errors.values().sum();
    let h = &stats.hist;
    let (p50, p90, p99, p999, max) = if h.is_empty() {
        (0, 0, 0, 0, 0)
    } else {
        (
            h.value_at_quantile(0.50),
            h.value_at_quantile(0.90),
            h.value_at_quantile(0.99),
            h.value_at_quantile(0.999),
            h.max(),
        )
    };
    let by_code = if stats.errors.is_empty() {
        String::new()
    } else {
        let parts: Vec<String> = stats
            .errors
            .iter()
            .map(|(code, n)| format!("{code}={n}"))
            .collect();
        format!(" ({})", parts.join(", "))
    };
    println!(
        "{scenario}: clients={} requests={} errors={errors}{by_code} throughput={throughput:.1}/s \
         p50={:.2}ms p90={:.2}ms p99={:.2}ms p99.9={:.2}ms max={:.2}ms",
        args.clients,
        stats.requests,
        ms(p50),
        ms(p90),
        ms(p99),
        ms(p999),
        ms(max),
    );
    let json = serde_json::json!({
        "scenario": scenario,
        "clients": args.clients,
        "connections": args.connections,
        "duration_s": secs,
        "requests": stats.requests,
        "errors": errors,
        "errors_by_code": stats.errors,
        "throughput": throughput,
        "p50_ms": ms(p50),
        "p90_ms": ms(p90),
        "p99_ms": ms(p99),
        "p99_9_ms": ms(p999),
        "max_ms": ms(max),
    });
    println!("RESULT {json}");
}

/// Runs one measured phase: spawns the clients, waits for them and reports.
async fn run_phase<F, Fut>(scenario: &str, args: &Args, channels: &[Channel], spawn_client: F)
where
    F: Fn(Channel, usize, Phase) -> Fut,
    Fut: std::future::Future<Output = ClientStats> + Send + 'static,
{
    let phase = Phase::new(
        Duration::from_secs(args.warmup),
        Duration::from_secs(args.duration),
    );
    eprintln!(
        "{scenario}: {} clients over {} connections, {}s warm-up, {}s measured",
        args.clients, args.connections, args.warmup, args.duration
    );
    let mut tasks = Vec::with_capacity(args.clients as usize);
    for index in 0..args.clients as usize {
        let channel = channels[index % channels.len()].clone();
        tasks.push(tokio::spawn(spawn_client(channel, index, phase)));
    }
    let mut total = ClientStats::new();
    let mut panicked = 0;
    for task in tasks {
        match task.await {
            Ok(stats) => total.merge(stats),
            Err(_) => panicked += 1,
        }
    }
    if panicked > 0 {
        eprintln!("{scenario}: {panicked} client task(s) failed");
    }
    let measured = Instant::now().saturating_duration_since(phase.warm_end);
    report(scenario, args, &total, measured);
}

/// An error and its sources, on one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// The endpoints of `--addr`, in order.
fn endpoints(args: &Args) -> Result<Vec<Endpoint>, String> {
    args.addr
        .iter()
        .map(|addr| {
            Endpoint::from_shared(addr.clone())
                .map(|e| e.connect_timeout(Duration::from_secs(5)).tcp_nodelay(true))
                .map_err(|e| format!("invalid --addr {addr:?}: {e}"))
        })
        .collect()
}

/// `--connections` connections, to the `--addr` servers in turn: each
/// server gets as many as the others, give or take one.
async fn connect(args: &Args) -> Result<Vec<Channel>, String> {
    let endpoints = endpoints(args)?;
    if (args.connections as usize) < endpoints.len() {
        return Err(format!(
            "--connections {} is fewer than the {} addresses of --addr",
            args.connections,
            endpoints.len()
        ));
    }
    let mut channels = Vec::with_capacity(args.connections as usize);
    for c in 0..args.connections as usize {
        let endpoint = &endpoints[c % endpoints.len()];
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| format!("cannot connect to {}: {}", endpoint.uri(), error_chain(&e)))?;
        channels.push(channel);
    }
    Ok(channels)
}

/// The entrances of the property (of `--driver`, when given) that take the
/// credential mode.
async fn entrances_for_mode(args: &Args, channel: &Channel) -> Result<Vec<Target>, String> {
    let mut client = AccessServiceClient::new(channel.clone());
    let request = ListEntrancesRequest {
        property_id: args.property.clone(),
        refresh: false,
    };
    let response = timeout(
        SETUP_TIMEOUT,
        client.list_entrances(authorized(args, request)),
    )
    .await
    .map_err(|_| "ListEntrances timed out".to_string())?
    .map_err(|s| format!("ListEntrances failed: {s}"))?;
    let entrances: Vec<Target> = response
        .into_inner()
        .entrances
        .into_iter()
        .filter(|e| args.driver.as_ref().is_none_or(|d| &e.driver == d))
        .filter_map(|e| {
            let c = e.capability?;
            c.modes
                .contains(&(args.mode.proto() as i32))
                .then_some(Target {
                    entrance_id: e.entrance_id,
                    reservation: c.can_belong_to_reservation || c.requires_reservation_for_guests,
                })
        })
        .collect();
    if entrances.is_empty() {
        return Err(format!(
            "property {:?} has no entrance{} taking {:?}",
            args.property,
            args.driver
                .as_ref()
                .map(|d| format!(" of driver {d:?}"))
                .unwrap_or_default(),
            args.mode.proto(),
        ));
    }
    Ok(entrances)
}

/// Issues one key (not measured) and fails with the status if it is refused.
async fn probe_issue(
    args: &Args,
    channel: &Channel,
    run: &str,
    entrance: &Target,
) -> Result<(), String> {
    let mut client = AccessServiceClient::new(channel.clone());
    let request = issue_request(args, run, "probe", 0, entrance);
    timeout(SETUP_TIMEOUT, client.issue(authorized(args, request)))
        .await
        .map_err(|_| "first Issue timed out".to_string())?
        .map_err(|s| format!("first Issue failed: {s}"))?;
    Ok(())
}

/// Counts the (non-revoked) keys of the property, stopping at `limit`.
async fn count_keys(args: &Args, channel: &Channel, limit: usize) -> Result<usize, String> {
    let mut client = AccessServiceClient::new(channel.clone());
    let mut count = 0;
    let mut page_token = String::new();
    loop {
        let request = ListKeysRequest {
            property_id: args.property.clone(),
            page_size: 500,
            page_token,
            ..Default::default()
        };
        let response = timeout(SETUP_TIMEOUT, client.list_keys(authorized(args, request)))
            .await
            .map_err(|_| "ListKeys timed out".to_string())?
            .map_err(|s| format!("ListKeys failed: {s}"))?
            .into_inner();
        count += response.keys.len();
        page_token = response.next_page_token;
        if page_token.is_empty() || count >= limit {
            return Ok(count);
        }
    }
}

/// Issues `missing` keys with up to `--clients` concurrent requests.
async fn seed_keys(
    args: &Arc<Args>,
    channels: &[Channel],
    run: &Arc<str>,
    entrances: &Arc<Vec<Target>>,
    missing: usize,
) {
    let workers = (args.clients as usize).min(missing).max(1);
    let mut tasks = Vec::with_capacity(workers);
    for w in 0..workers {
        let mut client = AccessServiceClient::new(channels[w % channels.len()].clone());
        let (args, run, entrances) = (args.clone(), run.clone(), entrances.clone());
        tasks.push(tokio::spawn(async move {
            let mut failed = 0u64;
            let name = format!("seed{w}");
            for n in (w..missing).step_by(workers) {
                let entrance = &entrances[n % entrances.len()];
                let request = issue_request(&args, &run, &name, n as u64, entrance);
                match timeout(SETUP_TIMEOUT, client.issue(authorized(&args, request))).await {
                    Ok(Ok(_)) => {}
                    _ => failed += 1,
                }
            }
            failed
        }));
    }
    let mut failed = 0;
    for task in tasks {
        failed += task.await.unwrap_or(0);
    }
    if failed > 0 {
        eprintln!("list: {failed} of {missing} seed keys failed to issue");
    }
}

/// What the watchers received, all together.
#[derive(Default)]
struct WatchStats {
    changes: AtomicU64,
    /// Streams ended with WATCH_BUFFER_OVERFLOW and resumed.
    resumed: AtomicU64,
    /// Streams that ended otherwise (not resumed).
    failed: AtomicU64,
}

impl WatchStats {
    fn report(&self, phase: &str, watchers: u32, changes_before: u64, resumed_before: u64) {
        let changes = self.changes.load(Ordering::Relaxed) - changes_before;
        let resumed = self.resumed.load(Ordering::Relaxed) - resumed_before;
        let failed = self.failed.load(Ordering::Relaxed);
        println!(
            "watch ({phase}): watchers={watchers} changes_received={changes} \
             resumed_after_overflow={resumed} failed={failed}"
        );
        let json = serde_json::json!({
            "scenario": format!("watch-{phase}"),
            "watchers": watchers,
            "changes_received": changes,
            "resumed_after_overflow": resumed,
            "failed": failed,
        });
        println!("RESULT {json}");
    }
}

/// Opens `--watchers` watches, each established (its first message read)
/// before this returns, and leaves them reading.
async fn start_watchers(args: &Arc<Args>, stats: &Arc<WatchStats>) -> Result<(), String> {
    let endpoints = endpoints(args)?;
    let mut channel = None;
    let mut ready = Vec::with_capacity(args.watchers as usize);
    for w in 0..args.watchers {
        if w % args.watchers_per_connection == 0 {
            let connection = (w / args.watchers_per_connection) as usize;
            channel = Some(
                endpoints[connection % endpoints.len()]
                    .connect()
                    .await
                    .map_err(|e| format!("cannot connect watchers: {}", error_chain(&e)))?,
            );
        }
        let client = tonic::client::Grpc::new(channel.clone().expect("connected above"));
        let (established, is_ready) = tokio::sync::oneshot::channel();
        ready.push(is_ready);
        tokio::spawn(watch(client, args.clone(), stats.clone(), established));
    }
    for is_ready in ready {
        match timeout(SETUP_TIMEOUT, is_ready).await {
            Ok(Ok(())) => {}
            _ => return Err("a watcher could not start".to_string()),
        }
    }
    eprintln!("{} watchers established", args.watchers);
    Ok(())
}

/// A `WatchKeysResponse` as the load generator reads it: the key (field 2)
/// is skipped undecoded, as the list scenario skips its pages' keys.
#[derive(Clone, PartialEq, prost::Message)]
struct WatchedChange {
    #[prost(string, tag = "3")]
    resume_token: String,
}

async fn watch_keys(
    client: &mut tonic::client::Grpc<Channel>,
    request: tonic::Request<WatchKeysRequest>,
) -> Result<tonic::Streaming<WatchedChange>, tonic::Status> {
    client
        .ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let codec = tonic_prost::ProstCodec::<WatchKeysRequest, WatchedChange>::default();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(
        "/keysmith.v1.AccessService/WatchKeys",
    );
    Ok(client
        .server_streaming(request, path, codec)
        .await?
        .into_inner())
}

/// One watcher: reads every change, resuming after WATCH_BUFFER_OVERFLOW
/// from the last token it received.
async fn watch(
    mut client: tonic::client::Grpc<Channel>,
    args: Arc<Args>,
    stats: Arc<WatchStats>,
    established: tokio::sync::oneshot::Sender<()>,
) {
    let mut established = Some(established);
    let mut token = String::new();
    loop {
        let request = WatchKeysRequest {
            property_id: args.property.clone(),
            holder_id: args.watch_holder.clone().unwrap_or_default(),
            resume_token: token.clone(),
            ..Default::default()
        };
        let mut stream = match watch_keys(&mut client, authorized(&args, request)).await {
            Ok(stream) => stream,
            Err(status) => {
                eprintln!("watch: {status}");
                stats.failed.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        let ended = loop {
            match stream.message().await {
                Ok(Some(message)) => {
                    if let Some(e) = established.take() {
                        let _ = e.send(());
                    } else {
                        stats.changes.fetch_add(1, Ordering::Relaxed);
                    }
                    token = message.resume_token;
                }
                Ok(None) => break None,
                Err(status) => break Some(status),
            }
        };
        match ended {
            Some(status)
                if status.code() == tonic::Code::ResourceExhausted
                    && status.message().contains("server.watch_buffer") =>
            {
                stats.resumed.fetch_add(1, Ordering::Relaxed);
            }
            _ => {
                stats.failed.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let args = Arc::new(args);
    let run: Arc<str> = format!(
        "{:x}",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis()
    )
    .into();

    let channels = connect(&args).await?;
    let entrances = Arc::new(entrances_for_mode(&args, &channels[0]).await?);
    eprintln!(
        "{} {:?} entrance(s) in {:?}, run id {run}",
        entrances.len(),
        args.mode.proto(),
        args.property
    );
    probe_issue(&args, &channels[0], &run, &entrances[0]).await?;
    let watch_stats = Arc::new(WatchStats::default());
    if args.watchers > 0 {
        start_watchers(&args, &watch_stats).await?;
    }

    if matches!(args.scenario, Scenario::Issue | Scenario::Both) {
        let (a, r, e) = (args.clone(), run.clone(), entrances.clone());
        let changes = watch_stats.changes.load(Ordering::Relaxed);
        let resumed = watch_stats.resumed.load(Ordering::Relaxed);
        run_phase("issue", &args, &channels, move |client, index, phase| {
            issue_client(client, a.clone(), r.clone(), e.clone(), index, phase)
        })
        .await;
        if args.watchers > 0 {
            watch_stats.report("issue", args.watchers, changes, resumed);
        }
    }

    if matches!(args.scenario, Scenario::List | Scenario::Both) {
        let have = count_keys(&args, &channels[0], LIST_MIN_KEYS).await?;
        if have < LIST_MIN_KEYS {
            let missing = LIST_MIN_KEYS - have;
            eprintln!("list: property has {have} keys, issuing {missing} more");
            seed_keys(&args, &channels, &run, &entrances, missing).await;
        }
        let a = args.clone();
        run_phase("list", &args, &channels, move |client, _index, phase| {
            list_client(client, a.clone(), phase)
        })
        .await;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(dir) = &args.h2load_bodies {
        return match write_h2load_bodies(&args, dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("loadgen: {e}");
                ExitCode::FAILURE
            }
        };
    }
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One gRPC message frame: uncompressed flag, big-endian length, message.
fn grpc_frame(message: &impl prost::Message) -> Vec<u8> {
    let body = message.encode_to_vec();
    let mut frame = Vec::with_capacity(body.len() + 5);
    frame.push(0);
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    frame
}

fn write_h2load_bodies(args: &Args, dir: &std::path::Path) -> Result<(), String> {
    // Every h2load request is this same body, so it carries no
    // reservation_key: the entrance must take guest keys without one (a
    // common door such as the gym).
    let target = Target {
        entrance_id: args.h2load_entrance.clone(),
        reservation: false,
    };
    let mut issue = issue_request(args, "h2load", "h2load", 0, &target);
    issue.request_id.clear();
    // A long window, so that the body stays valid for days of benchmarking.
    let now = SystemTime::now();
    issue.ends_at = Some(prost_types::Timestamp::from(
        now + Duration::from_secs(365 * 24 * 3600),
    ));
    let list = ListKeysRequest {
        property_id: args.property.clone(),
        page_size: args.page_size,
        ..Default::default()
    };
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for (name, frame) in [
        ("issue.grpc", grpc_frame(&issue)),
        ("list.grpc", grpc_frame(&list)),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, frame).map_err(|e| format!("{}: {e}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
