//! keysmith's state in embedded fjall (`kv`): keys, reservations, idempotency records,
//! the change log and the drivers' own state, all in one tree, and the audit
//! log in a journal beside it, written by one group-commit thread, with the
//! live keys also kept in memory for listings.
pub mod catalog;
mod changelog;
pub mod codec;
mod committer;
mod driver_state;
mod encryption;
mod handle;
mod idempotency;
mod journal;
mod kv;
mod layout;
use encryption::open_sealer;
pub use encryption::EncryptionStatus;
mod rewrite;
pub mod sealing;
mod stored_key;
/// The store suite: every case run against any [`Store`], the embedded
/// one and others (the `suite` feature; this crate's tests run it here).
#[cfg(any(test, feature = "suite"))]
pub mod suite;
mod upgrade;

use std::{
    collections::BTreeMap,
    ops::Bound,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use async_trait::async_trait;
use keysmith_core::{
    audit::{AuditIds, AuditRecord},
    changes::{ChangeFeed, KeyChange, PendingChange},
    error::reasons,
    lease::{Leases, SoleOwner},
    locks::Locks,
    reservation::Reservation,
    store::{
        section::LocalSections, DriverState, Due, IdempotencyRecord, KeyIndex, KeyScan, LockName,
        LockedTransaction, Store, Transaction, WriteSet,
    },
    AccessKey, Error, ListedKey, Result, Timestamp,
};

use crate::{
    catalog::{Catalog, Change},
    codec::{last_part, open, parts, path, push_part},
    committer::{Committer, Op, Reopen},
    driver_state::EmbeddedDriverState,
    handle::TreeHandle,
    journal::Journal,
    layout::{
        index_prefix, key_path, ops, time_bound, AUDIT, BY_END, BY_ENDED, BY_ENTRANCE, BY_HOLDER,
        BY_RESERVATION, DRIVER_STATE, IDEMPOTENCY, LIVE_KEY, RESERVATION, REVOKED_KEY,
    },
    sealing::{KeyEncryptionKey, KeyRing, Sealer},
};

pub struct EmbeddedStore {
    /// The tree, replaced when the committer reopens the store.
    tree: Arc<TreeHandle>,
    committer: Arc<Committer>,
    catalog: Arc<Catalog>,
    /// Serialise the transactions of one request_id or reservation: this
    /// process is the store's only user.
    locks: Locks,
    /// Gives audit records their ids as they are written.
    audit_ids: AuditIds,
    /// Seals every value written, opens every value read.
    sealer: Arc<Sealer>,
    /// The audit log.
    journal: Arc<Journal>,
    /// Whether a data key rotation is still sealing records again.
    resealing: tokio::sync::watch::Sender<bool>,
    /// The data directory, whose size is reported.
    dir: PathBuf,
    /// Where the committer publishes the logged key changes.
    feed: Arc<ChangeFeed>,
    /// What tells this store's change sequences from another's.
    incarnation: String,
    /// The drivers' open state sections (`DriverState::section`).
    sections: Arc<LocalSections>,
}

/// How the store uses memory.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// What the engine (its block cache and memtables) and the listing
    /// cache may take together, in bytes: a third goes to the engine, the
    /// rest to the listing cache. 0 turns the listing cache off (the engine
    /// then keeps its smallest cache).
    pub memory_budget_bytes: usize,
    /// The key-encryption keys that unwrap the store's data keys.
    pub keys: KeyRing,
    /// How many changes of a property a watcher may fall behind before it
    /// is told to resume from the log.
    pub watch_buffer: usize,
}

impl StoreOptions {
    /// The default memory budget, and the store's data keys wrapped by
    /// `keys`.
    pub fn new(keys: KeyRing) -> Self {
        Self {
            memory_budget_bytes: DEFAULT_MEMORY_BUDGET_MB * 1024 * 1024,
            keys,
            watch_buffer: DEFAULT_WATCH_BUFFER,
        }
    }
}

