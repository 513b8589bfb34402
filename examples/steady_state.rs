//! A year (or more) of hotel life, simulated against the real server with a
//! clock the simulation moves: many properties, stays of 1 to 7 nights with
//! one or two keys each, some extended, some ended early, every key expiring
//! in the end; the sweeper runs at the end of every simulated day. Each
//! simulated month it reports the hotels' live keys and stored keys, the
//! bytes on disk, the process's resident memory (and the listing cache's
//! share of it), the full compactions the sweeps ran, and Issue and ListKeys
//! throughput (a burst of each, measured; the Issue burst writes one-hour
//! keys to a property of its own, which expire and are purged like the
//! rest). With retention, disk and memory should stay flat once the
//! retention horizon is reached.
//!
//! The bursts are a fixed number of calls, not a fixed time, so that every
//! simulated month writes the same however fast the machine is: a level on
//! disk is then the store's, not the machine's. The server runs as the
//! `keysmith` binary runs it: the same allocator, which gives freed memory
//! back when a worker parks (src/memory.rs).
//!
//! ```text
//! cargo run --release --example steady_state -- --properties 20 --rooms 50 --days 365
//! ```
//!
//! It prints one line per month and a JSON line prefixed by `MONTH `.
use std::{
    path::Path,
    sync::{
        atomic::{AtomicI64, Ordering},
        Arc,
    },
    time::Instant,
};

use clap::Parser;
#[path = "../src/memory.rs"]
#[allow(dead_code)]
mod memory;
use keysmith_api::v1::{self as pb, access_service_client::AccessServiceClient};
use keysmith_core::{service::Clock, Timestamp};
use keysmith_server::{Config, Source};
use tonic::transport::Channel;

#[global_allocator]
static ALLOCATOR: memory::ReturningAllocator = memory::ReturningAllocator;

#[derive(Parser)]
struct Args {
    /// Properties (hotels).
    #[arg(long, default_value_t = 20)]
    properties: usize,
    /// Rooms per property.
    #[arg(long, default_value_t = 50)]
    rooms: usize,
    /// Simulated days.
    #[arg(long, default_value_t = 365)]
    days: usize,
    /// Issue calls in each month's burst (one-hour keys to a property of
    /// their own).
    #[arg(long, default_value_t = 10_000)]
    burst_issues: u64,
    /// ListKeys pages (of 50) in each month's burst.
    #[arg(long, default_value_t = 20_000)]
    burst_pages: u64,
    /// storage.key_retention_days.
    #[arg(long, default_value_t = 90)]
    retention_days: u64,
    /// storage.audit_retention_days (keysmith's default is 365: with it,
    /// the audit log grows for the whole first year).
    #[arg(long, default_value_t = 365)]
    audit_retention_days: u64,
    /// Where to keep the data (its `data` directory and key file), left
    /// there at the end for `store_report`; by default a temporary
    /// directory, removed at the end.
    #[arg(long)]
    keep_in: Option<std::path::PathBuf>,
    /// storage.memory_budget_mb (keysmith's default is 256).
    #[arg(long, default_value_t = 256)]
    memory_budget_mb: usize,
}

struct SimClock(AtomicI64);

impl Clock for SimClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_unix_seconds(self.0.load(Ordering::SeqCst))
    }
}

const DAY: i64 = 86_400;
/// The property the throughput bursts issue to.
const BENCH: &str = "bench";
/// 2030-01-01: the simulation's first morning.
const START: i64 = 1_893_456_000;

