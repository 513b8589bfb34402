//! For keysmith's tests only: a plugin driver whose behaviour each test
//! chooses through the holder id of the keys it issues, so that the tests
//! can drive what real drivers do now and then:
//!
//! - a holder id starting `async-` is issued asynchronously: the key is
//!   `Issuing` with a pending credential until its first `refresh`;
//! - a holder id containing `flaky-<operation>` (`issue`, `revoke`,
//!   `update`, `encode`) fails the first call of that operation for that
//!   holder with a temporary error, and succeeds afterwards, in an instance
//!   configured with `"flaky": true`.
//!
//! Its doors (cards only, not reservation-capable) are configured as
//! `{"properties": [{"property_id": "...", "doors": ["tk-door"]}], "flaky": true}`;
//! one library can be loaded as several drivers under different names. It
//! lists what it holds, so that a test can compare it with keysmith's keys.
use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Mutex, MutexGuard, PoisonError},
};

use keysmith_driver::{
    driver::{
        DriverKeyRecord, EncodeArgs, EncodeReply, EntranceSpec, IssueArgs, IssueReply, IssuedState,
        ListArgs, ListReply, ProvisionState, RefreshArgs, RefreshReply, RevokeArgs, RevokeReply,
        UpdateArgs, UpdateReply,
    },
    key::{Credential, CredentialData},
    reasons, CredentialMode, DriverCapability, EntranceCapability, Error, ErrorKind, Result,
    Secret, Window,
};
use keysmith_plugin::{PluginDriver, PluginInfo};
use serde::Deserialize;

#[derive(Deserialize)]
struct Config {
    properties: Vec<PropertyConfig>,
    /// Whether `flaky-<operation>` holders fail here (off: this instance
    /// never fails, so a test can have one driver succeed and one fail).
    #[serde(default)]
    flaky: bool,
}

#[derive(Deserialize)]
struct PropertyConfig {
    property_id: String,
    doors: Vec<String>,
}

struct Held {
    holder_id: String,
    entrance_ids: Vec<String>,
    window: Window,
    /// Increases with each encoding; the card data carries it.
    generation: u32,
    encoding_required: bool,
    /// Issued asynchronously and not refreshed yet.
    issuing: bool,
}

