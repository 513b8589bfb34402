//! Copies the store into a fresh directory and puts the copy in its place:
//! to leave no replaced bytes in its files, and to move a data directory
//! an earlier keysmith wrote with sled into fjall.
//!
//! An LSM-tree keeps a replaced or deleted value in its older tables until
//! a compaction merges them, which may be long. After records are sealed
//! for the first time (the layout 6 upgrade), sealed again under a new data
//! key, or their data keys wrapped with a new key-encryption key, the old
//! bytes (records in clear, records under a forgotten data key, data keys
//! wrapped with a retired key-encryption key) would stay readable in the
//! data files. So those steps ask for a rewrite, and the next open copies
//! every live entry into a new directory and removes the old one.
//!
//! A directory sled wrote (sled's `conf` file is there, fjall's directory
//! is not) is copied the same way, from sled into fjall ([`from_sled`]),
//! when a keysmith that stores in fjall first opens it; so are the trees of
//! each driver's state that predate the main tree.
//!
//! The audit journal's segments are linked into the copy as they are (a
//! data key rotation rewrites its own segments, see `crate::journal`).
//!
//! The swap survives a crash at any point: `<dir>.rewrite` is complete only
//! once it has been flushed and `<dir>` has been renamed to `<dir>.old`;
//! [`finish_interrupted`] completes or undoes whatever an earlier open left.
use std::path::{Path, PathBuf};

use keysmith_core::{error::reasons, Error, Result};

use crate::{
    codec::path,
    kv,
    layout::{DRIVER_STATE, META},
    store_error,
};

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
pub fn is_wanted(main: &kv::Tree) -> Result<bool> {
    main.contains_key(wanted_marker()).map_err(store_error)
}

/// Copies every tree of `db` (but the request for a rewrite) into
/// `<dir>.rewrite`, flushes it, and swaps the directories. `db` and every
/// tree of it must be the last handles on the store: they are dropped here,
/// and the caller opens `dir` again.
pub fn rewrite(db: kv::Db, dir: &Path, memory: kv::Memory) -> Result<()> {
    let marker = wanted_marker();
    let entries = copy_and_swap(dir, memory, |copy| {
        let mut entries = 0;
        for name in db.tree_names() {
            let from = db.open_tree(&name).map_err(store_error)?;
            let to = copy.open_tree(&name).map_err(store_error)?;
            let all = from.iter().map(|entry| {
                entry
                    .map(|(k, v)| (k.to_vec(), v.to_vec()))
                    .map_err(store_error)
            });
            entries += copy_entries(
                &to,
                all.filter(|e| !matches!(e, Ok((k, _)) if *k == marker)),
            )?;
        }
        drop(db);
        Ok(entries)
    })?;
    tracing::info!(
        entries,
        dir = %dir.display(),
        "rewrote the store into a fresh directory: replaced bytes are gone from its files"
    );
    Ok(())
}

/// sled's configuration file, which every directory sled wrote has.
const SLED_CONF: &str = "conf";
/// Before driver state moved into the main tree, each driver had a sled
/// tree named this and its name.
const OLD_DRIVER_TREE: &[u8] = b"driver/";
/// sled's default tree, which keysmith never wrote to.
const SLED_DEFAULT_TREE: &[u8] = b"__sled__default";

/// Whether `dir` holds a store sled wrote and fjall has not taken over.
pub fn is_sled(dir: &Path) -> bool {
    dir.join(SLED_CONF).is_file() && !dir.join(kv::DIR).exists()
}

