//! Where each property's change log lives, and how its numbers are given.
//!
//! A change record lives at `C`, property, sequence (8 bytes, big-endian,
//! so a property's records sort in sequence order), sealed like every
//! record since it holds the key with its credentials. The committer thread
//! numbers the changes of the batch it writes (it is the only writer, so
//! the numbers of a property follow each other with no gap) and writes the
//! records in the same sled batch as the keys they describe.
//!
//! Retention deletes a property's oldest records and remembers, in the
//! store's facts (`M`), the last sequence number it deleted: a property
//! whose every record was purged still knows its head, and a watcher
//! standing before it is told it has missed changes.
use std::collections::HashMap;

use keysmith_core::{
    changes::{KeyChange, PendingChange},
    Result,
};

use crate::{
    codec::{decode, encode, parts, path},
    layout::META,
    sealing::Sealer,
    store_error,
};

/// Change records: property, then sequence number.
pub const CHANGE: u8 = b'C';

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
pub fn purged_through(tree: &sled::Tree, property_id: &str) -> Result<u64> {
    match tree.get(purged_path(property_id)).map_err(store_error)? {
        Some(v) => decode(&v),
        None => Ok(0),
    }
}

/// The property's last sequence number as the tree has it.
pub fn head_in(tree: &sled::Tree, property_id: &str) -> Result<u64> {
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
pub fn heads(tree: &sled::Tree) -> Result<Vec<(String, u64)>> {
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
pub fn incarnation(tree: &sled::Tree) -> Result<String> {
    if let Some(v) = tree.get(incarnation_path()).map_err(store_error)? {
        return decode(&v);
    }
    let made = format!("{:032x}", rand::random::<u128>());
    tree.insert(incarnation_path(), encode(&made)?)
        .map_err(store_error)?;
    tree.flush().map_err(store_error)?;
    Ok(made)
}

/// A record's path and its sealed value.
pub type Sealed = (Vec<u8>, Vec<u8>);

/// The committer's numbering: each property's last number given, as far
/// as the tree and the batches written since say.
#[derive(Default)]
pub struct Numbering {
    heads: HashMap<String, u64>,
}

impl Numbering {
    /// Numbers `pending` and returns the sealed records to write with
    /// them, and the numbered changes to publish once they are durable.
    pub fn number(
        &mut self,
        tree: &sled::Tree,
        sealer: &Sealer,
        pending: Vec<PendingChange>,
    ) -> Result<(Vec<Sealed>, Vec<KeyChange>)> {
        let mut records = Vec::with_capacity(pending.len());
        let mut numbered = Vec::with_capacity(pending.len());
        for change in pending {
            let property = &change.key.property_id;
            let head = match self.heads.get(property) {
                Some(head) => *head,
                None => head_in(tree, property)?,
            };
            let sequence = head + 1;
            self.heads.insert(property.clone(), sequence);
            let change = change.numbered(sequence);
            let at = change_path(&change.property_id, sequence);
            let value = sealer.seal(&at, &encode(&change)?)?;
            records.push((at, value));
            numbered.push(change);
        }
        Ok((records, numbered))
    }

    /// Forgets what was numbered: after a failed write, the tree as it is
    /// reopened says again.
    pub fn forget(&mut self) {
        self.heads.clear();
    }
}
