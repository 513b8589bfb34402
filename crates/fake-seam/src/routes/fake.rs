//! Test-only control routes under `/_fake/`, as in Seam's own fake: the
//! Rust control API over HTTP, for demos and for clients in other
//! languages. No authentication, no faults, not counted. Bodies are JSON;
//! answers are `{..., "ok": true}` or the usual error envelope.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map, Value};

use super::{ok, ok_with};
use crate::control;
use crate::core::Core;
use crate::errors::ApiError;
use crate::faults::{Fault, UNTIL_CLEARED};
use crate::model::EntranceSeed;
use crate::validate::{Obj, Str, Validator};
use crate::webhooks::DeliveryOutcome;

pub(crate) type ControlHandler = fn(&Arc<Core>, &Map<String, Value>) -> Result<Value, ApiError>;

pub(crate) const ROUTES: &[(&str, ControlHandler)] = &[
    ("/_fake/add_workspace", add_workspace),
    ("/_fake/add_acs_system", add_acs_system),
    ("/_fake/add_entrance", add_entrance),
    ("/_fake/remove_entrance", remove_entrance),
    ("/_fake/add_encoder", add_encoder),
    ("/_fake/add_webhook", add_webhook),
    ("/_fake/issue_pending", issue_pending),
    ("/_fake/finish_deletions", finish_deletions),
    ("/_fake/finish_encodings", finish_encodings),
    ("/_fake/fail_next", fail_next),
    ("/_fake/clear_faults", clear_faults),
    ("/_fake/counts", counts),
    ("/_fake/reset_counts", reset_counts),
    ("/_fake/deliveries", deliveries),
    ("/_fake/contract_violations", contract_violations),
];

pub(crate) fn lookup(route: &str) -> Option<ControlHandler> {
    ROUTES.iter().find(|(r, _)| *r == route).map(|(_, h)| *h)
}

/// Required non-empty strings of a control body, in order.
fn required<const N: usize>(
    body: &Map<String, Value>,
    keys: [&str; N],
) -> Result<[String; N], ApiError> {
    let o = Obj::root(body);
    let mut v = Validator::new();
    let values = keys.map(|k| {
        o.string(&mut v, k, Str::REQUIRED.non_empty())
            .value()
            .unwrap_or_default()
    });
    v.finish()?;
    Ok(values)
}

fn add_workspace(core: &Arc<Core>, body: &Map<String, Value>) -> Result<Value, ApiError> {
    let [ws, key] = required(body, ["workspace_id", "api_key"])?;
    // The name given is the workspace's handle here; clients see the UUID.
    let uuid = control::add_workspace(core, &ws, &key)?;
    Ok(ok_with("workspace_id", json!(uuid)))
}

fn add_acs_system(core: &Arc<Core>, body: &Map<String, Value>) -> Result<Value, ApiError> {
    let [ws, id, name] = required(body, ["workspace_id", "acs_system_id", "name"])?;
    let mut v = Validator::new();
    let requires = Obj::root(body).boolean(&mut v, "requires_reservation_for_guest_cards");
    v.finish()?;
    let uuid = control::add_acs_system(core, &ws, &id, &name, requires.unwrap_or(false))?;
    Ok(ok_with("acs_system_id", json!(uuid)))
}

fn add_entrance(core: &Arc<Core>, body: &Map<String, Value>) -> Result<Value, ApiError> {
    let [ws, system, display_name] =
        required(body, ["workspace_id", "acs_system_id", "display_name"])?;
    let o = Obj::root(body);
    let mut v = Validator::new();
    let space_key = o
        .string(&mut v, "space_key", Str::NULLABLE.non_empty())
        .value();
    let mut flag = |k: &str| o.boolean(&mut v, k).unwrap_or(false);
    let seed = EntranceSeed {
        display_name,
        space_key,
        can_belong_to_reservation: flag("can_belong_to_reservation"),
        can_unlock_with_card: flag("can_unlock_with_card"),
        can_unlock_with_code: flag("can_unlock_with_code"),
        can_unlock_with_mobile_key: flag("can_unlock_with_mobile_key"),
    };
    v.finish()?;
    let id = control::add_entrance(core, &ws, &system, seed)?;
    Ok(ok_with("acs_entrance_id", json!(id)))
}

fn remove_entrance(core: &Arc<Core>, body: &Map<String, Value>) -> Result<Value, ApiError> {
    let [ws, id] = required(body, ["workspace_id", "acs_entrance_id"])?;
    control::remove_entrance(core, &ws, &id)?;
    Ok(ok())
}

fn add_encoder(core: &Arc<Core>, body: &Map<String, Value>) -> Result<Value, ApiError> {
    let [ws, system, name] = required(body, ["workspace_id", "acs_system_id", "display_name"])?;
    let id = control::add_encoder(core, &ws, &system, &name)?;
    Ok(ok_with("acs_encoder_id", json!(id)))
}

