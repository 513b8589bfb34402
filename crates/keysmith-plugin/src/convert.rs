//! keysmith's domain types to `keysmith.driver.v1` messages and back, for
//! both sides of the plugin boundary: the host encodes arguments and decodes
//! replies, the plugin the other way round. Every struct is destructured
//! field by field, so a field added on either side is a compile error here
//! until it is carried across.
//!
//! Decoding fails with INTERNAL `PLUGIN_PROTOCOL_ERROR`: a message the
//! other side should never have sent (an unknown enum value, a missing
//! window) is a bug in one of the two, never the caller's mistake.
use std::time::Duration;

use keysmith_driver::{
    driver::{
        DriverKeyRecord, EncodeArgs, EncodeReply, EntranceSpec, EntranceTarget, IssueArgs,
        IssueReply, IssuedState, KeySlice, ListArgs, ListReply, ProvisionState, RefreshArgs,
        RefreshReply, RevokeArgs, RevokeReply, UpdateArgs, UpdateReply,
    },
    error::FieldViolation,
    key::{Behaviour, Credential, CredentialData, Holder, ReservationRef, Warning},
    CredentialMode, DriverCapability, EntranceCapability, Error, ErrorKind, Result, Role, Secret,
    Timestamp, Window,
};

use crate::{driver::PluginInfo, intern, proto as pb, reasons};

/// A message that breaks the contract.
pub fn protocol_error(what: impl Into<String>) -> Error {
    Error::new(
        ErrorKind::Internal,
        reasons::PLUGIN_PROTOCOL_ERROR,
        what.into(),
    )
}

fn optional(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

// ---- scalars and small messages ----

/// A timestamp as `google.protobuf.Timestamp`.
pub fn timestamp_to_proto(t: Timestamp) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.unix_seconds(),
        nanos: t.subsec_nanos(),
    }
}

/// A required timestamp; `PLUGIN_PROTOCOL_ERROR` naming `field` when it
/// is missing or out of range.
pub fn timestamp_from_proto(t: Option<prost_types::Timestamp>, field: &str) -> Result<Timestamp> {
    let prost_types::Timestamp { seconds, nanos } =
        t.ok_or_else(|| protocol_error(format!("{field} is missing")))?;
    Timestamp::from_parts(seconds, nanos)
        .ok_or_else(|| protocol_error(format!("{field} is not a valid timestamp")))
}

/// A window, both ends set.
pub fn window_to_proto(w: &Window) -> pb::Window {
    let Window { starts_at, ends_at } = *w;
    pb::Window {
        starts_at: Some(timestamp_to_proto(starts_at)),
        ends_at: Some(timestamp_to_proto(ends_at)),
    }
}

/// A required window with both ends; `PLUGIN_PROTOCOL_ERROR` naming
/// `field` otherwise. Not checked for order: the core checks windows.
pub fn window_from_proto(w: Option<pb::Window>, field: &str) -> Result<Window> {
    let pb::Window { starts_at, ends_at } =
        w.ok_or_else(|| protocol_error(format!("{field} is missing")))?;
    Ok(Window {
        starts_at: timestamp_from_proto(starts_at, field)?,
        ends_at: timestamp_from_proto(ends_at, field)?,
    })
}

/// A credential mode, one to one.
pub fn mode_to_proto(m: CredentialMode) -> pb::CredentialMode {
    match m {
        CredentialMode::Pin => pb::CredentialMode::Pin,
        CredentialMode::Card => pb::CredentialMode::Card,
        CredentialMode::MobileKey => pb::CredentialMode::MobileKey,
        CredentialMode::Qr => pb::CredentialMode::Qr,
        CredentialMode::KeyStorage => pb::CredentialMode::KeyStorage,
    }
}

/// A credential mode; `PLUGIN_PROTOCOL_ERROR` for UNSPECIFIED or a value
/// this side does not know.
pub fn mode_from_proto(value: i32) -> Result<CredentialMode> {
    match pb::CredentialMode::try_from(value) {
        Ok(pb::CredentialMode::Pin) => Ok(CredentialMode::Pin),
        Ok(pb::CredentialMode::Card) => Ok(CredentialMode::Card),
        Ok(pb::CredentialMode::MobileKey) => Ok(CredentialMode::MobileKey),
        Ok(pb::CredentialMode::Qr) => Ok(CredentialMode::Qr),
        Ok(pb::CredentialMode::KeyStorage) => Ok(CredentialMode::KeyStorage),
        Ok(pb::CredentialMode::Unspecified) | Err(_) => {
            Err(protocol_error(format!("{value} is not a credential mode")))
        }
    }
}

fn modes_to_proto(modes: &[CredentialMode]) -> Vec<i32> {
    modes.iter().map(|m| mode_to_proto(*m) as i32).collect()
}

fn modes_from_proto(modes: Vec<i32>) -> Result<Vec<CredentialMode>> {
    modes.into_iter().map(mode_from_proto).collect()
}

fn role_to_proto(r: Role) -> pb::Role {
    match r {
        Role::Guest => pb::Role::Guest,
        Role::Staff => pb::Role::Staff,
    }
}

fn role_from_proto(value: i32) -> Result<Role> {
    match pb::Role::try_from(value) {
        Ok(pb::Role::Guest) => Ok(Role::Guest),
        Ok(pb::Role::Staff) => Ok(Role::Staff),
        Ok(pb::Role::Unspecified) | Err(_) => Err(protocol_error(format!("{value} is not a role"))),
    }
}

fn behaviour_to_proto(b: Behaviour) -> pb::Behaviour {
    match b {
        Behaviour::Standard => pb::Behaviour::Standard,
        Behaviour::Override => pb::Behaviour::Override,
        Behaviour::Join => pb::Behaviour::Join,
    }
}

fn behaviour_from_proto(value: i32) -> Result<Behaviour> {
    match pb::Behaviour::try_from(value) {
        Ok(pb::Behaviour::Standard) => Ok(Behaviour::Standard),
        Ok(pb::Behaviour::Override) => Ok(Behaviour::Override),
        Ok(pb::Behaviour::Join) => Ok(Behaviour::Join),
        Ok(pb::Behaviour::Unspecified) | Err(_) => Err(protocol_error(format!(
            "{value} is not a reservation behaviour"
        ))),
    }
}

