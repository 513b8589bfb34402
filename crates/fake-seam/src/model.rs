//! The objects the fake keeps, how each is written as Seam JSON, and the
//! public seeds and snapshots tests use. Field names and required members
//! follow `seam-openapi-subset.json`; optional members are left out when
//! they do not apply, as Seam does (clients must cope).

use std::collections::VecDeque;

use jiff::Timestamp;
use serde_json::{json, Map, Value};

use crate::time::render;

/// A credential mode of an access method.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AccessMode {
    Code,
    Card,
    MobileKey,
}

impl AccessMode {
    pub const ALL: [&'static str; 3] = ["code", "card", "mobile_key"];

    pub fn as_str(self) -> &'static str {
        match self {
            AccessMode::Code => "code",
            AccessMode::Card => "card",
            AccessMode::MobileKey => "mobile_key",
        }
    }

    pub fn parse(s: &str) -> Option<AccessMode> {
        match s {
            "code" => Some(AccessMode::Code),
            "card" => Some(AccessMode::Card),
            "mobile_key" => Some(AccessMode::MobileKey),
            _ => None,
        }
    }

    fn display_name(self) -> &'static str {
        match self {
            AccessMode::Code => "PIN Code",
            AccessMode::Card => "Plastic Card",
            AccessMode::MobileKey => "Mobile Key",
        }
    }
}

/// An entrance to seed with `FakeSeam::add_entrance`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EntranceSeed {
    pub display_name: String,
    /// The `space_key` of the space (room, unit) the entrance belongs to, if
    /// any: the space is created with the first entrance naming it, and gets
    /// a `space_id` of its own.
    pub space_key: Option<String>,
    pub can_belong_to_reservation: bool,
    pub can_unlock_with_card: bool,
    pub can_unlock_with_code: bool,
    pub can_unlock_with_mobile_key: bool,
}

/// An access grant as the fake holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantSnapshot {
    pub access_grant_id: String,
    pub access_grant_key: Option<String>,
    pub reservation_key: Option<String>,
    pub user_identity_id: String,
    /// Every entrance the grant targets (given ones and those of its spaces).
    pub acs_entrance_ids: Vec<String>,
    /// The reservation-capable part of `acs_entrance_ids` when the grant has
    /// a reservation_key: the doors the reservation rules look at.
    pub reservation_entrance_ids: Vec<String>,
    pub space_ids: Vec<String>,
    pub name: Option<String>,
    pub starts_at: Timestamp,
    pub ends_at: Option<Timestamp>,
    pub access_method_ids: Vec<String>,
    /// Deleted, teardown not finished.
    pub being_deleted: bool,
    /// `warning_code`s.
    pub warnings: Vec<String>,
}

/// An access method as the fake holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessMethodSnapshot {
    pub access_method_id: String,
    pub access_grant_id: String,
    pub mode: AccessMode,
    pub is_issued: bool,
    pub issued_at: Option<Timestamp>,
    pub code: Option<String>,
    pub is_encoding_required: bool,
    /// Times it was reissued after a change of the grant's times.
    pub reissue_count: u32,
    pub being_deleted: bool,
}

/// A user identity as the fake holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserIdentitySnapshot {
    pub user_identity_id: String,
    pub user_identity_key: Option<String>,
    pub email_address: Option<String>,
    pub phone_number: Option<String>,
    pub full_name: Option<String>,
    pub display_name: String,
}

// ------------------------------------------------------------- records

pub(crate) struct AcsSystem {
    /// Visionline-like: guest cards need a reservation_key.
    pub requires_reservation_for_guest_cards: bool,
    pub connected_account_id: String,
}

#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Caps {
    pub reservation: bool,
    pub card: bool,
    pub code: bool,
    pub mobile_key: bool,
}

impl Caps {
    pub fn supports(self, mode: AccessMode) -> bool {
        match mode {
            AccessMode::Code => self.code,
            AccessMode::Card => self.card,
            AccessMode::MobileKey => self.mobile_key,
        }
    }
}

pub(crate) struct Entrance {
    pub id: String,
    pub acs_system_id: String,
    pub display_name: String,
    pub space_ids: Vec<String>,
    pub caps: Caps,
    pub created_at: Timestamp,
}

