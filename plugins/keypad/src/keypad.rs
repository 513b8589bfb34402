//! Keypad locks that open with PINs, as a keysmith driver plugin. The doors
//! are online: a PIN stops opening when its key is revoked or its window
//! ends, so a new reservation's key (override) needs no action at the door
//! and each co-guest (join) simply gets a PIN of their own. keysmith applies
//! the reservation rules before calling.
//!
//! State is kept in memory: the keys and PINs are gone when keysmith stops.
//! A real plugin would keep them where its doors live (the lock vendor's
//! system) or in a durable store of its own.
use std::{
    collections::{BTreeMap, HashMap},
    sync::{Mutex, MutexGuard, PoisonError},
};

use keysmith_driver::{
    driver::{
        DriverKeyRecord, EntranceSpec, IssueArgs, IssueReply, IssuedState, ListArgs, ListReply,
        RevokeArgs, RevokeReply, UpdateArgs, UpdateReply,
    },
    key::{Credential, CredentialData},
    reasons, CredentialMode, DriverCapability, EntranceCapability, Error, ErrorKind, Result,
    Secret, Window,
};
use keysmith_plugin::{PluginDriver, PluginInfo};
use rand::Rng;

use crate::config::{DoorKind, KeypadConfig};

pub const DRIVER_NAME: &str = "keypad";

/// Page tokens say where the previous page ended; the prefix versions them.
const PAGE_TOKEN_PREFIX: &str = "kp1.";

struct HeldKey {
    holder_id: String,
    entrance_ids: Vec<String>,
    window: Window,
    pin: Secret<String>,
    driver_ref: String,
}

#[derive(Default)]
struct State {
    /// By (property, key id): a property's keys in key-id order, for paging.
    keys: BTreeMap<(String, String), HeldKey>,
    /// Which key each PIN belongs to at each door: (property, door, PIN).
    pins: HashMap<(String, String, String), String>,
    issued: u64,
}

pub struct KeypadDriver {
    config: KeypadConfig,
    state: Mutex<State>,
}

impl KeypadDriver {
    /// The constructor the plugin exports: `config` is keysmith's JSON.
    pub fn from_config(config: &[u8]) -> Result<Self> {
        Ok(Self::new(KeypadConfig::parse(config)?))
    }

    pub fn new(config: KeypadConfig) -> Self {
        Self {
            config,
            state: Mutex::default(),
        }
    }

    /// A panic elsewhere never leaves the state half-written (each change
    /// is made after every check), so a poisoned lock is still sound.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn has_door(&self, property_id: &str, door: &str) -> bool {
        self.config
            .properties
            .iter()
            .filter(|p| p.property_id == property_id)
            .any(|p| p.doors.iter().any(|d| d.id == door))
    }

    fn credential(key: &HeldKey) -> Credential {
        Credential {
            mode: CredentialMode::Pin,
            // keysmith fills in the name it registered the driver under.
            driver: String::new(),
            entrance_ids: key.entrance_ids.clone(),
            data: CredentialData::Pin(key.pin.clone()),
            credential_id: key.driver_ref.clone(),
            encoding_required: false,
        }
    }

    fn choose_pin(
        &self,
        state: &State,
        property_id: &str,
        doors: &[String],
        wanted: Option<&Secret<String>>,
    ) -> Result<Secret<String>> {
        let taken = |pin: &str| {
            doors.iter().any(|door| {
                state
                    .pins
                    .contains_key(&(property_id.to_owned(), door.clone(), pin.to_owned()))
            })
        };
        if let Some(pin) = wanted {
            if taken(pin.expose()) {
                return Err(Error::new(
                    ErrorKind::AlreadyExists,
                    reasons::PIN_IN_USE,
                    "this PIN is already in use at one of the keypads: choose another or omit it",
                )
                .with_violation("pin", "already in use at one of the keypads"));
            }
            return Ok(pin.clone());
        }
        let mut rng = rand::rng();
        let bound = 10u32.pow(self.config.pin_length as u32);
        for _ in 0..1000 {
            let pin = format!(
                "{:0width$}",
                rng.random_range(0..bound),
                width = self.config.pin_length
            );
            if !taken(&pin) {
                return Ok(Secret::new(pin));
            }
        }
        Err(Error::new(
            ErrorKind::ResourceExhausted,
            reasons::PIN_IN_USE,
            "no free PIN could be found at these keypads",
        ))
    }
}