impl StoreOptions {
    /// What the engine is given: its share of the budget (a third), told
    /// to fjall as half as many bytes ([`ENGINE_HEAP_PER_COUNTED_BYTE`]),
    /// of which a quarter (4 to 16 MiB) for the memtables and the rest for
    /// the block cache.
    fn engine_memory(&self) -> kv::Memory {
        let share = self.memory_budget_bytes / 3 / ENGINE_HEAP_PER_COUNTED_BYTE;
        let write_buffer = (share / 4).clamp(MIN_WRITE_BUFFER_BYTES, WRITE_BUFFER_BYTES);
        kv::Memory {
            cache_bytes: share.saturating_sub(write_buffer).max(MIN_CACHE_BYTES) as u64,
            write_buffer_bytes: write_buffer as u64,
        }
    }

    /// The listing cache's share.
    fn listing_cache_bytes(&self) -> usize {
        self.memory_budget_bytes - self.memory_budget_bytes / 3
    }
}

/// The default memory budget: the engine's memory and the listing cache
/// together.
pub const DEFAULT_MEMORY_BUDGET_MB: usize = 256;
/// The default of [`StoreOptions::watch_buffer`].
pub const DEFAULT_WATCH_BUFFER: usize = 1024;
/// Fewer tombstones than this are never worth a full compaction, whatever
/// their share: a small store's tombstones take little room.
const RECLAIM_AT_TOMBSTONES: u64 = 4096;
/// Heap bytes the engine takes per byte it counts. fjall counts a cached
/// block at its uncompressed length and a memtable at its keys' and
/// values' lengths, but holds a block decoded (each entry's key and value
/// an allocation of its own) and a memtable entry in a skiplist node. In
/// the year run (BENCHMARKS.md, "Memory on fjall, measured"), heaptrack
/// found 143 MB of heap in loaded blocks under a 69 MiB cache, and the
/// process's RSS rose about two bytes for each byte of engine share.
const ENGINE_HEAP_PER_COUNTED_BYTE: usize = 2;
/// The engine's block cache is never given less than this, whatever the
/// budget.
const MIN_CACHE_BYTES: usize = 8 * 1024 * 1024;
/// The engine's memtables together, at most: the writes not yet in its
/// tables (an open after a crash replays them from the journal).
const WRITE_BUFFER_BYTES: usize = 16 * 1024 * 1024;
const MIN_WRITE_BUFFER_BYTES: usize = 4 * 1024 * 1024;

impl EmbeddedStore {
    /// For tests: opens with a fixed key-encryption key known to everyone.
    pub fn open_with_test_key(dir: &Path) -> Result<Self> {
        Self::open_with(
            dir,
            StoreOptions::new(KeyRing::new(KeyEncryptionKey::insecure_for_tests())),
        )
    }

    /// Opens (or creates) the store in `dir`. Its data keys must unwrap with
    /// `options.keys`, else it is refused with a message naming the key.
    pub fn open_with(dir: &Path, options: StoreOptions) -> Result<Self> {
        rewrite::finish_interrupted(dir)?;
        if rewrite::is_sled(dir) {
            rewrite::from_sled(dir, options.engine_memory())?;
        }
        let mut db = open_db(dir, options.engine_memory())?;
        let mut main = db.open_tree(MAIN_TREE).map_err(store_error)?;
        let mut sealer = open_sealer(&db, &main, options.keys.clone())?;
        let mut journal = open_journal(dir, &main)?;
        upgrade::upgrade(&db, &main, &sealer, &journal)?;
        if rewrite::is_wanted(&main)? {
            drop((main, journal));
            rewrite::rewrite(db, dir, options.engine_memory())?;
            db = open_db(dir, options.engine_memory())?;
            main = db.open_tree(MAIN_TREE).map_err(store_error)?;
            sealer = open_sealer(&db, &main, options.keys.clone())?;
            journal = open_journal(dir, &main)?;
        }
        let journal = Arc::new(journal);
        let incarnation = changelog::incarnation(&main)?;
        let feed = Arc::new(ChangeFeed::new(options.watch_buffer));
        for (property_id, head) in changelog::heads(&main)? {
            feed.set_head(&property_id, head);
        }
        let tree = Arc::new(TreeHandle::new(main));
        let catalog = Arc::new(Catalog::open(
            tree.clone(),
            sealer.clone(),
            options.listing_cache_bytes(),
        )?);
        let committer = Arc::new(Committer::start(
            db,
            tree.clone(),
            catalog.clone(),
            sealer.clone(),
            feed.clone(),
            journal.clone(),
            Reopen {
                dir: dir.to_path_buf(),
                memory: options.engine_memory(),
            },
        ));
        let store = Self {
            tree,
            committer,
            catalog,
            locks: Locks::default(),
            audit_ids: AuditIds::default(),
            sealer,
            journal,
            resealing: tokio::sync::watch::Sender::new(false),
            dir: dir.to_path_buf(),
            feed,
            incarnation,
            sections: Arc::default(),
        };
        // A rotation that a stop interrupted goes on where it was.
        if store.sealer.data_keys().len() > 1 {
            store.resealing.send_replace(true);
            store.start_resealing()?;
        }
        Ok(store)
    }

