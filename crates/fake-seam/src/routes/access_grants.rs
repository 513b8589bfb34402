//! `/access_grants/create|get|list|update|delete`.
//!
//! Create answers at once with the grant and its `access_method_ids`; the
//! methods are issued in the background (`lifecycle.rs`). Update changes
//! only the time window and name; new times revoke every method and reissue
//! it in the background (cards then need encoding again). Delete marks the
//! grant `being_deleted`; it disappears when the teardown ends.

use std::sync::Arc;

use jiff::Timestamp;
use serde_json::{json, Value};

use super::user_identities::{self, NewIdentity};
use super::{ok, ok_page, ok_with, workspace, workspace_mut, Call};
use crate::core::Core;
use crate::errors::ApiError;
use crate::events::*;
use crate::ids::Kind;
use crate::model::{add_notice, AccessMethod, AccessMode, Grant, Notice, Pending, RequestedMethod};
use crate::pagination::{self, DEFAULT_LIMIT};
use crate::rules::{self, NewGrant, Window};
use crate::state::{Timer, Workspace};
use crate::validate::{Field, Obj, Str, Validator};

/// Who the grant is for.
enum Holder {
    Existing(String),
    New(NewIdentity),
}

struct CreateRequest {
    holder: Holder,
    entrance_ids: Vec<String>,
    space_ids: Vec<String>,
    space_keys: Vec<String>,
    device_ids: Vec<String>,
    starts_at: Timestamp,
    ends_at: Option<Timestamp>,
    requested: Vec<(AccessMode, Option<String>)>,
    reservation_key: Option<String>,
    key: Option<String>,
    name: Option<String>,
}

/// A requested PIN: 4 to 9 digits.
fn check_code(o: &Obj, v: &mut Validator, code: &str) {
    if !(4..=9).contains(&code.len()) || !code.bytes().all(|b| b.is_ascii_digit()) {
        v.issue(o.path_of("code"), "Code must be 4 to 9 digits");
    }
}

/// `ends_at` after `starts_at` and in the future, as Seam requires.
fn check_window(o: &Obj, v: &mut Validator, starts_at: Timestamp, ends_at: Option<Timestamp>) {
    if let Some(end) = ends_at {
        if end <= starts_at {
            v.issue(o.path_of("ends_at"), "ends_at must be after starts_at");
        } else if end <= Timestamp::now() {
            v.issue(o.path_of("ends_at"), "ends_at must be a time in the future");
        }
    }
}

