//! `/acs/encoders/list|get` and the sandbox's
//! `/acs/encoders/simulate/next_credential_encode_will_fail|succeed`, which
//! decide how the next `/access_methods/encode` on an encoder ends.

use std::sync::Arc;

use serde_json::Value;

use super::{ok, ok_page, ok_with, workspace, workspace_mut, Call};
use crate::core::Core;
use crate::errors::ApiError;
use crate::model::SimulatedEncode;
use crate::pagination::{self, DEFAULT_LIMIT};
use crate::validate::{Obj, Str, Validator};

pub(crate) fn list(core: &Arc<Core>, call: &Call) -> Result<Value, ApiError> {
    let o = Obj::root(call.body);
    let mut v = Validator::new();
    let system_id = o
        .string(&mut v, "acs_system_id", Str::OPTIONAL.non_empty())
        .value();
    let system_ids = o.strings(&mut v, "acs_system_ids", Str::OPTIONAL.non_empty());
    let ids = o.strings(&mut v, "acs_encoder_ids", Str::UUID);
    // Seam requires one of the three selectors.
    if v.is_clean() && system_id.is_none() && system_ids.is_none() && ids.is_none() {
        v.issue(
            Vec::new(),
            "One of acs_system_id, acs_system_ids or acs_encoder_ids is required",
        );
    }
    let page = pagination::read(&o, &mut v, call.route, DEFAULT_LIMIT);
    v.finish()?;

    core.read(|world| {
        let ws = workspace(world, call)?;
        let items = ws
            .encoders
            .values()
            .filter(|e| system_id.as_ref().is_none_or(|s| &e.acs_system_id == s))
            .filter(|e| {
                system_ids
                    .as_ref()
                    .is_none_or(|s| s.contains(&e.acs_system_id))
            })
            .filter(|e| ids.as_ref().is_none_or(|ids| ids.contains(&e.id)))
            .map(|e| {
                (
                    e.id.as_str(),
                    e.to_json(&ws.uuid, ws.systems.get(&e.acs_system_id)),
                )
            });
        Ok(ok_page(call, core, "acs_encoders", page.page(items)))
    })
}

pub(crate) fn get(core: &Arc<Core>, call: &Call) -> Result<Value, ApiError> {
    let o = Obj::root(call.body);
    let mut v = Validator::new();
    let id = o.string(&mut v, "acs_encoder_id", Str::REQUIRED_UUID);
    v.finish()?;
    let id = id.value().unwrap_or_default();
    core.read(|world| {
        let ws = workspace(world, call)?;
        let e = ws
            .encoders
            .get(&id)
            .ok_or_else(|| ApiError::not_found("acs_encoder"))?;
        Ok(ok_with(
            "acs_encoder",
            e.to_json(&ws.uuid, ws.systems.get(&e.acs_system_id)),
        ))
    })
}

pub(crate) fn simulate_fail(core: &Arc<Core>, call: &Call) -> Result<Value, ApiError> {
    let o = Obj::root(call.body);
    let mut v = Validator::new();
    let id = o.string(&mut v, "acs_encoder_id", Str::REQUIRED_UUID);
    let error_code = o.one_of(
        &mut v,
        "error_code",
        &[
            "no_credential_on_encoder",
            "uncategorized_error",
            "action_attempt_expired",
        ],
        false,
    );
    o.string(&mut v, "acs_credential_id", Str::UUID);
    v.finish()?;
    let error_type = error_code.unwrap_or_else(|| "no_credential_on_encoder".into());
    simulate(core, call, id.value(), SimulatedEncode::Fail { error_type })
}

pub(crate) fn simulate_succeed(core: &Arc<Core>, call: &Call) -> Result<Value, ApiError> {
    let o = Obj::root(call.body);
    let mut v = Validator::new();
    let id = o.string(&mut v, "acs_encoder_id", Str::REQUIRED_UUID);
    o.one_of(&mut v, "scenario", &["credential_is_issued"], false);
    v.finish()?;
    simulate(core, call, id.value(), SimulatedEncode::Succeed)
}

fn simulate(
    core: &Arc<Core>,
    call: &Call,
    id: Option<String>,
    next: SimulatedEncode,
) -> Result<Value, ApiError> {
    let id = id.unwrap_or_default();
    core.change(|world| {
        let (ws, _) = workspace_mut(world, call)?;
        let encoder = ws
            .encoders
            .get_mut(&id)
            .ok_or_else(|| ApiError::not_found("acs_encoder"))?;
        encoder.next.push_back(next);
        Ok(ok())
    })
}
