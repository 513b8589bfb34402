//! keysmith's state in embedded sled: keys, reservations, idempotency records,
//! audit records and the drivers' own state, all in one tree, written by one
//! group-commit thread.
mod codec;
mod committer;

use std::{
    collections::{BTreeMap, BTreeSet},
    ops::Bound,
    path::Path,
    sync::Arc,
};

use async_trait::async_trait;
use keysmith_core::{
    audit::AuditRecord,
    error::reasons,
    reservation::Reservation,
    store::{DriverState, IdempotencyRecord, KeyIndex, KeyScan, Store, WriteSet},
    AccessKey, Error, Result, Timestamp,
};

use crate::{
    codec::{decode, encode, last_part, path},
    committer::{Committer, Op, Overlaid},
};

const KEY: u8 = b'K';
const RESERVATION: u8 = b'R';
const IDEMPOTENCY: u8 = b'I';
const AUDIT: u8 = b'U';
/// A driver's own state: the driver's name, then the driver's key.
const DRIVER_STATE: u8 = b'D';
/// Before driver state moved into the main tree, each driver had a tree
/// named this and its name.
const OLD_DRIVER_TREE: &[u8] = b"driver/";
/// Index entries of every key.
const INDEX_ALL: u8 = b'A';
/// Index entries of keys not revoked.
const INDEX_LIVE: u8 = b'L';

const BY_PROPERTY: &[u8] = b"p";
const BY_RESERVATION: &[u8] = b"r";
const BY_HOLDER: &[u8] = b"h";
const BY_ENTRANCE: &[u8] = b"e";

pub struct SledStore {
    main: sled::Tree,
    committer: Arc<Committer>,
}

impl SledStore {
    pub fn open(dir: &Path) -> Result<Self> {
        let db = sled::Config::new()
            .path(dir)
            .mode(sled::Mode::HighThroughput)
            .open()
            .map_err(|e| {
                Error::unavailable(
                    reasons::STORE_UNAVAILABLE,
                    format!("cannot open the store at {}: {e}", dir.display()),
                )
            })?;
        let main = db.open_tree("keysmith").map_err(store_error)?;
        move_old_driver_trees(&db, &main)?;
        let committer = Arc::new(Committer::start(db, main.clone()));
        Ok(Self { main, committer })
    }

    /// Writes and flushes what is queued and stops the committer; for a
    /// graceful shutdown.
    pub fn close(&self) {
        self.committer.stop();
    }
}

/// Moves each driver's state out of the tree it had before driver state
/// lived in the main tree, atomically per driver.
fn move_old_driver_trees(db: &sled::Db, main: &sled::Tree) -> Result<()> {
    for name in db.tree_names() {
        let Some(driver) = name.strip_prefix(OLD_DRIVER_TREE) else {
            continue;
        };
        let old = db.open_tree(&name).map_err(store_error)?;
        let namespace = path(DRIVER_STATE, &[driver]);
        let mut batch = sled::Batch::default();
        for entry in old.iter() {
            let (k, v) = entry.map_err(store_error)?;
            batch.insert([namespace.as_slice(), &k].concat(), v);
        }
        main.apply_batch(batch).map_err(store_error)?;
        db.flush().map_err(store_error)?;
        db.drop_tree(&name).map_err(store_error)?;
        tracing::info!(
            driver = %String::from_utf8_lossy(driver),
            "moved the driver's state into the main tree"
        );
    }
    Ok(())
}

fn committer_error(why: String) -> Error {
    Error::unavailable(reasons::STORE_UNAVAILABLE, format!("store: {why}"))
}

fn store_error(e: sled::Error) -> Error {
    Error::unavailable(reasons::STORE_UNAVAILABLE, format!("store: {e}"))
}

/// The index entries (without their set tag) that a key has.
fn index_entries(key: &AccessKey) -> BTreeSet<Vec<u8>> {
    let mut out = BTreeSet::new();
    let id = key.key_id.as_bytes();
    let p = key.property_id.as_bytes();
    out.insert(index_path(p, BY_PROPERTY, b"", id));
    out.insert(index_path(p, BY_HOLDER, key.holder.id.as_bytes(), id));
    for e in &key.entrances {
        out.insert(index_path(p, BY_ENTRANCE, e.entrance_id.as_bytes(), id));
    }
    if let Some(rk) = key.reservation_key() {
        out.insert(index_path(p, BY_RESERVATION, rk.as_bytes(), id));
    }
    out
}

