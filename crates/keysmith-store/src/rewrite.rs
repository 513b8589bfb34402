//! Copies the store into a fresh directory and puts the copy in its place.
//!
//! sled is log-structured: a value that is replaced or deleted stays in its
//! files until the segment cleaner happens to reuse the space, which may be
//! never. After records are sealed for the first time (the layout 6
//! upgrade), sealed again under a new data key, or their data keys wrapped
//! with a new key-encryption key, the old bytes (records in clear, records
//! under a forgotten data key, data keys wrapped with a retired
//! key-encryption key) would stay readable in the data files. So those steps
//! ask for a rewrite, and the next open copies every live entry into a new
//! directory and removes the old one.
//!
//! The audit journal's segments are linked into the copy as they are (a
//! data key rotation rewrites its own segments, see `crate::journal`).
//!
//! The swap survives a crash at any point: `<dir>.rewrite` is complete only
//! once it has been flushed and `<dir>` has been renamed to `<dir>.old`;
//! [`finish_interrupted`] completes or undoes whatever an earlier open left.
use std::path::{Path, PathBuf};

use keysmith_core::{error::reasons, Error, Result};

use crate::{codec::path, layout::META, store_error};

/// The META entry that asks the next open for a rewrite.
pub fn wanted_marker() -> Vec<u8> {
    path(META, &[b"rewrite-wanted"])
}

/// `dir` with `suffix` added to its last component.
fn beside(dir: &Path, suffix: &str) -> Result<PathBuf> {
    let name = dir.file_name().ok_or_else(|| {
        Error::unavailable(
            reasons::STORE_UNAVAILABLE,
            format!(
                "the data directory {} has no name of its own: give one, such as ./keysmith-data",
                dir.display()
            ),
        )
    })?;
    let mut name = name.to_os_string();
    name.push(suffix);
    Ok(dir.with_file_name(name))
}

fn io_error(what: &str, dir: &Path, e: std::io::Error) -> Error {
    Error::unavailable(
        reasons::STORE_UNAVAILABLE,
        format!("cannot {what} {}: {e}", dir.display()),
    )
}

/// Completes a swap an earlier open began, or drops a copy it did not
/// finish. Runs before the store is opened.
pub fn finish_interrupted(dir: &Path) -> Result<()> {
    let copy = beside(dir, ".rewrite")?;
    let old = beside(dir, ".old")?;
    match (dir.exists(), copy.exists(), old.exists()) {
        // The old directory was moved aside: the copy was complete.
        (false, true, true) => {
            std::fs::rename(&copy, dir).map_err(|e| io_error("move into place", &copy, e))?;
            sync_parent(dir)?;
            remove(&old)?;
            tracing::info!(dir = %dir.display(), "finished rewriting the store");
        }
        // The copy was in place; only removing the old one was left.
        (true, _, true) => {
            remove(&old)?;
            if copy.exists() {
                remove(&copy)?;
            }
        }
        // A copy that was never finished: the store in place is whole.
        (true, true, false) => remove(&copy)?,
        _ => {}
    }
    Ok(())
}

fn remove(dir: &Path) -> Result<()> {
    std::fs::remove_dir_all(dir).map_err(|e| io_error("remove", dir, e))
}

/// Whether `main` asks for a rewrite.
pub fn is_wanted(main: &sled::Tree) -> Result<bool> {
    main.contains_key(wanted_marker()).map_err(store_error)
}

/// Copies every tree of `db` (but the request for a rewrite) into
/// `<dir>.rewrite`, flushes it, and swaps the directories. `db` and every
/// tree of it must be the last handles on the store: they are dropped here,
/// and the caller opens `dir` again.
pub fn rewrite(db: sled::Db, dir: &Path, cache_bytes: u64) -> Result<()> {
    const BATCH: usize = 4096;
    let copy_dir = beside(dir, ".rewrite")?;
    let old_dir = beside(dir, ".old")?;
    if copy_dir.exists() {
        remove(&copy_dir)?;
    }
    let copy = crate::open_db(&copy_dir, cache_bytes)?;
    let marker = wanted_marker();
    let mut entries = 0usize;
    for name in db.tree_names() {
        let from = db.open_tree(&name).map_err(store_error)?;
        let to = copy.open_tree(&name).map_err(store_error)?;
        let mut batch = sled::Batch::default();
        let mut in_batch = 0;
        for entry in from.iter() {
            let (k, v) = entry.map_err(store_error)?;
            if k == marker {
                continue;
            }
            batch.insert(k, v);
            entries += 1;
            in_batch += 1;
            if in_batch == BATCH {
                to.apply_batch(std::mem::take(&mut batch))
                    .map_err(store_error)?;
                in_batch = 0;
            }
        }
        to.apply_batch(batch).map_err(store_error)?;
    }
    copy.flush().map_err(store_error)?;
    // The audit journal is not in sled's trees: its segments are linked
    // into the copy (nothing writes them while the store opens).
    crate::journal::Journal::link_into(dir, &copy_dir)?;
    // Dropping flushes; a thread of sled's may hold a file a moment longer,
    // which renaming does not disturb, and which the next open waits out.
    drop(copy);
    drop(db);
    std::fs::rename(dir, &old_dir).map_err(|e| io_error("move aside", dir, e))?;
    std::fs::rename(&copy_dir, dir).map_err(|e| io_error("move into place", &copy_dir, e))?;
    sync_parent(dir)?;
    remove(&old_dir)?;
    tracing::info!(
        entries,
        dir = %dir.display(),
        "rewrote the store into a fresh directory: replaced bytes are gone from its files"
    );
    Ok(())
}

/// Makes the renames durable: they live in the parent directory.
fn sync_parent(dir: &Path) -> Result<()> {
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::File::open(parent)
        .and_then(|f| f.sync_all())
        .map_err(|e| io_error("sync", parent, e))
}
