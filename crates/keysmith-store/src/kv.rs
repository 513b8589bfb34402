//! The embedded engine as the store uses it: fjall, an LSM-tree, in
//! `<data dir>/fjall`, behind the few operations the store needs (point
//! reads, ordered scans, atomic batches, one durable flush).
//!
//! fjall replaced sled 0.34 (store layout 8 still): in sled every entry cost
//! about 250 bytes on disk beyond its own bytes, so a key's five entries
//! took 2,000 bytes where fjall takes about 700 (BENCHMARKS.md, "Bytes per
//! key"). A data directory sled wrote is copied into fjall when it is first
//! opened (`crate::rewrite::from_sled`).
//!
//! Durability: writes land in fjall's journal buffer and are visible to
//! reads at once; [`Db::flush`] writes and fsyncs the journal. Only the
//! committer thread flushes, once per cycle (group commit), so a batch is
//! durable exactly when its cycle's flush returns.
//!
//! Deletes: fjall keeps a delete's tombstone until a compaction reaches
//! the last level, which a store of keysmith's size never does on its own;
//! the sweeper has them dropped ([`Tree::table_counts`]).
//!
//! fjall takes no lock on its directory, so [`open`] takes one of its own
//! (`<data dir>/fjall/keysmith.lock`): a second process opening the same
//! store is refused instead of sharing its files. Every handle holds it.
use std::{
    collections::BTreeMap,
    fs::File,
    ops::RangeBounds,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use fs2::FileExt;

pub use fjall::{Error, Slice as Bytes};

pub type KvResult<T> = std::result::Result<T, Error>;
/// A key and its value.
pub type Entry = (Bytes, Bytes);

/// The engine's directory, under the data directory.
pub const DIR: &str = "fjall";
const LOCK_FILE: &str = "keysmith.lock";
/// How long a stop waits for a tree's memtable to be written to a table.
const CHECKPOINT_WAIT: Duration = Duration::from_secs(10);

/// How much memory the engine may use.
#[derive(Clone, Copy, Debug)]
pub struct Memory {
    /// fjall's block cache.
    pub cache_bytes: u64,
    /// All memtables together: writes not yet flushed to tables. The
    /// journal holding them is kept until they are, and an open replays
    /// it, so this also bounds what a start after a crash reads again.
    pub write_buffer_bytes: u64,
}

/// A tree's memtable is written to a table at this size, or sooner when
/// the memtables together reach the write buffer.
const MEMTABLE_BYTES: u64 = 8 << 20;
/// The size of the tables a full compaction writes: fjall's own default
/// (its leveled compaction's `target_size`).
const TABLE_BYTES: u64 = 64 << 20;
/// fjall refuses a write buffer under 1 MiB.
const MIN_WRITE_BUFFER_BYTES: u64 = 1 << 20;
/// fjall refuses a journal budget under 24 MiB.
const JOURNAL_BYTES: u64 = 32 << 20;

/// The open engine: one keyspace, its partitions being the store's trees.
#[derive(Clone)]
pub struct Db {
    keyspace: fjall::Keyspace,
    memtable_bytes: u32,
    _lock: Arc<File>,
}

/// Why the engine did not open.
#[derive(Debug)]
pub enum OpenError {
    /// Another process (or another store in this one) holds the directory.
    Locked(PathBuf),
    Io(PathBuf, std::io::Error),
    Engine(Error),
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Locked(path) => write!(f, "{} is locked by another store", path.display()),
            Self::Io(path, e) => write!(f, "{}: {e}", path.display()),
            Self::Engine(e) => write!(f, "{e}"),
        }
    }
}

/// Opens (or creates) the engine under the data directory `dir`.
pub fn open(dir: &Path, memory: Memory) -> std::result::Result<Db, OpenError> {
    let path = dir.join(DIR);
    std::fs::create_dir_all(&path).map_err(|e| OpenError::Io(path.clone(), e))?;
    let lock_path = path.join(LOCK_FILE);
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| OpenError::Io(lock_path.clone(), e))?;
    if lock.try_lock_exclusive().is_err() {
        return Err(OpenError::Locked(dir.to_path_buf()));
    }
    let write_buffer = memory.write_buffer_bytes.max(MIN_WRITE_BUFFER_BYTES);
    let keyspace = fjall::Config::new(&path)
        .cache_size(memory.cache_bytes)
        .max_write_buffer_size(write_buffer)
        .max_journaling_size(JOURNAL_BYTES)
        // The committer persists once per cycle; a write() per batch
        // before that would only add system calls.
        .manual_journal_persist(true)
        .open()
        .map_err(OpenError::Engine)?;
    Ok(Db {
        keyspace,
        memtable_bytes: write_buffer.min(MEMTABLE_BYTES) as u32,
        _lock: Arc::new(lock),
    })
}