impl Entrance {
    /// Seam's `acs_entrance`, which (unlike most objects) has no
    /// `workspace_id`.
    pub fn to_json(&self, system: Option<&AcsSystem>) -> Value {
        let mut m = Map::new();
        m.insert("acs_entrance_id".into(), json!(self.id));
        m.insert("acs_system_id".into(), json!(self.acs_system_id));
        m.insert(
            "connected_account_id".into(),
            json!(system.map(|s| s.connected_account_id.as_str())),
        );
        m.insert("display_name".into(), json!(self.display_name));
        m.insert("space_ids".into(), json!(self.space_ids));
        m.insert("created_at".into(), json!(render(self.created_at)));
        m.insert("errors".into(), json!([]));
        // Seam leaves capability flags out unless they are true; a missing
        // one means false. Clients must not require them.
        for (key, on) in [
            ("can_belong_to_reservation", self.caps.reservation),
            ("can_unlock_with_card", self.caps.card),
            ("can_unlock_with_code", self.caps.code),
            ("can_unlock_with_mobile_key", self.caps.mobile_key),
        ] {
            if on {
                m.insert(key.into(), json!(true));
            }
        }
        if system.is_some_and(|s| s.requires_reservation_for_guest_cards) {
            m.insert(
                "visionline_metadata".into(),
                json!({
                    "door_name": self.display_name,
                    "door_category": if self.caps.reservation { "guest" } else { "common" },
                }),
            );
        }
        Value::Object(m)
    }
}

/// A space (a room, a unit): Seam's `space`. The fake creates one for each
/// `space_key` its seeded entrances name.
pub(crate) struct Space {
    pub id: String,
    pub key: String,
    pub created_at: Timestamp,
}

impl Space {
    pub fn to_json(&self, workspace_id: &str, entrance_count: usize) -> Value {
        json!({
            "space_id": self.id,
            "space_key": self.key,
            "workspace_id": workspace_id,
            "name": self.key,
            "display_name": self.key,
            "created_at": render(self.created_at),
            "device_count": 0,
            "acs_entrance_count": entrance_count,
        })
    }
}

/// What the next encoding on an encoder does (sandbox simulation).
#[derive(Clone, Debug)]
pub(crate) enum SimulatedEncode {
    Succeed,
    Fail { error_type: String },
}

pub(crate) struct Encoder {
    pub id: String,
    pub acs_system_id: String,
    pub display_name: String,
    pub created_at: Timestamp,
    pub next: VecDeque<SimulatedEncode>,
}

impl Encoder {
    pub fn to_json(&self, workspace_id: &str, system: Option<&AcsSystem>) -> Value {
        json!({
            "acs_encoder_id": self.id,
            "acs_system_id": self.acs_system_id,
            "connected_account_id": system.map(|s| s.connected_account_id.as_str()),
            "display_name": self.display_name,
            "created_at": render(self.created_at),
            "errors": [],
            "workspace_id": workspace_id,
        })
    }
}

pub(crate) struct UserIdentity {
    pub id: String,
    pub key: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub full_name: Option<String>,
    pub created_at: Timestamp,
}

impl UserIdentity {
    /// Seam computes a display name; the first of these that is set.
    pub fn display_name(&self) -> String {
        self.full_name
            .as_ref()
            .or(self.email.as_ref())
            .or(self.phone.as_ref())
            .or(self.key.as_ref())
            .cloned()
            .unwrap_or_else(|| "Unnamed user".to_string())
    }

    pub fn to_json(&self, workspace_id: &str) -> Value {
        json!({
            "user_identity_id": self.id,
            "user_identity_key": self.key,
            "email_address": self.email,
            "phone_number": self.phone,
            "full_name": self.full_name,
            "display_name": self.display_name(),
            "created_at": render(self.created_at),
            "workspace_id": workspace_id,
            "acs_user_ids": [],
            "errors": [],
            "warnings": [],
        })
    }

    pub fn snapshot(&self) -> UserIdentitySnapshot {
        UserIdentitySnapshot {
            user_identity_id: self.id.clone(),
            user_identity_key: self.key.clone(),
            email_address: self.email.clone(),
            phone_number: self.phone.clone(),
            full_name: self.full_name.clone(),
            display_name: self.display_name(),
        }
    }
}

/// A warning on a grant or method (`warning_code`, `message`, `created_at`).
#[derive(Clone, Debug)]
pub(crate) struct Notice {
    pub code: &'static str,
    pub message: String,
    pub created_at: Timestamp,
}

impl Notice {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Notice {
            code,
            message: message.into(),
            created_at: Timestamp::now(),
        }
    }

    /// As an `errors` item: `error_code`, `message`, `created_at`.
    fn to_error_json(&self) -> Value {
        json!({
            "error_code": self.code,
            "message": self.message,
            "created_at": render(self.created_at),
        })
    }

    fn to_json(&self) -> Value {
        json!({
            "warning_code": self.code,
            "message": self.message,
            "created_at": render(self.created_at),
        })
    }
}