    /// Whether writes can be made now: false from a write error until the
    /// committer has reopened the store and a write went through again.
    pub fn writable(&self) -> tokio::sync::watch::Receiver<bool> {
        self.committer.writable()
    }

    /// What the listing cache holds now.
    pub fn listing_cache(&self) -> catalog::CatalogStats {
        self.catalog.stats()
    }

    /// The data directory's files, in bytes, as the file system counts
    /// them now (a walk of the directory).
    pub fn size_on_disk(&self) -> u64 {
        disk_usage(&self.dir)
    }

    /// Every live key of a property, from the listing cache when it holds
    /// the property, else from the tree. Not a listing: the cache's
    /// counters and recency are left alone, and nothing is brought in.
    pub fn live_keys(&self, property_id: &str) -> Result<Vec<Arc<ListedKey>>> {
        if let Some(keys) = self.catalog.snapshot(property_id) {
            return Ok(keys);
        }
        let mut keys = Vec::new();
        for entry in self.range(&path(LIVE_KEY, &[property_id.as_bytes()]), None)? {
            let (k, v) = entry.map_err(store_error)?;
            keys.push(ListedKey::new(stored_key::open_key(&self.sealer, &k, &v)?));
        }
        Ok(keys)
    }

    /// Waits until the listing cache has loaded what it was asked to (at
    /// open, and by listings of properties it did not hold).
    pub fn settle_listing_cache(&self) {
        self.catalog.settle();
    }

    /// Writes and flushes what is queued and stops the committer; for a
    /// graceful shutdown.
    pub fn close(&self) {
        self.committer.stop();
    }

    /// The entries under `prefix` whose next part comes after `after`.
    fn range(
        &self,
        prefix: &[u8],
        after: Option<&str>,
    ) -> Result<impl Iterator<Item = kv::KvResult<(kv::Bytes, kv::Bytes)>>> {
        let start = match after {
            Some(after) => {
                let mut from = prefix.to_vec();
                push_part(&mut from, after.as_bytes());
                Bound::Excluded(from)
            }
            None => Bound::Included(prefix.to_vec()),
        };
        let prefix = prefix.to_vec();
        Ok(self
            .tree()?
            .range::<Vec<u8>, _>((start, Bound::Unbounded))
            .take_while(move |entry| entry.as_ref().map_or(true, |(k, _)| k.starts_with(&prefix))))
    }

    /// The ops of a write set, its audit records given this store's ids,
    /// what it changes in the listing cache, and the key changes to log.
    fn changes(&self, mut writes: WriteSet) -> Result<Prepared> {
        for record in writes.audit.iter_mut().filter(|r| r.id.is_empty()) {
            record.id = self.audit_ids.next(record.at);
        }
        changes(writes, &self.tree()?, &self.sealer)
    }

    /// The tree as it is open now.
    fn tree(&self) -> Result<kv::Tree> {
        self.tree.get()
    }

