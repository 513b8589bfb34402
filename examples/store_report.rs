//! Where a data directory's bytes go, by kind of record, per live key: run
//! it on a stopped keysmith's data directory.
//!
//! `cargo run --release --example store_report -- ./keysmith-data`
use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("./keysmith-data"));
    let report = keysmith_store::SpaceReport::of(&dir)?;
    let keys: usize = report
        .kinds
        .iter()
        .filter(|(kind, _)| kind.starts_with("key records"))
        .map(|(_, (n, _, _))| n)
        .sum();
    println!("{} keys; {} bytes on disk", keys, report.disk_bytes);
    println!(
        "{:<34} {:>10} {:>12} {:>12} {:>10}",
        "kind", "entries", "key bytes", "value bytes", "per key"
    );
    let mut logical = 0;
    for (kind, (n, k, v)) in &report.kinds {
        logical += k + v;
        println!(
            "{kind:<34} {n:>10} {k:>12} {v:>12} {:>10.0}",
            (k + v) as f64 / keys.max(1) as f64
        );
    }
    println!(
        "{:<34} {:>10} {:>12} {:>12} {:>10.0}",
        "all records",
        "",
        "",
        logical,
        logical as f64 / keys.max(1) as f64
    );
    println!(
        "{:<34} {:>10} {:>12} {:>12} {:>10.0}",
        "on disk (sled's files)",
        "",
        "",
        report.disk_bytes,
        report.disk_bytes as f64 / keys.max(1) as f64
    );
    Ok(())
}
