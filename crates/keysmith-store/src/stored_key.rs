//! A key's stored record: the key, and the records that name its version.
//!
//! While a key stays as a commit stored it, the change record that logged
//! that version (`crate::changelog`) and the first answers that are that
//! version (`crate::idempotency`) name it instead of copying it. Since
//! layout 8 the key's record says which: the sequence of the change record
//! and the request_ids of the answers. The write that replaces or purges
//! the key reads the record it replaces (one get) and makes those records
//! whole in the same batch. Layout 7 kept each reference as a sled entry of
//! its own (`Q` and `W`), and in sled every entry costs about 230 bytes on
//! disk beyond its own bytes.
//!
//! A record that names nothing is stored as before layout 8 (the schema
//! version and the key); one with references starts with
//! [`WITH_REFERENCES`]. Both are sealed at the record's path.
//!
//! A reference may outlive the record it names: retention deletes first
//! answers and change records without rewriting the keys they name (it
//! takes no key's lock, so a rewrite could undo a concurrent change), and a
//! request_id may be used again once its record expired. So whoever
//! follows a reference checks that the record found still names this very
//! version.
use keysmith_core::{AccessKey, Error, Result};
use serde::{Deserialize, Serialize};

use crate::{
    codec::{decode, encode},
    kv,
    layout::{key_path, LIVE_KEY, REVOKED_KEY},
    sealing::Sealer,
    store_error,
};

/// The first byte of a record that carries references beside its key.
const WITH_REFERENCES: u8 = 0xA2;

/// A key's record as stored.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct StoredKey {
    pub key: AccessKey,
    /// The sequence of the change record that logged this version and
    /// names it.
    pub logged_by: Option<u64>,
    /// The request_ids whose first answer is this version, named.
    pub answered: Vec<String>,
}

/// A record to store, borrowed: serialized as [`StoredKey`] is read.
#[derive(Serialize)]
pub struct Record<'a> {
    pub key: &'a AccessKey,
    pub logged_by: Option<u64>,
    pub answered: &'a [String],
}

impl StoredKey {
    pub fn record(&self) -> Record<'_> {
        Record {
            key: &self.key,
            logged_by: self.logged_by,
            answered: &self.answered,
        }
    }

    /// Whether this is the version `key` is.
    pub fn is_version_of(&self, key_id: &str, updated_at: keysmith_core::Timestamp) -> bool {
        self.key.key_id == key_id && self.key.updated_at == updated_at
    }
}

impl Record<'_> {
    fn encode(&self) -> Result<Vec<u8>> {
        if self.logged_by.is_none() && self.answered.is_empty() {
            return encode(self.key);
        }
        let mut plain = vec![WITH_REFERENCES];
        postcard::to_io(self, &mut plain)
            .map_err(|e| Error::internal(format!("encoding a key record: {e}")))?;
        Ok(plain)
    }

    /// The record sealed at `path`.
    pub fn seal(&self, sealer: &Sealer, path: &[u8]) -> Result<Vec<u8>> {
        sealer.seal(path, &self.encode()?)
    }
}

fn decode_record(plain: &[u8]) -> Result<StoredKey> {
    match plain.split_first() {
        Some((&WITH_REFERENCES, body)) => postcard::from_bytes(body)
            .map_err(|e| Error::internal(format!("decoding a key record: {e}"))),
        _ => Ok(StoredKey {
            key: decode(plain)?,
            logged_by: None,
            answered: Vec::new(),
        }),
    }
}

/// Opens the sealed record at `path`.
pub fn open(sealer: &Sealer, path: &[u8], value: &[u8]) -> Result<StoredKey> {
    decode_record(&sealer.open(path, value)?)
}

/// Opens the sealed record at `path` for its key alone.
pub fn open_key(sealer: &Sealer, path: &[u8], value: &[u8]) -> Result<AccessKey> {
    open(sealer, path, value).map(|stored| stored.key)
}

/// The key's record as `tree` has it now, live or ended; with its path.
pub fn read_at(
    tree: &kv::Tree,
    sealer: &Sealer,
    property_id: &str,
    key_id: &str,
) -> Result<Option<(Vec<u8>, StoredKey)>> {
    for tag in [LIVE_KEY, REVOKED_KEY] {
        let at = key_path(tag, property_id, key_id);
        if let Some(value) = tree.get(&at).map_err(store_error)? {
            let stored = open(sealer, &at, &value)?;
            return Ok(Some((at, stored)));
        }
    }
    Ok(None)
}

/// The key's record as `tree` has it now, live or ended.
pub fn read(
    tree: &kv::Tree,
    sealer: &Sealer,
    property_id: &str,
    key_id: &str,
) -> Result<Option<StoredKey>> {
    Ok(read_at(tree, sealer, property_id, key_id)?.map(|(_, stored)| stored))
}

/// The sealed record `value` at `path` saying that the change record
/// `sequence` logged it; None when the record is not the version `key` is
/// (the change is then stored whole).
pub fn logged_by(
    sealer: &Sealer,
    path: &[u8],
    value: &[u8],
    key: &AccessKey,
    sequence: u64,
) -> Result<Option<Vec<u8>>> {
    let mut stored = open(sealer, path, value)?;
    if !stored.is_version_of(&key.key_id, key.updated_at) {
        return Ok(None);
    }
    stored.logged_by = Some(sequence);
    stored.record().seal(sealer, path).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_without_references_is_stored_as_before_layout_8() {
        let key = crate::suite::key("k1", "g1", None);
        let bare = Record {
            key: &key,
            logged_by: None,
            answered: &[],
        }
        .encode()
        .unwrap();
        assert_eq!(bare, encode(&key).unwrap());
        let answered = vec!["r1".to_owned()];
        let named = Record {
            key: &key,
            logged_by: Some(7),
            answered: &answered,
        };
        let back = decode_record(&named.encode().unwrap()).unwrap();
        assert_eq!(back.key, key);
        assert_eq!((back.logged_by, back.answered), (Some(7), answered));
        assert_eq!(decode_record(&bare).unwrap().logged_by, None);
    }
}