    /// A property's keys: the live ones from the listing cache, or read
    /// straight from their records (the live and the revoked merged in key
    /// id order, or the live ones of a property the cache left out).
    fn scan_records(&self, scan: &KeyScan<'_>) -> Result<Vec<Arc<ListedKey>>> {
        if scan.live_only {
            if let Some(keys) = self.catalog.page(scan.property_id, scan.after, scan.limit) {
                return Ok(keys);
            }
        }
        let records = |tag| self.range(&path(tag, &[scan.property_id.as_bytes()]), scan.after);
        let mut live = records(LIVE_KEY)?.peekable();
        let mut revoked = if scan.live_only {
            None
        } else {
            Some(records(REVOKED_KEY)?.peekable())
        };
        let mut keys = Vec::with_capacity(scan.limit.min(1024));
        while keys.len() < scan.limit {
            let take_live = match (live.peek(), revoked.as_mut().and_then(|r| r.peek())) {
                (None, None) => break,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                // Both paths differ only in their tag: the rest orders by key id.
                (Some(Ok((l, _))), Some(Ok((r, _)))) => l[1..] <= r[1..],
                (Some(Err(_)), _) => true,
                (_, Some(Err(_))) => false,
            };
            let next = if take_live {
                live.next()
            } else {
                revoked.as_mut().and_then(Iterator::next)
            };
            let Some(entry) = next else { break };
            let (k, v) = entry.map_err(store_error)?;
            keys.push(ListedKey::new(stored_key::open_key(&self.sealer, &k, &v)?));
        }
        Ok(keys)
    }

    /// The entries of a sweeper index (`BY_END` or `BY_ENDED`) before
    /// `before`, after the entry `after`, at most `limit`.
    fn due(
        &self,
        tag: u8,
        before: Timestamp,
        after: Option<&Due>,
        limit: usize,
    ) -> Result<Vec<Due>> {
        let start = match after {
            Some(d) => Bound::Excluded(path(
                tag,
                &[
                    &crate::layout::ordered(d.at),
                    d.property_id.as_bytes(),
                    d.key_id.as_bytes(),
                ],
            )),
            None => Bound::Included(vec![tag]),
        };
        let end = Bound::Excluded(time_bound(tag, before));
        let mut out = Vec::with_capacity(limit.min(1024));
        for entry in self.tree()?.range::<Vec<u8>, _>((start, end)).take(limit) {
            let (k, _) = entry.map_err(store_error)?;
            let [at, property, key_id] = parts(&k[1..])[..] else {
                continue;
            };
            let Ok(at) = <[u8; 8]>::try_from(at) else {
                continue;
            };
            out.push(Due {
                at: Timestamp::from_micros((u64::from_be_bytes(at) ^ (1 << 63)) as i64),
                property_id: String::from_utf8_lossy(property).into_owned(),
                key_id: String::from_utf8_lossy(key_id).into_owned(),
            });
        }
        Ok(out)
    }

    /// A key an index entry names. The cache answers for live keys; a miss
    /// there is asked of the tree, since the committer updates the cache a
    /// moment after the tree.
    fn indexed_key(&self, property_id: &str, key_id: &str) -> Result<Option<Arc<ListedKey>>> {
        if let Some(listed) = self.catalog.get(property_id, key_id) {
            return Ok(Some(listed));
        }
        Ok(self.key(property_id, key_id)?.map(ListedKey::new))
    }
}

/// The ops of a write set, what they change in the listing cache, and the
/// key changes to log.
/// What a write set becomes: the ops, what they change in the listing
/// cache, and the key changes to log.
type Prepared = (Vec<Op>, Vec<Change>, Vec<PendingChange>, Vec<AuditRecord>);

fn changes(mut writes: WriteSet, tree: &kv::Tree, sealer: &Sealer) -> Result<Prepared> {
    let ops = ops(&writes, tree, sealer)?;
    let logged = PendingChange::of(&writes.keys, writes.changed_at);
    let audit = std::mem::take(&mut writes.audit);
    let changes = writes
        .keys
        .into_iter()
        .map(|(key, _)| Change::of(key))
        .collect();
    Ok((ops, changes, logged, audit))
}

