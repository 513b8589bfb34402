//! Where each record lives in the main tree, and the change a write set
//! makes to it.
//!
//! A key's record lives under `K` while the key is live and under `V` once
//! it has ended (revoked, or expired and swept), each ordered by property
//! and then key id (which grows with
//! creation time). So a property's listing reads records in order, with no
//! index entry and no second lookup per key, and a listing of live keys
//! never wades through ended ones. The filtered listings (by reservation,
//! holder, entrance) walk the index entries in `A`, skipping the ended keys
//! it holds until they are purged.
use std::collections::{hash_map::Entry, BTreeSet, HashMap};

use keysmith_core::{store::WriteSet, AccessKey, Result, Timestamp};

use crate::{
    codec::{encode, path},
    committer::Op,
    idempotency, kv,
    sealing::Sealer,
    stored_key::{self, Record, StoredKey},
};

pub const LIVE_KEY: u8 = b'K';
pub const REVOKED_KEY: u8 = b'V';
pub const RESERVATION: u8 = b'R';
pub const IDEMPOTENCY: u8 = b'I';
/// Audit records, until layout 7 moved them into the journal.
pub const AUDIT: u8 = b'U';
/// Layout 7's references from a key's version to the first answers that
/// name it (property, key id, request_id), until layout 8 moved them into
/// the key's record (`crate::stored_key`).
pub const ANSWER_REFERENCE: u8 = b'Q';
/// Layout 7's references from a key's version to the change record that
/// logged it (property, key id, sequence), until layout 8 moved them into
/// the key's record.
pub const CHANGE_REFERENCE: u8 = b'W';
/// A driver's own state: the driver's name, then the driver's key.
pub const DRIVER_STATE: u8 = b'D';
/// Facts about the store itself, such as its layout version.
pub const META: u8 = b'M';
/// Index entries of every key.
pub const INDEX_ALL: u8 = b'A';
/// Index entries of live keys, until layout 5: a second copy of `A`, which
/// retention made unnecessary (a walk of `A` skips the few ended keys it
/// keeps).
pub const INDEX_LIVE: u8 = b'L';

pub const BY_RESERVATION: &[u8] = b"r";
pub const BY_HOLDER: &[u8] = b"h";
pub const BY_ENTRANCE: &[u8] = b"e";

/// Entries of live keys by the end of their window, so that the sweeper
/// finds the keys that have ended without reading the others.
pub const BY_END: u8 = b'X';
/// Entries of ended (revoked or expired) keys by when they ended, so that
/// the sweeper finds the keys past their retention.
pub const BY_ENDED: u8 = b'P';

/// The layout this code reads and writes: 2 moved revoked keys under `V`
/// and dropped the property index; 3 keeps every key a reservation has had
/// among its members (ended and revoked ones too); 4 moves expired keys out
/// of the live set (under `V`, with the revoked ones) and keeps the `X` and
/// `P` entries the sweeper walks; 5 drops the `L` entries; 6 seals every
/// value (`crate::sealing`); 7 moves the audit records into the journal
/// (`crate::journal`); 8 keeps the references to a key's version in its
/// record (`crate::stored_key`) instead of entries of their own.
pub const LAYOUT: u8 = 8;

pub fn layout_marker() -> Vec<u8> {
    path(META, &[b"layout"])
}

pub fn key_path(tag: u8, property_id: &str, key_id: &str) -> Vec<u8> {
    path(tag, &[property_id.as_bytes(), key_id.as_bytes()])
}

/// Where a key's record lives: under `V` once it has ended (revoked, or
/// expired and swept), else under `K`.
pub fn record_path(key: &AccessKey) -> Vec<u8> {
    let tag = if key.is_ended() {
        REVOKED_KEY
    } else {
        LIVE_KEY
    };
    key_path(tag, &key.property_id, &key.key_id)
}

/// An instant as bytes that sort as the instants do (the sign bit flipped).
pub fn ordered(at: Timestamp) -> [u8; 8] {
    ((at.as_micros() as u64) ^ (1 << 63)).to_be_bytes()
}

/// The first `BY_END`/`BY_ENDED` entry at or after `at`.
pub fn time_bound(tag: u8, at: Timestamp) -> Vec<u8> {
    path(tag, &[&ordered(at)])
}

/// Every entry a version of a key has, beside its record: the index entries
/// of every key (`A`), those of live keys (`L`), and the sweeper's `X`
/// (live, by window end) or `P` (ended, by when it ended).
pub fn entries(key: &AccessKey) -> BTreeSet<Vec<u8>> {
    let mut out = BTreeSet::new();
    let id = key.key_id.as_bytes();
    let p = key.property_id.as_bytes();
    let mut index = vec![index_path(p, BY_HOLDER, key.holder.id.as_bytes(), id)];
    for e in &key.entrances {
        index.push(index_path(p, BY_ENTRANCE, e.entrance_id.as_bytes(), id));
    }
    if let Some(rk) = key.reservation_key() {
        index.push(index_path(p, BY_RESERVATION, rk.as_bytes(), id));
    }
    for entry in &index {
        out.insert(tagged(INDEX_ALL, entry));
    }
    match key.ended_at() {
        None => {
            out.insert(path(BY_END, &[&ordered(key.window.ends_at), p, id]));
        }
        Some(ended) => {
            out.insert(path(BY_ENDED, &[&ordered(ended), p, id]));
        }
    }
    out
}

fn index_path(property: &[u8], kind: &[u8], value: &[u8], key_id: &[u8]) -> Vec<u8> {
    path(0, &[property, kind, value, key_id])[1..].to_vec()
}