fn provision_to_proto(s: ProvisionState) -> pb::ProvisionState {
    match s {
        ProvisionState::Issuing => pb::ProvisionState::Issuing,
        ProvisionState::Active => pb::ProvisionState::Active,
        ProvisionState::EncodingRequired => pb::ProvisionState::EncodingRequired,
        ProvisionState::Failed => pb::ProvisionState::Failed,
    }
}

fn provision_from_proto(value: i32) -> Result<ProvisionState> {
    match pb::ProvisionState::try_from(value) {
        Ok(pb::ProvisionState::Issuing) => Ok(ProvisionState::Issuing),
        Ok(pb::ProvisionState::Active) => Ok(ProvisionState::Active),
        Ok(pb::ProvisionState::EncodingRequired) => Ok(ProvisionState::EncodingRequired),
        Ok(pb::ProvisionState::Failed) => Ok(ProvisionState::Failed),
        Ok(pb::ProvisionState::Unspecified) | Err(_) => Err(protocol_error(format!(
            "{value} is not a provisioning state"
        ))),
    }
}

fn holder_to_proto(h: &Holder) -> pb::Holder {
    let Holder { id, name } = h;
    pb::Holder {
        id: id.clone(),
        name: name.clone().unwrap_or_default(),
    }
}

fn holder_from_proto(h: Option<pb::Holder>) -> Result<Holder> {
    let pb::Holder { id, name } = h.ok_or_else(|| protocol_error("holder is missing"))?;
    Ok(Holder {
        id,
        name: optional(name),
    })
}

fn reservation_to_proto(r: &ReservationRef) -> pb::Reservation {
    let ReservationRef { key, epoch } = r;
    pb::Reservation {
        key: key.clone(),
        epoch: *epoch,
    }
}

fn reservation_from_proto(r: pb::Reservation) -> ReservationRef {
    let pb::Reservation { key, epoch } = r;
    ReservationRef { key, epoch }
}

fn target_to_proto(t: &EntranceTarget) -> pb::EntranceTarget {
    let EntranceTarget {
        entrance_id,
        behaviour,
    } = t;
    pb::EntranceTarget {
        entrance_id: entrance_id.clone(),
        behaviour: behaviour_to_proto(*behaviour) as i32,
    }
}

fn target_from_proto(t: pb::EntranceTarget) -> Result<EntranceTarget> {
    let pb::EntranceTarget {
        entrance_id,
        behaviour,
    } = t;
    Ok(EntranceTarget {
        entrance_id,
        behaviour: behaviour_from_proto(behaviour)?,
    })
}

fn targets_from_proto(targets: Vec<pb::EntranceTarget>) -> Result<Vec<EntranceTarget>> {
    targets.into_iter().map(target_from_proto).collect()
}

/// The wire form of a credential: this is where its secret crosses.
pub fn credential_to_proto(c: &Credential) -> pb::Credential {
    use pb::credential::Data;
    let Credential {
        mode,
        // The host knows which driver it asked; the contract does not carry it.
        driver: _,
        entrance_ids,
        data,
        credential_id,
        encoding_required,
    } = c;
    pb::Credential {
        mode: mode_to_proto(*mode) as i32,
        entrance_ids: entrance_ids.clone(),
        data: match data {
            CredentialData::Pending => None,
            CredentialData::Pin(s) => Some(Data::Pin(s.expose().clone())),
            CredentialData::Card(s) => Some(Data::CardData(s.expose().clone())),
            CredentialData::Qr(s) => Some(Data::QrData(s.expose().clone())),
            CredentialData::MobileKey(s) => Some(Data::MobileKey(s.expose().clone())),
            CredentialData::Compartment(s) => Some(Data::Compartment(s.expose().clone())),
        },
        credential_id: credential_id.clone(),
        encoding_required: *encoding_required,
    }
}

/// `driver` is the name of the driver the credential belongs to, on the
/// side that decodes it.
pub fn credential_from_proto(c: pb::Credential, driver: &str) -> Result<Credential> {
    use pb::credential::Data;
    let pb::Credential {
        mode,
        entrance_ids,
        data,
        credential_id,
        encoding_required,
    } = c;
    Ok(Credential {
        mode: mode_from_proto(mode)?,
        driver: driver.to_owned(),
        entrance_ids,
        data: match data {
            None => CredentialData::Pending,
            Some(Data::Pin(s)) => CredentialData::Pin(Secret::new(s)),
            Some(Data::CardData(s)) => CredentialData::Card(Secret::new(s)),
            Some(Data::QrData(s)) => CredentialData::Qr(Secret::new(s)),
            Some(Data::MobileKey(s)) => CredentialData::MobileKey(Secret::new(s)),
            Some(Data::Compartment(s)) => CredentialData::Compartment(Secret::new(s)),
        },
        credential_id,
        encoding_required,
    })
}

fn credentials_to_proto(list: &[Credential]) -> Vec<pb::Credential> {
    list.iter().map(credential_to_proto).collect()
}

fn credentials_from_proto(list: Vec<pb::Credential>, driver: &str) -> Result<Vec<Credential>> {
    list.into_iter()
        .map(|c| credential_from_proto(c, driver))
        .collect()
}

fn warning_to_proto(w: &Warning) -> pb::Warning {
    let Warning { code, message } = w;
    pb::Warning {
        code: code.clone(),
        message: message.clone(),
    }
}

fn warnings_to_proto(list: &[Warning]) -> Vec<pb::Warning> {
    list.iter().map(warning_to_proto).collect()
}

fn warnings_from_proto(list: Vec<pb::Warning>) -> Vec<Warning> {
    list.into_iter()
        .map(|pb::Warning { code, message }| Warning { code, message })
        .collect()
}

// ---- who the driver is ----

/// A driver's capability, flag by flag.
pub fn capability_to_proto(c: &DriverCapability) -> pb::Capability {
    let DriverCapability {
        issue,
        revoke,
        update,
        encode,
        refresh,
        list,
        reservations,
        staff,
        caller_pin,
        online,
        offline,
        modes,
    } = c;
    pb::Capability {
        issue: *issue,
        revoke: *revoke,
        update: *update,
        encode: *encode,
        refresh: *refresh,
        list: *list,
        reservations: *reservations,
        staff: *staff,
        caller_pin: *caller_pin,
        online: *online,
        offline: *offline,
        modes: modes_to_proto(modes),
    }
}

