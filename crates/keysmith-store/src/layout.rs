//! Where each record lives in the main tree, and the change a write set
//! makes to it.
//!
//! A key's record lives under `K` while the key is not revoked and under `V`
//! once it is, each ordered by property and then key id (which grows with
//! creation time). So a property's listing reads records in order, with no
//! index entry and no second lookup per key, and a listing of live keys
//! never wades through revoked ones. The filtered listings (by reservation,
//! holder, entrance) walk index entries: `A` holds every key's, `L` only
//! those of keys not revoked.
use std::collections::BTreeSet;

use keysmith_core::{store::WriteSet, AccessKey, Result};

use crate::{
    codec::{encode, path},
    committer::Op,
};

pub const LIVE_KEY: u8 = b'K';
pub const REVOKED_KEY: u8 = b'V';
pub const RESERVATION: u8 = b'R';
pub const IDEMPOTENCY: u8 = b'I';
pub const AUDIT: u8 = b'U';
/// A driver's own state: the driver's name, then the driver's key.
pub const DRIVER_STATE: u8 = b'D';
/// Facts about the store itself, such as its layout version.
pub const META: u8 = b'M';
/// Index entries of every key.
pub const INDEX_ALL: u8 = b'A';
/// Index entries of keys not revoked.
pub const INDEX_LIVE: u8 = b'L';

pub const BY_RESERVATION: &[u8] = b"r";
pub const BY_HOLDER: &[u8] = b"h";
pub const BY_ENTRANCE: &[u8] = b"e";

/// The layout this code reads and writes: 2 moved revoked keys under `V`
/// and dropped the property index; 3 keeps every key a reservation has had
/// among its members (ended and revoked ones too).
pub const LAYOUT: u8 = 3;

pub fn layout_marker() -> Vec<u8> {
    path(META, &[b"layout"])
}

pub fn key_path(tag: u8, property_id: &str, key_id: &str) -> Vec<u8> {
    path(tag, &[property_id.as_bytes(), key_id.as_bytes()])
}

/// Where a key's record lives.
pub fn record_path(key: &AccessKey) -> Vec<u8> {
    let tag = if key.is_revoked() {
        REVOKED_KEY
    } else {
        LIVE_KEY
    };
    key_path(tag, &key.property_id, &key.key_id)
}

/// The index entries (without their set tag) that a key has.
fn index_entries(key: &AccessKey) -> BTreeSet<Vec<u8>> {
    let mut out = BTreeSet::new();
    let id = key.key_id.as_bytes();
    let p = key.property_id.as_bytes();
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

/// The entries of one index, in the set of every key or of live keys only.
pub fn index_prefix(live_only: bool, property_id: &str, kind: &[u8], value: &[u8]) -> Vec<u8> {
    let tag = if live_only { INDEX_LIVE } else { INDEX_ALL };
    tagged(tag, &path(0, &[property_id.as_bytes(), kind, value])[1..])
}

fn tagged(tag: u8, entry: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entry.len() + 1);
    out.push(tag);
    out.extend_from_slice(entry);
    out
}

/// The atomic change a write set makes to the main tree. A later op on the
/// same key wins, so deletes come before puts.
pub fn ops(writes: &WriteSet) -> Result<Vec<Op>> {
    let mut ops = Vec::new();
    for (key, old) in &writes.keys {
        if let Some(old) = old {
            let moved = record_path(old);
            if moved != record_path(key) {
                ops.push((moved, None));
            }
        }
        ops.push((record_path(key), Some(encode(key)?)));

        let new_entries = index_entries(key);
        let old_entries = old.as_ref().map(index_entries).unwrap_or_default();
        let old_live = old.as_ref().is_some_and(|k| !k.is_revoked());
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