/// The entries of one index.
pub fn index_prefix(property_id: &str, kind: &[u8], value: &[u8]) -> Vec<u8> {
    tagged(
        INDEX_ALL,
        &path(0, &[property_id.as_bytes(), kind, value])[1..],
    )
}

fn tagged(tag: u8, entry: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entry.len() + 1);
    out.push(tag);
    out.extend_from_slice(entry);
    out
}

/// The atomic change a write set makes to the main tree, which is read
/// for the records it replaces (what names their versions). A later op on
/// the same key wins, so deletes come before puts.
pub fn ops(writes: &WriteSet, tree: &kv::Tree, sealer: &Sealer) -> Result<Vec<Op>> {
    let sealed = |path: Vec<u8>, value: Vec<u8>| -> Result<Op> {
        let value = sealer.seal(&path, &value)?;
        Ok((path, Some(value)))
    };
    let mut ops = Vec::new();
    // The version of each key the write set leaves stored (a key written
    // twice leaves its last), and the records of the keys it replaces or
    // purges as the tree has them, each read once.
    let mut kept: HashMap<(&str, &str), &AccessKey> = HashMap::new();
    for (key, _) in &writes.keys {
        kept.insert((&key.property_id, &key.key_id), key);
    }
    let mut before: HashMap<(&str, &str), Option<StoredKey>> = HashMap::new();
    let olds = writes
        .keys
        .iter()
        .filter_map(|(_, old)| old.as_ref())
        .chain(&writes.purged);
    for old in olds {
        let id = (old.property_id.as_str(), old.key_id.as_str());
        if let Entry::Vacant(unread) = before.entry(id) {
            unread.insert(stored_key::read(tree, sealer, id.0, id.1)?);
        }
    }
    // The first answers that name a version this replaces or purges are
    // made whole first; so are the change records that name a key purged
    // (the committer does it for the keys it logs a change of).
    let purged: BTreeSet<(&str, &str)> = writes
        .purged
        .iter()
        .map(|k| (k.property_id.as_str(), k.key_id.as_str()))
        .collect();
    for (id, stored) in &before {
        let Some(stored) = stored else { continue };
        let replaced = kept.get(id).is_none_or(|kept| **kept != stored.key);
        if replaced || purged.contains(id) {
            ops.extend(idempotency::materialize(tree, stored, sealer)?);
        }
        if purged.contains(id) {
            ops.extend(crate::changelog::materialize(tree, stored, sealer)?);
        }
    }
    // The first answers this stores, and the request_ids each key's record
    // must list for those that name it.
    let stored_versions: Vec<&AccessKey> = kept.values().copied().collect();
    let mut answers = Vec::with_capacity(writes.idempotency.len());
    let mut answered: HashMap<(&str, &str), Vec<String>> = HashMap::new();
    for record in &writes.idempotency {
        let (op, names) = idempotency::store(record, &stored_versions, sealer)?;
        answers.push(op);
        if let Some(key) = names {
            answered
                .entry((&key.property_id, &key.key_id))
                .or_default()
                .push(record.request_id.clone());
        }
    }
    for (key, old) in &writes.keys {
        let id = (key.property_id.as_str(), key.key_id.as_str());
        let new_entries = entries(key);
        let old_entries = old.as_ref().map(entries).unwrap_or_default();
        if let Some(old) = old {
            let moved = record_path(old);
            if moved != record_path(key) {
                ops.push((moved, None));
            }
        }
        for entry in old_entries.difference(&new_entries) {
            ops.push((entry.clone(), None));
        }
        let at = record_path(key);
        let is_kept = kept.get(&id).is_some_and(|kept| std::ptr::eq(*kept, key));
        let new_answers = answered
            .get(&id)
            .filter(|_| is_kept)
            .map_or(&[][..], Vec::as_slice);
        let unchanged = before
            .get(&id)
            .and_then(Option::as_ref)
            .filter(|stored| is_kept && stored.key == *key);
        let value = match unchanged {
            // The version stored stays, and so do the records that name it.
            Some(stored) => {
                let mut named = stored.clone();
                for request_id in new_answers {
                    if !named.answered.contains(request_id) {
                        named.answered.push(request_id.clone());
                    }
                }
                named.record().seal(sealer, &at)?
            }
            // A new version: the committer adds the change that logs it.
            None => Record {
                key,
                logged_by: None,
                answered: new_answers,
            }
            .seal(sealer, &at)?,
        };
        ops.push((at, Some(value)));
        for entry in new_entries.difference(&old_entries) {
            ops.push((entry.clone(), Some(Vec::new())));
        }
    }
    for key in &writes.purged {
        for tag in [LIVE_KEY, REVOKED_KEY] {
            ops.push((key_path(tag, &key.property_id, &key.key_id), None));
        }
        for entry in entries(key) {
            ops.push((entry, None));
        }
    }
    for (property_id, reservation_key) in &writes.purged_reservations {
        ops.push((
            path(
                RESERVATION,
                &[property_id.as_bytes(), reservation_key.as_bytes()],
            ),
            None,
        ));
    }
    for r in &writes.reservations {
        ops.push(sealed(
            path(
                RESERVATION,
                &[r.property_id.as_bytes(), r.reservation_key.as_bytes()],
            ),
            encode(r)?,
        )?);
    }
    ops.extend(answers);
    // The audit records go to the journal (`crate::journal`), in the same
    // committer cycle.
    Ok(ops)
}
