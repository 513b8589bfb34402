//! keysmith's Driver over Seam access grants. A keysmith key is one access
//! grant per workspace: its entrances, window and requested access methods,
//! with the reservation_key only when a targeted entrance can belong to a
//! reservation (the guide's step 2). Access methods are issued
//! asynchronously; `refresh` reads where they stand (`standing.rs`).
use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Duration,
};

use async_trait::async_trait;
use keysmith_core::{
    capability::{CredentialMode, DriverCapability, EntranceCapability},
    driver::{
        DriverInfo, DriverKind, EncodeArgs, EncodeReply, EncoderSpec, EntranceSpec, IssueArgs,
        IssueReply, IssuedState, KeySlice, ProvisionState, RefreshArgs, RefreshReply, RevokeArgs,
        RevokeReply, UpdateArgs, UpdateReply,
    },
    key::Behaviour,
    reasons as core_reasons,
    store::DriverState,
    Driver, Error, ErrorKind, Result, Timestamp,
};
use serde_json::{json, Value};

use crate::{
    client::{Call, Retry, SeamClient},
    config::SeamConfig,
    errors::{self, reasons},
    standing::{self, Standing},
};

pub const DRIVER_NAME: &str = "seam";

pub struct SeamDriver {
    workspaces: BTreeMap<String, SeamClient>,
    /// Access grant id -> keysmith key id, for events that name the grant.
    state: Arc<dyn DriverState>,
}

fn grant_entry(property_id: &str, grant_id: &str) -> Vec<u8> {
    // NUL ends the property: no property id contains it.
    format!("grant/{property_id}\0{grant_id}").into_bytes()
}

fn iso(t: Timestamp) -> String {
    jiff::Timestamp::from_microsecond(t.as_micros())
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn str_field<'a>(v: &'a Value, name: &str) -> Result<&'a str> {
    v.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| errors::bad_answer(format!("no {name}")))
}

fn flag(v: &Value, name: &str) -> bool {
    v.get(name).and_then(Value::as_bool).unwrap_or(false)
}

impl SeamDriver {
    pub fn new(config: &SeamConfig, state: Arc<dyn DriverState>) -> Result<Self> {
        let mut workspaces = BTreeMap::new();
        for w in &config.workspaces {
            let client = SeamClient::new(
                &config.base_url,
                w.api_key.clone(),
                Duration::from_millis(config.connect_timeout_ms),
                Duration::from_millis(config.request_timeout_ms),
                Retry {
                    max_retries: config.max_retries,
                    backoff: Duration::from_millis(config.backoff_ms),
                },
            )?;
            if workspaces.insert(w.property_id.clone(), client).is_some() {
                return Err(Error::invalid_field(
                    core_reasons::FIELD_INVALID,
                    "drivers.seam.workspaces",
                    format!("property {:?} has two workspaces", w.property_id),
                ));
            }
        }
        Ok(Self { workspaces, state })
    }