/// Opens the audit journal of the store in `dir`, cut back to what `main`
/// says is committed.
fn open_journal(dir: &Path, main: &kv::Tree) -> Result<Journal> {
    let purged = main
        .get(journal::purged_path())
        .map_err(store_error)?
        .map_or(0, |v| journal::decode_mark(&v));
    Journal::open(dir, committer::journal_end(main)?, purged)
}

/// The tree keysmith keeps everything in.
pub(crate) const MAIN_TREE: &str = "keysmith";

/// How long opening waits for the data directory's lock. A store that was
/// just closed in this process lets go of it once its last handle (a
/// reader's tree) is dropped.
const LOCK_WAIT: Duration = Duration::from_secs(5);
const LOCK_RETRY: Duration = Duration::from_millis(10);

pub(crate) fn open_db(dir: &Path, memory: kv::Memory) -> Result<kv::Db> {
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match kv::open(dir, memory) {
            Err(kv::OpenError::Locked(_)) if Instant::now() < deadline => {
                std::thread::sleep(LOCK_RETRY);
            }
            Ok(db) => return Ok(db),
            Err(e) => {
                return Err(Error::unavailable(
                    reasons::STORE_UNAVAILABLE,
                    format!(
                        "cannot open the store at {} (is another keysmith using it?): {e}",
                        dir.display()
                    ),
                ))
            }
        }
    }
}

pub(crate) fn committer_error(why: String) -> Error {
    Error::unavailable(reasons::STORE_UNAVAILABLE, format!("store: {why}"))
}

