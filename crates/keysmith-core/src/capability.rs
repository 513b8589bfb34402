//! Capabilities, in the manner of OpenDAL: plain flags, all false by default.
//! Each driver opts in; the core checks them in one place.
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum CredentialMode {
    Pin,
    Card,
    MobileKey,
    Qr,
    KeyStorage,
}

impl CredentialMode {
    pub const ALL: [CredentialMode; 5] = [
        CredentialMode::Pin,
        CredentialMode::Card,
        CredentialMode::MobileKey,
        CredentialMode::Qr,
        CredentialMode::KeyStorage,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CredentialMode::Pin => "PIN",
            CredentialMode::Card => "CARD",
            CredentialMode::MobileKey => "MOBILE_KEY",
            CredentialMode::Qr => "QR",
            CredentialMode::KeyStorage => "KEY_STORAGE",
        }
    }
}

/// What a driver can do at all.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriverCapability {
    pub issue: bool,
    pub revoke: bool,
    /// Change a key's time window.
    pub update: bool,
    /// Re-encode credentials after a change.
    pub encode: bool,
    /// Issues asynchronously and can be asked where a key stands.
    pub refresh: bool,
    /// Lists the keys it holds on its side, for reconciliation.
    pub list: bool,
    /// Apply override and join by reservation.
    pub reservations: bool,
    pub staff: bool,
    /// Accept a PIN chosen by the caller.
    pub caller_pin: bool,
    pub online: bool,
    pub offline: bool,
    pub modes: Vec<CredentialMode>,
}

/// What one entrance accepts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntranceCapability {
    pub can_belong_to_reservation: bool,
    pub modes: Vec<CredentialMode>,
    pub online: bool,
    /// Guest credentials here need a reservation_key (Visionline-like systems).
    pub requires_reservation_for_guests: bool,
}

impl EntranceCapability {
    pub fn accepts(&self, mode: CredentialMode) -> bool {
        self.modes.contains(&mode)
    }
}
