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
    /// Issued, but a driver that issues asynchronously has not delivered every
    /// credential yet: keysmith refreshes the key until it has
    /// ([`AccessService::refresh_key`](crate::AccessService::refresh_key)).
    Issuing,
    /// Every credential is issued and carries the key's current window.
    Active,
    /// The window changed and some offline credentials (cards) still carry the
    /// old one: they open as before until re-encoded with EncodeKey.
    EncodingRequired,
    /// Withdrawn at every driver of the key that is still configured. Final.
    Revoked,
    /// The window has ended. Shown as soon as the clock passes the window's
    /// end ([`AccessKey::state`]); stored once the sweeper has moved the key
    /// out of the live set. An UpdateKey with a new window brings it back.
    Expired,
    /// Revoked at some of its drivers; another could not be told (a
    /// warning names it). A retry of the revocation completes it.
    Revoking,
    /// A driver that issues asynchronously reported that it cannot deliver
    /// some requested credential (a warning names what it reported): the
    /// key opens nothing there and keysmith stops following it. Revoke it
    /// and issue another.
    Failed,
}

impl KeyState {
    /// The state's name in keysmith's API (`ACTIVE`, `REVOKED`, ...). Page
    /// tokens digest it, so a name never changes.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Issuing => "ISSUING",
            KeyState::Active => "ACTIVE",
            KeyState::EncodingRequired => "ENCODING_REQUIRED",
            KeyState::Revoked => "REVOKED",
            KeyState::Expired => "EXPIRED",
            KeyState::Revoking => "REVOKING",
            KeyState::Failed => "FAILED",
        }
    }
}

/// One entrance a key opens, the driver behind it, and how the key takes
/// part in its reservation there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyEntrance {
    /// The entrance, unique within the key's property.
    pub entrance_id: String,
    /// The name of the driver that served the entrance when the key was issued.
    /// Kept when that driver is later removed from the configuration: revoking
    /// the key then warns `DRIVER_NOT_CONFIGURED` instead of failing.
    pub driver: String,
    /// Override, join or standard access, as the core decided at issue.
    pub behaviour: Behaviour,
}

impl KeyEntrance {
    /// Whether the key takes part in its reservation at this entrance (override
    /// or join), rather than being standard access.
    pub fn reservation_applied(&self) -> bool {
        self.behaviour != Behaviour::Standard
    }
}

/// A key as keysmith stores it: who it is for, the entrances it opens across
/// one or more drivers, when, its reservation, and the credentials each
/// driver issued for it.
///
/// Every change stores a new version of the key whole. Credential data is
/// held in [`Secret`](crate::Secret)s, so `Debug` output never shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessKey {
    /// keysmith's id for the key: a ULID, so ids grow with creation time and
    /// listings in key id order are in creation order. It is also each driver's
    /// idempotency key for its part of the key.
    pub key_id: String,
    /// The property (hotel) whose entrances it opens; every lookup of a key is
    /// scoped by it.
    pub property_id: String,
    /// Who the key is for.
    pub holder: Holder,
    /// The entrances it opens, in request order (those named directly, then
    /// those of the named spaces), each once. Drivers are called in this order.
    pub entrances: Vec<KeyEntrance>,
    /// When it opens: the window of the last successful UpdateKey, else the
    /// one it was issued with.
    pub window: Window,
    /// The reservation, and its incarnation, that the key belongs to; `None`
    /// for standard access and for staff keys.
    pub reservation: Option<ReservationRef>,
    /// Guest or staff; staff keys never belong to a reservation.
    pub role: Role,
    /// The credential modes the key was issued with.
    pub modes: Vec<CredentialMode>,
    /// The credentials issued, each tagged with its driver. A driver's
    /// credentials are replaced as a whole when it answers new ones (update,
    /// encode, refresh).
    pub credentials: Vec<Credential>,
    /// The stored state; `Expired` only once the sweeper moved the key out
    /// of the live set, see [`AccessKey::state`].
    pub stored_state: KeyState,
    /// What the caller should know about the key, each code and message once:
    /// what its drivers said, and keysmith's own (an incomplete revocation or
    /// encoding, credentials awaiting re-encoding).
    pub warnings: Vec<Warning>,
    /// When it was issued.
    pub created_at: Timestamp,
    /// When its last change was stored.
    pub updated_at: Timestamp,
    /// When its revocation completed; `None` before, and while it is
    /// `Revoking`.
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
            KeyState::Expired => KeyState::Expired,
            _ if self.window.has_ended(now) => KeyState::Expired,
            state => state,
        }
    }

    /// Whether the key has left the live set: revoked, or moved out by the
    /// sweeper once its window ended. Ended keys are stored apart, and
    /// purged after the retention.
    pub fn is_ended(&self) -> bool {
        matches!(self.stored_state, KeyState::Revoked | KeyState::Expired)
    }

    /// When the key ended: its revocation, or the end of its window.
    pub fn ended_at(&self) -> Option<Timestamp> {
        match self.stored_state {
            KeyState::Revoked => Some(self.revoked_at.unwrap_or(self.updated_at)),
            KeyState::Expired => Some(self.window.ends_at),
            _ => None,
        }
    }

    /// Whether the revocation is complete: `Revoked` only, not `Revoking`,
    /// which a retry still has to finish.
    pub fn is_revoked(&self) -> bool {
        self.stored_state == KeyState::Revoked
    }

    /// Whether any credential has deliverable data (a secret).
    pub fn carries_credential_data(&self) -> bool {
        self.credentials
            .iter()
            .any(|c| !matches!(c.data, CredentialData::Pending))
    }

    /// The caller's reservation_key, when the key belongs to a reservation
    /// (whichever incarnation).
    pub fn reservation_key(&self) -> Option<&str> {
        self.reservation.as_ref().map(|r| r.key.as_str())
    }

    /// The key's entrances that `driver` serves, in key order.
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