    /// The keysmith key of an access grant, when keysmith created it.
    pub fn key_of_grant(&self, property_id: &str, grant_id: &str) -> Result<Option<String>> {
        Ok(self
            .state
            .get(&grant_entry(property_id, grant_id))?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    fn client(&self, property_id: &str) -> Result<&SeamClient> {
        self.workspaces.get(property_id).ok_or_else(|| {
            Error::not_found(
                core_reasons::PROPERTY_NOT_FOUND,
                format!(
                    "no Seam workspace serves property {}",
                    keysmith_core::error::quoted(property_id)
                ),
            )
        })
    }

    /// The Seam user identity of a keysmith holder, created when missing.
    async fn user_identity(&self, client: &SeamClient, args: &IssueArgs) -> Result<String> {
        let key = &args.holder.id;
        match client
            .post(
                "/user_identities/get",
                &json!({ "user_identity_key": key }),
                Call::Idempotent,
            )
            .await
        {
            Ok(found) => {
                return Ok(str_field(&found["user_identity"], "user_identity_id")?.to_owned())
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let mut body = json!({ "user_identity_key": key });
        if let Some(name) = &args.holder.name {
            body["full_name"] = json!(name);
        }
        match client
            .post("/user_identities/create", &body, Call::Once)
            .await
        {
            Ok(created) => Ok(str_field(&created["user_identity"], "user_identity_id")?.to_owned()),
            // Created meanwhile (a concurrent issue, or a lost answer).
            Err(e) if matches!(e.kind(), ErrorKind::AlreadyExists | ErrorKind::Unavailable) => {
                let found = client
                    .post(
                        "/user_identities/get",
                        &json!({ "user_identity_key": key }),
                        Call::Idempotent,
                    )
                    .await?;
                Ok(str_field(&found["user_identity"], "user_identity_id")?.to_owned())
            }
            Err(e) => Err(e),
        }
    }

    /// The grant with this access_grant_key, if Seam has one.
    async fn grant_by_key(&self, client: &SeamClient, key_id: &str) -> Result<Option<Value>> {
        let found = client
            .list_all(
                "/access_grants/list",
                json!({ "access_grant_key": key_id }),
                "access_grants",
            )
            .await?;
        Ok(found.into_iter().next())
    }

    async fn methods(&self, client: &SeamClient, grant_id: &str) -> Result<Vec<Value>> {
        client
            .list_all(
                "/access_methods/list",
                json!({ "access_grant_id": grant_id }),
                "access_methods",
            )
            .await
    }

    /// Where a key's grant stands in Seam: the grant (its requested
    /// methods and errors) and its access methods, as keysmith credentials.
    async fn standing(&self, client: &SeamClient, key: &KeySlice) -> Result<Standing> {
        let entrance_ids: Vec<String> = key
            .entrances
            .iter()
            .map(|e| e.entrance_id.clone())
            .collect();
        let grant_id = Self::grant_id(key)?;
        let grant = client
            .post(
                "/access_grants/get",
                &json!({ "access_grant_id": grant_id }),
                Call::Idempotent,
            )
            .await?;
        let methods = self.methods(client, grant_id).await?;
        Ok(standing::of_grant(
            &grant["access_grant"],
            &methods,
            &entrance_ids,
        ))
    }

    /// Seam's spaces of a workspace: `space_id` -> the id keysmith uses for
    /// the space, its `space_key` when it has one (the caller's own name
    /// for a room, `room-101`), else the `space_id`.
    async fn space_names(&self, client: &SeamClient) -> Result<BTreeMap<String, String>> {
        let found = client
            .post("/spaces/list", &json!({}), Call::Idempotent)
            .await?;
        let spaces = found
            .get("spaces")
            .and_then(Value::as_array)
            .ok_or_else(|| errors::bad_answer("/spaces/list: no spaces"))?;
        Ok(spaces
            .iter()
            .filter_map(|s| {
                let id = s.get("space_id").and_then(Value::as_str)?;
                let name = s
                    .get("space_key")
                    .and_then(Value::as_str)
                    .filter(|k| !k.is_empty())
                    .unwrap_or(id);
                Some((id.to_owned(), name.to_owned()))
            })
            .collect())
    }

    /// The card encoders of the access systems a workspace's entrances
    /// belong to.
    async fn workspace_encoders(&self, client: &SeamClient) -> Result<Vec<Value>> {
        let entrances = client
            .list_all("/acs/entrances/list", json!({}), "acs_entrances")
            .await?;
        let systems: BTreeSet<&str> = entrances
            .iter()
            .filter_map(|e| e.get("acs_system_id").and_then(Value::as_str))
            .collect();
        if systems.is_empty() {
            return Ok(Vec::new());
        }
        client
            .list_all(
                "/acs/encoders/list",
                json!({ "acs_system_ids": systems }),
                "acs_encoders",
            )
            .await
    }

    /// The property's encoder when it has exactly one; otherwise the
    /// caller must say which (`encoder_id`, from ListEncoders).
    async fn only_encoder(&self, property_id: &str) -> Result<String> {
        let encoders = self.encoders(property_id).await?;
        match encoders.as_slice() {
            [only] => Ok(only.encoder_id.clone()),
            others => Err(Error::invalid_field(
                core_reasons::FIELD_REQUIRED,
                "encoder_id",
                format!(
                    "Seam encodes a card at an encoder and this property has {}: give its encoder_id (ListEncoders lists them)",
                    others.len()
                ),
            )),
        }
    }

    fn grant_id(key: &KeySlice) -> Result<&str> {
        key.driver_ref
            .as_deref()
            .ok_or_else(|| Error::internal(format!("key {} has no Seam access grant", key.key_id)))
    }
}

#[async_trait]
impl Driver for SeamDriver {
    fn info(&self) -> DriverInfo {
        DriverInfo {
            name: DRIVER_NAME.to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            kind: DriverKind::BuiltIn,
            capability: DriverCapability {
                issue: true,
                revoke: true,
                update: true,
                encode: true,
                refresh: true,
                // Seam's access grants could be listed; not wired up yet.
                list: false,
                reservations: true,
                staff: true,
                caller_pin: true,
                online: true,
                offline: false,
                modes: vec![
                    CredentialMode::Pin,
                    CredentialMode::Card,
                    CredentialMode::MobileKey,
                ],
            },
        }
    }

    async fn entrances(&self) -> Result<Vec<EntranceSpec>> {
        let mut out = Vec::new();
        for (property_id, client) in &self.workspaces {
            let entrances = client
                .list_all("/acs/entrances/list", json!({}), "acs_entrances")
                .await?;
            let spaces = self.space_names(client).await?;
            for e in entrances {
                let mut modes = Vec::new();
                // Missing capability fields mean false.
                if flag(&e, "can_unlock_with_code") {
                    modes.push(CredentialMode::Pin);
                }
                if flag(&e, "can_unlock_with_card") {
                    modes.push(CredentialMode::Card);
                }
                if flag(&e, "can_unlock_with_mobile_key") {
                    modes.push(CredentialMode::MobileKey);
                }
                // A space keysmith cannot name (not listed) keeps Seam's id.
                let space_ids = e
                    .get("space_ids")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .map(|id| spaces.get(id).cloned().unwrap_or_else(|| id.to_owned()))
                            .collect()
                    })
                    .unwrap_or_default();
                out.push(EntranceSpec {
                    property_id: property_id.clone(),
                    entrance_id: str_field(&e, "acs_entrance_id")?.to_owned(),
                    name: e
                        .get("display_name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    space_ids,
                    capability: EntranceCapability {
                        can_belong_to_reservation: flag(&e, "can_belong_to_reservation"),
                        modes,
                        online: true,
                        // Seam enforces it for the systems that need it
                        // (Visionline and others) and keysmith maps the error.
                        requires_reservation_for_guests: false,
                    },
                });
            }
        }
        Ok(out)
    }

    async fn issue(&self, args: IssueArgs) -> Result<IssueReply> {
        let client = self.client(&args.property_id)?;
        let user_identity_id = self.user_identity(client, &args).await?;
        let mut methods = Vec::new();
        for mode in &args.modes {
            let Some(m) = standing::seam_mode(*mode) else {
                return Err(Error::invalid_field(
                    core_reasons::CREDENTIAL_MODE_NOT_SUPPORTED,
                    "modes",
                    format!("Seam does not issue {} credentials", mode.as_str()),
                ));
            };
            let mut method = json!({ "mode": m });
            if *mode == CredentialMode::Pin {
                if let Some(pin) = &args.pin {
                    method["code"] = json!(pin.expose());
                }
            }
            methods.push(method);
        }
        let entrance_ids: Vec<&str> = args
            .entrances
            .iter()
            .map(|e| e.entrance_id.as_str())
            .collect();
        let mut body = json!({
            "user_identity_id": user_identity_id,
            "acs_entrance_ids": entrance_ids,
            "starts_at": iso(args.window.starts_at),
            "ends_at": iso(args.window.ends_at),
            "requested_access_methods": methods,
            // The idempotency handle: a create whose answer is lost is found
            // by it rather than sent again.
            "access_grant_key": args.key_id,
            "name": args.holder.name.clone().unwrap_or_else(|| args.holder.id.clone()),
        });
        let capable = args
            .entrances
            .iter()
            .any(|e| e.behaviour != Behaviour::Standard);
        // The caller's reservation_key as it is, for every incarnation: the
        // guide's relocation deletes the reservation's grants and creates
        // anew with the same key, which Seam then treats as a new
        // reservation (it overrides at first use). keysmith clears a
        // reservation only by deleting all its grants first.
        if let (Some(r), true) = (&args.reservation, capable) {
            body["reservation_key"] = json!(r.key);
        }
        let grant = match client
            .post("/access_grants/create", &body, Call::Once)
            .await
        {
            Ok(created) => created["access_grant"].clone(),
            Err(e) if e.kind() == ErrorKind::Unavailable => {
                // The create may have happened: look before giving up.
                match self.grant_by_key(client, &args.key_id).await {
                    Ok(Some(grant)) => grant,
                    _ => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        let grant_id = str_field(&grant, "access_grant_id")?.to_owned();
        // Made durable by the core's commit of the key, which follows.
        self.state.apply(vec![(
            grant_entry(&args.property_id, &grant_id),
            Some(args.key_id.clone().into_bytes()),
        )])?;
        let entrance_ids: Vec<String> = args
            .entrances
            .iter()
            .map(|e| e.entrance_id.clone())
            .collect();
        // The grant is made: whatever happens now, the key is stored with
        // it, and ACTIVE only if every credential can be delivered already.
        // A failed read leaves it ISSUING for the key follower to complete.
        let now = match self.methods(client, &grant_id).await {
            Ok(methods) => standing::of_grant(&grant, &methods, &entrance_ids),
            Err(error) => {
                tracing::debug!(%grant_id, %error, "access methods not read yet; the key stays issuing");
                standing::unknown(&args.modes, &entrance_ids)
            }
        };
        Ok(IssueReply {
            credentials: now.credentials,
            state: if now.state == ProvisionState::Active {
                IssuedState::Active
            } else {
                IssuedState::Issuing
            },
            warnings: now.warnings,
            driver_ref: Some(grant_id),
        })
    }

    async fn revoke(&self, args: RevokeArgs) -> Result<RevokeReply> {
        let client = self.client(&args.key.property_id)?;
        let grant_id = Self::grant_id(&args.key)?;
        match client
            .post(
                "/access_grants/delete",
                &json!({ "access_grant_id": grant_id }),
                Call::Idempotent,
            )
            .await
        {
            Ok(_) => {}
            // Deleted already (a retry, or Seam's own clean-up).
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        Ok(RevokeReply::default())
    }

    async fn update(&self, args: UpdateArgs) -> Result<UpdateReply> {
        let client = self.client(&args.key.property_id)?;
        let grant_id = Self::grant_id(&args.key)?;
        client
            .post(
                "/access_grants/update",
                &json!({
                    "access_grant_id": grant_id,
                    "starts_at": iso(args.new_window.starts_at),
                    "ends_at": iso(args.new_window.ends_at),
                }),
                Call::Idempotent,
            )
            .await?;
        // Seam revokes and reissues every method; cards must be encoded anew.
        let mut encoding_required = false;
        let credentials = args
            .key
            .credentials
            .into_iter()
            .map(|mut c| {
                if c.mode == CredentialMode::Card {
                    c.encoding_required = true;
                    encoding_required = true;
                }
                c
            })
            .collect();
        Ok(UpdateReply {
            credentials,
            encoding_required,
            warnings: Vec::new(),
        })
    }

    async fn encode(&self, args: EncodeArgs) -> Result<EncodeReply> {
        let client = self.client(&args.key.property_id)?;
        let encoder = match args.encoder_id.clone() {
            Some(id) => id,
            None => self.only_encoder(&args.key.property_id).await?,
        };
        for c in args.key.credentials.iter().filter(|c| c.encoding_required) {
            let attempt = client
                .post(
                    "/access_methods/encode",
                    &json!({ "access_method_id": c.credential_id, "acs_encoder_id": encoder }),
                    Call::Once,
                )
                .await?;
            let id = str_field(&attempt["action_attempt"], "action_attempt_id")?.to_owned();
            let mut status = attempt["action_attempt"]["status"]
                .as_str()
                .unwrap_or("pending")
                .to_owned();
            // The card is on the encoder while this runs; bounded.
            for _ in 0..150 {
                if status != "pending" {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                let now = client
                    .post(
                        "/action_attempts/get",
                        &json!({ "action_attempt_id": id }),
                        Call::Idempotent,
                    )
                    .await?;
                status = now["action_attempt"]["status"]
                    .as_str()
                    .unwrap_or("pending")
                    .to_owned();
            }
            if status != "success" {
                return Err(Error::new(
                    ErrorKind::Unavailable,
                    reasons::SEAM_ENCODING_FAILED,
                    format!("encoding at {encoder} ended {status}"),
                )
                .set_temporary());
            }
        }
        let now = self.standing(client, &args.key).await?;
        Ok(EncodeReply {
            credentials: now.credentials,
            warnings: now.warnings,
        })
    }

    async fn refresh(&self, args: RefreshArgs) -> Result<RefreshReply> {
        let client = self.client(&args.key.property_id)?;
        let now = self.standing(client, &args.key).await?;
        Ok(RefreshReply {
            credentials: now.credentials,
            state: now.state,
            warnings: now.warnings,
        })
    }

    async fn encoders(&self, property_id: &str) -> Result<Vec<EncoderSpec>> {
        let client = self.client(property_id)?;
        let encoders = self.workspace_encoders(client).await?;
        encoders
            .iter()
            .map(|e| {
                Ok(EncoderSpec {
                    property_id: property_id.to_owned(),
                    encoder_id: str_field(e, "acs_encoder_id")?.to_owned(),
                    name: e
                        .get("display_name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                })
            })
            .collect()
    }
}