/// Copies the store sled wrote in `dir` into fjall, in `<dir>.rewrite`,
/// and swaps the directories: sled's files go with the old one. Each
/// driver's old tree is moved into the main tree under its namespace on
/// the way, as the upgrade to the main tree did.
pub fn from_sled(dir: &Path, memory: kv::Memory) -> Result<()> {
    let sled = open_sled(dir)?;
    let entries = copy_and_swap(dir, memory, |copy| {
        let main = copy.open_tree(crate::MAIN_TREE).map_err(store_error)?;
        let mut entries = 0;
        for name in sled.tree_names() {
            let from = sled.open_tree(&name).map_err(sled_error)?;
            let read = |namespace: Vec<u8>| {
                from.iter().map(move |entry| {
                    entry
                        .map(|(k, v)| ([namespace.as_slice(), &k].concat(), v.to_vec()))
                        .map_err(sled_error)
                })
            };
            if let Some(driver) = name.strip_prefix(OLD_DRIVER_TREE) {
                entries += copy_entries(&main, read(path(DRIVER_STATE, &[driver])))?;
                tracing::info!(
                    driver = %String::from_utf8_lossy(driver),
                    "moved the driver's state into the main tree"
                );
            } else if &name[..] == crate::MAIN_TREE.as_bytes() {
                entries += copy_entries(&main, read(Vec::new()))?;
            } else if &name[..] == SLED_DEFAULT_TREE {
                if !from.is_empty() {
                    return Err(Error::unavailable(
                        reasons::STORE_UNAVAILABLE,
                        format!(
                            "the sled store in {} has entries in its default tree, which no \
                             keysmith writes: it is not keysmith's",
                            dir.display()
                        ),
                    ));
                }
            } else {
                let name = String::from_utf8_lossy(&name).into_owned();
                let to = copy.open_tree(&name).map_err(store_error)?;
                entries += copy_entries(&to, read(Vec::new()))?;
            }
        }
        Ok(entries)
    })?;
    drop(sled);
    tracing::info!(
        entries,
        dir = %dir.display(),
        "copied the store sled wrote into fjall: sled's files are gone"
    );
    Ok(())
}

/// Opens a store sled wrote, to read it.
pub(crate) fn open_sled(dir: &Path) -> Result<sled::Db> {
    sled::Config::new()
        .path(dir)
        .cache_capacity(64 << 20)
        .flush_every_ms(None)
        .open()
        .map_err(|e| {
            Error::unavailable(
                reasons::STORE_UNAVAILABLE,
                format!(
                    "cannot open the store sled wrote at {} (is another keysmith using it?): {e}",
                    dir.display()
                ),
            )
        })
}

fn sled_error(e: sled::Error) -> Error {
    Error::unavailable(reasons::STORE_UNAVAILABLE, format!("store (sled): {e}"))
}

/// Writes `entries` into `to`, a batch at a time; how many.
fn copy_entries(
    to: &kv::Tree,
    entries: impl Iterator<Item = Result<(Vec<u8>, Vec<u8>)>>,
) -> Result<usize> {
    const BATCH: usize = 4096;
    let mut batch = kv::Batch::default();
    let mut copied = 0;
    for entry in entries {
        let (k, v) = entry?;
        batch.insert(k, v);
        copied += 1;
        if batch.len() == BATCH {
            to.apply_batch(std::mem::take(&mut batch))
                .map_err(store_error)?;
        }
    }
    to.apply_batch(batch).map_err(store_error)?;
    Ok(copied)
}

/// Opens a fresh engine in `<dir>.rewrite`, has `fill` write it, makes it
/// durable with its tables written, links the audit journal into it and
/// puts it in `dir`'s place; what `fill` returned. `fill` must drop every
/// handle on the store in `dir`.
fn copy_and_swap(
    dir: &Path,
    memory: kv::Memory,
    fill: impl FnOnce(&kv::Db) -> Result<usize>,
) -> Result<usize> {
    let copy_dir = beside(dir, ".rewrite")?;
    let old_dir = beside(dir, ".old")?;
    if copy_dir.exists() {
        remove(&copy_dir)?;
    }
    let copy = crate::open_db(&copy_dir, memory)?;
    let filled = fill(&copy)?;
    copy.checkpoint().map_err(store_error)?;
    // The audit journal is not in the engine: its segments are linked into
    // the copy (nothing writes them while the store opens).
    crate::journal::Journal::link_into(dir, &copy_dir)?;
    drop(copy);
    std::fs::rename(dir, &old_dir).map_err(|e| io_error("move aside", dir, e))?;
    std::fs::rename(&copy_dir, dir).map_err(|e| io_error("move into place", &copy_dir, e))?;
    sync_parent(dir)?;
    remove(&old_dir)?;
    Ok(filled)
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