/// A tiny deterministic generator, so that runs are comparable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn config(dir: &Path, args: &Args) -> anyhow::Result<Config> {
    let mut config = Config::load_with_env(Source::Embedded, false)?;
    config.server.listen = "127.0.0.1:0".parse()?;
    config.metrics.listen = "127.0.0.1:0".parse()?;
    // Each month's reading of the store is taken then, not 15 s before.
    config.metrics.sample_interval_seconds = 0;
    config.storage.data_dir = dir.join("data");
    config.storage.encryption.key_file = Some(dir.join("kek"));
    config.storage.key_retention_days = args.retention_days;
    config.storage.audit_retention_days = args.audit_retention_days;
    config.storage.memory_budget_mb = args.memory_budget_mb;
    // The simulation sweeps at the end of every simulated day itself.
    config.storage.sweep_interval_seconds = 365 * 86_400;
    let mut properties: Vec<serde_json::Value> = (0..args.properties)
        .map(|p| {
            let entrances: Vec<serde_json::Value> = (0..args.rooms)
                .map(|r| serde_json::json!({ "id": format!("room-{r}"), "kind": "room" }))
                .chain([serde_json::json!({ "id": "lobby", "kind": "common" })])
                .collect();
            serde_json::json!({ "property_id": format!("hotel-{p}"), "entrances": entrances })
        })
        .collect();
    // The monthly Issue burst writes here, apart from the simulated hotels
    // whose keys are counted.
    properties.push(serde_json::json!({
        "property_id": BENCH,
        "entrances": [{ "id": "lobby", "kind": "common" }],
    }));
    config.drivers.offline_lock = Some(serde_json::from_value(serde_json::json!({
        "site_secret": "steady-state simulation secret",
        "properties": properties,
    }))?);
    Ok(config)
}

/// A stay in a room: its reservation and keys, and when it ends.
struct Stay {
    reservation_key: String,
    keys: Vec<String>,
    ends: i64,
}

fn ts(s: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: s,
        nanos: 0,
    }
}

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// What the server's `/metrics` reads of its store: its data directory's
/// bytes on disk (allocated blocks, as `du` counts them) and what the
/// listing cache counts itself as holding.
struct StoreReading {
    disk_bytes: u64,
    listing_cache_bytes: u64,
}

async fn store_reading(metrics: std::net::SocketAddr) -> anyhow::Result<StoreReading> {
    let text = reqwest::get(format!("http://{metrics}/metrics"))
        .await?
        .text()
        .await?;
    let gauge = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(|v| v as u64)
            .ok_or_else(|| anyhow::anyhow!("no {name} in /metrics"))
    };
    Ok(StoreReading {
        disk_bytes: gauge("keysmith_store_size_bytes")?,
        listing_cache_bytes: gauge("keysmith_listing_cache_bytes")?,
    })
}

async fn count(client: &mut AccessServiceClient<Channel>, property: &str, ended: bool) -> usize {
    let mut token = String::new();
    let mut n = 0;
    loop {
        let page = client
            .list_keys(pb::ListKeysRequest {
                property_id: property.into(),
                page_size: 500,
                page_token: token,
                include_revoked: ended,
                ..Default::default()
            })
            .await
            .expect("listing")
            .into_inner();
        n += page.keys.len();
        if page.next_page_token.is_empty() {
            return n;
        }
        token = page.next_page_token;
    }
}

/// `issues` Issue calls, then `pages` ListKeys calls, from 16 tasks; each
/// one's rate in calls a second.
async fn burst(channel: &Channel, now: i64, issues: u64, pages: u64, tag: &str) -> (f64, f64) {
    let tag = tag.to_owned();
    let issue = run_burst(channel, issues, move |mut c, task, n| {
        let tag = tag.clone();
        async move {
            c.issue(pb::IssueRequest {
                property_id: BENCH.into(),
                holder_id: format!("burst-{tag}-{task}-{n}"),
                entrance_ids: vec!["lobby".into()],
                starts_at: Some(ts(now)),
                ends_at: Some(ts(now + 3600)),
                modes: vec![pb::CredentialMode::Card as i32],
                ..Default::default()
            })
            .await
            .is_ok()
        }
    })
    .await;
    let list = run_burst(channel, pages, |mut c, task, _| async move {
        c.list_keys(pb::ListKeysRequest {
            property_id: format!("hotel-{}", task % 4),
            page_size: 50,
            ..Default::default()
        })
        .await
        .is_ok()
    })
    .await;
    (issue, list)
}

