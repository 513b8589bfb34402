//! `/acs/entrances/list`: filters `acs_entrance_ids`, `space_id`,
//! `acs_system_id`, `connected_account_id`, `search`; default limit 900.
//! Other documented filters (`acs_credential_id`, `location_id`,
//! `customer_key`) are validated and ignored: the fake has no credentials,
//! locations or customers.

use std::sync::Arc;

use serde_json::Value;

use super::{ok_page, workspace, Call};
use crate::core::Core;
use crate::errors::ApiError;
use crate::pagination::{self, ENTRANCES_DEFAULT_LIMIT};
use crate::validate::{Obj, Str, Validator};

pub(crate) fn list(core: &Arc<Core>, call: &Call) -> Result<Value, ApiError> {
    let o = Obj::root(call.body);
    let mut v = Validator::new();
    let ids = o.strings(&mut v, "acs_entrance_ids", Str::UUID);
    // Space and system ids are chosen by whoever seeds the fake, so any
    // non-empty string is accepted where Seam would require a UUID.
    let space_id = o
        .string(&mut v, "space_id", Str::OPTIONAL.non_empty())
        .value();
    let system_id = o
        .string(&mut v, "acs_system_id", Str::OPTIONAL.non_empty())
        .value();
    let account_id = o.string(&mut v, "connected_account_id", Str::UUID).value();
    let search = o
        .string(&mut v, "search", Str::OPTIONAL.non_empty())
        .value()
        .map(|s| s.to_lowercase());
    o.string(&mut v, "acs_credential_id", Str::UUID);
    o.string(
        &mut v,
        "location_id",
        Str {
            nullable: true,
            ..Str::UUID
        },
    );
    o.string(&mut v, "customer_key", Str::OPTIONAL);
    let page = pagination::read(&o, &mut v, call.route, ENTRANCES_DEFAULT_LIMIT);
    v.finish()?;

    core.read(|world| {
        let ws = workspace(world, call)?;
        let items = ws
            .entrances
            .values()
            .filter(|e| ids.as_ref().is_none_or(|ids| ids.contains(&e.id)))
            .filter(|e| space_id.as_ref().is_none_or(|s| e.space_ids.contains(s)))
            .filter(|e| system_id.as_ref().is_none_or(|s| &e.acs_system_id == s))
            .filter(|e| {
                account_id.as_ref().is_none_or(|a| {
                    ws.systems
                        .get(&e.acs_system_id)
                        .is_some_and(|s| &s.connected_account_id == a)
                })
            })
            .filter(|e| {
                search
                    .as_ref()
                    .is_none_or(|s| e.display_name.to_lowercase().contains(s))
            })
            .map(|e| (e.id.as_str(), ws.entrance_json(e)));
        Ok(ok_page(call, core, "acs_entrances", page.page(items)))
    })
}
