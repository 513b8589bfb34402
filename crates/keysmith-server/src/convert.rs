//! The one place where wire types meet domain types. Requests are
//! destructured field by field, so a new proto field fails to compile until
//! it is handled here.
use std::collections::HashMap;

use keysmith_api::v1 as pb;
use keysmith_core::{
    changes::ChangeKind,
    driver::{DriverInfo, DriverKeyRecord, DriverKind},
    key::{Behaviour, Credential, CredentialData, Holder, KeyState, Warning},
    reasons,
    request::{
        EncodeKeyRequest, IssueRequest, ListDriverKeysRequest, ListKeysRequest, RevokeRequest,
        RevokeTarget, UpdateKeyRequest,
    },
    router::RoutedEntrance,
    service::{HeldKey, WatchKeysRequest},
    AccessKey, CredentialMode, DriverCapability, EntranceCapability, Error, ErrorKind, Role,
    Secret, Timestamp, Window,
};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The fixed domain of every `ErrorInfo` keysmith returns (declared beside
/// the codec, which refuses undecodable requests with it).
pub const ERROR_DOMAIN: &str = keysmith_api::codec::ERROR_DOMAIN;

/// Every domain error becomes a google.rpc.Status with an ErrorInfo, and a
/// BadRequest when fields were wrong, and a RetryInfo when waiting helps.
pub fn status(error: Error) -> Status {
    let code = match error.kind() {
        ErrorKind::InvalidArgument => Code::InvalidArgument,
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::AlreadyExists => Code::AlreadyExists,
        ErrorKind::FailedPrecondition | ErrorKind::Unsupported => Code::FailedPrecondition,
        ErrorKind::PermissionDenied => Code::PermissionDenied,
        ErrorKind::Unauthenticated => Code::Unauthenticated,
        ErrorKind::Unavailable => Code::Unavailable,
        ErrorKind::ResourceExhausted => Code::ResourceExhausted,
        ErrorKind::Internal => Code::Internal,
    };
    let metadata: HashMap<String, String> = error
        .metadata()
        .iter()
        .map(|(k, v)| ((*k).to_owned(), capped(v, MAX_METADATA_VALUE_BYTES)))
        .collect();
    let mut details = ErrorDetails::with_error_info(error.reason(), ERROR_DOMAIN, metadata);
    for v in error.violations() {
        details.add_bad_request_violation(
            capped(&v.field, MAX_METADATA_VALUE_BYTES),
            capped(&v.description, MAX_METADATA_VALUE_BYTES),
        );
    }
    if let Some(after) = error.retry_after().or_else(|| default_retry_after(&error)) {
        details.set_retry_info(Some(after));
    }
    Status::with_error_details(code, capped(error.message(), MAX_MESSAGE_BYTES), details)
}

/// How long a caller is told to wait when the store is unavailable and did
/// not say for how long: a reconnect to PostgreSQL, or a reopen of the embedded store
/// (every 0.1 s to 2 s), may succeed by then, and a client told nothing may
/// retry at once and in a loop. Here, once for every store, so that no path
/// of either engine answers without it.
const STORE_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

fn default_retry_after(error: &Error) -> Option<std::time::Duration> {
    (error.kind() == ErrorKind::Unavailable && error.reason() == reasons::STORE_UNAVAILABLE)
        .then_some(STORE_RETRY_AFTER)
}

/// The longest error message sent, in bytes. Messages quote callers' values
/// through `error::quoted` already (64 characters at most); this is the
/// backstop that keeps every answer's trailers far below what clients
/// accept (8 KB for most), whatever a message was built from.
const MAX_MESSAGE_BYTES: usize = 1024;
/// The longest ErrorInfo metadata value and BadRequest field or description.
const MAX_METADATA_VALUE_BYTES: usize = 512;

/// `text` cut to at most `max` bytes at a character boundary, with "…"
/// when cut.
fn capped(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max - '…'.len_utf8();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// A refusal by the transport rather than the domain (a request that did
/// not arrive whole, say), with the same ErrorInfo as a domain error's.
pub fn transport_status(code: Code, reason: &'static str, message: &str) -> Status {
    let details = ErrorDetails::with_error_info(reason, ERROR_DOMAIN, HashMap::new());
    Status::with_error_details(code, message, details)
}

fn field_error(reason: &'static str, field: &str, why: &str) -> Error {
    Error::invalid_field(reason, field, why)
}

pub fn timestamp(t: Timestamp) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.unix_seconds(),
        nanos: t.subsec_nanos(),
    }
}