const BURST_TASKS: u64 = 16;

/// `calls` calls shared among [`BURST_TASKS`] tasks; successful calls a
/// second. A call that fails is not retried: every burst makes the same
/// number of calls.
async fn run_burst<F, Fut>(channel: &Channel, calls: u64, call: F) -> f64
where
    F: Fn(AccessServiceClient<Channel>, u64, u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let started = Instant::now();
    let tasks: Vec<_> = (0..BURST_TASKS)
        .map(|task| {
            let (client, call) = (AccessServiceClient::new(channel.clone()), call.clone());
            // The first `calls % BURST_TASKS` tasks make one call more.
            let share = calls / BURST_TASKS + u64::from(task < calls % BURST_TASKS);
            tokio::spawn(async move {
                let mut ok = 0u64;
                for n in 0..share {
                    if call(client.clone(), task, n).await {
                        ok += 1;
                    }
                }
                ok
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        ok += t.await.unwrap_or(0);
    }
    ok as f64 / started.elapsed().as_secs_f64()
}

fn main() -> anyhow::Result<()> {
    // The runtime keysmith serves on: a worker that parks gives back what was freed.
    memory::runtime()?.block_on(simulate(Args::parse()))
}

async fn simulate(args: Args) -> anyhow::Result<()> {
    let temporary = tempfile::tempdir()?;
    let dir = match &args.keep_in {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            dir.as_path()
        }
        None => temporary.path(),
    };
    let clock = Arc::new(SimClock(AtomicI64::new(START)));
    let config = config(dir, &args)?;
    memory::set_return_after_mb(config.server.return_freed_memory_mb);
    let running = keysmith_server::start_with_clock(config, clock.clone()).await?;
    let metrics = running
        .metrics_addr
        .ok_or_else(|| anyhow::anyhow!("metrics are off"))?;
    let channel = Channel::from_shared(format!("http://{}", running.addr))?
        .connect()
        .await?;
    let mut client = AccessServiceClient::new(channel.clone());
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    // Each room's current stay.
    let mut stays: Vec<Vec<Option<Stay>>> = (0..args.properties)
        .map(|_| (0..args.rooms).map(|_| None).collect())
        .collect();
    let (mut issued, mut extended, mut ended_early) = (0u64, 0u64, 0u64);
    // Full compactions the sweeps ran to drop tombstones, and what they gave back.
    let (mut compactions, mut reclaimed) = (0u64, 0u64);
    let started = Instant::now();
    for day in 0..args.days as i64 {
        let morning = START + day * DAY;
        clock.0.store(morning, Ordering::SeqCst);
        for (p, rooms) in stays.iter_mut().enumerate() {
            let property = format!("hotel-{p}");
            for (r, slot) in rooms.iter_mut().enumerate() {
                let room = format!("room-{r}");
                match slot {
                    Some(stay) if stay.ends > morning => {
                        // Now and then a stay is extended by a night, or ends early.
                        match rng.below(100) {
                            0..=1 => {
                                stay.ends += DAY;
                                for key_id in &stay.keys {
                                    let updated = client
                                        .update_key(pb::UpdateKeyRequest {
                                            property_id: property.clone(),
                                            key_id: key_id.clone(),
                                            starts_at: Some(ts(morning)),
                                            ends_at: Some(ts(stay.ends)),
                                            ..Default::default()
                                        })
                                        .await;
                                    if updated.is_ok() {
                                        extended += 1;
                                    }
                                }
                            }
                            2 => {
                                let _ = client
                                    .revoke(pb::RevokeRequest {
                                        property_id: property.clone(),
                                        target: Some(pb::revoke_request::Target::ReservationKey(
                                            stay.reservation_key.clone(),
                                        )),
                                        ..Default::default()
                                    })
                                    .await;
                                ended_early += 1;
                                *slot = None;
                            }
                            _ => {}
                        }
                    }
                    _ => {
                        // The room is free: a new stay of 1 to 7 nights, checking
                        // in at 15:00 and out at 11:00, with one or two guests.
                        let nights = 1 + rng.below(7) as i64;
                        let (starts, ends) =
                            (morning + 15 * 3600, morning + nights * DAY + 11 * 3600);
                        let reservation_key = format!("stay-{p}-{r}-{day}");
                        let mut keys = Vec::new();
                        for guest in 0..1 + rng.below(2) {
                            let key = client
                                .issue(pb::IssueRequest {
                                    property_id: property.clone(),
                                    request_id: format!("{reservation_key}-{guest}"),
                                    holder_id: format!("guest-{p}-{r}-{day}-{guest}"),
                                    entrance_ids: vec![room.clone(), "lobby".into()],
                                    starts_at: Some(ts(starts)),
                                    ends_at: Some(ts(ends)),
                                    reservation_key: reservation_key.clone(),
                                    modes: vec![pb::CredentialMode::Card as i32],
                                    ..Default::default()
                                })
                                .await?
                                .into_inner()
                                .key
                                .ok_or_else(|| anyhow::anyhow!("no key"))?;
                            keys.push(key.key_id);
                            issued += 1;
                        }
                        *slot = Some(Stay {
                            reservation_key,
                            keys,
                            ends,
                        });
                    }
                }
            }
        }
        // The end of the day: the sweeper runs.
        clock.0.store(morning + DAY - 1, Ordering::SeqCst);
        let swept = running.sweep_now().await;
        if swept.reclaimed_bytes > 0 {
            compactions += 1;
            reclaimed += swept.reclaimed_bytes;
        }

        if (day + 1) % 30 == 0 || day + 1 == args.days as i64 {
            let month = (day + 1 + 29) / 30;
            let now = morning + DAY - 1;
            let (issue_rate, list_rate) = burst(
                &channel,
                now,
                args.burst_issues,
                args.burst_pages,
                &format!("m{month}"),
            )
            .await;
            let swept = running.sweep_now().await;
            if swept.reclaimed_bytes > 0 {
                compactions += 1;
                reclaimed += swept.reclaimed_bytes;
            }
            let (mut live, mut stored) = (0, 0);
            for p in 0..args.properties {
                let property = format!("hotel-{p}");
                live += count(&mut client, &property, false).await;
                stored += count(&mut client, &property, true).await;
            }
            let rss = rss_kb();
            let StoreReading {
                disk_bytes: disk,
                listing_cache_bytes: cache,
            } = store_reading(metrics).await?;
            println!(
                "month {month:>2} (day {:>3}): live keys {live:>6}, stored keys {stored:>7}, \
                 disk {:>7.1} MB, RSS {:>6.1} MB (listing cache {:>5.1} MB), Issue \
                 {issue_rate:>7.0}/s, ListKeys {list_rate:>7.0}/s  [issued {issued}, extended \
                 {extended}, ended early {ended_early}, {compactions} full compactions \
                 ({:.0} MB given back), {:.0} s]",
                day + 1,
                disk as f64 / 1e6,
                rss as f64 / 1e3,
                cache as f64 / 1e6,
                reclaimed as f64 / 1e6,
                started.elapsed().as_secs_f64()
            );
            println!(
                "MONTH {}",
                serde_json::json!({
                    "month": month, "day": day + 1, "live_keys": live, "stored_keys": stored,
                    "disk_bytes": disk, "rss_kb": rss, "listing_cache_bytes": cache, "issue_per_s": issue_rate,
                    "list_per_s": list_rate, "issued": issued,
                    "full_compactions": compactions, "reclaimed_bytes": reclaimed,
                })
            );
        }
    }
    running.stop().await?;
    Ok(())
}
