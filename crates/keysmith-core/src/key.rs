//! Access keys as keysmith keeps them. The parts a driver sees too (holder,
//! role, credentials, warnings) are the driver contract's, re-exported.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use keysmith_driver::key::{
    warnings, Behaviour, Credential, CredentialData, Holder, ReservationRef, Role, Warning,
};

use crate::{capability::CredentialMode, time::Timestamp, time::Window};

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
