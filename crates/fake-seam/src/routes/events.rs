//! `/events/list`: the events webhooks carry, newest first (as in Seam's
//! documented example). `since` or `between` is required, as Seam
//! documents; `between` is an exclusive interval. The answer has no
//! `pagination`: `limit` (default 500) and `unstable_offset` page it.
//! Event types are not checked against Seam's full enum: an unknown one
//! simply matches nothing.

use std::sync::Arc;

use serde_json::Value;

use super::{ok_with, workspace, Call};
use crate::core::Core;
use crate::errors::ApiError;
use crate::events::Event;
use crate::validate::{Obj, Str, Validator};

/// Reads a list of ids and the single-id variant of the same filter.
fn ids(o: &Obj, v: &mut Validator, one: &str, many: &str, spec: Str) -> Option<Vec<String>> {
    let mut all = o.strings(v, many, spec);
    if let Some(id) = o.string(v, one, spec).value() {
        all.get_or_insert_with(Vec::new).push(id);
    }
    all
}

pub(crate) fn list(core: &Arc<Core>, call: &Call) -> Result<Value, ApiError> {
    let o = Obj::root(call.body);
    let mut v = Validator::new();
    let since = o.datetime(&mut v, "since", false, false).value();
    let between = match o.array(&mut v, "between", false) {
        Some(items) if items.len() == 2 => {
            let parsed: Vec<_> = items
                .iter()
                .map(|x| x.as_str().and_then(crate::time::parse))
                .collect();
            match parsed.as_slice() {
                [Some(a), Some(b)] => Some((*a, *b)),
                _ => {
                    v.issue(o.path_of("between"), "Invalid datetime");
                    None
                }
            }
        }
        Some(_) => {
            v.issue(
                o.path_of("between"),
                "Array must contain exactly 2 element(s)",
            );
            None
        }
        None => None,
    };
    if v.is_clean() && since.is_none() && between.is_none() {
        v.issue(o.path_of("since"), "You must include since or between");
    }
    let types = ids(
        &o,
        &mut v,
        "event_type",
        "event_types",
        Str::OPTIONAL.non_empty(),
    );
    let grant_ids = ids(&o, &mut v, "access_grant_id", "access_grant_ids", Str::UUID);
    let method_ids = ids(
        &o,
        &mut v,
        "access_method_id",
        "access_method_ids",
        Str::UUID,
    );
    let entrance_ids = ids(&o, &mut v, "acs_entrance_id", "acs_entrance_ids", Str::UUID);
    let system_ids = ids(
        &o,
        &mut v,
        "acs_system_id",
        "acs_system_ids",
        Str::OPTIONAL.non_empty(),
    );
    let event_ids = o.strings(&mut v, "event_ids", Str::UUID);
    for key in ["access_grant_ids", "access_method_ids"] {
        if o.map()
            .get(key)
            .and_then(Value::as_array)
            .is_some_and(|a| a.len() > 100)
        {
            v.issue(o.path_of(key), "Array must contain at most 100 element(s)");
        }
    }
    let limit = o.positive_int(&mut v, "limit").unwrap_or(500);
    let offset = match o.map().get("unstable_offset") {
        None | Some(Value::Null) => 0,
        Some(x) => match x.as_u64() {
            Some(n) => n,
            None => {
                v.issue(
                    o.path_of("unstable_offset"),
                    "Number must be a whole number of at least 0",
                );
                0
            }
        },
    };
    v.finish()?;

    let any_of = |list: &Option<Vec<String>>, e: &Event, key: &str| {
        list.as_ref()
            .is_none_or(|ids| ids.iter().any(|id| e.mentions(key, id)))
    };
    core.read(|world| {
        let ws = workspace(world, call)?;
        let events: Vec<Value> = ws
            .events
            .iter()
            .rev()
            .filter(|e| since.is_none_or(|s| e.at >= s))
            .filter(|e| between.is_none_or(|(a, b)| a < e.at && e.at < b))
            .filter(|e| {
                types
                    .as_ref()
                    .is_none_or(|t| t.iter().any(|t| t == e.event_type))
            })
            .filter(|e| any_of(&grant_ids, e, "access_grant_id"))
            .filter(|e| any_of(&method_ids, e, "access_method_id"))
            .filter(|e| any_of(&entrance_ids, e, "acs_entrance_id"))
            .filter(|e| any_of(&system_ids, e, "acs_system_id"))
            .filter(|e| event_ids.as_ref().is_none_or(|ids| ids.contains(&e.id)))
            .skip(usize::try_from(offset).unwrap_or(usize::MAX))
            .take(usize::try_from(limit).unwrap_or(usize::MAX))
            .map(Event::to_json)
            .collect();
        Ok(ok_with("events", Value::Array(events)))
    })
}