/// The earliest instant a protobuf Timestamp holds: 0001-01-01T00:00:00Z
/// (google/protobuf/timestamp.proto).
pub const PROTO_MIN_SECONDS: i64 = -62_135_596_800;
/// The latest: 9999-12-31T23:59:59.999999999Z.
pub const PROTO_MAX_SECONDS: i64 = 253_402_300_799;

fn required_time(field: &str, t: Option<prost_types::Timestamp>) -> Result<Timestamp, Error> {
    let t = t.ok_or_else(|| field_error(reasons::FIELD_REQUIRED, field, "is required"))?;
    time(field, t)
}

/// A protobuf Timestamp as keysmith takes it: within the range the type
/// documents (a key ending in year 10000 once made every client's JSON
/// conversion of its ListKeys page fail), with nanos in 0..1e9.
pub fn time(field: &str, t: prost_types::Timestamp) -> Result<Timestamp, Error> {
    if !(PROTO_MIN_SECONDS..=PROTO_MAX_SECONDS).contains(&t.seconds) {
        return Err(field_error(
            reasons::FIELD_INVALID,
            field,
            "must be between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z",
        ));
    }
    Timestamp::from_parts(t.seconds, t.nanos)
        .ok_or_else(|| field_error(reasons::FIELD_INVALID, field, "is not a valid timestamp"))
}

