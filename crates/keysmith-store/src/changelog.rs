//! Where each property's change log lives, and how its numbers are given.
//!
//! A change record lives at `C`, property, sequence (8 bytes, big-endian,
//! so a property's records sort in sequence order), sealed like every
//! record since it holds the key with its credentials. The committer thread
//! numbers the changes of the batch it writes (it is the only writer, so
//! the numbers of a property follow each other with no gap) and writes the
//! records in the same batch as the keys they describe.
//!
//! A record names the key's version instead of copying it while the key
//! stays as the change stored it (the latest change of a key): the key's
//! record holds that record's sequence (`crate::stored_key`), which the
//! committer writes into it in the batch that logs the change, and the
//! write that changes or purges the key makes the record whole, holding the
//! version it logged, in the same atomic batch (as `crate::idempotency`
//! does for first answers). A whole record is stored as before; one by
//! reference starts with [`BY_REFERENCE`].
//!
//! Retention deletes a property's oldest records and remembers, in the
//! store's facts (`M`), the last sequence number it deleted: a property
//! whose every record was purged still knows its head, and a watcher
//! standing before it is told it has missed changes.
use std::collections::HashMap;

use keysmith_core::{
    changes::{ChangeKind, KeyChange, PendingChange},
    AccessKey, Error, Result, Timestamp,
};
use serde::{Deserialize, Serialize};

use crate::{
    codec::{decode, encode, parts, path},
    committer::Op,
    kv,
    layout::{record_path, META},
    sealing::Sealer,
    store_error,
    stored_key::{self, StoredKey},
};

/// Change records: property, then sequence number.
pub const CHANGE: u8 = b'C';
/// The first byte of a change record that names its key's version.
const BY_REFERENCE: u8 = 0xA1;

/// A change record that names the key as stored at `updated_at`.
#[derive(Serialize, Deserialize)]
struct ByReference {
    kind: ChangeKind,
    at: Timestamp,
    key_id: String,
    updated_at: Timestamp,
}

fn by_reference(plain: &[u8]) -> Result<Option<ByReference>> {
    match plain.split_first() {
        Some((&BY_REFERENCE, body)) => postcard::from_bytes(body)
            .map(Some)
            .map_err(|e| Error::internal(format!("decoding a change record: {e}"))),
        _ => Ok(None),
    }
}

/// Reads the change record at `record_path` (sealed `value`) whole: one by
/// reference gets its key's record, read before the change record is read
/// again (had the key changed in between, the same batch would have made
/// the record whole).
pub fn read(
    tree: &kv::Tree,
    sealer: &Sealer,
    record_path: &[u8],
    value: &[u8],
) -> Result<KeyChange> {
    let mut plain = sealer.open(record_path, value)?;
    for _ in 0..2 {
        let Some(reference) = by_reference(&plain)? else {
            return decode(&plain);
        };
        let Some(sequence) = sequence_of(record_path) else {
            return Err(Error::internal("a change record's path has no sequence"));
        };
        let property_id = parts(&record_path[1..])
            .first()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .unwrap_or_default();
        let key = stored_key::read(tree, sealer, &property_id, &reference.key_id)?
            .map(|stored| stored.key);
        let Some(again) = tree.get(record_path).map_err(store_error)? else {
            return Err(Error::internal("a change record went while it was read"));
        };
        plain = sealer.open(record_path, &again)?;
        if by_reference(&plain)?.is_some() {
            let key = key
                .filter(|k| k.updated_at == reference.updated_at)
                .ok_or_else(|| {
                    Error::internal("a change record names a key version that is gone")
                })?;
            return Ok(PendingChange {
                kind: reference.kind,
                at: reference.at,
                key,
            }
            .numbered(sequence));
        }
    }
    decode(&plain)
}

/// When a change record (opened) was made. A record by reference goes
/// alone: the key's record may keep its sequence, which [`materialize`]
/// then passes over (sequences are never given twice).
pub fn made_at(plain: &[u8]) -> Result<Timestamp> {
    Ok(match by_reference(plain)? {
        Some(reference) => reference.at,
        None => decode::<KeyChange>(plain)?.at,
    })
}

