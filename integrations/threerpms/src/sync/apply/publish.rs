//! What keysmith publishes to 3RPMS for a key: the lock driver's PIN or QR
//! code as a new 3RPMS key, and a digest of it, to notice when the
//! credential changes (re-encoded) without keeping it twice.
use keysmith_core::{key::CredentialData, AccessKey, Error, Result, Secret};

use super::super::HotelSync;
use crate::{config::PublishedKeyType, errors::reasons, model::NewKey};

/// The 3RPMS key that carries a keysmith key's current credential.
pub(super) fn credential(hotel: &HotelSync, key_id: &str) -> Result<NewKey> {
    published_key(hotel, &hotel.service.get_key(hotel.property_id(), key_id)?)
}

fn published_key(hotel: &HotelSync, key: &AccessKey) -> Result<NewKey> {
    let key_type = hotel.config.key_type;
    let found = key
        .credentials
        .iter()
        .find_map(|c| match (&c.data, key_type) {
            (CredentialData::Pin(pin), PublishedKeyType::Pin) => {
                Some(NewKey::Pin(Secret::new(pin.expose().clone())))
            }
            (CredentialData::Qr(data), PublishedKeyType::Qr) => {
                Some(NewKey::Qr(Secret::new(data.expose().clone())))
            }
            _ => None,
        });
    found.ok_or_else(|| {
        Error::failed_precondition(
            reasons::HOTEL_NOT_CONFIGURED,
            format!(
                "key {} has no {key_type:?} credential to publish to 3RPMS: the room's entrances \
                 must take that credential mode",
                key.key_id
            ),
        )
    })
}

/// Identifies published credential data without keeping it twice.
pub(super) fn digest(key: &NewKey) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    match key {
        NewKey::Pin(pin) => {
            hasher.update(b"pin:");
            hasher.update(pin.expose().as_bytes());
        }
        NewKey::KeyStorage { pin, compartment } => {
            hasher.update(b"storage:");
            hasher.update(pin.expose().as_bytes());
            hasher.update(b":");
            hasher.update(compartment.expose().as_bytes());
        }
        NewKey::Qr(data) => {
            hasher.update(b"qr:");
            hasher.update(data.expose().as_bytes());
        }
    }
    hasher.finalize().into()
}
