//! keysmith's Driver over Seam access grants. A keysmith key is one access
//! grant per workspace: its entrances, window and requested access methods,
//! with the reservation_key only when a targeted entrance can belong to a
//! reservation (the guide's step 2). Access methods are issued
//! asynchronously; `refresh` reads where they stand.
use std::{collections::BTreeMap, sync::Arc, time::Duration};

use async_trait::async_trait;
use keysmith_core::{
    capability::{CredentialMode, DriverCapability, EntranceCapability},
    driver::{
        DriverInfo, DriverKind, EncodeArgs, EncodeReply, EntranceSpec, IssueArgs, IssueReply,
        IssuedState, KeySlice, ProvisionState, RefreshArgs, RefreshReply, RevokeArgs, RevokeReply,
        UpdateArgs, UpdateReply,
    },
    key::{Behaviour, Credential, CredentialData, Warning},
    reasons as core_reasons,
    store::DriverState,
    Driver, Error, ErrorKind, Result, Secret, Timestamp,
};
use serde_json::{json, Value};

use crate::{
    client::{Call, Retry, SeamClient},
    config::SeamConfig,
    errors::{self, reasons},
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

fn seam_mode(mode: CredentialMode) -> Option<&'static str> {
    match mode {
        CredentialMode::Pin => Some("code"),
        CredentialMode::Card => Some("card"),
        CredentialMode::MobileKey => Some("mobile_key"),
        CredentialMode::Qr | CredentialMode::KeyStorage => None,
    }
}

fn keysmith_mode(mode: &str) -> Option<CredentialMode> {
    match mode {
        "code" => Some(CredentialMode::Pin),
        "card" => Some(CredentialMode::Card),
        "mobile_key" => Some(CredentialMode::MobileKey),
        _ => None,
    }
}

/// Seam's reservation for a keysmith reservation: the caller's key for the
/// first stay; a reservation established anew after all its keys ended (a
/// later epoch) is a new stay to Seam too, whose old grants may still be
/// being deleted.
pub fn reservation_key(key: &str, epoch: u64) -> String {
    if epoch <= 1 {
        key.to_owned()
    } else {
        format!("{key}#{epoch}")
    }
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
                format!("no Seam workspace serves property {property_id:?}"),
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

    /// Where a key's grant stands in Seam: its access methods as keysmith
    /// credentials.
    async fn standing(
        &self,
        client: &SeamClient,
        key: &KeySlice,
    ) -> Result<(Vec<Credential>, ProvisionState, Vec<Warning>)> {
        let entrance_ids: Vec<String> = key
            .entrances
            .iter()
            .map(|e| e.entrance_id.clone())
            .collect();
        let methods = self.methods(client, Self::grant_id(key)?).await?;
        Ok(credentials_of(&methods, &entrance_ids))
    }

    fn grant_id(key: &KeySlice) -> Result<&str> {
        key.driver_ref
            .as_deref()
            .ok_or_else(|| Error::internal(format!("key {} has no Seam access grant", key.key_id)))
    }
}

/// keysmith's credentials for a grant's access methods, and where they stand.
pub fn credentials_of(
    methods: &[Value],
    entrance_ids: &[String],
) -> (Vec<Credential>, ProvisionState, Vec<Warning>) {
    let mut credentials = Vec::new();
    let mut issuing = false;
    let mut encoding = false;
    let mut warnings = Vec::new();
    for m in methods {
        let Some(mode) = m
            .get("mode")
            .and_then(Value::as_str)
            .and_then(keysmith_mode)
        else {
            continue;
        };
        let id = m
            .get("access_method_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let issued = flag(m, "is_issued");
        let needs_encoding = flag(m, "is_encoding_required");
        issuing |= !issued;
        encoding |= needs_encoding;
        let data = if !issued {
            CredentialData::Pending
        } else {
            match mode {
                CredentialMode::Pin => m
                    .get("code")
                    .and_then(Value::as_str)
                    .map(|c| CredentialData::Pin(Secret::new(c.to_owned())))
                    .unwrap_or(CredentialData::Pending),
                CredentialMode::MobileKey => m
                    .get("instant_key_url")
                    .and_then(Value::as_str)
                    .map(|u| CredentialData::MobileKey(Secret::new(u.to_owned())))
                    .unwrap_or(CredentialData::Pending),
                // Seam does not hand out card data: the card is encoded at
                // an encoder; keysmith gives the access method to encode.
                _ => CredentialData::Card(Secret::new(id.clone())),
            }
        };
        if let Some(Value::Array(ws)) = m.get("warnings") {
            for w in ws {
                if let (Some(code), Some(message)) = (
                    w.get("warning_code").and_then(Value::as_str),
                    w.get("message").and_then(Value::as_str),
                ) {
                    warnings.push(Warning::new(
                        format!("SEAM_{}", code.to_ascii_uppercase()),
                        message,
                    ));
                }
            }
        }
        credentials.push(Credential {
            mode,
            driver: DRIVER_NAME.to_owned(),
            entrance_ids: entrance_ids.to_vec(),
            data,
            credential_id: id,
            encoding_required: needs_encoding,
        });
    }
    let state = if issuing {
        ProvisionState::Issuing
    } else if encoding {
        ProvisionState::EncodingRequired
    } else {
        ProvisionState::Active
    };
    (credentials, state, warnings)
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
                let space_ids = e
                    .get("space_ids")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_owned)
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
            let Some(m) = seam_mode(*mode) else {
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
        if let (Some(r), true) = (&args.reservation, capable) {
            body["reservation_key"] = json!(reservation_key(&r.key, r.epoch));
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
        let methods = self.methods(client, &grant_id).await.unwrap_or_default();
        let (mut credentials, state, warnings) = credentials_of(&methods, &entrance_ids);
        if credentials.is_empty() {
            // Not listed yet: one pending credential per requested mode.
            credentials = args
                .modes
                .iter()
                .map(|m| Credential {
                    mode: *m,
                    driver: DRIVER_NAME.to_owned(),
                    entrance_ids: entrance_ids.clone(),
                    data: CredentialData::Pending,
                    credential_id: String::new(),
                    encoding_required: false,
                })
                .collect();
        }
        Ok(IssueReply {
            credentials,
            state: if state == ProvisionState::Active {
                IssuedState::Active
            } else {
                IssuedState::Issuing
            },
            warnings,
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
        let encoder = args.encoder_id.clone().ok_or_else(|| {
            Error::invalid_field(
                core_reasons::FIELD_REQUIRED,
                "encoder_id",
                "Seam encodes a card at an encoder: give its acs_encoder_id",
            )
        })?;
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
        let (credentials, _, warnings) = self.standing(client, &args.key).await?;
        Ok(EncodeReply {
            credentials,
            warnings,
        })
    }

    async fn refresh(&self, args: RefreshArgs) -> Result<RefreshReply> {
        let client = self.client(&args.key.property_id)?;
        let (credentials, state, warnings) = self.standing(client, &args.key).await?;
        Ok(RefreshReply {
            credentials,
            state,
            warnings,
        })
    }
}