#[derive(Default)]
struct State {
    keys: BTreeMap<(String, String), Held>,
    /// (holder id, operation) whose one failure has happened.
    failed_once: BTreeSet<(String, &'static str)>,
}

struct TestKit {
    config: Config,
    state: Mutex<State>,
}

impl TestKit {
    fn from_config(bytes: &[u8]) -> Result<Self> {
        let config = serde_json::from_slice(bytes).map_err(|e| {
            Error::new(
                ErrorKind::InvalidArgument,
                reasons::FIELD_INVALID,
                format!("testkit config: {e}"),
            )
        })?;
        Ok(Self {
            config,
            state: Mutex::default(),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Fails the first `operation` for a holder whose id asks for it.
    fn maybe_fail(&self, holder_id: &str, operation: &'static str) -> Result<()> {
        if !self.config.flaky || !holder_id.contains(&format!("flaky-{operation}")) {
            return Ok(());
        }
        if self
            .state()
            .failed_once
            .insert((holder_id.to_owned(), operation))
        {
            return Err(Error::unavailable(
                reasons::DRIVER_UNAVAILABLE,
                format!("testkit: {operation} fails once for this holder"),
            )
            .set_temporary());
        }
        Ok(())
    }

    fn credentials(key_id: &str, held: &Held) -> Vec<Credential> {
        let data = if held.issuing {
            CredentialData::Pending
        } else {
            CredentialData::Card(Secret::new(format!("tk:{key_id}:{}", held.generation)))
        };
        vec![Credential {
            mode: CredentialMode::Card,
            driver: String::new(),
            entrance_ids: held.entrance_ids.clone(),
            data,
            credential_id: format!("{key_id}-tk-{}", held.generation),
            encoding_required: held.encoding_required,
        }]
    }

    fn not_held(key_id: &str) -> Error {
        Error::not_found(
            reasons::KEY_NOT_FOUND,
            format!("testkit holds no key {key_id:?}"),
        )
    }
}

impl PluginDriver for TestKit {
    fn info(&self) -> PluginInfo {
        PluginInfo {
            name: "testkit".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            capability: DriverCapability {
                issue: true,
                revoke: true,
                update: true,
                encode: true,
                refresh: true,
                list: true,
                reservations: false,
                staff: false,
                caller_pin: false,
                online: true,
                offline: false,
                modes: vec![CredentialMode::Card],
            },
        }
    }

    fn entrances(&self) -> Result<Vec<EntranceSpec>> {
        Ok(self
            .config
            .properties
            .iter()
            .flat_map(|p| {
                p.doors.iter().map(|door| EntranceSpec {
                    property_id: p.property_id.clone(),
                    entrance_id: door.clone(),
                    name: door.clone(),
                    space_ids: Vec::new(),
                    capability: EntranceCapability {
                        can_belong_to_reservation: false,
                        modes: vec![CredentialMode::Card],
                        online: true,
                        requires_reservation_for_guests: false,
                    },
                })
            })
            .collect())
    }

    fn issue(&self, args: IssueArgs) -> Result<IssueReply> {
        self.maybe_fail(&args.holder.id, "issue")?;
        let issuing = args.holder.id.starts_with("async-");
        let held = Held {
            holder_id: args.holder.id.clone(),
            entrance_ids: args
                .entrances
                .iter()
                .map(|e| e.entrance_id.clone())
                .collect(),
            window: args.window,
            generation: 1,
            encoding_required: false,
            issuing,
        };
        let credentials = Self::credentials(&args.key_id, &held);
        self.state()
            .keys
            .insert((args.property_id, args.key_id.clone()), held);
        Ok(IssueReply {
            credentials,
            state: if issuing {
                IssuedState::Issuing
            } else {
                IssuedState::Active
            },
            warnings: Vec::new(),
            driver_ref: Some(format!("tk-{}", args.key_id)),
        })
    }

    fn revoke(&self, args: RevokeArgs) -> Result<RevokeReply> {
        self.maybe_fail(&args.key.holder.id, "revoke")?;
        // Revoking a key no longer held is done already.
        self.state()
            .keys
            .remove(&(args.key.property_id, args.key.key_id));
        Ok(RevokeReply::default())
    }

    fn update(&self, args: UpdateArgs) -> Result<UpdateReply> {
        self.maybe_fail(&args.key.holder.id, "update")?;
        let mut state = self.state();
        let id = (args.key.property_id.clone(), args.key.key_id.clone());
        let held = state
            .keys
            .get_mut(&id)
            .ok_or_else(|| Self::not_held(&args.key.key_id))?;
        // Like a card system: the new window needs the card encoded again,
        // except when it is the window the card already carries.
        held.encoding_required = held.window != args.new_window;
        held.window = args.new_window;
        Ok(UpdateReply {
            credentials: Self::credentials(&args.key.key_id, held),
            encoding_required: held.encoding_required,
            warnings: Vec::new(),
        })
    }

    fn encode(&self, args: EncodeArgs) -> Result<EncodeReply> {
        self.maybe_fail(&args.key.holder.id, "encode")?;
        let mut state = self.state();
        let id = (args.key.property_id.clone(), args.key.key_id.clone());
        let held = state
            .keys
            .get_mut(&id)
            .ok_or_else(|| Self::not_held(&args.key.key_id))?;
        held.generation += 1;
        held.encoding_required = false;
        Ok(EncodeReply {
            credentials: Self::credentials(&args.key.key_id, held),
            warnings: Vec::new(),
        })
    }

    fn refresh(&self, args: RefreshArgs) -> Result<RefreshReply> {
        let mut state = self.state();
        let id = (args.key.property_id.clone(), args.key.key_id.clone());
        let held = state
            .keys
            .get_mut(&id)
            .ok_or_else(|| Self::not_held(&args.key.key_id))?;
        held.issuing = false;
        Ok(RefreshReply {
            credentials: Self::credentials(&args.key.key_id, held),
            state: if held.encoding_required {
                ProvisionState::EncodingRequired
            } else {
                ProvisionState::Active
            },
            warnings: Vec::new(),
        })
    }

    fn list(&self, args: ListArgs) -> Result<ListReply> {
        let state = self.state();
        Ok(ListReply {
            keys: state
                .keys
                .iter()
                .filter(|((property, _), _)| *property == args.property_id)
                .map(|((_, key_id), held)| DriverKeyRecord {
                    key_id: key_id.clone(),
                    driver_ref: Some(format!("tk-{key_id}")),
                    holder_id: held.holder_id.clone(),
                    entrance_ids: held.entrance_ids.clone(),
                    window: held.window,
                })
                .collect(),
            next_page_token: None,
        })
    }
}

keysmith_plugin::export_driver!(TestKit::from_config);