impl PluginDriver for KeypadDriver {
    fn info(&self) -> PluginInfo {
        PluginInfo {
            name: DRIVER_NAME.to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            capability: DriverCapability {
                issue: true,
                revoke: true,
                update: true,
                encode: false,
                refresh: false,
                list: true,
                reservations: true,
                staff: true,
                caller_pin: true,
                online: true,
                offline: false,
                modes: vec![CredentialMode::Pin],
            },
        }
    }

    fn entrances(&self) -> Result<Vec<EntranceSpec>> {
        Ok(self
            .config
            .properties
            .iter()
            .flat_map(|p| {
                p.doors.iter().map(|d| EntranceSpec {
                    property_id: p.property_id.clone(),
                    entrance_id: d.id.clone(),
                    name: d.name.clone().unwrap_or_else(|| d.id.clone()),
                    space_ids: d.spaces.clone(),
                    capability: EntranceCapability {
                        can_belong_to_reservation: d.kind == DoorKind::Room,
                        modes: vec![CredentialMode::Pin],
                        online: true,
                        requires_reservation_for_guests: false,
                    },
                })
            })
            .collect())
    }

    fn issue(&self, args: IssueArgs) -> Result<IssueReply> {
        if self.config.faults.panic_on_issue_for_holder.as_deref() == Some(&args.holder.id) {
            panic!(
                "fault injection: issue panics for holder {:?}",
                args.holder.id
            );
        }
        if let Some(mode) = args.modes.iter().find(|m| **m != CredentialMode::Pin) {
            return Err(Error::invalid_field(
                reasons::CREDENTIAL_MODE_NOT_SUPPORTED,
                "modes",
                format!("keypads take PINs only, not {}", mode.as_str()),
            ));
        }
        let doors: Vec<String> = args
            .entrances
            .iter()
            .map(|e| e.entrance_id.clone())
            .collect();
        if let Some(door) = doors.iter().find(|d| !self.has_door(&args.property_id, d)) {
            return Err(Error::not_found(
                reasons::ENTRANCE_NOT_FOUND,
                format!(
                    "the keypads have no door {door:?} at property {:?}",
                    args.property_id
                ),
            ));
        }
        let mut state = self.state();
        let id = (args.property_id.clone(), args.key_id.clone());
        if let Some(held) = state.keys.get(&id) {
            // Asked again for the same key (keysmith retrying): same answer.
            return Ok(IssueReply {
                credentials: vec![Self::credential(held)],
                state: IssuedState::Active,
                warnings: Vec::new(),
                driver_ref: Some(held.driver_ref.clone()),
            });
        }
        let pin = self.choose_pin(&state, &args.property_id, &doors, args.pin.as_ref())?;
        state.issued += 1;
        let held = HeldKey {
            holder_id: args.holder.id.clone(),
            entrance_ids: doors.clone(),
            window: args.window,
            pin: pin.clone(),
            driver_ref: format!("kp-{}", state.issued),
        };
        for door in &doors {
            state.pins.insert(
                (args.property_id.clone(), door.clone(), pin.expose().clone()),
                args.key_id.clone(),
            );
        }
        let reply = IssueReply {
            credentials: vec![Self::credential(&held)],
            state: IssuedState::Active,
            warnings: Vec::new(),
            driver_ref: Some(held.driver_ref.clone()),
        };
        state.keys.insert(id, held);
        Ok(reply)
    }