fn read_create(o: &Obj, v: &mut Validator) -> Option<CreateRequest> {
    let holder_id = o.string(v, "user_identity_id", Str::UUID).value();
    let inline = o.object(v, "user_identity", false);
    let holder = match (holder_id, inline) {
        (Some(id), _) => Some(Holder::Existing(id)),
        (None, Some(u)) => Some(Holder::New(user_identities::read_new(&u, v))),
        (None, None) => {
            if !o.has("user_identity_id") {
                v.issue(o.path_of("user_identity_id"), "Required (or user_identity)");
            }
            None
        }
    };
    let entrance_ids = o
        .strings(v, "acs_entrance_ids", Str::UUID)
        .unwrap_or_default();
    // Space ids are chosen by whoever seeds entrances: any non-empty string.
    let space_ids = o.strings(v, "space_ids", Str::UUID).unwrap_or_default();
    let space_keys = o
        .strings(v, "space_keys", Str::OPTIONAL.non_empty())
        .unwrap_or_default();
    let device_ids = o.strings(v, "device_ids", Str::UUID).unwrap_or_default();
    let targets_given = ["acs_entrance_ids", "space_ids", "space_keys", "device_ids"]
        .iter()
        .any(|k| {
            o.map()
                .get(*k)
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty())
        });
    if v.is_clean() && !targets_given {
        v.issue(
            Vec::new(),
            "At least one of acs_entrance_ids, space_ids, space_keys or device_ids is required",
        );
    }
    let starts_at = o.datetime(v, "starts_at", false, false).value();
    let ends_at = o.datetime(v, "ends_at", false, true).value();
    let mut requested = Vec::new();
    if let Some(items) = o.objects(v, "requested_access_methods", true) {
        if items.is_empty()
            && o.map()
                .get("requested_access_methods")
                .is_some_and(Value::is_array)
        {
            v.issue(
                o.path_of("requested_access_methods"),
                "Array must contain at least 1 element(s)",
            );
        }
        for item in items {
            let mode = item
                .one_of(v, "mode", &AccessMode::ALL, true)
                .and_then(|m| AccessMode::parse(&m));
            let code = item.string(v, "code", Str::OPTIONAL).value();
            if let Some(c) = &code {
                check_code(&item, v, c);
                if mode.is_some_and(|m| m != AccessMode::Code) {
                    v.issue(
                        item.path_of("code"),
                        "code is only allowed with mode 'code'",
                    );
                }
            }
            if let Some(mode) = mode {
                requested.push((mode, code));
            }
        }
    }
    let reservation_key = o
        .string(v, "reservation_key", Str::OPTIONAL.non_empty())
        .value();
    let key = o
        .string(v, "access_grant_key", Str::OPTIONAL.non_empty())
        .value();
    let name = o.string(v, "name", Str::NULLABLE).value();
    o.string(v, "customization_profile_id", Str::UUID);
    let starts_at = starts_at.unwrap_or_else(Timestamp::now);
    check_window(o, v, starts_at, ends_at);
    Some(CreateRequest {
        holder: holder?,
        entrance_ids,
        space_ids,
        space_keys,
        device_ids,
        starts_at,
        ends_at,
        requested,
        reservation_key,
        key,
        name,
    })
}

/// Adds `item` to `list` unless there.
fn push_unique(list: &mut Vec<String>, item: &str) {
    if !list.iter().any(|x| x == item) {
        list.push(item.to_string());
    }
}

/// The entrances a request targets, given ones first, then its spaces'.
fn resolve_entrances(ws: &Workspace, req: &CreateRequest) -> Result<Vec<String>, ApiError> {
    let mut out = Vec::new();
    for id in &req.entrance_ids {
        if !ws.entrances.contains_key(id) {
            return Err(ApiError::not_found("acs_entrance"));
        }
        push_unique(&mut out, id);
    }
    for space in &req.space_ids {
        let mut found = false;
        for e in ws
            .entrances
            .values()
            .filter(|e| e.space_ids.contains(space))
        {
            push_unique(&mut out, &e.id);
            found = true;
        }
        if !found {
            return Err(ApiError::not_found("space"));
        }
    }
    for key in &req.space_keys {
        let space = ws
            .space_by_key(key)
            .ok_or_else(|| ApiError::not_found("space"))?;
        for e in ws
            .entrances
            .values()
            .filter(|e| e.space_ids.contains(&space.id))
        {
            push_unique(&mut out, &e.id);
        }
    }
    // The fake has no devices.
    if !req.device_ids.is_empty() {
        return Err(ApiError::not_found("device"));
    }
    Ok(out)
}

