//! `/action_attempts/get`: poll an encoding until `success` or `error`.

use std::sync::Arc;

use serde_json::Value;

use super::{ok_with, workspace, Call};
use crate::core::Core;
use crate::errors::ApiError;
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
