//! The keypad plugin's configuration: the JSON keysmith passes to `create`,
//! from the `config` table of its `[[drivers.plugins]]` entry.
use keysmith_driver::{reasons, Error, Result};
use serde::Deserialize;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeypadConfig {
    pub properties: Vec<PropertyConfig>,
    /// Digits of a generated PIN (4 to 8).
    #[serde(default = "default_pin_length")]
    pub pin_length: usize,
    /// Fault injection for keysmith's own tests; never set it for real doors.
    #[serde(default)]
    pub faults: Faults,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PropertyConfig {
    pub property_id: String,
    pub doors: Vec<DoorConfig>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DoorConfig {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    /// A room's door can belong to a reservation; a common door cannot.
    #[serde(default)]
    pub kind: DoorKind,
    #[serde(default)]
    pub spaces: Vec<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DoorKind {
    #[default]
    Room,
    Common,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    /// `issue` panics for this holder id: keysmith's tests check that a
    /// panicking plugin fails one call and nothing else.
    pub panic_on_issue_for_holder: Option<String>,
}

fn default_pin_length() -> usize {
    6
}

impl KeypadConfig {
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let config: KeypadConfig = serde_json::from_slice(bytes).map_err(|e| {
            Error::invalid_field(
                reasons::FIELD_INVALID,
                "config",
                format!("is not a keypad configuration: {e}"),
            )
        })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<()> {
        let invalid = |field: String, why: &str| {
            Err(Error::invalid_field(reasons::FIELD_INVALID, field, why))
        };
        if !(4..=8).contains(&self.pin_length) {
            return invalid("config.pin_length".into(), "must be 4 to 8 digits");
        }
        if self.properties.is_empty() {
            return invalid(
                "config.properties".into(),
                "must list at least one property",
            );
        }
        for (i, p) in self.properties.iter().enumerate() {
            if p.property_id.is_empty() {
                return invalid(format!("config.properties[{i}].property_id"), "is required");
            }
            let mut seen = std::collections::HashSet::new();
            for (j, d) in p.doors.iter().enumerate() {
                if d.id.is_empty() || !seen.insert(d.id.as_str()) {
                    return invalid(
                        format!("config.properties[{i}].doors[{j}].id"),
                        "must be present and unique in its property",
                    );
                }
            }
        }
        Ok(())
    }
}