    fn revoke(&self, args: RevokeArgs) -> Result<RevokeReply> {
        let mut state = self.state();
        let id = (args.key.property_id.clone(), args.key.key_id.clone());
        // Revoking a key the keypads no longer hold is done already.
        if let Some(held) = state.keys.remove(&id) {
            for door in &held.entrance_ids {
                state
                    .pins
                    .remove(&(id.0.clone(), door.clone(), held.pin.expose().clone()));
            }
        }
        Ok(RevokeReply::default())
    }

    fn update(&self, args: UpdateArgs) -> Result<UpdateReply> {
        let mut state = self.state();
        let id = (args.key.property_id.clone(), args.key.key_id.clone());
        let held = state.keys.get_mut(&id).ok_or_else(|| {
            Error::not_found(
                reasons::KEY_NOT_FOUND,
                format!("the keypads hold no key {:?}", args.key.key_id),
            )
        })?;
        // Online doors take the new window at once; the PIN stays the same.
        held.window = args.new_window;
        Ok(UpdateReply {
            credentials: vec![Self::credential(held)],
            encoding_required: false,
            warnings: Vec::new(),
        })
    }

    fn list(&self, args: ListArgs) -> Result<ListReply> {
        let after = match &args.page_token {
            None => None,
            Some(token) => Some(token.strip_prefix(PAGE_TOKEN_PREFIX).ok_or_else(|| {
                Error::invalid_field(
                    reasons::INVALID_PAGE_TOKEN,
                    "page_token",
                    "is not a page token of the keypad driver",
                )
            })?),
        };
        let page_size = args.page_size.max(1) as usize;
        let state = self.state();
        let from = (
            args.property_id.clone(),
            after.unwrap_or_default().to_owned(),
        );
        let mut keys = Vec::with_capacity(page_size);
        let mut more = false;
        for ((property_id, key_id), held) in state.keys.range(from..) {
            if property_id != &args.property_id {
                break;
            }
            if Some(key_id.as_str()) == after {
                continue;
            }
            if keys.len() == page_size {
                more = true;
                break;
            }
            keys.push(DriverKeyRecord {
                key_id: key_id.clone(),
                driver_ref: Some(held.driver_ref.clone()),
                holder_id: held.holder_id.clone(),
                entrance_ids: held.entrance_ids.clone(),
                window: held.window,
            });
        }
        let next_page_token = more
            .then(|| {
                keys.last()
                    .map(|k| format!("{PAGE_TOKEN_PREFIX}{}", k.key_id))
            })
            .flatten();
        Ok(ListReply {
            keys,
            next_page_token,
        })
    }
}

#[cfg(test)]
mod tests {
    use keysmith_driver::{
        driver::{EntranceTarget, KeySlice},
        key::{Behaviour, Holder},
        Role, Timestamp,
    };

    use super::*;

