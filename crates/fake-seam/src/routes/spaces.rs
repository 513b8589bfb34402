//! `/spaces/list`: the spaces of the workspace (the fake has one per
//! `space_key` its seeded entrances name), filtered by `space_key` or a
//! `search` of the name. Not paginated: Seam's answer has no `pagination`.

use std::sync::Arc;

use serde_json::Value;

use super::{ok_with, workspace, Call};
use crate::core::Core;
use crate::errors::ApiError;
use crate::validate::{Obj, Str, Validator};

pub(crate) fn list(core: &Arc<Core>, call: &Call) -> Result<Value, ApiError> {
    let o = Obj::root(call.body);
    let mut v = Validator::new();
    let space_key = o.string(&mut v, "space_key", Str::OPTIONAL).value();
    let search = o
        .string(&mut v, "search", Str::OPTIONAL.non_empty())
        .value()
        .map(|s| s.to_lowercase());
    o.string(&mut v, "connected_account_id", Str::UUID);
    o.string(&mut v, "customer_key", Str::OPTIONAL);
    v.finish()?;
    core.read(|world| {
        let ws = workspace(world, call)?;
        let spaces: Vec<Value> = ws
            .spaces
            .values()
            .filter(|s| space_key.as_ref().is_none_or(|k| &s.key == k))
            .filter(|s| {
                search
                    .as_ref()
                    .is_none_or(|q| s.key.to_lowercase().contains(q))
            })
            .map(|s| {
                let entrances = ws
                    .entrances
                    .values()
                    .filter(|e| e.space_ids.contains(&s.id))
                    .count();
                s.to_json(&ws.uuid, entrances)
            })
            .collect();
        Ok(ok_with("spaces", Value::Array(spaces)))
    })
}
