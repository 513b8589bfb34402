//! A year (or more) of hotel life, simulated against the real server with a
//! clock the simulation moves: many properties, stays of 1 to 7 nights with
//! one or two keys each, some extended, some ended early, every key expiring
//! in the end; the sweeper runs at the end of every simulated day. Each
//! simulated month it reports the hotels' live keys and stored keys, the
//! bytes on disk, the process's resident memory, and Issue and ListKeys
//! throughput (a short burst of each, measured; the Issue burst writes
//! one-hour keys to a property of its own, which expire and are purged like
//! the rest). With retention, disk and memory
//! should stay flat once the retention horizon is reached.
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
    time::{Duration, Instant},
};

use clap::Parser;
use keysmith_api::v1::{self as pb, access_service_client::AccessServiceClient};
use keysmith_core::{service::Clock, Timestamp};
use keysmith_server::{Config, Source};
use tonic::transport::Channel;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Seconds of each measured burst (Issue, then ListKeys) every month.
    #[arg(long, default_value_t = 2.0)]
    burst_seconds: f64,
    /// storage.key_retention_days.
    #[arg(long, default_value_t = 90)]
    retention_days: u64,
    /// storage.audit_retention_days (keysmith's default is 365: with it,
    /// the audit log grows for the whole first year).
    #[arg(long, default_value_t = 365)]
    audit_retention_days: u64,
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
    config.storage.data_dir = dir.join("data");
    config.storage.encryption.key_file = Some(dir.join("kek"));
    config.storage.key_retention_days = args.retention_days;
    config.storage.audit_retention_days = args.audit_retention_days;
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

fn disk_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => disk_bytes(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
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

/// Issue and ListKeys calls a second, each for `seconds`, from 16 tasks.
async fn burst(channel: &Channel, now: i64, seconds: f64, tag: &str) -> (f64, f64) {
    let tag = tag.to_owned();
    let issue = run_burst(channel, seconds, move |mut c, task, n| {
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
    let list = run_burst(channel, seconds, |mut c, task, _| async move {
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

async fn run_burst<F, Fut>(channel: &Channel, seconds: f64, call: F) -> f64
where
    F: Fn(AccessServiceClient<Channel>, usize, u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let tasks: Vec<_> = (0..16)
        .map(|task| {
            let (client, call) = (AccessServiceClient::new(channel.clone()), call.clone());
            tokio::spawn(async move {
                let mut ok = 0u64;
                let mut n = 0;
                while Instant::now() < until {
                    if call(client.clone(), task, n).await {
                        ok += 1;
                    }
                    n += 1;
                }
                ok
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        ok += t.await.unwrap_or(0);
    }
    ok as f64 / seconds
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let clock = Arc::new(SimClock(AtomicI64::new(START)));
    let running =
        keysmith_server::start_with_clock(config(dir.path(), &args)?, clock.clone()).await?;
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
        running.sweep_now().await;

        if (day + 1) % 30 == 0 || day + 1 == args.days as i64 {
            let month = (day + 1 + 29) / 30;
            let now = morning + DAY - 1;
            let (issue_rate, list_rate) =
                burst(&channel, now, args.burst_seconds, &format!("m{month}")).await;
            running.sweep_now().await;
            let (mut live, mut stored) = (0, 0);
            for p in 0..args.properties {
                let property = format!("hotel-{p}");
                live += count(&mut client, &property, false).await;
                stored += count(&mut client, &property, true).await;
            }
            let disk = disk_bytes(dir.path());
            let rss = rss_kb();
            println!(
                "month {month:>2} (day {:>3}): live keys {live:>6}, stored keys {stored:>7}, \
                 disk {:>7.1} MB, RSS {:>6.1} MB, Issue {issue_rate:>7.0}/s, ListKeys \
                 {list_rate:>7.0}/s  [issued {issued}, extended {extended}, ended early \
                 {ended_early}, {:.0} s]",
                day + 1,
                disk as f64 / 1e6,
                rss as f64 / 1e3,
                started.elapsed().as_secs_f64()
            );
            println!(
                "MONTH {}",
                serde_json::json!({
                    "month": month, "day": day + 1, "live_keys": live, "stored_keys": stored,
                    "disk_bytes": disk, "rss_kb": rss, "issue_per_s": issue_rate,
                    "list_per_s": list_rate, "issued": issued,
                })
            );
        }
    }
    running.stop().await?;
    Ok(())
}
