//! `/user_identities/create|get|list`. `user_identity_key`,
//! `email_address` and `phone_number` are each unique per workspace (409
//! `duplicate_*` on reuse). Creation is shared with `/access_grants/create`,
//! which may create an identity inline.

use std::sync::Arc;

use jiff::Timestamp;
use serde_json::Value;

use super::{ok_page, ok_with, workspace, workspace_mut, Call};
use crate::core::Core;
use crate::errors::ApiError;
use crate::ids::Kind;
use crate::model::UserIdentity;
use crate::pagination::{self, DEFAULT_LIMIT};
use crate::state::{Effects, Workspace};
use crate::validate::{Obj, Str, Validator};

/// The fields of a new identity.
pub(crate) struct NewIdentity {
    pub key: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub full_name: Option<String>,
}

/// Reads the identity fields of `o` (a create body or `user_identity{}`).
pub(crate) fn read_new(o: &Obj, v: &mut Validator) -> NewIdentity {
    let key = o
        .string(v, "user_identity_key", Str::NULLABLE.non_empty())
        .value();
    let email = o.string(v, "email_address", Str::NULLABLE).value();
    if let Some(e) = &email {
        // zod's email check, loosely: something@domain.tld
        let valid = e.split_once('@').is_some_and(|(user, domain)| {
            !user.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        });
        if !valid {
            v.issue(o.path_of("email_address"), "Invalid email");
        }
    }
    let phone = o.string(v, "phone_number", Str::NULLABLE).value();
    if let Some(p) = &phone {
        // E.164: a plus and 7 to 15 digits.
        let digits = p.strip_prefix('+').unwrap_or("");
        if !(7..=15).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
            v.issue(
                o.path_of("phone_number"),
                "Phone number must be in E.164 format (for example, +15555550100)",
            );
        }
    }
    let full_name = o.string(v, "full_name", Str::NULLABLE.non_empty()).value();
    NewIdentity {
        key,
        email,
        phone,
        full_name,
    }
}

/// 409 if a unique field is taken in the workspace.
pub(crate) fn check_unique(ws: &Workspace, new: &NewIdentity) -> Result<(), ApiError> {
    let taken = |f: fn(&UserIdentity) -> Option<&String>, value: &Option<String>| {
        value
            .as_ref()
            .is_some_and(|v| ws.user_identities.values().any(|u| f(u) == Some(v)))
    };
    if taken(|u| u.key.as_ref(), &new.key) {
        return Err(ApiError::duplicate(
            "user_identity_key",
            "A user identity with this user_identity_key already exists in the workspace",
        ));
    }
    if taken(|u| u.email.as_ref(), &new.email) {
        return Err(ApiError::duplicate(
            "email_address",
            "A user identity with this email_address already exists in the workspace",
        ));
    }
    if taken(|u| u.phone.as_ref(), &new.phone) {
        return Err(ApiError::duplicate(
            "phone_number",
            "A user identity with this phone_number already exists in the workspace",
        ));
    }
    Ok(())
}

/// Inserts a checked identity; returns its id.
pub(crate) fn insert(ws: &mut Workspace, fx: &mut Effects, new: NewIdentity) -> String {
    let id = fx.ids.mint(Kind::UserIdentity);
    ws.user_identities.insert(
        id.clone(),
        UserIdentity {
            id: id.clone(),
            key: new.key,
            email: new.email,
            phone: new.phone,
            full_name: new.full_name,
            created_at: Timestamp::now(),
        },
    );
    id
}

pub(crate) fn create(core: &Arc<Core>, call: &Call) -> Result<Value, ApiError> {
    let o = Obj::root(call.body);
    let mut v = Validator::new();
    let new = read_new(&o, &mut v);
    // Accepted for compatibility; the fake has no acs users to create.
    o.strings(&mut v, "acs_system_ids", Str::OPTIONAL.non_empty());
    v.finish()?;
    core.change(|world| {
        let (ws, fx) = workspace_mut(world, call)?;
        check_unique(ws, &new)?;
        let id = insert(ws, fx, new);
        let json = ws
            .user_identities
            .get(&id)
            .map(|u| u.to_json(&ws.uuid))
            .unwrap_or(Value::Null);
        Ok(ok_with("user_identity", json))
    })
}

pub(crate) fn get(core: &Arc<Core>, call: &Call) -> Result<Value, ApiError> {
    let o = Obj::root(call.body);
    let mut v = Validator::new();
    // oneOf {user_identity_id} | {user_identity_key}; the id wins if both.
    let id = o.string(&mut v, "user_identity_id", Str::UUID).value();
    let key = o.string(&mut v, "user_identity_key", Str::OPTIONAL).value();
    if v.is_clean() && id.is_none() && key.is_none() {
        v.issue(
            o.path_of("user_identity_id"),
            "Required (or user_identity_key)",
        );
    }
    v.finish()?;
    core.read(|world| {
        let ws = workspace(world, call)?;
        let found = match (&id, &key) {
            (Some(id), _) => ws.user_identities.get(id),
            (None, Some(key)) => ws.identity_by_key(key),
            (None, None) => None,
        };
        let u = found.ok_or_else(|| ApiError::not_found("user_identity"))?;
        Ok(ok_with("user_identity", u.to_json(&ws.uuid)))
    })
}

pub(crate) fn list(core: &Arc<Core>, call: &Call) -> Result<Value, ApiError> {
    let o = Obj::root(call.body);
    let mut v = Validator::new();
    let ids = o.strings(&mut v, "user_identity_ids", Str::UUID);
    let search = o
        .string(&mut v, "search", Str::OPTIONAL)
        .value()
        .map(|s| s.to_lowercase());
    let created_before = o.datetime(&mut v, "created_before", false, false).value();
    o.string(&mut v, "credential_manager_acs_system_id", Str::OPTIONAL);
    let page = pagination::read(&o, &mut v, call.route, DEFAULT_LIMIT);
    v.finish()?;
    core.read(|world| {
        let ws = workspace(world, call)?;
        let matches_search = |u: &UserIdentity| {
            search.as_ref().is_none_or(|s| {
                [&u.full_name, &u.email, &u.phone, &u.key]
                    .iter()
                    .any(|f| f.as_ref().is_some_and(|f| f.to_lowercase().contains(s)))
            })
        };
        let items = ws
            .user_identities
            .values()
            .filter(|u| ids.as_ref().is_none_or(|ids| ids.contains(&u.id)))
            .filter(|u| matches_search(u))
            .filter(|u| created_before.is_none_or(|t| u.created_at < t))
            .map(|u| (u.id.as_str(), u.to_json(&ws.uuid)));
        Ok(ok_page(call, core, "user_identities", page.page(items)))
    })
}
