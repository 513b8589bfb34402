//! What one call through the plugin boundary costs, without gRPC or the
//! store around it: `issue` on the example keypad driver loaded from its
//! shared library (encode, the C call on a blocking thread, decode) against
//! the same driver linked in (`InProcess`). BENCHMARKS.md has the figures.
//!
//! ```text
//! cargo build --release -p keysmith-keypad-plugin
//! cargo run --release --example plugin_call_cost -- --plugin target/release/libkeysmith_keypad_plugin.so
//! ```
use std::{path::PathBuf, sync::Arc, time::Instant};

use clap::Parser;
use keysmith_core::{
    driver::{EntranceTarget, IssueArgs},
    key::{Behaviour, Holder},
    CredentialMode, Driver, Role, Timestamp, Window,
};
use keysmith_keypad_plugin::KeypadDriver;
use keysmith_plugin::InProcess;
use keysmith_plugin_host::PluginSpec;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
struct Args {
    /// The keypad plugin's shared library.
    #[arg(long)]
    plugin: PathBuf,
    /// Measured calls per round.
    #[arg(long, default_value_t = 20_000)]
    calls: usize,
    /// Calls in flight at once.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Rounds per driver, alternating; the median is reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

const DOORS: usize = 64;

fn config() -> Vec<u8> {
    let doors: Vec<_> = (0..DOORS)
        .map(|i| serde_json::json!({ "id": format!("door-{i}") }))
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "properties": [{ "property_id": "bench", "doors": doors }],
    }))
    .expect("JSON")
}

fn args_for(n: usize, round: &str) -> IssueArgs {
    IssueArgs {
        key_id: format!("{round}-{n:08}"),
        property_id: "bench".into(),
        holder: Holder {
            id: format!("guest-{n}"),
            name: None,
        },
        role: Role::Guest,
        window: Window {
            starts_at: Timestamp::from_unix_seconds(1_900_000_000),
            ends_at: Timestamp::from_unix_seconds(1_900_172_800),
        },
        reservation: None,
        entrances: vec![EntranceTarget {
            entrance_id: format!("door-{}", n % DOORS),
            behaviour: Behaviour::Standard,
        }],
        modes: vec![CredentialMode::Pin],
        pin: None,
    }
}

/// Mean microseconds per call over `calls` calls, `concurrency` at a time.
async fn round(driver: Arc<dyn Driver>, label: &str, calls: usize, concurrency: usize) -> f64 {
    let started = Instant::now();
    let mut workers = Vec::with_capacity(concurrency);
    for w in 0..concurrency {
        let driver = driver.clone();
        let label = label.to_owned();
        workers.push(tokio::spawn(async move {
            for n in (w..calls).step_by(concurrency) {
                driver.issue(args_for(n, &label)).await.expect("issued");
            }
        }));
    }
    for w in workers {
        w.await.expect("worker");
    }
    started.elapsed().as_secs_f64() * 1e6 / calls as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let plugin = keysmith_plugin_host::load(&PluginSpec {
        name: "keypad".into(),
        path: args.plugin.clone(),
        sha256: None,
        config: config(),
    })?;
    let built_in: Arc<dyn Driver> = Arc::new(InProcess::new(
        KeypadDriver::from_config(&config()).map_err(|e| anyhow::anyhow!("{e}"))?,
    ));
    // Warm both up (threads, allocator, caches) before measuring.
    round(plugin.clone(), "warm-p", 2_000, args.concurrency).await;
    round(built_in.clone(), "warm-b", 2_000, args.concurrency).await;
    let (mut p, mut b) = (Vec::new(), Vec::new());
    for r in 0..args.rounds {
        p.push(
            round(
                plugin.clone(),
                &format!("p{r}"),
                args.calls,
                args.concurrency,
            )
            .await,
        );
        b.push(
            round(
                built_in.clone(),
                &format!("b{r}"),
                args.calls,
                args.concurrency,
            )
            .await,
        );
    }
    let (pm, bm) = (median(p.clone()), median(b.clone()));
    println!(
        "issue, {} calls x {} rounds, concurrency {}: plugin {:.2} us/call (rounds {:?}), \
         built in {:.2} us/call (rounds {:?}); plugin costs {:.2} us more, {:.1}x",
        args.calls,
        args.rounds,
        args.concurrency,
        pm,
        p.iter()
            .map(|x| (x * 100.0).round() / 100.0)
            .collect::<Vec<_>>(),
        bm,
        b.iter()
            .map(|x| (x * 100.0).round() / 100.0)
            .collect::<Vec<_>>(),
        pm - bm,
        pm / bm
    );
    Ok(())
}