fn optional(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

fn role(value: i32) -> Result<Role, Error> {
    match pb::Role::try_from(value) {
        Ok(pb::Role::Unspecified | pb::Role::Guest) => Ok(Role::Guest),
        Ok(pb::Role::Staff) => Ok(Role::Staff),
        Err(_) => Err(field_error(
            reasons::FIELD_INVALID,
            "role",
            "is not a known role",
        )),
    }
}

fn mode(value: i32, field: &str) -> Result<CredentialMode, Error> {
    match pb::CredentialMode::try_from(value) {
        Ok(pb::CredentialMode::Pin) => Ok(CredentialMode::Pin),
        Ok(pb::CredentialMode::Card) => Ok(CredentialMode::Card),
        Ok(pb::CredentialMode::MobileKey) => Ok(CredentialMode::MobileKey),
        Ok(pb::CredentialMode::Qr) => Ok(CredentialMode::Qr),
        Ok(pb::CredentialMode::KeyStorage) => Ok(CredentialMode::KeyStorage),
        Ok(pb::CredentialMode::Unspecified) | Err(_) => Err(field_error(
            reasons::FIELD_INVALID,
            field,
            "is not a credential mode",
        )),
    }
}

fn mode_to_pb(m: CredentialMode) -> pb::CredentialMode {
    match m {
        CredentialMode::Pin => pb::CredentialMode::Pin,
        CredentialMode::Card => pb::CredentialMode::Card,
        CredentialMode::MobileKey => pb::CredentialMode::MobileKey,
        CredentialMode::Qr => pb::CredentialMode::Qr,
        CredentialMode::KeyStorage => pb::CredentialMode::KeyStorage,
    }
}

fn state_from_pb(value: i32, field: &str) -> Result<KeyState, Error> {
    match pb::KeyState::try_from(value) {
        Ok(pb::KeyState::Issuing) => Ok(KeyState::Issuing),
        Ok(pb::KeyState::Active) => Ok(KeyState::Active),
        Ok(pb::KeyState::EncodingRequired) => Ok(KeyState::EncodingRequired),
        Ok(pb::KeyState::Revoked) => Ok(KeyState::Revoked),
        Ok(pb::KeyState::Expired) => Ok(KeyState::Expired),
        Ok(pb::KeyState::Revoking) => Ok(KeyState::Revoking),
        Ok(pb::KeyState::Failed) => Ok(KeyState::Failed),
        Ok(pb::KeyState::Unspecified) | Err(_) => Err(field_error(
            reasons::FIELD_INVALID,
            field,
            "is not a key state",
        )),
    }
}

fn state_to_pb(s: KeyState) -> pb::KeyState {
    match s {
        KeyState::Issuing => pb::KeyState::Issuing,
        KeyState::Active => pb::KeyState::Active,
        KeyState::EncodingRequired => pb::KeyState::EncodingRequired,
        KeyState::Revoked => pb::KeyState::Revoked,
        KeyState::Expired => pb::KeyState::Expired,
        KeyState::Revoking => pb::KeyState::Revoking,
        KeyState::Failed => pb::KeyState::Failed,
    }
}

// Conversions are plain functions named after their message: both sides
// are foreign to this crate, so `TryFrom` cannot be implemented here.

pub fn issue_request(req: pb::IssueRequest) -> Result<IssueRequest, Error> {
    let pb::IssueRequest {
        property_id,
        request_id,
        holder_id,
        holder_name,
        entrance_ids,
        space_ids,
        starts_at,
        ends_at,
        reservation_key,
        role: role_value,
        modes,
        pin,
    } = req;
    let window = Window {
        starts_at: required_time("starts_at", starts_at)?,
        ends_at: required_time("ends_at", ends_at)?,
    };
    let mut domain_modes = Vec::with_capacity(modes.len());
    for (i, m) in modes.into_iter().enumerate() {
        let m = mode(m, &format!("modes[{i}]"))?;
        if !domain_modes.contains(&m) {
            domain_modes.push(m);
        }
    }
    Ok(IssueRequest {
        property_id,
        request_id: optional(request_id),
        holder: Holder {
            id: holder_id,
            name: optional(holder_name),
        },
        entrance_ids,
        space_ids,
        window,
        reservation_key: optional(reservation_key),
        role: role(role_value)?,
        modes: domain_modes,
        pin: optional(pin).map(Secret::new),
        origin: None,
    })
}

pub fn revoke_request(req: pb::RevokeRequest) -> Result<RevokeRequest, Error> {
    let pb::RevokeRequest {
        property_id,
        request_id,
        target,
    } = req;
    let target = match target {
        Some(pb::revoke_request::Target::KeyId(id)) => RevokeTarget::Key(id),
        Some(pb::revoke_request::Target::ReservationKey(rk)) => RevokeTarget::Reservation(rk),
        None => {
            return Err(field_error(
                reasons::FIELD_REQUIRED,
                "key_id",
                "key_id or reservation_key is required",
            ))
        }
    };
    Ok(RevokeRequest {
        property_id,
        request_id: optional(request_id),
        target,
        origin: None,
    })
}

/// `caller` is the token id the page tokens are bound to.
pub fn watch_keys_request(req: pb::WatchKeysRequest) -> WatchKeysRequest {
    let pb::WatchKeysRequest {
        property_id,
        reservation_key,
        entrance_id,
        holder_id,
        resume_token,
    } = req;
    WatchKeysRequest {
        property_id,
        reservation_key: optional(reservation_key),
        entrance_id: optional(entrance_id),
        holder_id: optional(holder_id),
        resume_token: optional(resume_token),
    }
}

pub fn event_type(kind: ChangeKind) -> pb::KeyEventType {
    match kind {
        ChangeKind::Issued => pb::KeyEventType::Issued,
        ChangeKind::StateChanged => pb::KeyEventType::StateChanged,
        ChangeKind::Updated => pb::KeyEventType::Updated,
        ChangeKind::Revoked => pb::KeyEventType::Revoked,
        ChangeKind::Expired => pb::KeyEventType::Expired,
    }
}

pub fn list_keys_request(req: pb::ListKeysRequest, caller: &str) -> Result<ListKeysRequest, Error> {
    let pb::ListKeysRequest {
        property_id,
        page_size,
        page_token,
        reservation_key,
        entrance_id,
        holder_id,
        states,
        include_revoked,
    } = req;
    let states = states
        .into_iter()
        .enumerate()
        .map(|(i, s)| state_from_pb(s, &format!("states[{i}]")))
        .collect::<Result<_, _>>()?;
    Ok(ListKeysRequest {
        property_id,
        page_size,
        page_token,
        reservation_key: optional(reservation_key),
        entrance_id: optional(entrance_id),
        holder_id: optional(holder_id),
        states,
        include_revoked,
        caller: caller.to_owned(),
    })
}

pub fn list_driver_keys_request(req: pb::ListDriverKeysRequest) -> ListDriverKeysRequest {
    let pb::ListDriverKeysRequest {
        property_id,
        driver,
        page_size,
        page_token,
    } = req;
    ListDriverKeysRequest {
        property_id,
        driver,
        page_size,
        page_token,
    }
}

/// A key as a driver holds it, beside the state keysmith has for it.
pub fn driver_key(held: HeldKey) -> pb::DriverKey {
    let HeldKey {
        record:
            DriverKeyRecord {
                key_id,
                driver_ref,
                holder_id,
                entrance_ids,
                window,
            },
        keysmith_state,
    } = held;
    pb::DriverKey {
        key_id,
        driver_ref: driver_ref.unwrap_or_default(),
        holder_id,
        entrance_ids,
        starts_at: Some(timestamp(window.starts_at)),
        ends_at: Some(timestamp(window.ends_at)),
        keysmith_state: keysmith_state.map_or(pb::KeyState::Unspecified, state_to_pb) as i32,
    }
}

pub fn update_key_request(req: pb::UpdateKeyRequest) -> Result<UpdateKeyRequest, Error> {
    let pb::UpdateKeyRequest {
        property_id,
        request_id,
        key_id,
        starts_at,
        ends_at,
    } = req;
    Ok(UpdateKeyRequest {
        property_id,
        request_id: optional(request_id),
        key_id,
        window: Window {
            starts_at: required_time("starts_at", starts_at)?,
            ends_at: required_time("ends_at", ends_at)?,
        },
        origin: None,
    })
}

pub fn encode_key_request(req: pb::EncodeKeyRequest) -> EncodeKeyRequest {
    let pb::EncodeKeyRequest {
        property_id,
        request_id,
        key_id,
        encoder_id,
    } = req;
    EncodeKeyRequest {
        property_id,
        request_id: optional(request_id),
        key_id,
        encoder_id: optional(encoder_id),
        origin: None,
    }
}

/// The wire form of a key. This is where credential secrets are delivered.
/// Takes the key by value: a listed page moves its strings instead of
/// copying them, and a new field is a compile error here until handled.
pub fn access_key(key: AccessKey, now: Timestamp) -> pb::AccessKey {
    let state = state_to_pb(key.state(now)) as i32;
    let AccessKey {
        key_id,
        property_id,
        holder,
        entrances,
        window,
        reservation,
        role,
        // The requested modes are answered by the credentials themselves.
        modes: _,
        credentials,
        stored_state: _,
        warnings,
        created_at,
        updated_at,
        revoked_at,
        // Driver references stay inside keysmith.
        driver_refs: _,
    } = key;
    pb::AccessKey {
        key_id,
        property_id,
        holder_id: holder.id,
        holder_name: holder.name.unwrap_or_default(),
        entrances: entrances
            .into_iter()
            .map(|e| pb::KeyEntrance {
                reservation_applied: e.reservation_applied(),
                behaviour: match e.behaviour {
                    Behaviour::Standard => pb::ReservationBehaviour::Standard,
                    Behaviour::Override => pb::ReservationBehaviour::Override,
                    Behaviour::Join => pb::ReservationBehaviour::Join,
                } as i32,
                entrance_id: e.entrance_id,
                driver: e.driver,
            })
            .collect(),
        starts_at: Some(timestamp(window.starts_at)),
        ends_at: Some(timestamp(window.ends_at)),
        reservation_key: reservation.map(|r| r.key).unwrap_or_default(),
        role: match role {
            Role::Guest => pb::Role::Guest,
            Role::Staff => pb::Role::Staff,
        } as i32,
        credentials: credentials.into_iter().map(credential).collect(),
        state,
        warnings: warnings.iter().map(warning).collect(),
        created_at: Some(timestamp(created_at)),
        updated_at: Some(timestamp(updated_at)),
        revoked_at: revoked_at.map(timestamp),
    }
}

fn credential(c: Credential) -> pb::Credential {
    use pb::credential::Data;
    let Credential {
        mode,
        driver,
        entrance_ids,
        data,
        credential_id,
        encoding_required,
    } = c;
    pb::Credential {
        mode: mode_to_pb(mode) as i32,
        driver,
        entrance_ids,
        data: match data {
            CredentialData::Pending => None,
            CredentialData::Pin(s) => Some(Data::Pin(s.into_inner())),
            CredentialData::Card(s) => Some(Data::CardData(s.into_inner())),
            CredentialData::Qr(s) => Some(Data::QrData(s.into_inner())),
            CredentialData::MobileKey(s) => Some(Data::MobileKey(s.into_inner())),
            CredentialData::Compartment(s) => Some(Data::Compartment(s.into_inner())),
        },
        credential_id,
        encoding_required,
        data_redacted: false,
    }
}

/// Withholds credential data from a caller without keys.read_secrets.
/// Returns whether any data was present (and so withheld).
pub fn redact(key: &mut pb::AccessKey) -> bool {
    let mut withheld = false;
    for c in &mut key.credentials {
        if c.data.take().is_some() {
            c.data_redacted = true;
            withheld = true;
        }
    }
    withheld
}

/// Whether an answer carries credential data.
pub fn carries_secrets(key: &pb::AccessKey) -> bool {
    key.credentials.iter().any(|c| c.data.is_some())
}

pub fn warning(w: &Warning) -> pb::Warning {
    pb::Warning {
        code: w.code.clone(),
        message: w.message.clone(),
    }
}

fn entrance_capability(c: &EntranceCapability) -> pb::EntranceCapability {
    pb::EntranceCapability {
        can_belong_to_reservation: c.can_belong_to_reservation,
        modes: c.modes.iter().map(|m| mode_to_pb(*m) as i32).collect(),
        online: c.online,
        requires_reservation_for_guests: c.requires_reservation_for_guests,
    }
}

pub fn entrance(e: &RoutedEntrance) -> pb::Entrance {
    pb::Entrance {
        entrance_id: e.spec.entrance_id.clone(),
        property_id: e.spec.property_id.clone(),
        name: e.spec.name.clone(),
        driver: e.driver.clone(),
        space_ids: e.spec.space_ids.clone(),
        capability: Some(entrance_capability(&e.spec.capability)),
    }
}

fn driver_capability(c: &DriverCapability) -> pb::DriverCapability {
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
    pb::DriverCapability {
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
        modes: modes.iter().map(|m| mode_to_pb(*m) as i32).collect(),
    }
}

pub fn encoder(e: keysmith_core::service::Encoder) -> pb::Encoder {
    let keysmith_core::service::Encoder {
        driver,
        encoder_id,
        name,
    } = e;
    pb::Encoder {
        encoder_id,
        name,
        driver,
    }
}

pub fn driver(info: &DriverInfo) -> pb::Driver {
    pb::Driver {
        name: info.name.clone(),
        version: info.version.clone(),
        kind: match info.kind {
            DriverKind::BuiltIn => pb::DriverKind::BuiltIn,
            DriverKind::Plugin => pb::DriverKind::Plugin,
        } as i32,
        capability: Some(driver_capability(&info.capability)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_codec_refuses_with_the_projects_reason() {
        assert_eq!(
            keysmith_api::codec::MALFORMED_REQUEST,
            reasons::MALFORMED_REQUEST
        );
    }

    #[test]
    fn timestamps_outside_the_protobuf_range_are_refused_naming_the_field() {
        let at = |seconds| prost_types::Timestamp { seconds, nanos: 0 };
        time("ends_at", at(PROTO_MAX_SECONDS)).unwrap();
        time("ends_at", at(PROTO_MIN_SECONDS)).unwrap();
        for seconds in [
            PROTO_MAX_SECONDS + 1,
            PROTO_MIN_SECONDS - 1,
            i64::MAX,
            i64::MIN,
        ] {
            let err = time("ends_at", at(seconds)).unwrap_err();
            assert_eq!(err.reason(), reasons::FIELD_INVALID);
            assert_eq!(err.violations()[0].field, "ends_at");
        }
    }

    #[test]
    fn an_unavailable_store_is_answered_with_a_retry_info() {
        let retry_delay = |e| {
            status(e)
                .get_error_details()
                .retry_info()
                .and_then(|r| r.retry_delay)
        };
        let store = Error::unavailable(reasons::STORE_UNAVAILABLE, "store: connection closed");
        assert_eq!(retry_delay(store), Some(STORE_RETRY_AFTER));
        let told = Error::unavailable(reasons::STORE_UNAVAILABLE, "store: reopening")
            .with_retry_after(std::time::Duration::from_secs(5));
        assert_eq!(
            retry_delay(told),
            Some(std::time::Duration::from_secs(5)),
            "what the store said is kept"
        );
    }

    #[test]
    fn a_huge_message_is_capped_in_the_status() {
        let err = Error::not_found(reasons::PROPERTY_NOT_FOUND, "x".repeat(70_000))
            .with_context("property_id", "y".repeat(70_000));
        let status = status(err);
        assert!(status.message().len() <= MAX_MESSAGE_BYTES);
        let info = status.get_details_error_info().unwrap();
        assert!(info.metadata["property_id"].len() <= MAX_METADATA_VALUE_BYTES);
    }
}