/// A driver's capability, flag by flag; a flag the sender did not know is
/// false. `PLUGIN_PROTOCOL_ERROR` for an unknown mode.
pub fn capability_from_proto(c: pb::Capability) -> Result<DriverCapability> {
    let pb::Capability {
        issue,
        revoke,
        update,
        encode,
        refresh,
        list,
        reservations,
        staff,
        caller_pin,
        online,
        offline,
        modes,
    } = c;
    Ok(DriverCapability {
        issue,
        revoke,
        update,
        encode,
        refresh,
        list,
        reservations,
        staff,
        caller_pin,
        online,
        offline,
        modes: modes_from_proto(modes)?,
    })
}

/// The plugin's side of `info`: who the driver is.
pub fn info_to_proto(info: &PluginInfo) -> pb::InfoReply {
    let PluginInfo {
        name,
        version,
        capability,
    } = info;
    pb::InfoReply {
        name: name.clone(),
        version: version.clone(),
        capability: Some(capability_to_proto(capability)),
    }
}

/// The host's side of `info`. A missing capability is the default one:
/// nothing.
pub fn info_from_proto(info: pb::InfoReply) -> Result<PluginInfo> {
    let pb::InfoReply {
        name,
        version,
        capability,
    } = info;
    Ok(PluginInfo {
        name,
        version,
        capability: capability_from_proto(capability.unwrap_or_default())?,
    })
}

/// An entrance, its capability flattened into the message.
pub fn entrance_to_proto(e: &EntranceSpec) -> pb::Entrance {
    let EntranceSpec {
        property_id,
        entrance_id,
        name,
        space_ids,
        capability:
            EntranceCapability {
                can_belong_to_reservation,
                modes,
                online,
                requires_reservation_for_guests,
            },
    } = e;
    pb::Entrance {
        property_id: property_id.clone(),
        entrance_id: entrance_id.clone(),
        name: name.clone(),
        space_ids: space_ids.clone(),
        can_belong_to_reservation: *can_belong_to_reservation,
        modes: modes_to_proto(modes),
        online: *online,
        requires_reservation_for_guests: *requires_reservation_for_guests,
    }
}

/// An entrance; `PLUGIN_PROTOCOL_ERROR` for an unknown mode.
pub fn entrance_from_proto(e: pb::Entrance) -> Result<EntranceSpec> {
    let pb::Entrance {
        property_id,
        entrance_id,
        name,
        space_ids,
        can_belong_to_reservation,
        modes,
        online,
        requires_reservation_for_guests,
    } = e;
    Ok(EntranceSpec {
        property_id,
        entrance_id,
        name,
        space_ids,
        capability: EntranceCapability {
            can_belong_to_reservation,
            modes: modes_from_proto(modes)?,
            online,
            requires_reservation_for_guests,
        },
    })
}

/// The plugin's side of `entrances`.
pub fn entrances_to_proto(list: &[EntranceSpec]) -> pb::EntrancesReply {
    pb::EntrancesReply {
        entrances: list.iter().map(entrance_to_proto).collect(),
    }
}

/// The host's side of `entrances`.
pub fn entrances_from_proto(reply: pb::EntrancesReply) -> Result<Vec<EntranceSpec>> {
    let pb::EntrancesReply { entrances } = reply;
    entrances.into_iter().map(entrance_from_proto).collect()
}

// ---- keys ----

/// A driver's part of a key, its credentials' secrets included: the
/// driver issued them.
pub fn key_slice_to_proto(k: &KeySlice) -> pb::KeySlice {
    let KeySlice {
        key_id,
        property_id,
        holder,
        role,
        window,
        reservation,
        entrances,
        credentials,
        driver_ref,
    } = k;
    pb::KeySlice {
        key_id: key_id.clone(),
        property_id: property_id.clone(),
        holder: Some(holder_to_proto(holder)),
        role: role_to_proto(*role) as i32,
        window: Some(window_to_proto(window)),
        reservation: reservation.as_ref().map(reservation_to_proto),
        entrances: entrances.iter().map(target_to_proto).collect(),
        credentials: credentials_to_proto(credentials),
        driver_ref: driver_ref.clone().unwrap_or_default(),
    }
}

/// A driver's part of a key, required; `driver` is the name the decoding
/// side gives the credentials. `PLUGIN_PROTOCOL_ERROR` when it is missing
/// or malformed.
pub fn key_slice_from_proto(k: Option<pb::KeySlice>, driver: &str) -> Result<KeySlice> {
    let pb::KeySlice {
        key_id,
        property_id,
        holder,
        role,
        window,
        reservation,
        entrances,
        credentials,
        driver_ref,
    } = k.ok_or_else(|| protocol_error("key is missing"))?;
    Ok(KeySlice {
        key_id,
        property_id,
        holder: holder_from_proto(holder)?,
        role: role_from_proto(role)?,
        window: window_from_proto(window, "window")?,
        reservation: reservation.map(reservation_from_proto),
        entrances: targets_from_proto(entrances)?,
        credentials: credentials_from_proto(credentials, driver)?,
        driver_ref: optional(driver_ref),
    })
}

/// The host's side of `issue`: the arguments, a caller's PIN included.
pub fn issue_args_to_proto(a: &IssueArgs) -> pb::IssueRequest {
    let IssueArgs {
        key_id,
        property_id,
        holder,
        role,
        window,
        reservation,
        entrances,
        modes,
        pin,
    } = a;
    pb::IssueRequest {
        key_id: key_id.clone(),
        property_id: property_id.clone(),
        holder: Some(holder_to_proto(holder)),
        role: role_to_proto(*role) as i32,
        window: Some(window_to_proto(window)),
        reservation: reservation.as_ref().map(reservation_to_proto),
        entrances: entrances.iter().map(target_to_proto).collect(),
        modes: modes_to_proto(modes),
        pin: pin.as_ref().map(|p| p.expose().clone()).unwrap_or_default(),
    }
}

