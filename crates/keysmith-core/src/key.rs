//! Access keys as keysmith keeps them.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{capability::CredentialMode, secret::Secret, time::Timestamp, time::Window};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    #[default]
    Guest,
    Staff,
}

/// The state keysmith stores. `Expired` is never stored: it is derived from
/// the window when a key is read. New states are added at the end: the
/// stored form is the variant's position.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyState {
    Issuing,
    Active,
    EncodingRequired,
    Revoked,
    Expired,
    /// Revoked at some of its drivers; another could not be told (a
    /// warning names it). A retry of the revocation completes it.
    Revoking,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Issuing => "ISSUING",
            KeyState::Active => "ACTIVE",
            KeyState::EncodingRequired => "ENCODING_REQUIRED",
            KeyState::Revoked => "REVOKED",
            KeyState::Expired => "EXPIRED",
            KeyState::Revoking => "REVOKING",
        }
    }
}

/// How a key took part in its reservation at one entrance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Behaviour {
    /// Standard access: no override, no join.
    Standard,
    /// The first key of a reservation: overrides the previous guest on first use.
    Override,
    /// Joins the reservation: changes nothing at the lock.
    Join,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyEntrance {
    pub entrance_id: String,
    pub driver: String,
    pub behaviour: Behaviour,
}

impl KeyEntrance {
    pub fn reservation_applied(&self) -> bool {
        self.behaviour != Behaviour::Standard
    }
}

/// The deliverable data of a credential. Every variant is a secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CredentialData {
    /// Not deliverable yet (the provider is still issuing it).
    Pending,
    Pin(Secret<String>),
    Card(Secret<String>),
    Qr(Secret<String>),
    MobileKey(Secret<String>),
    Compartment(Secret<String>),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    pub mode: CredentialMode,
    pub driver: String,
    pub entrance_ids: Vec<String>,
    pub data: CredentialData,
    /// An identifier of the physical credential, safe to show (a card id).
    pub credential_id: String,
    pub encoding_required: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warning {
    pub code: String,
    pub message: String,
}

impl Warning {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
        }
    }
}

pub mod warnings {
    /// A revoked offline credential keeps opening until overridden or expired.
    pub const OFFLINE_CREDENTIAL_STILL_VALID: &str = "OFFLINE_CREDENTIAL_STILL_VALID";
    pub const ENCODING_REQUIRED: &str = "ENCODING_REQUIRED";
    /// A joiner of a reservation that a newer reservation has replaced at
    /// some of its doors: the lock refuses it there once the newer
    /// reservation's credential has been used.
    pub const RESERVATION_SUPERSEDED: &str = "RESERVATION_SUPERSEDED";
    /// A re-encoded key got a new PIN: its old one is another key's now.
    pub const PIN_CHANGED: &str = "PIN_CHANGED";
    /// A driver could not withdraw a key the others revoked (state
    /// REVOKING): a retry of the revocation completes it.
    pub const REVOKE_INCOMPLETE: &str = "REVOKE_INCOMPLETE";
    /// A driver could not re-encode its credentials while the others did:
    /// a retry of EncodeKey encodes what is left.
    pub const ENCODE_INCOMPLETE: &str = "ENCODE_INCOMPLETE";
    /// The key's driver is no longer configured: keysmith could not tell it.
    pub const DRIVER_NOT_CONFIGURED: &str = "DRIVER_NOT_CONFIGURED";
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub id: String,
    pub name: Option<String>,
}

/// A reservation this key belongs to, and which incarnation of it: a
/// reservation_key cleared and issued anew (relocation) gets a new epoch.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ReservationRef {
    pub key: String,
    pub epoch: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessKey {
    pub key_id: String,
    pub property_id: String,
    pub holder: Holder,
    pub entrances: Vec<KeyEntrance>,
    pub window: Window,
    pub reservation: Option<ReservationRef>,
    pub role: Role,
    pub modes: Vec<CredentialMode>,
    pub credentials: Vec<Credential>,
    /// The stored state: never `Expired`, see [`AccessKey::state`].
    pub stored_state: KeyState,
    pub warnings: Vec<Warning>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
    /// What each driver calls this key on its side (a grant id, a key id).
    pub driver_refs: BTreeMap<String, String>,
}

impl AccessKey {
    /// The state a caller sees at `now`.
    pub fn state(&self, now: Timestamp) -> KeyState {
        match self.stored_state {
            KeyState::Revoked => KeyState::Revoked,
            KeyState::Revoking => KeyState::Revoking,
            _ if self.window.has_ended(now) => KeyState::Expired,
            state => state,
        }
    }

    pub fn is_revoked(&self) -> bool {
        self.stored_state == KeyState::Revoked
    }

    /// Whether any credential has deliverable data (a secret).
    pub fn carries_credential_data(&self) -> bool {
        self.credentials
            .iter()
            .any(|c| !matches!(c.data, CredentialData::Pending))
    }

    pub fn reservation_key(&self) -> Option<&str> {
        self.reservation.as_ref().map(|r| r.key.as_str())
    }

    pub fn entrances_of<'a>(&'a self, driver: &'a str) -> impl Iterator<Item = &'a KeyEntrance> {
        self.entrances.iter().filter(move |e| e.driver == driver)
    }

    /// The drivers behind this key, each once, in entrance order.
    pub fn drivers(&self) -> Vec<&str> {
        let mut drivers: Vec<&str> = Vec::new();
        for e in &self.entrances {
            if !drivers.contains(&e.driver.as_str()) {
                drivers.push(&e.driver);
            }
        }
        drivers
    }
}