pub(crate) fn create(core: &Arc<Core>, call: &Call) -> Result<Value, ApiError> {
    let o = Obj::root(call.body);
    let mut v = Validator::new();
    let req = read_create(&o, &mut v);
    v.finish()?;
    let req = req.ok_or_else(|| ApiError::internal("validated request without a holder"))?;

    core.change(|world| {
        let (ws, fx) = workspace_mut(world, call)?;
        // The idempotency handle first: a retried create that already
        // happened must read as a duplicate, whatever else changed since.
        if let Some(key) = &req.key {
            if ws.grant_by_key(key).is_some() {
                return Err(ApiError::duplicate(
                    "access_grant_key",
                    "An access grant with this access_grant_key already exists in the workspace",
                ));
            }
        }
        match &req.holder {
            Holder::Existing(id) if !ws.user_identities.contains_key(id) => {
                return Err(ApiError::not_found("user_identity"))
            }
            Holder::Existing(_) => {}
            Holder::New(new) => user_identities::check_unique(ws, new)?,
        }
        let entrance_ids = resolve_entrances(ws, &req)?;
        let modes: Vec<AccessMode> = req.requested.iter().map(|(m, _)| *m).collect();
        let reservation_entrance_ids = rules::check_new_grant(
            ws,
            &NewGrant {
                reservation_key: req.reservation_key.as_deref(),
                entrance_ids: &entrance_ids,
                modes: &modes,
                window: Window {
                    starts_at: req.starts_at,
                    ends_at: req.ends_at,
                },
                text: core.config.reservation_error_text,
            },
        )?;

        // Everything checked: commit.
        let CreateRequest {
            holder,
            space_ids: requested_spaces,
            starts_at,
            ends_at,
            requested,
            reservation_key,
            key,
            name,
            ..
        } = req;
        let user_identity_id = match holder {
            Holder::Existing(id) => id,
            Holder::New(new) => user_identities::insert(ws, fx, new),
        };
        let holder_name = ws
            .user_identities
            .get(&user_identity_id)
            .map(|u| u.display_name())
            .unwrap_or_default();
        let mut space_ids = Vec::new();
        for s in requested_spaces.iter().chain(
            entrance_ids
                .iter()
                .filter_map(|id| ws.entrances.get(id))
                .flat_map(|e| e.space_ids.iter()),
        ) {
            push_unique(&mut space_ids, s);
        }
        let now = Timestamp::now();
        let mut refuse = ws.refuse_access_methods > 0;
        if refuse {
            ws.refuse_access_methods -= 1;
        }
        let grant_id = fx.ids.mint(Kind::AccessGrant);
        let has_mobile_key = modes.contains(&AccessMode::MobileKey);
        let client_session_token =
            has_mobile_key.then(|| format!("seam_cst_fake_{}", grant_id.replace('-', "")));
        let mut methods = Vec::new();
        let requested: Vec<RequestedMethod> = requested
            .into_iter()
            .map(|(mode, code)| {
                let method_id = fx.ids.mint(Kind::AccessMethod);
                methods.push(AccessMethod {
                    id: method_id.clone(),
                    grant_id: grant_id.clone(),
                    mode,
                    created_at: now,
                    issued_at: None,
                    pending: Some(Pending::Issue),
                    generation: 1,
                    code: None,
                    is_encoding_required: false,
                    reissue_count: 0,
                    deleting: false,
                    warnings: Vec::new(),
                    instant_key_url: None,
                    client_session_token: (mode == AccessMode::MobileKey)
                        .then(|| client_session_token.clone())
                        .flatten(),
                });
                RequestedMethod {
                    mode,
                    code,
                    created_at: now,
                    method_id,
                }
            })
            .collect();
        let grant = Grant {
            id: grant_id.clone(),
            key,
            reservation_key,
            user_identity_id,
            entrance_ids,
            reservation_entrance_ids,
            space_ids,
            requested,
            name,
            computed_name: format!("Access Grant for {holder_name}"),
            starts_at,
            ends_at,
            created_at: now,
            deleting: false,
            fully_granted: false,
            warnings: Vec::new(),
            errors: Vec::new(),
            methods_refused: std::mem::take(&mut refuse),
            client_session_token,
        };
        ws.grants.insert(grant_id.clone(), grant);
        fx.emit(
            ws,
            ACCESS_GRANT_CREATED,
            json!({ "access_grant_id": grant_id }),
        );
        // Seam announces access methods when they are issued; there is no
        // event for their creation.
        for m in methods {
            let method_id = m.id.clone();
            ws.methods.insert(method_id.clone(), m);
            fx.schedule(Timer::Issue {
                workspace: ws.id.clone(),
                method_id,
                generation: 1,
            });
        }
        let json = ws
            .grants
            .get(&grant_id)
            .map(|g| ws.grant_json(g))
            .unwrap_or(Value::Null);
        Ok(ok_with("access_grant", json))
    })
}