/// The plugin's side of `issue`. An empty PIN is no PIN.
pub fn issue_args_from_proto(r: pb::IssueRequest) -> Result<IssueArgs> {
    let pb::IssueRequest {
        key_id,
        property_id,
        holder,
        role,
        window,
        reservation,
        entrances,
        modes,
        pin,
    } = r;
    Ok(IssueArgs {
        key_id,
        property_id,
        holder: holder_from_proto(holder)?,
        role: role_from_proto(role)?,
        window: window_from_proto(window, "window")?,
        reservation: reservation.map(reservation_from_proto),
        entrances: targets_from_proto(entrances)?,
        modes: modes_from_proto(modes)?,
        pin: optional(pin).map(Secret::new),
    })
}

/// The plugin's side of `issue`'s answer.
pub fn issue_reply_to_proto(r: &IssueReply) -> pb::IssueReply {
    let IssueReply {
        credentials,
        state,
        warnings,
        driver_ref,
    } = r;
    pb::IssueReply {
        credentials: credentials_to_proto(credentials),
        state: match state {
            IssuedState::Active => pb::ProvisionState::Active,
            IssuedState::Issuing => pb::ProvisionState::Issuing,
        } as i32,
        warnings: warnings_to_proto(warnings),
        driver_ref: driver_ref.clone().unwrap_or_default(),
    }
}

/// The host's side of `issue`'s answer, its credentials tagged with
/// `driver`. `PLUGIN_PROTOCOL_ERROR` for a state other than active or
/// issuing: a new key is never ENCODING_REQUIRED, and a driver that cannot
/// issue it answers an error, not FAILED.
pub fn issue_reply_from_proto(r: pb::IssueReply, driver: &str) -> Result<IssueReply> {
    let pb::IssueReply {
        credentials,
        state,
        warnings,
        driver_ref,
    } = r;
    let state = match provision_from_proto(state)? {
        ProvisionState::Active => IssuedState::Active,
        ProvisionState::Issuing => IssuedState::Issuing,
        ProvisionState::EncodingRequired | ProvisionState::Failed => {
            return Err(protocol_error(
                "issue answered ENCODING_REQUIRED or FAILED: a new key is active or issuing",
            ))
        }
    };
    Ok(IssueReply {
        credentials: credentials_from_proto(credentials, driver)?,
        state,
        warnings: warnings_from_proto(warnings),
        driver_ref: optional(driver_ref),
    })
}

/// The host's side of `revoke`.
pub fn revoke_args_to_proto(a: &RevokeArgs) -> pb::RevokeRequest {
    let RevokeArgs { key } = a;
    pb::RevokeRequest {
        key: Some(key_slice_to_proto(key)),
    }
}

/// The plugin's side of `revoke`; `driver` is the plugin's own name.
pub fn revoke_args_from_proto(r: pb::RevokeRequest, driver: &str) -> Result<RevokeArgs> {
    let pb::RevokeRequest { key } = r;
    Ok(RevokeArgs {
        key: key_slice_from_proto(key, driver)?,
    })
}

/// The plugin's side of `revoke`'s answer.
pub fn revoke_reply_to_proto(r: &RevokeReply) -> pb::RevokeReply {
    let RevokeReply { warnings } = r;
    pb::RevokeReply {
        warnings: warnings_to_proto(warnings),
    }
}

/// The host's side of `revoke`'s answer: warnings only, so it cannot fail.
pub fn revoke_reply_from_proto(r: pb::RevokeReply) -> RevokeReply {
    let pb::RevokeReply { warnings } = r;
    RevokeReply {
        warnings: warnings_from_proto(warnings),
    }
}

/// The host's side of `update`.
pub fn update_args_to_proto(a: &UpdateArgs) -> pb::UpdateRequest {
    let UpdateArgs { key, new_window } = a;
    pb::UpdateRequest {
        key: Some(key_slice_to_proto(key)),
        new_window: Some(window_to_proto(new_window)),
    }
}

/// The plugin's side of `update`; `driver` is the plugin's own name.
pub fn update_args_from_proto(r: pb::UpdateRequest, driver: &str) -> Result<UpdateArgs> {
    let pb::UpdateRequest { key, new_window } = r;
    Ok(UpdateArgs {
        key: key_slice_from_proto(key, driver)?,
        new_window: window_from_proto(new_window, "new_window")?,
    })
}

/// The plugin's side of `update`'s answer.
pub fn update_reply_to_proto(r: &UpdateReply) -> pb::UpdateReply {
    let UpdateReply {
        credentials,
        encoding_required,
        warnings,
    } = r;
    pb::UpdateReply {
        credentials: credentials_to_proto(credentials),
        encoding_required: *encoding_required,
        warnings: warnings_to_proto(warnings),
    }
}

/// The host's side of `update`'s answer, its credentials tagged with
/// `driver`.
pub fn update_reply_from_proto(r: pb::UpdateReply, driver: &str) -> Result<UpdateReply> {
    let pb::UpdateReply {
        credentials,
        encoding_required,
        warnings,
    } = r;
    Ok(UpdateReply {
        credentials: credentials_from_proto(credentials, driver)?,
        encoding_required,
        warnings: warnings_from_proto(warnings),
    })
}

/// The host's side of `encode`.
pub fn encode_args_to_proto(a: &EncodeArgs) -> pb::EncodeRequest {
    let EncodeArgs { key, encoder_id } = a;
    pb::EncodeRequest {
        key: Some(key_slice_to_proto(key)),
        encoder_id: encoder_id.clone().unwrap_or_default(),
    }
}

/// The plugin's side of `encode`; `driver` is the plugin's own name. An
/// empty encoder id is none.
pub fn encode_args_from_proto(r: pb::EncodeRequest, driver: &str) -> Result<EncodeArgs> {
    let pb::EncodeRequest { key, encoder_id } = r;
    Ok(EncodeArgs {
        key: key_slice_from_proto(key, driver)?,
        encoder_id: optional(encoder_id),
    })
}

