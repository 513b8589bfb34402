//! `/access_methods/list|get|encode`. The list is not paginated (Seam's
//! answer has no `pagination`). Encoding answers a pending action attempt
//! at once; it ends in the background (`lifecycle.rs`).

use std::sync::Arc;

use serde_json::Value;

use super::{ok_with, workspace, workspace_mut, Call};
use crate::core::Core;
use crate::errors::ApiError;
use crate::ids::Kind;
use crate::model::{AccessMode, ActionAttempt, AttemptStatus};
use crate::state::Timer;
use crate::validate::{Obj, Str, Validator};

pub(crate) fn list(core: &Arc<Core>, call: &Call) -> Result<Value, ApiError> {
    let o = Obj::root(call.body);
    let mut v = Validator::new();
    let grant_id = o.string(&mut v, "access_grant_id", Str::REQUIRED_UUID);
    let entrance_id = o.string(&mut v, "acs_entrance_id", Str::UUID).value();
    let space_id = o
        .string(&mut v, "space_id", Str::OPTIONAL.non_empty())
        .value();
    let device_id = o.string(&mut v, "device_id", Str::UUID).value();
    v.finish()?;
    let grant_id = grant_id.value().unwrap_or_default();
    core.read(|world| {
        let ws = workspace(world, call)?;
        let grant = ws
            .grants
            .get(&grant_id)
            .ok_or_else(|| ApiError::not_found("access_grant"))?;
        // A grant's methods cover all its doors; a filter on a door or space
        // it does not target leaves nothing. The fake has no devices.
        let covered = entrance_id
            .as_ref()
            .is_none_or(|e| grant.entrance_ids.contains(e))
            && space_id
                .as_ref()
                .is_none_or(|s| grant.space_ids.contains(s))
            && device_id.is_none();
        let methods: Vec<Value> = if covered {
            grant
                .method_ids()
                .filter_map(|id| ws.methods.get(id))
                .map(|m| m.to_json(&ws.uuid))
                .collect()
        } else {
            Vec::new()
        };
        Ok(ok_with("access_methods", Value::Array(methods)))
    })
}

pub(crate) fn get(core: &Arc<Core>, call: &Call) -> Result<Value, ApiError> {
    let o = Obj::root(call.body);
    let mut v = Validator::new();
    let id = o.string(&mut v, "access_method_id", Str::REQUIRED_UUID);
    v.finish()?;
    let id = id.value().unwrap_or_default();
    core.read(|world| {
        let ws = workspace(world, call)?;
        let m = ws
            .methods
            .get(&id)
            .ok_or_else(|| ApiError::not_found("access_method"))?;
        Ok(ok_with("access_method", m.to_json(&ws.uuid)))
    })
}

pub(crate) fn encode(core: &Arc<Core>, call: &Call) -> Result<Value, ApiError> {
    let o = Obj::root(call.body);
    let mut v = Validator::new();
    let method_id = o.string(&mut v, "access_method_id", Str::REQUIRED_UUID);
    let encoder_id = o.string(&mut v, "acs_encoder_id", Str::REQUIRED_UUID);
    v.finish()?;
    let method_id = method_id.value().unwrap_or_default();
    let encoder_id = encoder_id.value().unwrap_or_default();
    core.change(|world| {
        let (ws, fx) = workspace_mut(world, call)?;
        let method = ws
            .methods
            .get(&method_id)
            .ok_or_else(|| ApiError::not_found("access_method"))?;
        if !ws.encoders.contains_key(&encoder_id) {
            return Err(ApiError::not_found("acs_encoder"));
        }
        if method.mode != AccessMode::Card {
            return Err(ApiError::invalid_input(
                "Only access methods with mode 'card' can be encoded.",
            ));
        }
        // Whether the card can be written (issued, not deleted) is decided
        // when the attempt ends, as on a real encoder.
        let attempt = ActionAttempt {
            id: fx.ids.mint(Kind::ActionAttempt),
            access_method_id: method_id,
            acs_encoder_id: encoder_id,
            status: AttemptStatus::Pending,
        };
        let json = attempt.to_json();
        fx.schedule(Timer::FinishEncoding {
            workspace: ws.id.clone(),
            attempt_id: attempt.id.clone(),
        });
        ws.attempts.insert(attempt.id.clone(), attempt);
        Ok(ok_with("action_attempt", json))
    })
}