/// The op that makes the change record that `old` (the stored version a
/// write replaces or purges) names as its logger whole again, if that
/// record is still there by reference.
pub fn materialize(tree: &kv::Tree, old: &StoredKey, sealer: &Sealer) -> Result<Vec<Op>> {
    let Some(sequence) = old.logged_by else {
        return Ok(Vec::new());
    };
    Ok(make_whole(tree, sealer, &old.key, sequence)?
        .into_iter()
        .collect())
}

/// The op that makes the change record `sequence` whole with `key`, if it
/// names `key`'s version by reference.
pub fn make_whole(
    tree: &kv::Tree,
    sealer: &Sealer,
    key: &AccessKey,
    sequence: u64,
) -> Result<Option<Op>> {
    let at = change_path(&key.property_id, sequence);
    let Some(value) = tree.get(&at).map_err(store_error)? else {
        return Ok(None);
    };
    let Some(named) = by_reference(&sealer.open(&at, &value)?)? else {
        return Ok(None);
    };
    if named.key_id != key.key_id || named.updated_at != key.updated_at {
        return Ok(None);
    }
    let whole = PendingChange {
        kind: named.kind,
        at: named.at,
        key: key.clone(),
    }
    .numbered(sequence);
    let sealed = sealer.seal(&at, &encode(&whole)?)?;
    Ok(Some((at, Some(sealed))))
}

pub fn change_path(property_id: &str, sequence: u64) -> Vec<u8> {
    path(CHANGE, &[property_id.as_bytes(), &sequence.to_be_bytes()])
}

/// The prefix of every change record of a property.
pub fn property_prefix(property_id: &str) -> Vec<u8> {
    path(CHANGE, &[property_id.as_bytes()])
}

/// The fact holding the last sequence number purged from a property's log.
pub fn purged_path(property_id: &str) -> Vec<u8> {
    path(META, &[b"change-purged", property_id.as_bytes()])
}

/// The fact holding the store's incarnation.
pub fn incarnation_path() -> Vec<u8> {
    path(META, &[b"incarnation"])
}

/// The sequence number of a change record's path.
pub fn sequence_of(record_path: &[u8]) -> Option<u64> {
    let [_, sequence] = parts(record_path.get(1..)?)[..] else {
        return None;
    };
    Some(u64::from_be_bytes(sequence.try_into().ok()?))
}

/// The last sequence number purged from the property's log (0: none).
pub fn purged_through(tree: &kv::Tree, property_id: &str) -> Result<u64> {
    match tree.get(purged_path(property_id)).map_err(store_error)? {
        Some(v) => decode(&v),
        None => Ok(0),
    }
}

/// The property's last sequence number as the tree has it.
pub fn head_in(tree: &kv::Tree, property_id: &str) -> Result<u64> {
    let last = tree
        .scan_prefix(property_prefix(property_id))
        .next_back()
        .transpose()
        .map_err(store_error)?
        .and_then(|(k, _)| sequence_of(&k))
        .unwrap_or(0);
    Ok(last.max(purged_through(tree, property_id)?))
}

/// Every property with a change log (records or a purge mark) and its last
/// sequence number, for the feed at open. Reads two entries per property.
pub fn heads(tree: &kv::Tree) -> Result<Vec<(String, u64)>> {
    let mut out = Vec::new();
    let mut from = vec![CHANGE];
    while let Some(entry) = tree.range(from.clone()..).next() {
        let (k, _) = entry.map_err(store_error)?;
        if k.first() != Some(&CHANGE) {
            break;
        }
        let Some(property) = parts(&k[1..]).first().map(|p| p.to_vec()) else {
            break;
        };
        let property = String::from_utf8_lossy(&property).into_owned();
        out.push((property.clone(), head_in(tree, &property)?));
        from = property_prefix(&property);
        from.push(0xff);
    }
    let purged_prefix = path(META, &[b"change-purged"]);
    for entry in tree.scan_prefix(&purged_prefix) {
        let (k, v) = entry.map_err(store_error)?;
        let Some(property) = parts(&k[1..]).get(1).map(|p| p.to_vec()) else {
            continue;
        };
        let property = String::from_utf8_lossy(&property).into_owned();
        if !out.iter().any(|(p, _)| *p == property) {
            out.push((property, decode(&v)?));
        }
    }
    Ok(out)
}