fn index_path(property: &[u8], kind: &[u8], value: &[u8], key_id: &[u8]) -> Vec<u8> {
    path(0, &[property, kind, value, key_id])[1..].to_vec()
}

fn tagged(tag: u8, entry: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entry.len() + 1);
    out.push(tag);
    out.extend_from_slice(entry);
    out
}

#[async_trait]
impl Store for SledStore {
    fn key(&self, property_id: &str, key_id: &str) -> Result<Option<AccessKey>> {
        let k = path(KEY, &[property_id.as_bytes(), key_id.as_bytes()]);
        self.main
            .get(k)
            .map_err(store_error)?
            .map(|v| decode(&v))
            .transpose()
    }

    fn reservation(&self, property_id: &str, reservation_key: &str) -> Result<Option<Reservation>> {
        let k = path(
            RESERVATION,
            &[property_id.as_bytes(), reservation_key.as_bytes()],
        );
        self.main
            .get(k)
            .map_err(store_error)?
            .map(|v| decode(&v))
            .transpose()
    }

    fn idempotency(
        &self,
        property_id: &str,
        request_id: &str,
    ) -> Result<Option<IdempotencyRecord>> {
        let k = path(
            IDEMPOTENCY,
            &[property_id.as_bytes(), request_id.as_bytes()],
        );
        self.main
            .get(k)
            .map_err(store_error)?
            .map(|v| decode(&v))
            .transpose()
    }

    fn scan_keys(&self, scan: &KeyScan<'_>) -> Result<Vec<AccessKey>> {
        let (kind, value): (&[u8], &[u8]) = match &scan.index {
            KeyIndex::Property => (BY_PROPERTY, b""),
            KeyIndex::Reservation(rk) => (BY_RESERVATION, rk.as_bytes()),
            KeyIndex::Holder(h) => (BY_HOLDER, h.as_bytes()),
            KeyIndex::Entrance(e) => (BY_ENTRANCE, e.as_bytes()),
        };
        let tag = if scan.live_only {
            INDEX_LIVE
        } else {
            INDEX_ALL
        };
        let prefix = tagged(
            tag,
            &path(0, &[scan.property_id.as_bytes(), kind, value])[1..],
        );
        let start = match scan.after {
            Some(after) => {
                let mut from = prefix.clone();
                codec::push_part(&mut from, after.as_bytes());
                Bound::Excluded(from)
            }
            None => Bound::Included(prefix.clone()),
        };
        let mut keys = Vec::with_capacity(scan.limit.min(1024));
        for entry in self.main.range::<Vec<u8>, _>((start, Bound::Unbounded)) {
            let (k, _) = entry.map_err(store_error)?;
            if !k.starts_with(&prefix) || keys.len() >= scan.limit {
                break;
            }
            let Some(key_id) = last_part(&k, prefix.len()) else {
                continue;
            };
            let key_id = String::from_utf8_lossy(key_id);
            if let Some(key) = self.key(scan.property_id, &key_id)? {
                keys.push(key);
            }
        }
        Ok(keys)
    }

    async fn commit(&self, writes: WriteSet) -> Result<()> {
        let ops = ops(&writes)?;
        self.committer.commit(ops).await.map_err(committer_error)
    }

    fn enqueue(&self, writes: WriteSet) -> Result<()> {
        let ops = ops(&writes)?;
        self.committer.enqueue(ops, false).map_err(committer_error)
    }

    async fn expire_idempotency(&self, before: Timestamp) -> Result<usize> {
        let mut deletes = Vec::new();
        for entry in self.main.scan_prefix([IDEMPOTENCY]) {
            let (k, v) = entry.map_err(store_error)?;
            let record: IdempotencyRecord = decode(&v)?;
            if record.created_at < before {
                deletes.push((k.to_vec(), None));
            }
        }
        let expired = deletes.len();
        self.committer
            .commit(deletes)
            .await
            .map_err(committer_error)?;
        Ok(expired)
    }

