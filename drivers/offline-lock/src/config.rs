//! The simulated offline lock's configuration: which properties and
//! entrances it serves and how its locks behave.
use serde::Deserialize;

use keysmith_driver::{CredentialMode, Secret};

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfflineLockConfig {
    /// Seals every credential (HMAC-SHA256); locks reject anything it did not seal.
    pub site_secret: Secret<String>,
    #[serde(default)]
    pub properties: Vec<PropertyConfig>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PropertyConfig {
    pub property_id: String,
    /// How far beyond a lock's stored sequence a credential may be and still
    /// open it (Saflok 1 to 15, Onity 50).
    #[serde(default = "default_look_ahead")]
    pub look_ahead: u16,
    /// How many events each lock keeps (Onity: 500).
    #[serde(default = "default_audit_capacity")]
    pub audit_capacity: usize,
    /// How many blocked card ids each lock keeps; blocking one more drops
    /// the one blocked first. A lock's memory is small; no vendor text gives
    /// a number, so this is keysmith's choice.
    #[serde(default = "default_blocked_cards_capacity")]
    pub blocked_cards_capacity: usize,
    /// Whether a credential rejected only for its window may still advance a
    /// lock's sequence. The manuals are ambiguous; off by default.
    #[serde(default)]
    pub invalid_credentials_advance: bool,
    #[serde(default)]
    pub entrances: Vec<EntranceConfig>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum EntranceKind {
    /// A guest room: reservation-capable, override and join by sequence.
    Room,
    /// A common door (lobby, gym, pool): standard access only.
    Common,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntranceConfig {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    pub kind: EntranceKind,
    #[serde(default)]
    pub spaces: Vec<String>,
    #[serde(default = "default_modes")]
    pub modes: Vec<ModeName>,
    #[serde(default)]
    pub requires_reservation_for_guests: bool,
}

/// A credential mode as written in config.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ModeName {
    Pin,
    Card,
    MobileKey,
    Qr,
}

impl From<ModeName> for CredentialMode {
    fn from(m: ModeName) -> Self {
        match m {
            ModeName::Pin => CredentialMode::Pin,
            ModeName::Card => CredentialMode::Card,
            ModeName::MobileKey => CredentialMode::MobileKey,
            ModeName::Qr => CredentialMode::Qr,
        }
    }
}

fn default_look_ahead() -> u16 {
    crate::model::lock::DEFAULT_LOOK_AHEAD
}

fn default_audit_capacity() -> usize {
    crate::model::lock::DEFAULT_AUDIT_CAPACITY
}

fn default_blocked_cards_capacity() -> usize {
    crate::model::lock::DEFAULT_BLOCKED_CARDS_CAPACITY
}

fn default_modes() -> Vec<ModeName> {
    vec![ModeName::Card, ModeName::MobileKey]
}

impl OfflineLockConfig {
    /// Checks what serde cannot: ids present and unique, secrets long enough.
    pub fn validate(&self) -> Result<(), String> {
        if self.site_secret.expose().len() < 16 {
            return Err("offline-lock: site_secret must be at least 16 characters".into());
        }
        let mut properties = std::collections::HashSet::new();
        for p in &self.properties {
            check_id("property_id", &p.property_id)?;
            if !properties.insert(&p.property_id) {
                return Err(format!(
                    "offline-lock: property {:?} is listed twice",
                    p.property_id
                ));
            }
            if p.look_ahead == 0 {
                return Err(format!(
                    "offline-lock: property {:?}: look_ahead must be at least 1",
                    p.property_id
                ));
            }
            let mut ids = std::collections::HashSet::new();
            for e in &p.entrances {
                check_id("entrance id", &e.id)?;
                for s in &e.spaces {
                    check_id("space id", s)?;
                }
                if !ids.insert(&e.id) {
                    return Err(format!(
                        "offline-lock: property {:?} lists entrance {:?} twice",
                        p.property_id, e.id
                    ));
                }
                if e.modes.is_empty() {
                    return Err(format!(
                        "offline-lock: entrance {:?} accepts no credential mode",
                        e.id
                    ));
                }
            }
        }
        Ok(())
    }
}

fn check_id(what: &str, id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > 128 || id.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!(
            "offline-lock: {what} {id:?} must be 1 to 128 characters without whitespace"
        ));
    }
    Ok(())
}
