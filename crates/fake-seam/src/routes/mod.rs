//! The Seam Connect routes the fake serves, one handler per route, as in
//! `@seamapi/fake-seam-connect`. A handler gets the caller's workspace and
//! the JSON body (already authenticated and parsed by `server.rs`),
//! validates the body completely before it touches any state, and answers
//! the success envelope or an [`ApiError`].

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::core::Core;
use crate::errors::ApiError;
use crate::state::{Effects, Workspace, World};

mod access_grants;
mod access_methods;
mod action_attempts;
mod encoders;
mod entrances;
mod events;
pub(crate) mod fake;
mod spaces;
mod user_identities;

/// One authenticated API request.
pub(crate) struct Call<'a> {
    pub workspace_id: &'a str,
    pub route: &'a str,
    pub body: &'a Map<String, Value>,
}

pub(crate) type Handler = fn(&Arc<Core>, &Call<'_>) -> Result<Value, ApiError>;

/// Every API route; the methods each takes are those of Seam's definition
/// (`contract.rs`).
pub(crate) const ROUTES: &[(&str, Handler)] = &[
    ("/acs/entrances/list", entrances::list),
    ("/acs/encoders/list", encoders::list),
    ("/acs/encoders/get", encoders::get),
    (
        "/acs/encoders/simulate/next_credential_encode_will_fail",
        encoders::simulate_fail,
    ),
    (
        "/acs/encoders/simulate/next_credential_encode_will_succeed",
        encoders::simulate_succeed,
    ),
    ("/user_identities/create", user_identities::create),
    ("/user_identities/get", user_identities::get),
    ("/user_identities/list", user_identities::list),
    ("/access_grants/create", access_grants::create),
    ("/access_grants/get", access_grants::get),
    ("/access_grants/list", access_grants::list),
    ("/access_grants/update", access_grants::update),
    ("/access_grants/delete", access_grants::delete),
    ("/access_methods/list", access_methods::list),
    ("/access_methods/get", access_methods::get),
    ("/access_methods/encode", access_methods::encode),
    ("/action_attempts/get", action_attempts::get),
    ("/action_attempts/list", action_attempts::list),
    ("/events/list", events::list),
    ("/spaces/list", spaces::list),
];

pub(crate) fn lookup(route: &str) -> Option<Handler> {
    ROUTES.iter().find(|(r, _)| *r == route).map(|(_, h)| *h)
}

/// `{"<key>": value, "ok": true}`
pub(crate) fn ok_with(key: &str, value: Value) -> Value {
    let mut m = Map::new();
    m.insert(key.to_string(), value);
    m.insert("ok".into(), Value::Bool(true));
    Value::Object(m)
}

/// `{"ok": true}`
pub(crate) fn ok() -> Value {
    serde_json::json!({ "ok": true })
}

/// `{"<key>": [...], "pagination": {...}, "ok": true}`
pub(crate) fn ok_page(
    call: &Call,
    core: &Core,
    key: &str,
    page: crate::pagination::Page<Value>,
) -> Value {
    let mut v = ok_with(key, Value::Array(page.items));
    v["pagination"] =
        crate::pagination::json(page.next_cursor.as_deref(), &core.base_url, call.route);
    v
}

/// The caller's workspace. It exists: the API key was resolved to it, and
/// workspaces are never removed; a miss would be the fake's own bug.
pub(crate) fn workspace<'w>(world: &'w World, call: &Call) -> Result<&'w Workspace, ApiError> {
    world
        .workspace(call.workspace_id)
        .ok_or_else(|| ApiError::internal("workspace vanished"))
}

pub(crate) fn workspace_mut<'w>(
    world: &'w mut World,
    call: &Call,
) -> Result<(&'w mut Workspace, &'w mut Effects), ApiError> {
    world
        .split(call.workspace_id)
        .ok_or_else(|| ApiError::internal("workspace vanished"))
}
