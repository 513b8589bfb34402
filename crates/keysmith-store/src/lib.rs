//! keysmith's state in embedded sled: keys, reservations, idempotency records
//! and the drivers' own state, with one group-commit flusher for durability.
mod codec;
mod flusher;

use std::{collections::BTreeSet, ops::Bound, path::Path, sync::Arc};

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
    flusher::GroupFlusher,
};

const KEY: u8 = b'K';
const RESERVATION: u8 = b'R';
const IDEMPOTENCY: u8 = b'I';
const AUDIT: u8 = b'U';
/// Index entries of every key.
const INDEX_ALL: u8 = b'A';
/// Index entries of keys not revoked.
const INDEX_LIVE: u8 = b'L';

const BY_PROPERTY: &[u8] = b"p";
const BY_RESERVATION: &[u8] = b"r";
const BY_HOLDER: &[u8] = b"h";
const BY_ENTRANCE: &[u8] = b"e";

pub struct SledStore {
    db: sled::Db,
    main: sled::Tree,
    flusher: Arc<GroupFlusher>,
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
        let flusher = Arc::new(GroupFlusher::start(db.clone()));
        Ok(Self { db, main, flusher })
    }

    /// Flushes everything and stops the flusher; for a graceful shutdown.
    pub fn close(&self) {
        self.flusher.stop();
    }
}

/// Waits for the group-commit flush that covers every write applied so far.
async fn durable(flusher: &GroupFlusher) -> Result<()> {
    flusher
        .sync()
        .await
        .map_err(|why| Error::unavailable(reasons::STORE_UNAVAILABLE, format!("store: {why}")))
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

    fn apply(&self, writes: WriteSet) -> Result<()> {
        let mut batch = sled::Batch::default();
        for (key, old) in &writes.keys {
            batch.insert(
                path(KEY, &[key.property_id.as_bytes(), key.key_id.as_bytes()]),
                encode(key)?,
            );
            let new_entries = index_entries(key);
            let old_entries = old.as_ref().map(index_entries).unwrap_or_default();
            let old_live = old.as_ref().is_some_and(|k| !k.is_revoked());
            for entry in old_entries.difference(&new_entries) {
                batch.remove(tagged(INDEX_ALL, entry));
            }
            for entry in &new_entries {
                batch.insert(tagged(INDEX_ALL, entry), &[]);
            }
            if old_live {
                for entry in &old_entries {
                    batch.remove(tagged(INDEX_LIVE, entry));
                }
            }
            if !key.is_revoked() {
                for entry in &new_entries {
                    batch.insert(tagged(INDEX_LIVE, entry), &[]);
                }
            }
        }
        for r in &writes.reservations {
            batch.insert(
                path(
                    RESERVATION,
                    &[r.property_id.as_bytes(), r.reservation_key.as_bytes()],
                ),
                encode(r)?,
            );
        }
        for record in &writes.idempotency {
            batch.insert(
                path(
                    IDEMPOTENCY,
                    &[record.property_id.as_bytes(), record.request_id.as_bytes()],
                ),
                encode(record)?,
            );
        }
        for record in &writes.audit {
            batch.insert(
                path(
                    AUDIT,
                    &[record.property_id.as_bytes(), record.id.as_bytes()],
                ),
                encode(record)?,
            );
        }
        self.main.apply_batch(batch).map_err(store_error)
    }

    fn expire_idempotency(&self, before: Timestamp) -> Result<usize> {
        let mut batch = sled::Batch::default();
        let mut expired = 0;
        for entry in self.main.scan_prefix([IDEMPOTENCY]) {
            let (k, v) = entry.map_err(store_error)?;
            let record: IdempotencyRecord = decode(&v)?;
            if record.created_at < before {
                batch.remove(k);
                expired += 1;
            }
        }
        self.main.apply_batch(batch).map_err(store_error)?;
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
        durable(&self.flusher).await
    }

    fn driver_state(&self, driver: &str) -> Result<Arc<dyn DriverState>> {
        let tree = self
            .db
            .open_tree(format!("driver/{driver}"))
            .map_err(store_error)?;
        Ok(Arc::new(SledDriverState {
            tree,
            flusher: self.flusher.clone(),
        }))
    }
}

struct SledDriverState {
    tree: sled::Tree,
    flusher: Arc<GroupFlusher>,
}

#[async_trait]
impl DriverState for SledDriverState {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.tree.get(key).map_err(store_error)?.map(|v| v.to_vec()))
    }

    fn apply(&self, changes: Vec<(Vec<u8>, Option<Vec<u8>>)>) -> Result<()> {
        let mut batch = sled::Batch::default();
        for (k, v) in changes {
            match v {
                Some(v) => batch.insert(k, v),
                None => batch.remove(k),
            }
        }
        self.tree.apply_batch(batch).map_err(store_error)
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.tree
            .scan_prefix(prefix)
            .map(|r| {
                r.map(|(k, v)| (k.to_vec(), v.to_vec()))
                    .map_err(store_error)
            })
            .collect()
    }

    async fn sync(&self) -> Result<()> {
        durable(&self.flusher).await
    }
}

#[cfg(test)]
mod tests;