    fn driver() -> KeypadDriver {
        KeypadDriver::from_config(
            br#"{"properties":[{"property_id":"h","doors":[
                {"id":"d1"},{"id":"d2"},{"id":"gate","kind":"common"}]}]}"#,
        )
        .unwrap()
    }

    fn window() -> Window {
        Window {
            starts_at: Timestamp::from_unix_seconds(0),
            ends_at: Timestamp::from_unix_seconds(100),
        }
    }

    fn issue(
        d: &KeypadDriver,
        key_id: &str,
        doors: &[&str],
        pin: Option<&str>,
    ) -> Result<IssueReply> {
        d.issue(IssueArgs {
            key_id: key_id.into(),
            property_id: "h".into(),
            holder: Holder {
                id: format!("holder-{key_id}"),
                name: None,
            },
            role: Role::Guest,
            window: window(),
            reservation: None,
            entrances: doors
                .iter()
                .map(|d| EntranceTarget {
                    entrance_id: d.to_string(),
                    behaviour: Behaviour::Standard,
                })
                .collect(),
            modes: vec![CredentialMode::Pin],
            pin: pin.map(|p| Secret::new(p.to_owned())),
        })
    }

    fn slice(key_id: &str) -> KeySlice {
        KeySlice {
            key_id: key_id.into(),
            property_id: "h".into(),
            holder: Holder {
                id: "x".into(),
                name: None,
            },
            role: Role::Guest,
            window: window(),
            reservation: None,
            entrances: vec![],
            credentials: vec![],
            driver_ref: None,
        }
    }

    fn listed(d: &KeypadDriver, page_size: u32) -> Vec<String> {
        let mut ids = Vec::new();
        let mut token = None;
        loop {
            let page = d
                .list(ListArgs {
                    property_id: "h".into(),
                    page_size,
                    page_token: token.take(),
                })
                .unwrap();
            ids.extend(page.keys.into_iter().map(|k| k.key_id));
            match page.next_page_token {
                Some(t) => token = Some(t),
                None => return ids,
            }
        }
    }

    #[test]
    fn pins_are_unique_per_door_and_a_caller_pin_in_use_is_refused() {
        let d = driver();
        let first = issue(&d, "k1", &["d1"], Some("1234")).unwrap();
        assert!(matches!(
            &first.credentials[0].data,
            CredentialData::Pin(p) if p.expose() == "1234"
        ));
        let err = issue(&d, "k2", &["d1", "d2"], Some("1234")).unwrap_err();
        assert_eq!(err.reason(), reasons::PIN_IN_USE);
        assert_eq!(err.kind(), ErrorKind::AlreadyExists);
        // Another door may use it.
        issue(&d, "k3", &["d2"], Some("1234")).unwrap();
        let generated = issue(&d, "k4", &["d1"], None).unwrap();
        match &generated.credentials[0].data {
            CredentialData::Pin(p) => {
                assert_eq!(p.expose().len(), 6);
                assert!(p.expose().chars().all(|c| c.is_ascii_digit()));
            }
            other => panic!("{other:?}"),
        }
        // Revoked, the PIN is free again.
        d.revoke(RevokeArgs { key: slice("k1") }).unwrap();
        issue(&d, "k5", &["d1"], Some("1234")).unwrap();
    }

    #[test]
    fn the_list_pages_through_live_keys_only() {
        let d = driver();
        for i in 0..7 {
            issue(&d, &format!("k{i}"), &["d1"], None).unwrap();
        }
        d.revoke(RevokeArgs { key: slice("k3") }).unwrap();
        assert_eq!(listed(&d, 2), ["k0", "k1", "k2", "k4", "k5", "k6"]);
        assert_eq!(listed(&d, 100).len(), 6);
        let bad = d.list(ListArgs {
            property_id: "h".into(),
            page_size: 5,
            page_token: Some("junk".into()),
        });
        assert_eq!(bad.unwrap_err().reason(), reasons::INVALID_PAGE_TOKEN);
    }

    #[test]
    fn issuing_the_same_key_again_gives_the_same_pin_and_unknown_doors_are_refused() {
        let d = driver();
        let a = issue(&d, "k1", &["d1"], None).unwrap();
        let b = issue(&d, "k1", &["d1"], None).unwrap();
        assert_eq!(a.credentials, b.credentials);
        let err = issue(&d, "k2", &["attic"], None).unwrap_err();
        assert_eq!(err.reason(), reasons::ENTRANCE_NOT_FOUND);
    }

    #[test]
    fn a_bad_configuration_is_refused_with_the_field() {
        for (config, field) in [
            (r#"{"properties":[]}"#, "config.properties"),
            (
                r#"{"properties":[{"property_id":"h","doors":[{"id":"a"},{"id":"a"}]}]}"#,
                "config.properties[0].doors[1].id",
            ),
            (
                r#"{"properties":[{"property_id":"h","doors":[]}],"pin_length":3}"#,
                "config.pin_length",
            ),
            (r#"{"propertees":[]}"#, "config"),
        ] {
            let err = KeypadDriver::from_config(config.as_bytes()).err().unwrap();
            assert_eq!(err.violations()[0].field, field, "{config}");
        }
    }
}