/// The store's incarnation, made the first time a store is opened.
pub fn incarnation(tree: &kv::Tree) -> Result<String> {
    if let Some(v) = tree.get(incarnation_path()).map_err(store_error)? {
        return decode(&v);
    }
    let made = format!("{:032x}", rand::random::<u128>());
    tree.insert(incarnation_path(), encode(&made)?)
        .map_err(store_error)?;
    tree.flush().map_err(store_error)?;
    Ok(made)
}

/// The key records a batch writes, by path: the last value each is given
/// (None: deleted).
pub type WrittenKeys<'a> = HashMap<&'a [u8], Option<&'a [u8]>>;

/// The key record op that says the change `sequence` logged `key`: its
/// record as the batch writes it, with the sequence. None when the batch
/// does not leave that version stored (the change is then stored whole).
fn naming_record(
    sealer: &Sealer,
    written: &WrittenKeys<'_>,
    key: &AccessKey,
    sequence: u64,
) -> Result<Option<Op>> {
    let path = record_path(key);
    let Some(Some(value)) = written.get(path.as_slice()) else {
        return Ok(None);
    };
    Ok(stored_key::logged_by(sealer, &path, value, key, sequence)?.map(|v| (path, Some(v))))
}

/// The committer's numbering: each property's last number given, as far
/// as the tree and the batches written since say.
#[derive(Default)]
pub struct Numbering {
    heads: HashMap<String, u64>,
}

impl Numbering {
    /// Numbers `pending` and returns the ops to write with them (their
    /// records, the records of earlier changes to their keys made whole,
    /// and the key records that name their latest change), and the
    /// numbered changes to publish once they are durable.
    ///
    /// The records that name a key's version as the tree has it before this
    /// batch are made whole here, from the tree itself, since the batch
    /// replaces that version. Only a key's last change in the batch names
    /// its version, and only when `written` (the key records of the batch)
    /// stores that version: its record then gets the change's sequence. An
    /// earlier change is stored whole.
    pub fn number(
        &mut self,
        tree: &kv::Tree,
        sealer: &Sealer,
        pending: Vec<PendingChange>,
        written: &WrittenKeys<'_>,
    ) -> Result<(Vec<Op>, Vec<KeyChange>)> {
        let mut ops = Vec::with_capacity(pending.len() * 3);
        let mut numbered = Vec::with_capacity(pending.len());
        let mut last_of_key: HashMap<(String, String), usize> = HashMap::new();
        for (i, change) in pending.iter().enumerate() {
            let key = (change.key.property_id.clone(), change.key.key_id.clone());
            if !last_of_key.contains_key(&key) {
                if let Some(before) =
                    stored_key::read(tree, sealer, &change.key.property_id, &change.key.key_id)?
                {
                    ops.extend(materialize(tree, &before, sealer)?);
                }
            }
            last_of_key.insert(key, i);
        }
        for (i, change) in pending.into_iter().enumerate() {
            let property = &change.key.property_id;
            let head = match self.heads.get(property) {
                Some(head) => *head,
                None => head_in(tree, property)?,
            };
            let sequence = head + 1;
            self.heads.insert(property.clone(), sequence);
            let last = last_of_key
                .get(&(property.clone(), change.key.key_id.clone()))
                .is_some_and(|at| *at == i);
            let naming = if last {
                naming_record(sealer, written, &change.key, sequence)?
            } else {
                None
            };
            let change = change.numbered(sequence);
            let at = change_path(&change.property_id, sequence);
            let plain = match naming {
                Some(key_record) => {
                    ops.push(key_record);
                    let mut plain = vec![BY_REFERENCE];
                    postcard::to_io(
                        &ByReference {
                            kind: change.kind,
                            at: change.at,
                            key_id: change.key.key_id.clone(),
                            updated_at: change.key.updated_at,
                        },
                        &mut plain,
                    )
                    .map_err(|e| Error::internal(format!("encoding a change record: {e}")))?;
                    plain
                }
                None => encode(&change)?,
            };
            ops.push((at.clone(), Some(sealer.seal(&at, &plain)?)));
            numbered.push(change);
        }
        Ok((ops, numbered))
    }

    /// Forgets what was numbered: after a failed write, the tree as it is
    /// reopened says again.
    pub fn forget(&mut self) {
        self.heads.clear();
    }
}