/// The plugin's side of `encode`'s answer.
pub fn encode_reply_to_proto(r: &EncodeReply) -> pb::EncodeReply {
    let EncodeReply {
        credentials,
        warnings,
    } = r;
    pb::EncodeReply {
        credentials: credentials_to_proto(credentials),
        warnings: warnings_to_proto(warnings),
    }
}

/// The host's side of `encode`'s answer, its credentials tagged with
/// `driver`.
pub fn encode_reply_from_proto(r: pb::EncodeReply, driver: &str) -> Result<EncodeReply> {
    let pb::EncodeReply {
        credentials,
        warnings,
    } = r;
    Ok(EncodeReply {
        credentials: credentials_from_proto(credentials, driver)?,
        warnings: warnings_from_proto(warnings),
    })
}

/// The host's side of `refresh`.
pub fn refresh_args_to_proto(a: &RefreshArgs) -> pb::RefreshRequest {
    let RefreshArgs { key } = a;
    pb::RefreshRequest {
        key: Some(key_slice_to_proto(key)),
    }
}

/// The plugin's side of `refresh`; `driver` is the plugin's own name.
pub fn refresh_args_from_proto(r: pb::RefreshRequest, driver: &str) -> Result<RefreshArgs> {
    let pb::RefreshRequest { key } = r;
    Ok(RefreshArgs {
        key: key_slice_from_proto(key, driver)?,
    })
}

/// The plugin's side of `refresh`'s answer.
pub fn refresh_reply_to_proto(r: &RefreshReply) -> pb::RefreshReply {
    let RefreshReply {
        credentials,
        state,
        warnings,
    } = r;
    pb::RefreshReply {
        credentials: credentials_to_proto(credentials),
        state: provision_to_proto(*state) as i32,
        warnings: warnings_to_proto(warnings),
    }
}

/// The host's side of `refresh`'s answer, its credentials tagged with
/// `driver`; `PLUGIN_PROTOCOL_ERROR` for an unknown state.
pub fn refresh_reply_from_proto(r: pb::RefreshReply, driver: &str) -> Result<RefreshReply> {
    let pb::RefreshReply {
        credentials,
        state,
        warnings,
    } = r;
    Ok(RefreshReply {
        credentials: credentials_from_proto(credentials, driver)?,
        state: provision_from_proto(state)?,
        warnings: warnings_from_proto(warnings),
    })
}

/// The host's side of `list`.
pub fn list_args_to_proto(a: &ListArgs) -> pb::ListRequest {
    let ListArgs {
        property_id,
        page_size,
        page_token,
    } = a;
    pb::ListRequest {
        property_id: property_id.clone(),
        page_size: *page_size,
        page_token: page_token.clone().unwrap_or_default(),
    }
}

/// The plugin's side of `list`. An empty page token is the first page.
pub fn list_args_from_proto(r: pb::ListRequest) -> ListArgs {
    let pb::ListRequest {
        property_id,
        page_size,
        page_token,
    } = r;
    ListArgs {
        property_id,
        page_size,
        page_token: optional(page_token),
    }
}

fn key_record_to_proto(k: &DriverKeyRecord) -> pb::DriverKeyRecord {
    let DriverKeyRecord {
        key_id,
        driver_ref,
        holder_id,
        entrance_ids,
        window,
    } = k;
    pb::DriverKeyRecord {
        key_id: key_id.clone(),
        driver_ref: driver_ref.clone().unwrap_or_default(),
        holder_id: holder_id.clone(),
        entrance_ids: entrance_ids.clone(),
        window: Some(window_to_proto(window)),
    }
}

fn key_record_from_proto(k: pb::DriverKeyRecord) -> Result<DriverKeyRecord> {
    let pb::DriverKeyRecord {
        key_id,
        driver_ref,
        holder_id,
        entrance_ids,
        window,
    } = k;
    Ok(DriverKeyRecord {
        key_id,
        driver_ref: optional(driver_ref),
        holder_id,
        entrance_ids,
        window: window_from_proto(window, "window")?,
    })
}

/// The plugin's side of `list`'s answer.
pub fn list_reply_to_proto(r: &ListReply) -> pb::ListReply {
    let ListReply {
        keys,
        next_page_token,
    } = r;
    pb::ListReply {
        keys: keys.iter().map(key_record_to_proto).collect(),
        next_page_token: next_page_token.clone().unwrap_or_default(),
    }
}

/// The host's side of `list`'s answer. An empty next page token means the
/// last page; `PLUGIN_PROTOCOL_ERROR` for a record without a window.
pub fn list_reply_from_proto(r: pb::ListReply) -> Result<ListReply> {
    let pb::ListReply {
        keys,
        next_page_token,
    } = r;
    Ok(ListReply {
        keys: keys
            .into_iter()
            .map(key_record_from_proto)
            .collect::<Result<_>>()?,
        next_page_token: optional(next_page_token),
    })
}

// ---- errors ----

/// An error as data, for the other side: its kind, reason, message,
/// whether it is temporary, context, field violations and retry delay.
/// Never its source, which may say more than is safe to show.
pub fn error_to_proto(e: &Error) -> pb::DriverError {
    use pb::driver_error::Kind;
    let kind = match e.kind() {
        ErrorKind::InvalidArgument => Kind::InvalidArgument,
        ErrorKind::NotFound => Kind::NotFound,
        ErrorKind::AlreadyExists => Kind::AlreadyExists,
        ErrorKind::FailedPrecondition => Kind::FailedPrecondition,
        ErrorKind::PermissionDenied => Kind::PermissionDenied,
        ErrorKind::Unauthenticated => Kind::Unauthenticated,
        ErrorKind::Unavailable => Kind::Unavailable,
        ErrorKind::Unsupported => Kind::Unsupported,
        ErrorKind::ResourceExhausted => Kind::ResourceExhausted,
        ErrorKind::Internal => Kind::Internal,
    };
    pb::DriverError {
        kind: kind as i32,
        reason: e.reason().to_owned(),
        // The message only: an error's source may say more than is safe.
        message: e.message().to_owned(),
        temporary: e.is_temporary(),
        metadata: e
            .metadata()
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
        violations: e
            .violations()
            .iter()
            .map(|FieldViolation { field, description }| pb::FieldViolation {
                field: field.clone(),
                description: description.clone(),
            })
            .collect(),
        retry_after_ms: e
            .retry_after()
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0),
    }
}