impl Db {
    /// The tree `name` (created empty if need be).
    pub fn open_tree(&self, name: &str) -> KvResult<Tree> {
        let partition = self.keyspace.open_partition(
            name,
            fjall::PartitionCreateOptions::default()
                .max_memtable_size(self.memtable_bytes)
                .manual_journal_persist(true),
        )?;
        Ok(Tree {
            db: self.clone(),
            partition,
        })
    }

    /// The names of every tree.
    pub fn tree_names(&self) -> Vec<String> {
        self.keyspace
            .list_partitions()
            .into_iter()
            .map(|name| name.to_string())
            .collect()
    }

    /// Makes everything written so far durable: writes the journal and
    /// fsyncs it. Only the committer calls it while the store is open.
    pub fn flush(&self) -> KvResult<()> {
        self.keyspace.persist(fjall::PersistMode::SyncAll)
    }

    /// Flushes, then has fjall's flusher write every memtable to a table,
    /// so that the next open has no journal to replay (for a graceful
    /// stop). It waits at most [`CHECKPOINT_WAIT`] per tree: fjall's flusher
    /// stops for good after an error (its directory gone, say), and the
    /// journal it leaves is replayed by the next open instead.
    pub fn checkpoint(&self) -> KvResult<()> {
        self.flush()?;
        for name in self.keyspace.list_partitions() {
            let partition = self
                .keyspace
                .open_partition(&name, fjall::PartitionCreateOptions::default())?;
            let before = partition.flushes_completed();
            if partition.rotate_memtable()? {
                let deadline = Instant::now() + CHECKPOINT_WAIT;
                while partition.flushes_completed() == before && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
        self.flush()
    }
}

/// One ordered map of byte strings.
#[derive(Clone)]
pub struct Tree {
    db: Db,
    partition: fjall::PartitionHandle,
}

impl Tree {
    pub fn get(&self, key: impl AsRef<[u8]>) -> KvResult<Option<Bytes>> {
        self.partition.get(key)
    }

    pub fn contains_key(&self, key: impl AsRef<[u8]>) -> KvResult<bool> {
        self.partition.contains_key(key)
    }

    /// Writes one entry, visible at once, durable at the next flush.
    pub fn insert(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> KvResult<()> {
        self.partition.insert(key.as_ref(), value.as_ref())
    }

    pub fn remove(&self, key: impl AsRef<[u8]>) -> KvResult<()> {
        self.partition.remove(key.as_ref())
    }

    /// Every entry, in key order (a snapshot as of the call).
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = KvResult<Entry>> + 'static {
        self.partition.iter()
    }

    /// The entries whose keys start with `prefix`, in key order.
    pub fn scan_prefix(
        &self,
        prefix: impl AsRef<[u8]>,
    ) -> impl DoubleEndedIterator<Item = KvResult<Entry>> + 'static {
        self.partition.prefix(prefix.as_ref().to_vec())
    }

    /// The entries whose keys fall in `range`, in key order.
    pub fn range<K: AsRef<[u8]>, R: RangeBounds<K>>(
        &self,
        range: R,
    ) -> impl DoubleEndedIterator<Item = KvResult<Entry>> + 'static {
        let bound = |b: std::ops::Bound<&K>| b.map(|k| k.as_ref().to_vec());
        let owned = (bound(range.start_bound()), bound(range.end_bound()));
        self.partition.range(owned)
    }

    /// Applies every op of `batch` atomically: all or none are seen, and
    /// all or none survive a crash once flushed.
    pub fn apply_batch(&self, batch: Batch) -> KvResult<()> {
        if batch.ops.is_empty() {
            return Ok(());
        }
        let mut writes = self.db.keyspace.batch();
        for (key, value) in batch.ops {
            match value {
                Some(value) => writes.insert(&self.partition, key, value),
                None => writes.remove(&self.partition, key),
            }
        }
        writes.commit()
    }