/// Adds `notice` unless one with its code is there already.
pub(crate) fn add_notice(list: &mut Vec<Notice>, notice: Notice) {
    if !list.iter().any(|n| n.code == notice.code) {
        list.push(notice);
    }
}

pub(crate) struct RequestedMethod {
    pub mode: AccessMode,
    pub code: Option<String>,
    pub created_at: Timestamp,
    pub method_id: String,
}

pub(crate) struct Grant {
    pub id: String,
    pub key: Option<String>,
    pub reservation_key: Option<String>,
    pub user_identity_id: String,
    pub entrance_ids: Vec<String>,
    /// Reservation-capable entrances at creation, when reservation_key is set.
    pub reservation_entrance_ids: Vec<String>,
    pub space_ids: Vec<String>,
    pub requested: Vec<RequestedMethod>,
    pub name: Option<String>,
    /// Shown when `name` is not set.
    pub computed_name: String,
    pub starts_at: Timestamp,
    pub ends_at: Option<Timestamp>,
    pub created_at: Timestamp,
    /// Set by `/access_grants/delete`; the grant goes when teardown ends.
    pub deleting: bool,
    /// Every method was issued once: `access_granted_to_all_doors` was sent.
    pub fully_granted: bool,
    pub warnings: Vec<Notice>,
    /// `error_code`s and messages (Seam's definition lists one:
    /// `cannot_create_requested_access_methods`).
    pub errors: Vec<Notice>,
    /// Its access methods will not be created (`FakeSeam::refuse_access_methods`).
    pub methods_refused: bool,
    pub client_session_token: Option<String>,
}

impl Grant {
    pub fn method_ids(&self) -> impl Iterator<Item = &String> {
        self.requested.iter().map(|r| &r.method_id)
    }

    pub fn to_json(&self, workspace_id: &str, methods: &[&AccessMethod]) -> Value {
        let mut m = Map::new();
        m.insert("access_grant_id".into(), json!(self.id));
        m.insert("workspace_id".into(), json!(workspace_id));
        m.insert("user_identity_id".into(), json!(self.user_identity_id));
        m.insert("space_ids".into(), json!(self.space_ids));
        m.insert("location_ids".into(), json!(self.space_ids));
        m.insert(
            "requested_access_methods".into(),
            Value::Array(
                self.requested
                    .iter()
                    .map(|r| {
                        let mut rm = json!({
                            "mode": r.mode.as_str(),
                            "display_name": r.mode.display_name(),
                            "created_at": render(r.created_at),
                            "created_access_method_ids": [r.method_id],
                        });
                        if let Some(code) = &r.code {
                            rm["code"] = json!(code);
                        }
                        rm
                    })
                    .collect(),
            ),
        );
        m.insert(
            "access_method_ids".into(),
            json!(self.method_ids().collect::<Vec<_>>()),
        );
        m.insert("name".into(), json!(self.name));
        m.insert(
            "display_name".into(),
            json!(self.name.as_deref().unwrap_or(&self.computed_name)),
        );
        m.insert("created_at".into(), json!(render(self.created_at)));
        m.insert("starts_at".into(), json!(render(self.starts_at)));
        m.insert("ends_at".into(), json!(self.ends_at.map(render)));
        m.insert(
            "warnings".into(),
            Value::Array(self.warnings.iter().map(Notice::to_json).collect()),
        );
        m.insert(
            "errors".into(),
            Value::Array(self.errors.iter().map(Notice::to_error_json).collect()),
        );
        if let Some(k) = &self.key {
            m.insert("access_grant_key".into(), json!(k));
        }
        if let Some(k) = &self.reservation_key {
            m.insert("reservation_key".into(), json!(k));
        }
        if let Some(t) = &self.client_session_token {
            m.insert("client_session_token".into(), json!(t));
        }
        // Only with exactly one mobile key method, once it is issued.
        let mobile: Vec<&&AccessMethod> = methods
            .iter()
            .filter(|am| am.mode == AccessMode::MobileKey)
            .collect();
        if let [only] = mobile.as_slice() {
            if let Some(url) = &only.instant_key_url {
                m.insert("instant_key_url".into(), json!(url));
            }
        }
        Value::Object(m)
    }