/// The kinds map one to one. keysmith's reasons are `&'static str`: a
/// plugin's reason is kept as it is when it is UPPER_SNAKE (and the bounded
/// set of reasons keysmith keeps has room), else it becomes `DRIVER_FAILED`
/// with the plugin's reason in the metadata as `plugin_reason`. Metadata
/// keys follow the same rule and are dropped when they do not fit.
pub fn error_from_proto(e: pb::DriverError) -> Error {
    use pb::driver_error::Kind;
    let pb::DriverError {
        kind,
        reason,
        message,
        temporary,
        metadata,
        violations,
        retry_after_ms,
    } = e;
    let kind = match Kind::try_from(kind) {
        Ok(Kind::InvalidArgument) => ErrorKind::InvalidArgument,
        Ok(Kind::NotFound) => ErrorKind::NotFound,
        Ok(Kind::AlreadyExists) => ErrorKind::AlreadyExists,
        Ok(Kind::FailedPrecondition) => ErrorKind::FailedPrecondition,
        Ok(Kind::PermissionDenied) => ErrorKind::PermissionDenied,
        Ok(Kind::Unauthenticated) => ErrorKind::Unauthenticated,
        Ok(Kind::Unavailable) => ErrorKind::Unavailable,
        Ok(Kind::Unsupported) => ErrorKind::Unsupported,
        Ok(Kind::ResourceExhausted) => ErrorKind::ResourceExhausted,
        Ok(Kind::Internal | Kind::Unspecified) | Err(_) => ErrorKind::Internal,
    };
    let (interned, kept_reason) = match intern::reason(&reason) {
        Some(r) => (r, None),
        None => (keysmith_driver::reasons::DRIVER_FAILED, Some(reason)),
    };
    let mut error = Error::new(kind, interned, message);
    if let Some(reason) = kept_reason {
        error = error.with_context("plugin_reason", reason);
    }
    let mut metadata: Vec<(String, String)> = metadata.into_iter().collect();
    // Map order is arbitrary on the wire: keep answers stable.
    metadata.sort();
    for (key, value) in metadata {
        if let Some(key) = intern::metadata_key(&key) {
            error = error.with_context(key, value);
        }
    }
    for pb::FieldViolation { field, description } in violations {
        error = error.with_violation(field, description);
    }
    if temporary {
        error = error.set_temporary();
    }
    if retry_after_ms > 0 {
        error = error.with_retry_after(Duration::from_millis(retry_after_ms));
    }
    error
}

#[cfg(test)]
mod tests {
    use keysmith_driver::reasons as core_reasons;

    use super::*;

    fn window() -> Window {
        Window {
            starts_at: Timestamp::from_parts(1_900_000_000, 250_000_000).unwrap(),
            ends_at: Timestamp::from_unix_seconds(1_900_086_400),
        }
    }

    fn slice() -> KeySlice {
        KeySlice {
            key_id: "01KEY".into(),
            property_id: "hotel".into(),
            holder: Holder {
                id: "g1".into(),
                name: Some("Ada".into()),
            },
            role: Role::Staff,
            window: window(),
            reservation: Some(ReservationRef {
                key: "stay-1".into(),
                epoch: 3,
            }),
            entrances: vec![
                EntranceTarget {
                    entrance_id: "door-1".into(),
                    behaviour: Behaviour::Override,
                },
                EntranceTarget {
                    entrance_id: "gate".into(),
                    behaviour: Behaviour::Standard,
                },
            ],
            credentials: vec![
                Credential {
                    mode: CredentialMode::Pin,
                    driver: "keypad".into(),
                    entrance_ids: vec!["door-1".into()],
                    data: CredentialData::Pin(Secret::new("482913".into())),
                    credential_id: "kp-1".into(),
                    encoding_required: true,
                },
                Credential {
                    mode: CredentialMode::MobileKey,
                    driver: "keypad".into(),
                    entrance_ids: vec![],
                    data: CredentialData::Pending,
                    credential_id: String::new(),
                    encoding_required: false,
                },
            ],
            driver_ref: Some("ref-9".into()),
        }
    }

    #[test]
    fn a_key_slice_round_trips_with_its_secrets() {
        let original = slice();
        let back = key_slice_from_proto(Some(key_slice_to_proto(&original)), "keypad").unwrap();
        // KeySlice has no PartialEq: compare through the wire form and by field.
        assert_eq!(key_slice_to_proto(&back), key_slice_to_proto(&original));
        assert_eq!(back.credentials, original.credentials);
        assert_eq!(back.holder, original.holder);
        assert_eq!(back.window, original.window);
    }

    #[test]
    fn issue_arguments_and_replies_round_trip() {
        let args = IssueArgs {
            key_id: "01KEY".into(),
            property_id: "hotel".into(),
            holder: Holder {
                id: "g1".into(),
                name: None,
            },
            role: Role::Guest,
            window: window(),
            reservation: None,
            entrances: slice().entrances,
            modes: vec![CredentialMode::Pin, CredentialMode::Card],
            pin: Some(Secret::new("1234".into())),
        };
        let back = issue_args_from_proto(issue_args_to_proto(&args)).unwrap();
        assert_eq!(back.pin.as_ref().map(|p| p.expose().as_str()), Some("1234"));
        assert_eq!(back.modes, args.modes);
        assert_eq!(back.holder.name, None);
        assert_eq!(back.entrances, args.entrances);

        let reply = IssueReply {
            credentials: slice().credentials,
            state: IssuedState::Issuing,
            warnings: vec![Warning::new("W", "m")],
            driver_ref: None,
        };
        let back = issue_reply_from_proto(issue_reply_to_proto(&reply), "keypad").unwrap();
        assert_eq!(back.credentials, reply.credentials);
        assert_eq!(back.state, IssuedState::Issuing);
        assert_eq!(back.warnings, reply.warnings);
        assert_eq!(back.driver_ref, None);
    }

