//! Capabilities, in the manner of OpenDAL: plain flags, all false by default.
//! Each driver opts in; keysmith's core checks them in one place before it
//! calls a driver, so a driver is never asked for what it did not declare.
use serde::{Deserialize, Serialize};

/// A kind of credential a key delivers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum CredentialMode {
    /// A PIN typed at a keypad.
    Pin,
    /// A card (or fob) encoded at the desk.
    Card,
    /// A key on the holder's phone.
    MobileKey,
    /// A QR code shown at a reader.
    Qr,
    /// A PIN and a compartment of a key-storage box.
    KeyStorage,
}

impl CredentialMode {
    /// Every mode, in declaration order.
    pub const ALL: [CredentialMode; 5] = [
        CredentialMode::Pin,
        CredentialMode::Card,
        CredentialMode::MobileKey,
        CredentialMode::Qr,
        CredentialMode::KeyStorage,
    ];

    /// The mode's name in keysmith's API (`PIN`, `CARD`, ...).
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

/// What a driver can do at all. keysmith asks a driver only for what these
/// flags allow, and refuses the rest with `OPERATION_NOT_SUPPORTED`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriverCapability {
    /// [`Driver::issue`](crate::Driver::issue): provision new keys.
    pub issue: bool,
    /// [`Driver::revoke`](crate::Driver::revoke): withdraw keys.
    pub revoke: bool,
    /// [`Driver::update`](crate::Driver::update): change a key's time window.
    pub update: bool,
    /// [`Driver::encode`](crate::Driver::encode): re-encode credentials after
    /// a change.
    pub encode: bool,
    /// [`Driver::refresh`](crate::Driver::refresh): issues asynchronously and
    /// can be asked where a key stands; keysmith then follows its keys that
    /// are still being issued.
    pub refresh: bool,
    /// [`Driver::list`](crate::Driver::list): lists the keys it holds on its
    /// side, for reconciliation.
    pub list: bool,
    /// Applies override and join by reservation at its reservation-capable
    /// entrances.
    pub reservations: bool,
    /// Issues staff keys.
    pub staff: bool,
    /// Accepts a PIN chosen by the caller.
    pub caller_pin: bool,
    /// Its doors hear of changes at once (a revoked credential stops
    /// opening).
    pub online: bool,
    /// Its doors decide from what the credential carries: a new guest
    /// overrides the previous one only by reservation, and a revocation is
    /// never heard at the door.
    pub offline: bool,
    /// The credential modes it can issue.
    pub modes: Vec<CredentialMode>,
}

/// What one entrance accepts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntranceCapability {
    /// Guest keys here override and join by reservation (a room); else they
    /// are standard access (a common door).
    pub can_belong_to_reservation: bool,
    /// The credential modes this entrance takes.
    pub modes: Vec<CredentialMode>,
    /// The entrance is reached online.
    pub online: bool,
    /// Guest credentials here need a reservation_key (Visionline-like systems).
    pub requires_reservation_for_guests: bool,
}

impl EntranceCapability {
    /// Whether the entrance takes `mode`.
    pub fn accepts(&self, mode: CredentialMode) -> bool {
        self.modes.contains(&mode)
    }
}