pub(crate) fn get(core: &Arc<Core>, call: &Call) -> Result<Value, ApiError> {
    let o = Obj::root(call.body);
    let mut v = Validator::new();
    // oneOf {access_grant_id} | {access_grant_key}; the id wins if both.
    let id = o.string(&mut v, "access_grant_id", Str::UUID).value();
    let key = o.string(&mut v, "access_grant_key", Str::OPTIONAL).value();
    if v.is_clean() && id.is_none() && key.is_none() {
        v.issue(
            o.path_of("access_grant_id"),
            "Required (or access_grant_key)",
        );
    }
    v.finish()?;
    core.read(|world| {
        let ws = workspace(world, call)?;
        let found = match (&id, &key) {
            (Some(id), _) => ws.grants.get(id),
            (None, Some(key)) => ws.grant_by_key(key),
            (None, None) => None,
        };
        let g = found.ok_or_else(|| ApiError::not_found("access_grant"))?;
        Ok(ok_with("access_grant", ws.grant_json(g)))
    })
}

pub(crate) fn list(core: &Arc<Core>, call: &Call) -> Result<Value, ApiError> {
    let o = Obj::root(call.body);
    let mut v = Validator::new();
    let ids = o.strings(&mut v, "access_grant_ids", Str::UUID);
    let key = o.string(&mut v, "access_grant_key", Str::OPTIONAL).value();
    let reservation_key = o.string(&mut v, "reservation_key", Str::OPTIONAL).value();
    let user_identity_id = o.string(&mut v, "user_identity_id", Str::UUID).value();
    let entrance_id = o.string(&mut v, "acs_entrance_id", Str::UUID).value();
    let system_id = o
        .string(&mut v, "acs_system_id", Str::OPTIONAL.non_empty())
        .value();
    let space_id = o
        .string(&mut v, "space_id", Str::OPTIONAL.non_empty())
        .value();
    o.string(&mut v, "location_id", Str::UUID);
    o.string(&mut v, "customer_key", Str::OPTIONAL);
    let page = pagination::read(&o, &mut v, call.route, DEFAULT_LIMIT);
    v.finish()?;
    core.read(|world| {
        let ws = workspace(world, call)?;
        let items = ws
            .grants
            .values()
            .filter(|g| ids.as_ref().is_none_or(|ids| ids.contains(&g.id)))
            .filter(|g| key.as_ref().is_none_or(|k| g.key.as_ref() == Some(k)))
            .filter(|g| {
                reservation_key
                    .as_ref()
                    .is_none_or(|k| g.reservation_key.as_ref() == Some(k))
            })
            .filter(|g| {
                user_identity_id
                    .as_ref()
                    .is_none_or(|u| &g.user_identity_id == u)
            })
            .filter(|g| {
                entrance_id
                    .as_ref()
                    .is_none_or(|e| g.entrance_ids.contains(e))
            })
            .filter(|g| {
                system_id.as_ref().is_none_or(|s| {
                    g.entrance_ids
                        .iter()
                        .any(|e| ws.entrances.get(e).is_some_and(|e| &e.acs_system_id == s))
                })
            })
            .filter(|g| space_id.as_ref().is_none_or(|s| g.space_ids.contains(s)))
            .map(|g| (g.id.as_str(), ws.grant_json(g)));
        Ok(ok_page(call, core, "access_grants", page.page(items)))
    })
}

