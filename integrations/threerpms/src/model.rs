//! 3RPMS's room stays and room access keys, as keysmith reads and writes them.
use jiff::civil::Date;
use keysmith_core::{Error, Secret};
use serde::{Deserialize, Serialize};

use crate::errors::reasons;

/// A room stay: one physical room of a reservation for some nights.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomStay {
    pub id: String,
    pub room_setup_id: String,
    pub arrival: Date,
    pub departure: Date,
    /// The key assigned to the stay, if any (one per stay).
    pub key_id: Option<String>,
    /// The stay's reservation, when 3RPMS's schema links them (detected).
    pub reservation_id: Option<String>,
    /// The reservation's status says cancelled: known only where 3RPMS's
    /// schema has the status (detected). Without it, a cancelled stay shows
    /// only by no longer being returned.
    pub reservation_cancelled: bool,
}

/// A room access key as 3RPMS returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RoomAccessKey {
    Pin {
        id: String,
        pin: Secret<String>,
    },
    KeyStorage {
        id: String,
        pin: Secret<String>,
        compartment: Secret<String>,
    },
    Qr {
        id: String,
        qr_data: Secret<String>,
    },
    /// A type keysmith does not know yet: the interface can grow.
    Unknown {
        id: String,
        type_name: String,
    },
}

impl RoomAccessKey {
    pub fn id(&self) -> &str {
        match self {
            Self::Pin { id, .. }
            | Self::KeyStorage { id, .. }
            | Self::Qr { id, .. }
            | Self::Unknown { id, .. } => id,
        }
    }
}

/// A room stay with its key, for the read API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomStayKey {
    pub room_stay_id: String,
    pub room_name: String,
    pub room_setup_id: String,
    pub key: Option<RoomAccessKey>,
}

/// A key to create in 3RPMS.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NewKey {
    Pin(Secret<String>),
    KeyStorage {
        pin: Secret<String>,
        compartment: Secret<String>,
    },
    Qr(Secret<String>),
}

pub const PIN_MAX: usize = 10;
pub const COMPARTMENT_MAX: usize = 10;
pub const QR_MAX: usize = 512;

impl NewKey {
    /// 3RPMS's rules, checked before anything is sent: a pin is 1 to 10
    /// alphanumeric characters, letters upper or lower case but not both; a
    /// compartment 1 to 10 alphanumeric; QR data 1 to 512 characters.
    pub fn validate(&self) -> Result<(), Error> {
        match self {
            Self::Pin(pin) => check_pin("pin", pin.expose()),
            Self::KeyStorage { pin, compartment } => {
                check_pin("pin", pin.expose())?;
                let c = compartment.expose();
                if c.is_empty() || c.chars().count() > COMPARTMENT_MAX {
                    return Err(Error::invalid_field(
                        reasons::INVALID_COMPARTMENT,
                        "compartment",
                        format!("must be 1 to {COMPARTMENT_MAX} characters"),
                    ));
                }
                if !c.chars().all(|ch| ch.is_ascii_alphanumeric()) {
                    return Err(Error::invalid_field(
                        reasons::INVALID_COMPARTMENT,
                        "compartment",
                        "must be letters and digits only",
                    ));
                }
                Ok(())
            }
            Self::Qr(data) => {
                let n = data.expose().chars().count();
                if n == 0 || n > QR_MAX {
                    return Err(Error::invalid_field(
                        reasons::INVALID_QR_DATA,
                        "qr_data",
                        format!("must be 1 to {QR_MAX} characters"),
                    ));
                }
                Ok(())
            }
        }
    }
}

/// The messages never contain the pin itself.
fn check_pin(field: &str, pin: &str) -> Result<(), Error> {
    let len = pin.chars().count();
    if len == 0 || len > PIN_MAX {
        return Err(Error::invalid_field(
            keysmith_core::reasons::INVALID_PIN,
            field,
            format!("must be 1 to {PIN_MAX} characters"),
        ));
    }
    if !pin.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(Error::invalid_field(
            keysmith_core::reasons::INVALID_PIN,
            field,
            "must be letters and digits only",
        ));
    }
    let upper = pin.chars().any(|c| c.is_ascii_uppercase());
    let lower = pin.chars().any(|c| c.is_ascii_lowercase());
    if upper && lower {
        return Err(Error::invalid_field(
            keysmith_core::reasons::INVALID_PIN,
            field,
            "may use upper or lower case letters, not both",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pin(p: &str) -> Result<(), Error> {
        NewKey::Pin(Secret::new(p.into())).validate()
    }

    #[test]
    fn pin_rules() {
        for ok in ["1", "1234567890", "ABC123", "abc123", "abcdefghij"] {
            assert!(pin(ok).is_ok(), "{ok} is valid");
        }
        for bad in [
            "",
            "12345678901",
            "AbC123",
            "12 34",
            "12-34",
            "ünï",
            "1234567890a",
        ] {
            let e = pin(bad).expect_err(bad);
            assert_eq!(e.reason(), keysmith_core::reasons::INVALID_PIN, "{bad}");
            assert!(
                !e.message().contains(bad) || bad.is_empty(),
                "no pin in {e}"
            );
        }
    }

    #[test]
    fn compartment_and_qr_rules() {
        let storage = |p: &str, c: &str| {
            NewKey::KeyStorage {
                pin: Secret::new(p.into()),
                compartment: Secret::new(c.into()),
            }
            .validate()
        };
        assert!(storage("1234", "3R").is_ok());
        assert!(
            storage("1234", "Ab12345678").is_ok(),
            "mixed case is fine here"
        );
        assert!(storage("1234", "").is_err());
        assert!(storage("1234", "12345678901").is_err());
        assert!(storage("1234", "3-R").is_err());
        assert!(storage("Ab", "3R").is_err(), "the pin rules apply too");
        let qr = |d: String| NewKey::Qr(Secret::new(d)).validate();
        assert!(qr("x".repeat(512)).is_ok());
        assert!(qr("x".repeat(513)).is_err());
        assert!(qr(String::new()).is_err());
    }
}