    pub fn snapshot(&self) -> GrantSnapshot {
        GrantSnapshot {
            access_grant_id: self.id.clone(),
            access_grant_key: self.key.clone(),
            reservation_key: self.reservation_key.clone(),
            user_identity_id: self.user_identity_id.clone(),
            acs_entrance_ids: self.entrance_ids.clone(),
            reservation_entrance_ids: self.reservation_entrance_ids.clone(),
            space_ids: self.space_ids.clone(),
            name: self.name.clone(),
            starts_at: self.starts_at,
            ends_at: self.ends_at,
            access_method_ids: self.method_ids().cloned().collect(),
            being_deleted: self.deleting,
            warnings: self.warnings.iter().map(|n| n.code.to_string()).collect(),
        }
    }
}

/// Why an access method is not issued right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pending {
    /// Never issued yet.
    Issue,
    /// Revoked after a change of the grant's times; to be reissued.
    Reissue,
}

pub(crate) struct AccessMethod {
    pub id: String,
    pub grant_id: String,
    pub mode: AccessMode,
    pub created_at: Timestamp,
    pub issued_at: Option<Timestamp>,
    /// `Some` while not issued.
    pub pending: Option<Pending>,
    /// Bumped whenever the method becomes pending, so that a timer set for
    /// an earlier round does not issue a later one early.
    pub generation: u64,
    pub code: Option<String>,
    pub is_encoding_required: bool,
    pub reissue_count: u32,
    pub deleting: bool,
    pub warnings: Vec<Notice>,
    pub instant_key_url: Option<String>,
    pub client_session_token: Option<String>,
}

impl AccessMethod {
    pub fn is_issued(&self) -> bool {
        self.pending.is_none()
    }

    pub fn to_json(&self, workspace_id: &str) -> Value {
        let mut m = Map::new();
        m.insert("access_method_id".into(), json!(self.id));
        m.insert("workspace_id".into(), json!(workspace_id));
        m.insert("mode".into(), json!(self.mode.as_str()));
        m.insert("display_name".into(), json!(self.mode.display_name()));
        m.insert("created_at".into(), json!(render(self.created_at)));
        m.insert("is_issued".into(), json!(self.is_issued()));
        m.insert(
            "issued_at".into(),
            json!(self.issued_at.filter(|_| self.is_issued()).map(render)),
        );
        m.insert(
            "is_encoding_required".into(),
            json!(self.is_encoding_required),
        );
        m.insert(
            "warnings".into(),
            Value::Array(self.warnings.iter().map(Notice::to_json).collect()),
        );
        if self.mode == AccessMode::Code {
            // The code is only known once issued.
            m.insert(
                "code".into(),
                json!(self.code.as_ref().filter(|_| self.is_issued())),
            );
        }
        if self.is_issued() {
            if let Some(url) = &self.instant_key_url {
                m.insert("instant_key_url".into(), json!(url));
            }
        }
        if let Some(t) = &self.client_session_token {
            m.insert("client_session_token".into(), json!(t));
        }
        Value::Object(m)
    }

    pub fn snapshot(&self) -> AccessMethodSnapshot {
        AccessMethodSnapshot {
            access_method_id: self.id.clone(),
            access_grant_id: self.grant_id.clone(),
            mode: self.mode,
            is_issued: self.is_issued(),
            issued_at: self.issued_at.filter(|_| self.is_issued()),
            code: self.code.clone().filter(|_| self.is_issued()),
            is_encoding_required: self.is_encoding_required,
            reissue_count: self.reissue_count,
            being_deleted: self.deleting,
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) enum AttemptStatus {
    Pending,
    Success(Value),
    Error { kind: String, message: String },
}

pub(crate) struct ActionAttempt {
    pub id: String,
    pub access_method_id: String,
    pub acs_encoder_id: String,
    pub status: AttemptStatus,
}

impl ActionAttempt {
    pub fn to_json(&self) -> Value {
        let (status, result, error) = match &self.status {
            AttemptStatus::Pending => ("pending", Value::Null, Value::Null),
            AttemptStatus::Success(r) => ("success", r.clone(), Value::Null),
            AttemptStatus::Error { kind, message } => (
                "error",
                Value::Null,
                json!({ "type": kind, "message": message }),
            ),
        };
        json!({
            "action_attempt_id": self.id,
            "action_type": "ENCODE_CREDENTIAL",
            "status": status,
            "result": result,
            "error": error,
        })
    }
}

/// A webhook endpoint (Svix) of a workspace.
#[derive(Clone)]
pub(crate) struct Endpoint {
    pub url: String,
    pub secret: String,
}