    #[test]
    fn info_entrances_and_lists_round_trip() {
        let info = PluginInfo {
            name: "keypad".into(),
            version: "1.2.3".into(),
            capability: DriverCapability {
                issue: true,
                list: true,
                caller_pin: true,
                modes: vec![CredentialMode::Pin],
                ..Default::default()
            },
        };
        assert_eq!(info_from_proto(info_to_proto(&info)).unwrap(), info);
        let entrance = EntranceSpec {
            property_id: "hotel".into(),
            entrance_id: "door-1".into(),
            name: "Door 1".into(),
            space_ids: vec!["suite".into()],
            capability: EntranceCapability {
                can_belong_to_reservation: true,
                modes: vec![CredentialMode::Pin],
                online: true,
                requires_reservation_for_guests: true,
            },
        };
        let back = entrances_from_proto(entrances_to_proto(std::slice::from_ref(&entrance)));
        assert_eq!(back.unwrap(), vec![entrance]);
        let list = ListReply {
            keys: vec![DriverKeyRecord {
                key_id: "01KEY".into(),
                driver_ref: Some("kp-1".into()),
                holder_id: "g1".into(),
                entrance_ids: vec!["door-1".into()],
                window: window(),
            }],
            next_page_token: Some("t".into()),
        };
        assert_eq!(
            list_reply_from_proto(list_reply_to_proto(&list)).unwrap(),
            list
        );
        let args = ListArgs {
            property_id: "hotel".into(),
            page_size: 7,
            page_token: None,
        };
        assert_eq!(list_args_from_proto(list_args_to_proto(&args)), args);
    }

    #[test]
    fn updates_encodes_refreshes_and_revokes_round_trip() {
        let update = UpdateArgs {
            key: slice(),
            new_window: window(),
        };
        let back = update_args_from_proto(update_args_to_proto(&update), "keypad").unwrap();
        assert_eq!(back.new_window, update.new_window);
        let reply = UpdateReply {
            credentials: slice().credentials,
            encoding_required: true,
            warnings: vec![],
        };
        let back = update_reply_from_proto(update_reply_to_proto(&reply), "keypad").unwrap();
        assert!(back.encoding_required);
        assert_eq!(back.credentials, reply.credentials);
        let encode = EncodeArgs {
            key: slice(),
            encoder_id: Some("enc-1".into()),
        };
        let back = encode_args_from_proto(encode_args_to_proto(&encode), "keypad").unwrap();
        assert_eq!(back.encoder_id.as_deref(), Some("enc-1"));
        let refresh = RefreshReply {
            credentials: vec![],
            state: ProvisionState::EncodingRequired,
            warnings: vec![],
        };
        let back = refresh_reply_from_proto(refresh_reply_to_proto(&refresh), "keypad").unwrap();
        assert_eq!(back.state, ProvisionState::EncodingRequired);
        let revoke = RevokeReply {
            warnings: vec![Warning::new("A", "b")],
        };
        assert_eq!(
            revoke_reply_from_proto(revoke_reply_to_proto(&revoke)).warnings,
            revoke.warnings
        );
    }

    #[test]
    fn broken_messages_are_protocol_errors_not_panics() {
        let mut request = issue_args_to_proto(&IssueArgs {
            key_id: "k".into(),
            property_id: "p".into(),
            holder: Holder {
                id: "h".into(),
                name: None,
            },
            role: Role::Guest,
            window: window(),
            reservation: None,
            entrances: vec![],
            modes: vec![],
            pin: None,
        });
        request.modes = vec![42];
        let err = issue_args_from_proto(request.clone()).unwrap_err();
        assert_eq!(err.reason(), reasons::PLUGIN_PROTOCOL_ERROR);
        assert_eq!(err.kind(), ErrorKind::Internal);
        request.modes = vec![];
        request.window = None;
        assert!(issue_args_from_proto(request.clone()).is_err());
        request.window = Some(window_to_proto(&window()));
        request.role = 0;
        assert!(issue_args_from_proto(request).is_err());
        let reply = pb::IssueReply {
            state: pb::ProvisionState::EncodingRequired as i32,
            ..Default::default()
        };
        assert!(issue_reply_from_proto(reply, "x").is_err());
    }

    #[test]
    fn errors_keep_kind_reason_violations_and_retry() {
        let original = Error::invalid_field(core_reasons::PIN_IN_USE, "pin", "taken")
            .with_context("entrance_id", "door-1")
            .with_retry_after(Duration::from_millis(1500));
        let back = error_from_proto(error_to_proto(&original));
        assert_eq!(back.kind(), ErrorKind::InvalidArgument);
        assert_eq!(back.reason(), core_reasons::PIN_IN_USE);
        assert_eq!(back.message(), original.message());
        assert_eq!(back.violations(), original.violations());
        assert_eq!(back.metadata(), original.metadata());
        assert_eq!(back.retry_after(), Some(Duration::from_millis(1500)));
        assert!(back.is_temporary());
    }

    #[test]
    fn a_reason_that_is_not_upper_snake_becomes_driver_failed() {
        let err = error_from_proto(pb::DriverError {
            kind: 99,
            reason: "oops, lower case".into(),
            message: "m".into(),
            metadata: [("Bad Key".to_string(), "v".to_string())].into(),
            ..Default::default()
        });
        assert_eq!(err.kind(), ErrorKind::Internal);
        assert_eq!(err.reason(), core_reasons::DRIVER_FAILED);
        assert_eq!(
            err.metadata(),
            &[("plugin_reason", "oops, lower case".to_string())]
        );
        let custom = error_from_proto(pb::DriverError {
            kind: pb::driver_error::Kind::Unavailable as i32,
            reason: "KEYPAD_OFFLINE".into(),
            ..Default::default()
        });
        assert_eq!(custom.reason(), "KEYPAD_OFFLINE");
        assert_eq!(custom.kind(), ErrorKind::Unavailable);
    }

    /// The byte boundary's properties: what one side encodes, the other
    /// decodes to the same thing; any bytes decode to a typed answer.
    mod properties {
        use proptest::prelude::*;

        use super::*;

        fn instant() -> impl Strategy<Value = Timestamp> {
            prop_oneof![
                any::<i64>(),
                Just(i64::MIN),
                Just(i64::MAX),
                i64::MIN..i64::MIN + 2_000_000,
            ]
            .prop_map(Timestamp::from_micros)
        }