pub(crate) fn store_error(e: kv::Error) -> Error {
    Error::unavailable(reasons::STORE_UNAVAILABLE, format!("store: {e}"))
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn begin(&self, locks: Vec<LockName>) -> Result<Box<dyn Transaction + '_>> {
        Ok(Box::new(
            LockedTransaction::begin(self, &self.locks, &locks).await,
        ))
    }

    fn key(&self, property_id: &str, key_id: &str) -> Result<Option<AccessKey>> {
        for tag in [LIVE_KEY, REVOKED_KEY] {
            let k = key_path(tag, property_id, key_id);
            if let Some(v) = self.tree()?.get(&k).map_err(store_error)? {
                return stored_key::open_key(&self.sealer, &k, &v).map(Some);
            }
        }
        Ok(None)
    }

    fn reservation(&self, property_id: &str, reservation_key: &str) -> Result<Option<Reservation>> {
        let k = path(
            RESERVATION,
            &[property_id.as_bytes(), reservation_key.as_bytes()],
        );
        self.tree()?
            .get(&k)
            .map_err(store_error)?
            .map(|v| open(&self.sealer, &k, &v))
            .transpose()
    }

    fn idempotency(
        &self,
        property_id: &str,
        request_id: &str,
    ) -> Result<Option<IdempotencyRecord>> {
        let at = idempotency::record_path(property_id, request_id);
        let read = |tree: &kv::Tree| -> Result<Option<idempotency::Read>> {
            match tree.get(&at).map_err(store_error)? {
                Some(v) => idempotency::read(property_id, request_id, &self.sealer.open(&at, &v)?)
                    .map(Some),
                None => Ok(None),
            }
        };
        let tree = self.tree()?;
        // A record that names its answer, read again after the key: had the
        // key changed in between, the same batch would have made it whole.
        for _ in 0..2 {
            match read(&tree)? {
                None => return Ok(None),
                Some(idempotency::Read::Whole(record)) => return Ok(Some(record)),
                Some(idempotency::Read::Named {
                    mut record,
                    key_id,
                    updated_at,
                }) => {
                    let key = self.key(property_id, &key_id)?;
                    if let Some(idempotency::Read::Named { .. }) = read(&tree)? {
                        let key = key.filter(|k| k.updated_at == updated_at).ok_or_else(|| {
                            Error::internal(
                                "an idempotency record names a key version that is gone",
                            )
                        })?;
                        record.answer = keysmith_core::store::StoredAnswer::Key(Box::new(key));
                        return Ok(Some(record));
                    }
                }
            }
        }
        Err(Error::internal(
            "an idempotency record kept changing while read",
        ))
    }

    fn scan_keys(&self, scan: &KeyScan<'_>) -> Result<Vec<Arc<ListedKey>>> {
        let (kind, value): (&[u8], &[u8]) = match &scan.index {
            KeyIndex::Property => return self.scan_records(scan),
            KeyIndex::Reservation(rk) => (BY_RESERVATION, rk.as_bytes()),
            KeyIndex::Holder(h) => (BY_HOLDER, h.as_bytes()),
            KeyIndex::Entrance(e) => (BY_ENTRANCE, e.as_bytes()),
        };
        let prefix = index_prefix(scan.property_id, kind, value);
        let mut keys = Vec::with_capacity(scan.limit.min(1024));
        for entry in self.range(&prefix, scan.after)? {
            let (k, _) = entry.map_err(store_error)?;
            if keys.len() >= scan.limit {
                break;
            }
            let Some(key_id) = last_part(&k, prefix.len()) else {
                continue;
            };
            let key_id = String::from_utf8_lossy(key_id);
            match self.indexed_key(scan.property_id, &key_id)? {
                // Ended keys stay in the index until they are purged.
                Some(key) if scan.live_only && key.is_ended() => {}
                Some(key) => keys.push(key),
                None => {}
            }
        }
        Ok(keys)
    }

    async fn commit(&self, writes: WriteSet) -> Result<()> {
        let (ops, changes, logged, audit) = self.changes(writes)?;
        self.committer
            .commit_logged(ops, changes, logged, audit)
            .await
            .map_err(committer_error)
    }

    fn enqueue(&self, writes: WriteSet) -> Result<()> {
        let (ops, changes, logged, audit) = self.changes(writes)?;
        self.committer
            .enqueue_logged(ops, changes, logged, audit)
            .map_err(committer_error)
    }

    async fn expire_idempotency(&self, before: Timestamp) -> Result<usize> {
        let mut deletes = Vec::new();
        let mut expired = 0;
        for entry in self.tree()?.scan_prefix([IDEMPOTENCY]) {
            let (k, v) = entry.map_err(store_error)?;
            let [property_id, request_id] = parts(&k[1..])[..] else {
                continue;
            };
            let created_at = idempotency::created_at(
                &String::from_utf8_lossy(property_id),
                &String::from_utf8_lossy(request_id),
                &self.sealer.open(&k, &v)?,
            )?;
            if created_at < before {
                deletes.push((k.to_vec(), None));
                expired += 1;
            }
        }
        self.committer
            .commit(deletes, Vec::new())
            .await
            .map_err(committer_error)?;
        Ok(expired)
    }

    fn ended_live_keys(
        &self,
        before: Timestamp,
        after: Option<&Due>,
        limit: usize,
    ) -> Result<Vec<Due>> {
        self.due(BY_END, before, after, limit)
    }

    fn purgeable_keys(
        &self,
        before: Timestamp,
        after: Option<&Due>,
        limit: usize,
    ) -> Result<Vec<Due>> {
        self.due(BY_ENDED, before, after, limit)
    }

    async fn purge_audit(&self, before: Timestamp, limit: usize) -> Result<usize> {
        // Audit ids are ULIDs, which sort by the time they were made: the
        // records before `before` are those with ids before the first id
        // of its millisecond.
        let cutoff = u128::from(ulid::Ulid::from_parts(
            before.as_micros().max(0) as u64 / 1_000,
            0,
        ));
        let Some((mark, purged)) = self.journal.purge_mark(&self.sealer, cutoff, limit)? else {
            return Ok(0);
        };
        // The mark is durable before any segment goes.
        self.committer
            .commit(
                vec![(journal::purged_path(), Some(mark.to_be_bytes().to_vec()))],
                Vec::new(),
            )
            .await
            .map_err(committer_error)?;
        self.journal.purge_through(mark)?;
        Ok(purged)
    }

    fn audit_page(
        &self,
        property_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditRecord>> {
        self.journal.page(&self.sealer, property_id, after, limit)
    }

    async fn sync(&self) -> Result<()> {
        self.committer.sync().await.map_err(committer_error)
    }

    fn new_audit_id(&self, at: Timestamp) -> String {
        self.audit_ids.next(at)
    }

    fn driver_state(&self, driver: &str) -> Result<Arc<dyn DriverState>> {
        Ok(Arc::new(EmbeddedDriverState {
            namespace: path(DRIVER_STATE, &[driver.as_bytes()]),
            tree: self.tree.clone(),
            sealer: self.sealer.clone(),
            committer: self.committer.clone(),
            sections: self.sections.clone(),
        }))
    }

    fn change_feed(&self) -> &ChangeFeed {
        &self.feed
    }

    fn incarnation(&self) -> &str {
        &self.incarnation
    }

    fn changes_after(&self, property_id: &str, after: u64, limit: usize) -> Result<Vec<KeyChange>> {
        let from = changelog::change_path(property_id, after.saturating_add(1));
        let prefix = changelog::property_prefix(property_id);
        let mut out = Vec::with_capacity(limit.min(1024));
        let tree = self.tree()?;
        for entry in tree.range(from..).take(limit) {
            let (k, v) = entry.map_err(store_error)?;
            if !k.starts_with(&prefix) {
                break;
            }
            out.push(changelog::read(&tree, &self.sealer, &k, &v)?);
        }
        Ok(out)
    }

    fn changes_purged_through(&self, property_id: &str) -> Result<u64> {
        changelog::purged_through(&self.tree()?, property_id)
    }

    async fn purge_changes(&self, before: Timestamp, limit: usize) -> Result<usize> {
        let tree = self.tree()?;
        let mut ops: Vec<Op> = Vec::new();
        let mut purged = 0;
        for (property_id, _) in changelog::heads(&tree)? {
            if purged >= limit {
                break;
            }
            let mut last = None;
            for entry in tree
                .scan_prefix(changelog::property_prefix(&property_id))
                .take(limit - purged)
            {
                let (k, v) = entry.map_err(store_error)?;
                let Some(sequence) = changelog::sequence_of(&k) else {
                    continue;
                };
                let at = changelog::made_at(&self.sealer.open(&k, &v)?)?;
                // A property's records are in the order they were made.
                if at >= before {
                    break;
                }
                ops.push((k.to_vec(), None));
                last = Some(sequence);
                purged += 1;
            }
            if let Some(last) = last {
                ops.push((
                    changelog::purged_path(&property_id),
                    Some(codec::encode(&last)?),
                ));
            }
        }
        if !ops.is_empty() {
            self.committer
                .commit(ops, Vec::new())
                .await
                .map_err(committer_error)?;
        }
        Ok(purged)
    }

    /// Compacts the tree fully once tombstones are a quarter of the entries
    /// in its tables (and at least [`RECLAIM_AT_TOMBSTONES`]): fjall would
    /// keep them for good (`kv::Tree::table_counts`). In a store at a steady
    /// state that is about as often as a quarter of it is purged; the
    /// compaction rewrites what is left once, on a blocking thread.
    async fn reclaim_space(&self) -> Result<u64> {
        let tree = self.tree()?;
        let counts = tree.table_counts();
        if counts.tombstones < RECLAIM_AT_TOMBSTONES || counts.tombstones * 4 < counts.entries {
            return Ok(0);
        }
        let before = self.size_on_disk();
        let started = std::time::Instant::now();
        tokio::task::spawn_blocking(move || tree.compact_fully())
            .await
            .map_err(|e| Error::unavailable(reasons::STORE_UNAVAILABLE, format!("store: {e}")))?
            .map_err(store_error)?;
        let after = self.size_on_disk();
        // fjall logs a compaction that fails and leaves its tables as they
        // were: what is left shows whether this one did its work.
        let left = self.tree()?.table_counts();
        tracing::info!(
            tombstones = counts.tombstones,
            entries = counts.entries,
            tombstones_left = left.tombstones,
            bytes_before = before,
            bytes_after = after,
            seconds = started.elapsed().as_secs_f64(),
            "compacted the store fully to drop the tombstones of purged records"
        );
        Ok(before.saturating_sub(after))
    }

    /// Every lease is granted: the store takes an exclusive lock on its
    /// engine's directory at open (`open_db` waits for it and then refuses,
    /// "is another keysmith using it?"), so no other process shares it.
    fn leases(&self) -> Arc<dyn Leases> {
        Arc::new(SoleOwner)
    }
}