pub(crate) fn update(core: &Arc<Core>, call: &Call) -> Result<Value, ApiError> {
    let o = Obj::root(call.body);
    let mut v = Validator::new();
    let id = o.string(&mut v, "access_grant_id", Str::REQUIRED_UUID);
    let starts_at = o.datetime(&mut v, "starts_at", false, false);
    let ends_at = o.datetime(&mut v, "ends_at", false, true);
    let name = o.string(&mut v, "name", Str::NULLABLE);
    v.finish()?;
    let id = id.value().unwrap_or_default();

    core.change(|world| {
        let (ws, fx) = workspace_mut(world, call)?;
        let grant = ws
            .grants
            .get(&id)
            .ok_or_else(|| ApiError::not_found("access_grant"))?;
        if grant.deleting {
            return Err(ApiError::invalid_input("Access grant is being deleted."));
        }
        let old = Window::of(grant);
        let new = Window {
            starts_at: match &starts_at {
                Field::Set(t) => *t,
                _ => old.starts_at,
            },
            ends_at: match &ends_at {
                Field::Set(t) => Some(*t),
                Field::Null => None,
                Field::Absent => old.ends_at,
            },
        };
        if new != old {
            let mut v = Validator::new();
            check_window(&o, &mut v, new.starts_at, new.ends_at);
            v.finish()?;
            rules::check_new_window(ws, grant, &new, core.config.reservation_error_text)?;
        }
        let method_ids: Vec<String> = grant.method_ids().cloned().collect();
        let grant_key = grant.key.clone();

        let Some(grant) = ws.grants.get_mut(&id) else {
            return Err(ApiError::internal("grant vanished"));
        };
        match name {
            Field::Set(n) => grant.name = Some(n),
            Field::Null => grant.name = None,
            Field::Absent => {}
        }
        if new == old {
            return Ok(ok());
        }
        grant.starts_at = new.starts_at;
        grant.ends_at = new.ends_at;
        // While its methods are reissued the grant shows nothing: Seam's
        // definition has no warning for it (the methods' `is_issued` tells).
        // Seam's definition has these members as strings, not null: a
        // grant without a key or an end leaves them out.
        let mut fields = json!({
            "access_grant_id": id,
            "starts_at": crate::time::render(new.starts_at),
        });
        if let Some(key) = &grant_key {
            fields["access_grant_key"] = json!(key);
        }
        if let Some(end) = new.ends_at {
            fields["ends_at"] = json!(crate::time::render(end));
        }
        fx.emit(ws, ACCESS_GRANT_ACCESS_TIMES_CHANGED, fields);
        // Credentials carry their validity: every issued one is revoked and
        // reissued with the new times; unissued ones start a new round.
        for method_id in method_ids {
            let Some(m) = ws.methods.get_mut(&method_id) else {
                continue;
            };
            let was_issued = m.is_issued();
            m.generation += 1;
            if was_issued {
                m.pending = Some(Pending::Reissue);
            }
            let generation = m.generation;
            if was_issued {
                fx.emit(
                    ws,
                    ACCESS_METHOD_REVOKED,
                    json!({
                        "access_method_id": method_id,
                        "access_grant_ids": [id],
                        "access_grant_keys": grant_key.iter().collect::<Vec<_>>(),
                    }),
                );
            }
            fx.schedule(Timer::Issue {
                workspace: ws.id.clone(),
                method_id,
                generation,
            });
        }
        Ok(ok())
    })
}

pub(crate) fn delete(core: &Arc<Core>, call: &Call) -> Result<Value, ApiError> {
    let o = Obj::root(call.body);
    let mut v = Validator::new();
    let id = o.string(&mut v, "access_grant_id", Str::REQUIRED_UUID);
    v.finish()?;
    let id = id.value().unwrap_or_default();
    core.change(|world| {
        let (ws, fx) = workspace_mut(world, call)?;
        let grant = ws
            .grants
            .get_mut(&id)
            .ok_or_else(|| ApiError::not_found("access_grant"))?;
        // Deleting again while the teardown runs is not an error.
        if grant.deleting {
            return Ok(ok());
        }
        grant.deleting = true;
        add_notice(
            &mut grant.warnings,
            Notice::new("being_deleted", "Access grant is being deleted."),
        );
        let method_ids: Vec<String> = grant.method_ids().cloned().collect();
        for method_id in method_ids {
            if let Some(m) = ws.methods.get_mut(&method_id) {
                m.deleting = true;
                add_notice(
                    &mut m.warnings,
                    Notice::new("being_deleted", "Access method is being deleted."),
                );
            }
        }
        fx.schedule(Timer::FinishDeletion {
            workspace: ws.id.clone(),
            grant_id: id,
        });
        Ok(ok())
    })
}