        fn mode() -> impl Strategy<Value = CredentialMode> {
            prop::sample::select(vec![
                CredentialMode::Pin,
                CredentialMode::Card,
                CredentialMode::MobileKey,
                CredentialMode::Qr,
                CredentialMode::KeyStorage,
            ])
        }

        fn credential() -> impl Strategy<Value = Credential> {
            let data = prop_oneof![
                Just(CredentialData::Pending),
                ".{0,12}".prop_map(|s| CredentialData::Pin(Secret::new(s))),
                ".{0,40}".prop_map(|s| CredentialData::Card(Secret::new(s))),
                ".{0,40}".prop_map(|s| CredentialData::Qr(Secret::new(s))),
                ".{0,40}".prop_map(|s| CredentialData::MobileKey(Secret::new(s))),
                ".{0,12}".prop_map(|s| CredentialData::Compartment(Secret::new(s))),
            ];
            (
                mode(),
                prop::collection::vec(".{0,8}", 0..3),
                data,
                ".{0,8}",
                any::<bool>(),
            )
                .prop_map(
                    |(mode, entrance_ids, data, credential_id, encoding_required)| Credential {
                        mode,
                        driver: "keypad".into(),
                        entrance_ids,
                        data,
                        credential_id,
                        encoding_required,
                    },
                )
        }

        prop_compose! {
            fn key_slice()(
                key_id in ".{0,12}",
                property_id in ".{0,12}",
                holder_id in ".{0,12}",
                holder_name in proptest::option::of(".{1,12}"),
                staff in any::<bool>(),
                starts_at in instant(),
                ends_at in instant(),
                reservation in proptest::option::of((".{0,12}", any::<u64>())),
                entrances in prop::collection::vec((".{0,8}", 0u8..3), 0..3),
                credentials in prop::collection::vec(credential(), 0..3),
                driver_ref in proptest::option::of(".{1,12}"),
            ) -> KeySlice {
                KeySlice {
                    key_id,
                    property_id,
                    holder: Holder { id: holder_id, name: holder_name },
                    role: if staff { Role::Staff } else { Role::Guest },
                    window: Window { starts_at, ends_at },
                    reservation: reservation.map(|(key, epoch)| ReservationRef { key, epoch }),
                    entrances: entrances
                        .into_iter()
                        .map(|(entrance_id, b)| EntranceTarget {
                            entrance_id,
                            behaviour: [Behaviour::Standard, Behaviour::Override, Behaviour::Join][usize::from(b)],
                        })
                        .collect(),
                    credentials,
                    driver_ref,
                }
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// A key's part, secrets and instants included, crosses intact.
            #[test]
            fn key_slices_round_trip(k in key_slice()) {
                let back = key_slice_from_proto(Some(key_slice_to_proto(&k)), "keypad").unwrap();
                prop_assert_eq!(key_slice_to_proto(&back), key_slice_to_proto(&k));
                prop_assert_eq!(back.window, k.window);
                prop_assert_eq!(back.credentials, k.credentials);
                prop_assert_eq!(back.holder, k.holder);
                prop_assert_eq!(back.entrances, k.entrances);
                prop_assert_eq!(back.driver_ref, k.driver_ref);
            }

            /// An error crosses with its kind, reason, message, violations
            /// and retry delay.
            #[test]
            fn errors_round_trip(
                kind in 0usize..10,
                reason in "[A-Z][A-Z0-9_]{0,20}",
                message in ".{0,40}",
                violations in prop::collection::vec((".{0,8}", ".{0,12}"), 0..3),
                retry_ms in proptest::option::of(1u64..1_000_000),
            ) {
                let kinds = [
                    ErrorKind::InvalidArgument, ErrorKind::NotFound, ErrorKind::AlreadyExists,
                    ErrorKind::FailedPrecondition, ErrorKind::PermissionDenied,
                    ErrorKind::Unauthenticated, ErrorKind::Unavailable, ErrorKind::Unsupported,
                    ErrorKind::ResourceExhausted, ErrorKind::Internal,
                ];
                let interned = intern::reason(&reason).unwrap_or(core_reasons::DRIVER_FAILED);
                let mut e = Error::new(kinds[kind], interned, message.clone());
                for (field, why) in &violations {
                    e = e.with_violation(field.clone(), why.clone());
                }
                if let Some(ms) = retry_ms {
                    e = e.with_retry_after(std::time::Duration::from_millis(ms));
                }
                let back = error_from_proto(error_to_proto(&e));
                prop_assert_eq!(back.kind(), e.kind());
                prop_assert_eq!(back.reason(), e.reason());
                prop_assert_eq!(back.message(), message.as_str());
                prop_assert_eq!(back.violations(), e.violations());
                prop_assert_eq!(back.retry_after(), e.retry_after());
            }

            /// Any bytes as a plugin's reply or a host's request: a value
            /// or a typed PLUGIN_PROTOCOL_ERROR, never a panic.
            #[test]
            fn any_bytes_decode_to_a_typed_answer(
                which in 0u8..6,
                bytes in prop::collection::vec(any::<u8>(), 0..256),
            ) {
                use prost::Message;
                let outcome: std::result::Result<Result<()>, prost::DecodeError> = match which {
                    0 => pb::IssueReply::decode(&bytes[..]).map(|r| issue_reply_from_proto(r, "p").map(drop)),
                    1 => pb::UpdateReply::decode(&bytes[..]).map(|r| update_reply_from_proto(r, "p").map(drop)),
                    2 => pb::RefreshReply::decode(&bytes[..]).map(|r| refresh_reply_from_proto(r, "p").map(drop)),
                    3 => pb::ListReply::decode(&bytes[..]).map(|r| list_reply_from_proto(r).map(drop)),
                    4 => pb::EntrancesReply::decode(&bytes[..]).map(|r| entrances_from_proto(r).map(drop)),
                    _ => pb::IssueRequest::decode(&bytes[..]).map(|r| issue_args_from_proto(r).map(drop)),
                };
                if let Ok(Err(e)) = outcome {
                    prop_assert_eq!(e.reason(), reasons::PLUGIN_PROTOCOL_ERROR);
                    prop_assert_eq!(e.kind(), ErrorKind::Internal);
                }
            }
        }
    }
}