#[cfg(test)]
mod tests;

/// Where a store's bytes go, by kind of record: what `examples/store_report`
/// prints, to see what a key costs on disk.
#[derive(Clone, Debug, Default)]
pub struct SpaceReport {
    /// By kind: (entries, bytes of their keys, bytes of their values).
    pub kinds: BTreeMap<&'static str, (usize, usize, usize)>,
    /// The data directory's files, as the file system counts them.
    pub disk_bytes: u64,
    /// The same by entry of the data directory (a directory's whole
    /// contents under its name): the engine's `fjall`, the journal's `audit`.
    pub files: BTreeMap<String, u64>,
}

impl SpaceReport {
    /// Reads a data directory no keysmith is using.
    pub fn of(dir: &Path) -> Result<Self> {
        let db = open_db(
            dir,
            kv::Memory {
                cache_bytes: 64 << 20,
                write_buffer_bytes: WRITE_BUFFER_BYTES as u64,
            },
        )?;
        let tree = db.open_tree(MAIN_TREE).map_err(store_error)?;
        let mut kinds: BTreeMap<&'static str, (usize, usize, usize)> = BTreeMap::new();
        for entry in tree.iter() {
            let (k, v) = entry.map_err(store_error)?;
            let kind = match k.first().copied() {
                Some(LIVE_KEY) => "key records (live)",
                Some(REVOKED_KEY) => "key records (ended)",
                Some(RESERVATION) => "reservations",
                Some(IDEMPOTENCY) => "idempotency records",
                Some(layout::ANSWER_REFERENCE) => "idempotency references (layout 7)",
                Some(AUDIT) => "audit records (before layout 7)",
                Some(DRIVER_STATE) => "driver state",
                Some(layout::INDEX_ALL) => "index entries (all keys)",
                Some(layout::INDEX_LIVE) => "index entries (live keys)",
                Some(BY_END) => "sweeper entries (by end)",
                Some(BY_ENDED) => "sweeper entries (by when ended)",
                Some(changelog::CHANGE) => "change log (WatchKeys)",
                Some(layout::CHANGE_REFERENCE) => "change log references (layout 7)",
                _ => "other",
            };
            let slot = kinds.entry(kind).or_default();
            slot.0 += 1;
            slot.1 += k.len();
            slot.2 += v.len();
        }
        drop(tree);
        drop(db);
        // The journal's records are counted in bytes only: reading them
        // would need the key.
        let journal = Journal::bytes(dir);
        if journal > 0 {
            kinds.insert("audit journal (its files)", (0, 0, journal as usize));
        }
        let files = std::fs::read_dir(dir)
            .map_err(|e| Error::internal(format!("reading {}: {e}", dir.display())))?
            .flatten()
            .map(|e| {
                let bytes = match e.metadata() {
                    Ok(m) if m.is_dir() => disk_usage(&e.path()),
                    Ok(m) => std::os::unix::fs::MetadataExt::blocks(&m) * 512,
                    Err(_) => 0,
                };
                (e.file_name().to_string_lossy().into_owned(), bytes)
            })
            .collect();
        Ok(Self {
            kinds,
            disk_bytes: disk_usage(dir),
            files,
        })
    }
}

/// The bytes the files under `dir` take on disk, as `du` counts them: the
/// blocks allocated, not the lengths (fjall sets its journal's length ahead
/// of what it writes, which a sparse file does not store).
pub(crate) fn disk_usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => disk_usage(&e.path()),
            Ok(m) => m.blocks() * 512,
            Err(_) => 0,
        })
        .sum()
}
