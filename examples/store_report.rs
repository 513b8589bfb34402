//! Where a data directory's bytes go, by kind of record, per key: run it on
//! a stopped keysmith's data directory, or let it fill a fresh one first.
//!
//! ```text
//! cargo run --release --example store_report -- ./keysmith-data
//! # a fresh directory filled with 100,000 Issues through the real server
//! # (each with a request_id and a reservation of its own, to a room of the
//! # embedded default's demo hotel, 64 in flight), then reported:
//! cargo run --release --example store_report -- /tmp/bytes-data --load 100000
//! ```
//!
//! Each Issue writes what a guest's key costs: the key record, its index
//! and sweeper entries, its reservation, its idempotency record, its audit
//! record, its change log record and the lock's own state.
use std::{
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant, SystemTime},
};

use clap::Parser;
use keysmith_api::v1::{self as pb, access_service_client::AccessServiceClient};
use keysmith_server::{Config, Source};
use tonic::transport::Channel;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
struct Args {
    /// The data directory to report on.
    #[arg(default_value = "./keysmith-data")]
    dir: PathBuf,
    /// Fill the (new) directory with this many Issues first.
    #[arg(long)]
    load: Option<u64>,
    /// Issues in flight while loading.
    #[arg(long, default_value_t = 64)]
    in_flight: u64,
}

/// The demo hotel's guest rooms: every Issue establishes a reservation at one.
const ROOMS: [&str; 5] = ["room-101", "room-102", "room-201", "room-203", "room-401"];

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(n) = args.load {
        tokio::runtime::Runtime::new()?.block_on(load(&args.dir, n, args.in_flight))?;
    }
    report(&args.dir)
}

async fn load(dir: &Path, n: u64, in_flight: u64) -> anyhow::Result<()> {
    anyhow::ensure!(
        !dir.join("data").exists(),
        "{} already holds a data directory: --load fills a new one",
        dir.display()
    );
    std::fs::create_dir_all(dir)?;
    let mut config = Config::load_with_env(Source::Embedded, false)?;
    config.server.listen = "127.0.0.1:0".parse()?;
    config.metrics.listen = "127.0.0.1:0".parse()?;
    config.storage.data_dir = dir.join("data");
    // The key lives beside the data directory, not in it.
    config.storage.encryption.key_file = Some(dir.join("kek"));
    config.storage.encryption.generate_if_missing = true;
    config.log.filter = "warn".into();
    let running = keysmith_server::start(config).await?;
    let channel = Channel::from_shared(format!("http://{}", running.addr))?
        .connect()
        .await?;
    let next = Arc::new(AtomicU64::new(0));
    let now = SystemTime::now();
    let started = Instant::now();
    let tasks: Vec<_> = (0..in_flight)
        .map(|_| {
            let (mut client, next) = (AccessServiceClient::new(channel.clone()), next.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        return Ok::<_, tonic::Status>(());
                    }
                    let id = format!("load-{i}");
                    client
                        .issue(pb::IssueRequest {
                            property_id: "demo-hotel".into(),
                            request_id: id.clone(),
                            reservation_key: id,
                            holder_id: format!("guest-{i}"),
                            entrance_ids: vec![ROOMS[i as usize % ROOMS.len()].into()],
                            starts_at: Some(prost_types::Timestamp::from(now)),
                            ends_at: Some(prost_types::Timestamp::from(
                                now + Duration::from_secs(2 * 24 * 3600),
                            )),
                            role: pb::Role::Guest as i32,
                            modes: vec![pb::CredentialMode::Card as i32],
                            ..Default::default()
                        })
                        .await?;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    println!(
        "loaded {n} Issues in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    drop(channel);
    running.stop().await?;
    Ok(())
}

fn report(dir: &Path) -> anyhow::Result<()> {
    // A directory `--load` filled keeps its data one level down.
    let data = if dir.join("data").is_dir() {
        dir.join("data")
    } else {
        dir.to_path_buf()
    };
    let report = keysmith_store::SpaceReport::of(&data)?;
    let keys: usize = report
        .kinds
        .iter()
        .filter(|(kind, _)| kind.starts_with("key records"))
        .map(|(_, (n, _, _))| n)
        .sum();
    let per_key = |bytes: u64| bytes as f64 / keys.max(1) as f64;
    println!("{keys} keys; {} bytes on disk", report.disk_bytes);
    println!(
        "{:<34} {:>10} {:>12} {:>12} {:>10}",
        "kind", "entries", "key bytes", "value bytes", "per key"
    );
    let mut logical = 0;
    for (kind, (n, k, v)) in &report.kinds {
        logical += k + v;
        println!(
            "{kind:<34} {n:>10} {k:>12} {v:>12} {:>10.0}",
            per_key((k + v) as u64)
        );
    }
    println!(
        "{:<34} {:>10} {:>12} {:>12} {:>10.0}",
        "all records",
        "",
        "",
        logical,
        per_key(logical as u64)
    );
    for (file, bytes) in &report.files {
        println!(
            "{:<34} {:>10} {:>12} {bytes:>12} {:>10.0}",
            format!("file {file}"),
            "",
            "",
            per_key(*bytes)
        );
    }
    println!(
        "{:<34} {:>10} {:>12} {:>12} {:>10.0}",
        "on disk (every file)",
        "",
        "",
        report.disk_bytes,
        per_key(report.disk_bytes)
    );
    Ok(())
}
