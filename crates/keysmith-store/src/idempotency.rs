//! Idempotency records that name their answer instead of copying it.
//!
//! The first answer of an Issue, UpdateKey or EncodeKey is the key as the
//! same commit stored it. Kept whole, it is a second copy of the key record
//! (credentials and all) for as long as the request_id is remembered. So
//! while the key stays as that commit stored it, the record keeps only the
//! key's id and version, and the key's record lists the request_id among
//! those it answered (`crate::stored_key`). The first write that changes or
//! purges the key turns each such record back into a whole one holding the
//! version it answered, in the same atomic batch: a retry always gets its
//! first answer, unchanged.
//!
//! A whole record is stored as before (schema version 1 in the seal); a
//! reference record carries [`BY_REFERENCE`] as its first byte instead.
use keysmith_core::{
    store::{IdempotencyRecord, StoredAnswer},
    AccessKey, Error, Result, Timestamp,
};
use serde::{Deserialize, Serialize};

use crate::{
    codec::{decode, encode, path},
    committer::Op,
    kv,
    layout::IDEMPOTENCY,
    sealing::Sealer,
    store_error,
    stored_key::StoredKey,
};

/// The first byte of a record that names its answer.
const BY_REFERENCE: u8 = 0xA1;

/// A record whose answer is the key `key_id` as stored at `updated_at`.
#[derive(Serialize, Deserialize)]
struct ByReference {
    method: String,
    fingerprint: [u8; 32],
    created_at: Timestamp,
    key_id: String,
    updated_at: Timestamp,
}

pub fn record_path(property_id: &str, request_id: &str) -> Vec<u8> {
    path(
        IDEMPOTENCY,
        &[property_id.as_bytes(), request_id.as_bytes()],
    )
}

/// The op that stores `record`, and the key it names: by reference when
/// its answer is a key that `stored` (the versions the same write set
/// leaves stored) stores as it is. The key's record must then list the
/// request_id.
pub fn store<'k>(
    record: &IdempotencyRecord,
    stored: &[&'k AccessKey],
    sealer: &Sealer,
) -> Result<(Op, Option<&'k AccessKey>)> {
    let at = record_path(&record.property_id, &record.request_id);
    let answered = match &record.answer {
        StoredAnswer::Key(key) => stored.iter().copied().find(|k| *k == &**key),
        StoredAnswer::Revoked { .. } => None,
    };
    let Some(key) = answered else {
        let value = sealer.seal(&at, &encode(record)?)?;
        return Ok(((at, Some(value)), None));
    };
    let mut plain = vec![BY_REFERENCE];
    postcard::to_io(
        &ByReference {
            method: record.method.clone(),
            fingerprint: record.fingerprint,
            created_at: record.created_at,
            key_id: key.key_id.clone(),
            updated_at: key.updated_at,
        },
        &mut plain,
    )
    .map_err(|e| Error::internal(format!("encoding a record: {e}")))?;
    let value = sealer.seal(&at, &plain)?;
    Ok(((at, Some(value)), Some(key)))
}

/// The ops that make every record answered by `old` (the stored version a
/// write replaces or purges) whole again. A request_id whose record has
/// expired, or names another version (used again since), is passed over.
pub fn materialize(tree: &kv::Tree, old: &StoredKey, sealer: &Sealer) -> Result<Vec<Op>> {
    let mut ops = Vec::new();
    for request_id in &old.answered {
        let at = record_path(&old.key.property_id, request_id);
        let Some(value) = tree.get(&at).map_err(store_error)? else {
            continue;
        };
        let plain = sealer.open(&at, &value)?;
        let Some(reference) = by_reference(&plain)? else {
            continue;
        };
        if !old.is_version_of(&reference.key_id, reference.updated_at) {
            continue;
        }
        let whole = IdempotencyRecord {
            property_id: old.key.property_id.clone(),
            request_id: request_id.clone(),
            method: reference.method,
            fingerprint: reference.fingerprint,
            answer: StoredAnswer::Key(Box::new(old.key.clone())),
            created_at: reference.created_at,
        };
        ops.push((at.clone(), Some(sealer.seal(&at, &encode(&whole)?)?)));
    }
    Ok(ops)
}

fn by_reference(plain: &[u8]) -> Result<Option<ByReference>> {
    match plain.split_first() {
        Some((&BY_REFERENCE, body)) => postcard::from_bytes(body)
            .map(Some)
            .map_err(|e| Error::internal(format!("decoding a record: {e}"))),
        _ => Ok(None),
    }
}

/// What a stored record (opened) says: whole, or the key it names (with
/// the rest of the record, its answer still to be read).
pub enum Read {
    Whole(IdempotencyRecord),
    Named {
        record: IdempotencyRecord,
        key_id: String,
        updated_at: Timestamp,
    },
}

pub fn read(property_id: &str, request_id: &str, plain: &[u8]) -> Result<Read> {
    let Some(reference) = by_reference(plain)? else {
        return Ok(Read::Whole(decode(plain)?));
    };
    Ok(Read::Named {
        record: IdempotencyRecord {
            property_id: property_id.to_owned(),
            request_id: request_id.to_owned(),
            method: reference.method,
            fingerprint: reference.fingerprint,
            // Replaced by the key once read.
            answer: StoredAnswer::Revoked {
                keys: Vec::new(),
                warnings: Vec::new(),
            },
            created_at: reference.created_at,
        },
        key_id: reference.key_id,
        updated_at: reference.updated_at,
    })
}

/// When the record (opened) was made. A record by reference goes alone:
/// the key's record may keep naming its request_id, which
/// [`materialize`] then passes over.
pub fn created_at(property_id: &str, request_id: &str, plain: &[u8]) -> Result<Timestamp> {
    Ok(match read(property_id, request_id, plain)? {
        Read::Whole(record) => record.created_at,
        Read::Named { record, .. } => record.created_at,
    })
}
