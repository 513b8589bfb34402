//! How values are sealed in the database: exactly as the sled store seals
//! its records (keysmith-store's `Sealer` and record encoding), each bound
//! by its associated data to where it lives, so that a sealed value copied
//! into another row (another key, property or table) does not open.
//!
//! The associated data is the path the record would have in sled's tree,
//! with one difference: a key's path does not change when it ends (sled
//! moves ended keys under another tag; here they stay in their row).
use keysmith_core::Result;
use keysmith_store::{
    codec::{decode, encode, path},
    sealing::Sealer,
};
use serde::{de::DeserializeOwned, Serialize};

pub(crate) fn key(property_id: &str, key_id: &str) -> Vec<u8> {
    path(b'K', &[property_id.as_bytes(), key_id.as_bytes()])
}

pub(crate) fn reservation(property_id: &str, reservation_key: &str) -> Vec<u8> {
    path(b'R', &[property_id.as_bytes(), reservation_key.as_bytes()])
}

pub(crate) fn idempotency(property_id: &str, request_id: &str) -> Vec<u8> {
    path(b'I', &[property_id.as_bytes(), request_id.as_bytes()])
}

pub(crate) fn audit(property_id: &str, id: &str) -> Vec<u8> {
    path(b'U', &[property_id.as_bytes(), id.as_bytes()])
}

pub(crate) fn change(property_id: &str, sequence: u64) -> Vec<u8> {
    path(b'C', &[property_id.as_bytes(), &sequence.to_be_bytes()])
}

/// A driver's value: its namespace, then the driver's own key.
pub(crate) fn driver_state(namespace: &str, key: &[u8]) -> Vec<u8> {
    [path(b'D', &[namespace.as_bytes()]).as_slice(), key].concat()
}

pub(crate) fn seal<T: Serialize>(sealer: &Sealer, at: &[u8], value: &T) -> Result<Vec<u8>> {
    sealer.seal(at, &encode(value)?)
}

pub(crate) fn open<T: DeserializeOwned>(sealer: &Sealer, at: &[u8], sealed: &[u8]) -> Result<T> {
    decode(&sealer.open(at, sealed)?)
}
