//! A key version as listings hand it out: shared rather than copied, and
//! able to keep what the edge encoded of it.
//!
//! A listing answers the same unchanged keys over and over, and decoding,
//! converting and encoding each key again was most of what a ListKeys page
//! cost. A new version of a key is a new `ListedKey`, so a kept encoding can
//! never outlive the version it was made from. The state a caller sees
//! changes with time (a key expires without being written), so an encoding
//! is kept with the state it shows and made again once that state is stale.
use std::{ops::Deref, sync::Arc};

use bytes::Bytes;
use parking_lot::Mutex;

use crate::key::{AccessKey, KeyState};

/// Who an encoding is for: whether it may carry credential data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Audience {
    /// Credential data withheld.
    Redacted,
    /// Credential data included.
    WithSecrets,
}

/// One version of a key, shared rather than copied between the store and
/// the listings that answer it, with the encodings made of it kept per
/// [`Audience`]. Derefs to the [`AccessKey`].
pub struct ListedKey {
    key: AccessKey,
    /// One kept encoding per audience.
    encodings: [Mutex<Option<Encoding>>; 2],
}

#[derive(Clone)]
struct Encoding {
    state: KeyState,
    bytes: Bytes,
}

impl ListedKey {
    /// Wraps one version of a key, with nothing encoded yet. Every new version
    /// needs its own `ListedKey`: kept encodings belong to the version they
    /// were made from.
    pub fn new(key: AccessKey) -> Arc<Self> {
        Arc::new(Self {
            key,
            encodings: Default::default(),
        })
    }

    /// The key version.
    pub fn key(&self) -> &AccessKey {
        &self.key
    }

    /// This version's encoding for `audience` while it shows `state`: the
    /// kept one, or a new one from `encode` (which is kept in its place).
    pub fn encoding(
        &self,
        audience: Audience,
        state: KeyState,
        encode: impl FnOnce(&AccessKey) -> Bytes,
    ) -> Bytes {
        let slot = &self.encodings[audience as usize];
        if let Some(kept) = slot.lock().as_ref().filter(|kept| kept.state == state) {
            return kept.bytes.clone();
        }
        // Encoded outside the lock: two callers may both encode once, which
        // is cheaper than making every reader of this key wait.
        let bytes = encode(&self.key);
        *slot.lock() = Some(Encoding {
            state,
            bytes: bytes.clone(),
        });
        bytes
    }
}

impl ListedKey {
    /// About how many bytes this key takes in memory, with the two
    /// encodings it may keep: an estimate (the strings it holds, twice over
    /// for their encodings, and a fixed share for its structures and the
    /// allocator), for a cache to stay within a budget of bytes.
    pub fn approx_bytes(&self) -> usize {
        const FIXED: usize = 640;
        let k = &self.key;
        let strings = k.key_id.len()
            + k.property_id.len()
            + k.holder.id.len()
            + k.holder.name.as_ref().map_or(0, String::len)
            + k.entrances
                .iter()
                .map(|e| e.entrance_id.len() + e.driver.len() + 32)
                .sum::<usize>()
            + k.credentials
                .iter()
                .map(|c| {
                    c.credential_id.len()
                        + c.driver.len()
                        + c.entrance_ids.iter().map(|e| e.len() + 24).sum::<usize>()
                        + data_len(&c.data)
                        + 64
                })
                .sum::<usize>()
            + k.warnings
                .iter()
                .map(|w| w.code.len() + w.message.len() + 48)
                .sum::<usize>()
            + k.driver_refs
                .iter()
                .map(|(d, r)| d.len() + r.len() + 48)
                .sum::<usize>()
            + k.reservation.as_ref().map_or(0, |r| r.key.len() + 16);
        FIXED + 3 * strings
    }
}

fn data_len(data: &crate::key::CredentialData) -> usize {
    use crate::key::CredentialData;
    match data {
        CredentialData::Pending => 0,
        CredentialData::Pin(s)
        | CredentialData::Card(s)
        | CredentialData::Qr(s)
        | CredentialData::MobileKey(s)
        | CredentialData::Compartment(s) => s.expose().len(),
    }
}

impl Deref for ListedKey {
    type Target = AccessKey;

    fn deref(&self) -> &AccessKey {
        &self.key
    }
}

impl std::fmt::Debug for ListedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key's own Debug redacts its secrets; encodings are not shown.
        f.debug_tuple("ListedKey").field(&self.key).finish()
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::{
        key::Holder,
        time::{Timestamp, Window},
        Role,
    };

    fn key() -> AccessKey {
        let t = Timestamp::from_unix_seconds(1_900_000_000);
        AccessKey {
            key_id: "k1".into(),
            property_id: "hotel".into(),
            holder: Holder {
                id: "guest".into(),
                name: None,
            },
            entrances: vec![],
            window: Window {
                starts_at: t,
                ends_at: Timestamp::from_unix_seconds(1_900_003_600),
            },
            reservation: None,
            role: Role::Guest,
            modes: vec![],
            credentials: vec![],
            stored_state: KeyState::Active,
            warnings: vec![],
            created_at: t,
            updated_at: t,
            revoked_at: None,
            driver_refs: Default::default(),
        }
    }

    #[test]
    fn an_encoding_is_kept_per_audience_and_made_again_when_the_state_changes() {
        let listed = ListedKey::new(key());
        let made = Cell::new(0);
        let encode = |label: &'static str| {
            let made = &made;
            move |_: &AccessKey| {
                made.set(made.get() + 1);
                Bytes::from_static(label.as_bytes())
            }
        };
        let a = listed.encoding(Audience::Redacted, KeyState::Active, encode("r-active"));
        let b = listed.encoding(Audience::Redacted, KeyState::Active, encode("unused"));
        assert_eq!(
            (&a[..], &b[..], made.get()),
            (&b"r-active"[..], &b"r-active"[..], 1)
        );

        let s = listed.encoding(Audience::WithSecrets, KeyState::Active, encode("s-active"));
        assert_eq!((&s[..], made.get()), (&b"s-active"[..], 2));

        let e = listed.encoding(Audience::Redacted, KeyState::Expired, encode("r-expired"));
        assert_eq!((&e[..], made.get()), (&b"r-expired"[..], 3));
        let e = listed.encoding(Audience::Redacted, KeyState::Expired, encode("unused"));
        assert_eq!((&e[..], made.get()), (&b"r-expired"[..], 3));
    }
}
