//! `/action_attempts/get|list`: poll an encoding until `success` or
//! `error`.

use std::sync::Arc;

use serde_json::Value;

use super::{ok_page, ok_with, workspace, Call};
use crate::core::Core;
use crate::errors::ApiError;
use crate::pagination::{self, DEFAULT_LIMIT};
use crate::validate::{Obj, Str, Validator};

pub(crate) fn get(core: &Arc<Core>, call: &Call) -> Result<Value, ApiError> {
    let o = Obj::root(call.body);
    let mut v = Validator::new();
    let id = o.string(&mut v, "action_attempt_id", Str::REQUIRED_UUID);
    v.finish()?;
    let id = id.value().unwrap_or_default();
    core.read(|world| {
        let ws = workspace(world, call)?;
        let a = ws
            .attempts
            .get(&id)
            .ok_or_else(|| ApiError::not_found("action_attempt"))?;
        Ok(ok_with("action_attempt", a.to_json()))
    })
}

/// `action_attempt_ids` (or every attempt of the workspace), paginated; the
/// fake has no devices, so a `device_id` filter matches nothing.
pub(crate) fn list(core: &Arc<Core>, call: &Call) -> Result<Value, ApiError> {
    let o = Obj::root(call.body);
    let mut v = Validator::new();
    let ids = o.strings(&mut v, "action_attempt_ids", Str::UUID);
    let device_id = o.string(&mut v, "device_id", Str::UUID).value();
    let page = pagination::read(&o, &mut v, call.route, DEFAULT_LIMIT);
    v.finish()?;
    core.read(|world| {
        let ws = workspace(world, call)?;
        let items = ws
            .attempts
            .values()
            .filter(|a| ids.as_ref().is_none_or(|ids| ids.contains(&a.id)))
            .filter(|_| device_id.is_none())
            .map(|a| (a.id.as_str(), a.to_json()));
        Ok(ok_page(call, core, "action_attempts", page.page(items)))
    })
}