    fn audit_page(
        &self,
        property_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditRecord>> {
        let prefix = path(AUDIT, &[property_id.as_bytes()]);
        let start = match after {
            Some(id) => Bound::Excluded(path(AUDIT, &[property_id.as_bytes(), id.as_bytes()])),
            None => Bound::Included(prefix.clone()),
        };
        self.main
            .range((start, Bound::Unbounded))
            .take_while(|r| r.as_ref().map_or(true, |(k, _)| k.starts_with(&prefix)))
            .take(limit)
            .map(|r| r.map_err(store_error).and_then(|(_, v)| decode(&v)))
            .collect()
    }

    async fn sync(&self) -> Result<()> {
        self.committer.sync().await.map_err(committer_error)
    }

    fn driver_state(&self, driver: &str) -> Result<Arc<dyn DriverState>> {
        Ok(Arc::new(SledDriverState {
            namespace: path(DRIVER_STATE, &[driver.as_bytes()]),
            main: self.main.clone(),
            committer: self.committer.clone(),
        }))
    }
}

/// The atomic change a write set makes to the main tree.
fn ops(writes: &WriteSet) -> Result<Vec<Op>> {
    let mut ops = Vec::new();
    for (key, old) in &writes.keys {
        ops.push((
            path(KEY, &[key.property_id.as_bytes(), key.key_id.as_bytes()]),
            Some(encode(key)?),
        ));
        let new_entries = index_entries(key);
        let old_entries = old.as_ref().map(index_entries).unwrap_or_default();
        let old_live = old.as_ref().is_some_and(|k| !k.is_revoked());
        // Deletes first: a later op on the same key wins.
        for entry in old_entries.difference(&new_entries) {
            ops.push((tagged(INDEX_ALL, entry), None));
        }
        if old_live {
            for entry in &old_entries {
                ops.push((tagged(INDEX_LIVE, entry), None));
            }
        }
        for entry in &new_entries {
            ops.push((tagged(INDEX_ALL, entry), Some(Vec::new())));
        }
        if !key.is_revoked() {
            for entry in &new_entries {
                ops.push((tagged(INDEX_LIVE, entry), Some(Vec::new())));
            }
        }
    }
    for r in &writes.reservations {
        ops.push((
            path(
                RESERVATION,
                &[r.property_id.as_bytes(), r.reservation_key.as_bytes()],
            ),
            Some(encode(r)?),
        ));
    }
    for record in &writes.idempotency {
        ops.push((
            path(
                IDEMPOTENCY,
                &[record.property_id.as_bytes(), record.request_id.as_bytes()],
            ),
            Some(encode(record)?),
        ));
    }
    for record in &writes.audit {
        ops.push((
            path(
                AUDIT,
                &[record.property_id.as_bytes(), record.id.as_bytes()],
            ),
            Some(encode(record)?),
        ));
    }
    Ok(ops)
}

/// A driver's keys, under its namespace in the main tree.
struct SledDriverState {
    namespace: Vec<u8>,
    main: sled::Tree,
    committer: Arc<Committer>,
}

impl SledDriverState {
    fn full(&self, key: &[u8]) -> Vec<u8> {
        [self.namespace.as_slice(), key].concat()
    }
}

#[async_trait]
impl DriverState for SledDriverState {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let key = self.full(key);
        match self.committer.overlaid(&key) {
            Overlaid::Queued(value) => Ok(value),
            Overlaid::NotQueued => Ok(self.main.get(key).map_err(store_error)?.map(|v| v.to_vec())),
        }
    }

    fn apply(&self, changes: Vec<(Vec<u8>, Option<Vec<u8>>)>) -> Result<()> {
        let ops = changes
            .into_iter()
            .map(|(k, v)| (self.full(&k), v))
            .collect();
        self.committer.enqueue(ops, true).map_err(committer_error)
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let prefix = self.full(prefix);
        let queued = self.committer.overlay_range(&prefix);
        let mut found = BTreeMap::new();
        for entry in self.main.scan_prefix(&prefix) {
            let (k, v) = entry.map_err(store_error)?;
            found.insert(k.to_vec(), v.to_vec());
        }
        for (k, v) in queued {
            match v {
                Some(v) => found.insert(k, v),
                None => found.remove(&k),
            };
        }
        let strip = self.namespace.len();
        Ok(found
            .into_iter()
            .map(|(k, v)| (k[strip..].to_vec(), v))
            .collect())
    }

    async fn sync(&self) -> Result<()> {
        self.committer.sync().await.map_err(committer_error)
    }
}

#[cfg(test)]
mod tests;
