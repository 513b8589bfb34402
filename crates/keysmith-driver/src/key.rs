//! The parts of a key a driver sees: who holds it, what role, how it takes
//! part in its reservation at each entrance, the credentials it delivers,
//! and the warnings it carries.
use serde::{Deserialize, Serialize};

use crate::{capability::CredentialMode, secret::Secret};

/// Whose key: a guest's (reservation rules apply) or a staff member's
/// (never part of a reservation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    /// A guest or resident: overrides and joins by reservation.
    #[default]
    Guest,
    /// Staff: their own credential lifecycle, never overriding guests.
    Staff,
}

/// How a key takes part in its reservation at one entrance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Behaviour {
    /// Standard access: no override, no join.
    Standard,
    /// The first key of a reservation: overrides the previous guest on first use.
    Override,
    /// Joins the reservation: changes nothing at the lock.
    Join,
}

/// The deliverable data of a credential. Every variant is a secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CredentialData {
    /// Not deliverable yet (the provider is still issuing it).
    Pending,
    /// A PIN to type at a keypad.
    Pin(Secret<String>),
    /// Data to encode on a card.
    Card(Secret<String>),
    /// Data to show as a QR code.
    Qr(Secret<String>),
    /// Data for a phone's mobile key.
    MobileKey(Secret<String>),
    /// A key-storage compartment's code.
    Compartment(Secret<String>),
}

/// One deliverable credential of a key, issued by one driver.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    /// Its kind.
    pub mode: CredentialMode,
    /// The driver that issued it; keysmith fills it in with the name it
    /// registered the driver under.
    pub driver: String,
    /// The entrances it opens.
    pub entrance_ids: Vec<String>,
    /// What is delivered to the holder.
    pub data: CredentialData,
    /// An identifier of the physical credential, safe to show (a card id).
    pub credential_id: String,
    /// The credential does not carry the key's latest change yet (a card
    /// to encode again).
    pub encoding_required: bool,
}

/// Something the caller should know about a key, with a stable code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warning {
    /// An UPPER_SNAKE code from [`warnings`].
    pub code: String,
    /// For people; never a secret.
    pub message: String,
}

impl Warning {
    /// A warning with `code` (one of [`warnings`]) and a message.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
        }
    }
}

/// The warning codes, stable across releases.
pub mod warnings {
    /// A revoked offline credential keeps opening until overridden or expired.
    pub const OFFLINE_CREDENTIAL_STILL_VALID: &str = "OFFLINE_CREDENTIAL_STILL_VALID";
    /// The key changed and its offline credentials must be encoded again.
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

/// Who a key is for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// The caller's id for the person (a guest id, a staff id).
    pub id: String,
    /// A display name, when given.
    pub name: Option<String>,
}

/// A reservation a key belongs to, and which incarnation of it: a
/// reservation_key cleared and issued anew (relocation) gets a new epoch.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ReservationRef {
    /// The caller's reservation_key.
    pub key: String,
    /// Which incarnation: a driver tells a new stay from the old one by it.
    pub epoch: u64,
}