    /// Makes everything written so far durable (see [`Db::flush`]).
    pub fn flush(&self) -> KvResult<()> {
        self.db.flush()
    }

    /// What the tree's tables on disk hold (its memtables aside).
    ///
    /// fjall (its leveled compaction) drops a delete's tombstone only when
    /// a compaction writes into the tree's last level, the seventh. Level 1
    /// alone takes 256 MiB and each next one ten times more, so a store
    /// under some terabytes never reaches it: there every tombstone stays
    /// for good, and a store that deletes as much as it writes grows
    /// without end (BENCHMARKS.md, "Two years on fjall").
    /// [`Tree::compact_fully`] is what drops them.
    pub fn table_counts(&self) -> TableCounts {
        match &self.partition.tree {
            fjall::AnyTree::Standard(tree) => {
                let levels = tree
                    .levels
                    .read()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                levels
                    .iter()
                    .fold(TableCounts::default(), |sum, table| TableCounts {
                        entries: sum.entries + table.metadata.key_count,
                        tombstones: sum.tombstones + table.tombstone_count(),
                    })
            }
            // The store's trees never keep values apart from their keys.
            fjall::AnyTree::Blob(_) => TableCounts::default(),
        }
    }

    /// Rewrites every table of the tree into its last level, dropping the
    /// tombstones and every older version of a key, and blocks until done.
    /// Writes go on meanwhile (into the memtables and level 0); the other
    /// compactions wait. It needs free space for a second copy of what is
    /// left.
    ///
    /// Not fjall's own `PartitionHandle::major_compact`: that keeps every
    /// version newer than its snapshot watermark, which stays at 0 for the
    /// first moments after an open (fjall's monitor raises it every 250 ms
    /// to the current sequence number less 100), yet drops every tombstone
    /// it writes into the last level, so the version a tombstone hid came
    /// back (seen in `the_space_of_purged_keys_is_given_back`). The store
    /// takes no snapshots of fjall's (its scans hold the tables they read),
    /// so every version older than the newest visible one may go.
    pub fn compact_fully(&self) -> KvResult<()> {
        use fjall::AbstractTree;
        let visible = self.db.keyspace.instant();
        self.partition
            .tree
            .major_compact(TABLE_BYTES, visible)
            .map_err(Error::from)
    }
}

/// Entries in a tree's tables, tombstones included, and of them the
/// tombstones.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableCounts {
    pub entries: u64,
    pub tombstones: u64,
}

/// Puts and deletes to apply together. A later op on a key replaces an
/// earlier one, as the caller wrote them (fjall gives every op of a batch
/// the same sequence number, so it must not see one key twice).
#[derive(Default)]
pub struct Batch {
    ops: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl Batch {
    pub fn insert(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        self.ops
            .insert(key.as_ref().to_vec(), Some(value.as_ref().to_vec()));
    }

    pub fn remove(&mut self, key: impl AsRef<[u8]>) {
        self.ops.insert(key.as_ref().to_vec(), None);
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEMORY: Memory = Memory {
        cache_bytes: 1 << 20,
        write_buffer_bytes: 1 << 20,
    };

    #[test]
    fn a_directory_is_opened_by_one_store_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let first = open(dir.path(), MEMORY).unwrap();
        let tree = first.open_tree("t").unwrap();
        assert!(matches!(
            open(dir.path(), MEMORY),
            Err(OpenError::Locked(_))
        ));
        drop(first);
        // A tree still open holds the store.
        assert!(matches!(
            open(dir.path(), MEMORY),
            Err(OpenError::Locked(_))
        ));
        drop(tree);
        open(dir.path(), MEMORY).unwrap();
    }

    #[test]
    fn a_later_op_on_a_key_in_one_batch_wins() {
        let dir = tempfile::tempdir().unwrap();
        let tree = open(dir.path(), MEMORY).unwrap().open_tree("t").unwrap();
        let mut batch = Batch::default();
        batch.insert(b"a", b"1");
        batch.remove(b"a");
        batch.remove(b"b");
        batch.insert(b"b", b"2");
        tree.apply_batch(batch).unwrap();
        assert_eq!(tree.get(b"a").unwrap(), None);
        assert_eq!(tree.get(b"b").unwrap().as_deref(), Some(&b"2"[..]));
    }
}
