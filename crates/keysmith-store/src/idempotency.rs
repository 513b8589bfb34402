//! Idempotency records that name their answer instead of copying it.
//!
//! The first answer of an Issue, UpdateKey or EncodeKey is the key as the
//! same commit stored it. Kept whole, it is a second copy of the key record
//! (credentials and all) for as long as the request_id is remembered. So
//! while the key stays as that commit stored it, the record keeps only the
//! key's id and version, and a reference entry (`Q`, property, key id,
//! request_id) says that the key's current version is somebody's answer.
//! The first write that changes or purges the key turns each such record
//! back into a whole one holding the version it answered, in the same
//! atomic batch, and drops the reference: a retry always gets its first
//! answer, unchanged.
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
    layout::IDEMPOTENCY,
    sealing::Sealer,
};

/// References from a key's current version to the idempotency records
/// that answered it: property, key id, request_id.
pub const REFERENCE: u8 = b'Q';
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

fn reference_path(property_id: &str, key_id: &str, request_id: &str) -> Vec<u8> {
    path(
        REFERENCE,
        &[
            property_id.as_bytes(),
            key_id.as_bytes(),
            request_id.as_bytes(),
        ],
    )
}

/// The prefix of the references to a key.
fn references_of(property_id: &str, key_id: &str) -> Vec<u8> {
    path(REFERENCE, &[property_id.as_bytes(), key_id.as_bytes()])
}

/// The ops that store `record`; by reference when its answer is a key that
/// `stored` (the keys of the same write set) stores as it is.
pub fn store(
    record: &IdempotencyRecord,
    stored: &[&AccessKey],
    sealer: &Sealer,
) -> Result<Vec<Op>> {
    let at = record_path(&record.property_id, &record.request_id);
    let answered = match &record.answer {
        StoredAnswer::Key(key) => stored.iter().find(|k| ***k == **key),
        StoredAnswer::Revoked { .. } => None,
    };
    let Some(key) = answered else {
        let value = sealer.seal(&at, &encode(record)?)?;
        return Ok(vec![(at, Some(value))]);
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
    Ok(vec![
        (at, Some(value)),
        (
            reference_path(&record.property_id, &key.key_id, &record.request_id),
            Some(Vec::new()),
        ),
    ])
}

/// The ops that make every record answered by `old` (the version a write
/// replaces or purges) whole again, and drop their references.
pub fn materialize(tree: &sled::Tree, old: &AccessKey, sealer: &Sealer) -> Result<Vec<Op>> {
    let mut ops = Vec::new();
    for entry in tree.scan_prefix(references_of(&old.property_id, &old.key_id)) {
        let (reference, _) = entry.map_err(crate::store_error)?;
        ops.push((reference.to_vec(), None));
        let Some(request_id) = crate::codec::parts(&reference[1..])
            .get(2)
            .map(|r| r.to_vec())
        else {
            continue;
        };
        let request_id = String::from_utf8_lossy(&request_id).into_owned();
        let at = record_path(&old.property_id, &request_id);
        let Some(value) = tree.get(&at).map_err(crate::store_error)? else {
            continue;
        };
        let plain = sealer.open(&at, &value)?;
        let Some(reference) = by_reference(&plain)? else {
            continue;
        };
        let whole = IdempotencyRecord {
            property_id: old.property_id.clone(),
            request_id,
            method: reference.method,
            fingerprint: reference.fingerprint,
            answer: StoredAnswer::Key(Box::new(old.clone())),
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

/// When the record was made, and the reference to delete with it if any.
pub fn expiry(
    property_id: &str,
    request_id: &str,
    plain: &[u8],
) -> Result<(Timestamp, Option<Vec<u8>>)> {
    Ok(match read(property_id, request_id, plain)? {
        Read::Whole(record) => (record.created_at, None),
        Read::Named { record, key_id, .. } => (
            record.created_at,
            Some(reference_path(property_id, &key_id, request_id)),
        ),
    })
}