fn add_webhook(core: &Arc<Core>, body: &Map<String, Value>) -> Result<Value, ApiError> {
    let [ws, url] = required(body, ["workspace_id", "url"])?;
    let secret = control::add_webhook(core, &ws, &url)?;
    Ok(ok_with("secret", json!(secret)))
}

fn issue_pending(core: &Arc<Core>, _: &Map<String, Value>) -> Result<Value, ApiError> {
    control::issue_pending(core);
    Ok(ok())
}

fn finish_deletions(core: &Arc<Core>, _: &Map<String, Value>) -> Result<Value, ApiError> {
    control::finish_deletions(core);
    Ok(ok())
}

fn finish_encodings(core: &Arc<Core>, _: &Map<String, Value>) -> Result<Value, ApiError> {
    control::finish_encodings(core);
    Ok(ok())
}

/// `{"fault": {"type": "outage_503" | "too_many_requests" (retry_after_s)
/// | "too_many_requests_until" (retry_after_s, sent as an HTTP date), and
/// optionally "only_route" (the fault hits requests to that route only)
/// | "slow" (delay_ms) | "drop_response_after_commit" (route)
/// | "hang_after_commit" (route)}, "count": N}`; no count: until cleared.
fn fail_next(core: &Arc<Core>, body: &Map<String, Value>) -> Result<Value, ApiError> {
    let o = Obj::root(body);
    let mut v = Validator::new();
    let count = o.positive_int(&mut v, "count");
    let fault = o.object(&mut v, "fault", true).and_then(|f| {
        let kind = f.one_of(
            &mut v,
            "type",
            &[
                "outage_503",
                "too_many_requests",
                "too_many_requests_until",
                "slow",
                "drop_response_after_commit",
                "hang_after_commit",
            ],
            true,
        )?;
        let number = |v: &mut Validator, key: &str| {
            let n = f.map().get(key).and_then(Value::as_u64);
            if n.is_none() {
                v.issue(f.path_of(key), "Required: a whole number");
            }
            n
        };
        let only = f
            .string(&mut v, "only_route", Str::OPTIONAL.non_empty())
            .value();
        let fault = match kind.as_str() {
            "outage_503" => Some(Fault::Outage503),
            "too_many_requests" => Some(Fault::TooManyRequests {
                retry_after_s: number(&mut v, "retry_after_s")?,
            }),
            "too_many_requests_until" => Some(Fault::TooManyRequestsUntil {
                retry_after: Duration::from_secs(number(&mut v, "retry_after_s")?),
            }),
            "slow" => Some(Fault::Slow(Duration::from_millis(number(
                &mut v, "delay_ms",
            )?))),
            other => {
                let route = f
                    .string(&mut v, "route", Str::REQUIRED.non_empty())
                    .value()?;
                Some(if other == "hang_after_commit" {
                    Fault::HangAfterCommit { route }
                } else {
                    Fault::DropResponseAfterCommit { route }
                })
            }
        };
        match only {
            Some(route) => fault.map(|f| f.on(&route)),
            None => fault,
        }
    });
    v.finish()?;
    let fault = fault.ok_or_else(|| ApiError::invalid_input("fault is required"))?;
    let count = count.map_or(UNTIL_CLEARED, |c| u32::try_from(c).unwrap_or(UNTIL_CLEARED));
    core.faults.arm(fault, count);
    Ok(ok())
}

fn clear_faults(core: &Arc<Core>, _: &Map<String, Value>) -> Result<Value, ApiError> {
    core.faults.clear();
    Ok(ok())
}

fn counts(core: &Arc<Core>, _: &Map<String, Value>) -> Result<Value, ApiError> {
    let counts = serde_json::to_value(core.counts.snapshot())
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(ok_with("counts", counts))
}

fn reset_counts(core: &Arc<Core>, _: &Map<String, Value>) -> Result<Value, ApiError> {
    core.counts.reset();
    Ok(ok())
}

fn deliveries(core: &Arc<Core>, _: &Map<String, Value>) -> Result<Value, ApiError> {
    let list: Vec<Value> = core
        .webhooks
        .attempts()
        .into_iter()
        .map(|d| {
            let (outcome, status, error) = match d.outcome {
                DeliveryOutcome::Delivered { status } => ("delivered", Some(status), None),
                DeliveryOutcome::Rejected { status } => ("rejected", Some(status), None),
                DeliveryOutcome::Failed { error } => ("failed", None, Some(error)),
            };
            json!({
                "event_id": d.event_id,
                "event_type": d.event_type,
                "svix_id": d.svix_id,
                "url": d.url,
                "attempt": d.attempt,
                "outcome": outcome,
                "status": status,
                "error": error,
            })
        })
        .collect();
    Ok(ok_with("deliveries", Value::Array(list)))
}

fn contract_violations(core: &Arc<Core>, _: &Map<String, Value>) -> Result<Value, ApiError> {
    Ok(ok_with("contract_violations", json!(core.violations())))
}
