//! Events: every change appends one to its workspace's log (read back by
//! `/events/list`) and hands it to the webhook dispatcher. The JSON is the
//! bare event object of Seam's `event` schema: `event_id`, `event_type`,
//! `workspace_id`, `created_at`, `occurred_at` and the type's own ids
//! (`access_grant_id`; `access_method_id` with `access_grant_ids` and
//! `access_grant_keys`; `acs_entrance_id` ...).

use jiff::Timestamp;
use serde_json::{Map, Value};

use crate::time::render;

pub const ACCESS_GRANT_CREATED: &str = "access_grant.created";
pub const ACCESS_GRANT_DELETED: &str = "access_grant.deleted";
pub const ACCESS_GRANT_ACCESS_GRANTED_TO_ALL_DOORS: &str =
    "access_grant.access_granted_to_all_doors";
pub const ACCESS_GRANT_ACCESS_GRANTED_TO_DOOR: &str = "access_grant.access_granted_to_door";
pub const ACCESS_GRANT_ACCESS_TO_DOOR_LOST: &str = "access_grant.access_to_door_lost";
pub const ACCESS_GRANT_ACCESS_TIMES_CHANGED: &str = "access_grant.access_times_changed";
pub const ACCESS_GRANT_COULD_NOT_CREATE_REQUESTED_ACCESS_METHODS: &str =
    "access_grant.could_not_create_requested_access_methods";
pub const ACCESS_METHOD_ISSUED: &str = "access_method.issued";
pub const ACCESS_METHOD_REISSUED: &str = "access_method.reissued";
pub const ACCESS_METHOD_REVOKED: &str = "access_method.revoked";
pub const ACCESS_METHOD_DELETED: &str = "access_method.deleted";
pub const ACCESS_METHOD_CARD_ENCODING_REQUIRED: &str = "access_method.card_encoding_required";
pub const ACS_ENTRANCE_ADDED: &str = "acs_entrance.added";
pub const ACS_ENTRANCE_REMOVED: &str = "acs_entrance.removed";

/// Every event type the fake emits: each is in the `event` schema of
/// Seam's definition (`contract.rs` checks every event it sends).
pub const EVENT_TYPES: &[&str] = &[
    ACCESS_GRANT_CREATED,
    ACCESS_GRANT_DELETED,
    ACCESS_GRANT_ACCESS_GRANTED_TO_ALL_DOORS,
    ACCESS_GRANT_ACCESS_GRANTED_TO_DOOR,
    ACCESS_GRANT_ACCESS_TO_DOOR_LOST,
    ACCESS_GRANT_ACCESS_TIMES_CHANGED,
    ACCESS_GRANT_COULD_NOT_CREATE_REQUESTED_ACCESS_METHODS,
    ACCESS_METHOD_ISSUED,
    ACCESS_METHOD_REISSUED,
    ACCESS_METHOD_REVOKED,
    ACCESS_METHOD_DELETED,
    ACCESS_METHOD_CARD_ENCODING_REQUIRED,
    ACS_ENTRANCE_ADDED,
    ACS_ENTRANCE_REMOVED,
];

#[derive(Clone, Debug)]
pub(crate) struct Event {
    pub id: String,
    /// The workspace's handle, for delivery to its endpoints.
    pub workspace: String,
    /// Its `workspace_id`, as the event shows it.
    pub workspace_id: String,
    pub event_type: &'static str,
    pub at: Timestamp,
    /// The type's own members (ids, times, code).
    pub fields: Map<String, Value>,
}

impl Event {
    pub fn to_json(&self) -> Value {
        let mut m = self.fields.clone();
        m.insert("event_id".into(), Value::String(self.id.clone()));
        m.insert("event_type".into(), Value::String(self.event_type.into()));
        m.insert(
            "workspace_id".into(),
            Value::String(self.workspace_id.clone()),
        );
        // The fake notices a change when it happens: both times are equal.
        m.insert("created_at".into(), Value::String(render(self.at)));
        m.insert("occurred_at".into(), Value::String(render(self.at)));
        Value::Object(m)
    }

    /// Whether the event is about `id` through `key` (`access_grant_id`) or
    /// its plural list (`access_grant_ids`).
    pub fn mentions(&self, key: &str, id: &str) -> bool {
        if self.fields.get(key).and_then(Value::as_str) == Some(id) {
            return true;
        }
        self.fields
            .get(&format!("{key}s"))
            .and_then(Value::as_array)
            .is_some_and(|ids| ids.iter().any(|x| x.as_str() == Some(id)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_the_bare_event_and_finds_ids_in_plural_lists() {
        let fields = json!({"access_method_id": "m1", "access_grant_ids": ["g1"]});
        let e = Event {
            id: "e1".into(),
            workspace: "ws".into(),
            workspace_id: "00000011-0000-4000-8000-000000000001".into(),
            event_type: ACCESS_METHOD_ISSUED,
            at: Timestamp::UNIX_EPOCH,
            fields: fields.as_object().unwrap().clone(),
        };
        let j = e.to_json();
        assert_eq!(j["event_type"], "access_method.issued");
        assert_eq!(j["created_at"], "1970-01-01T00:00:00.000Z");
        assert!(e.mentions("access_grant_id", "g1"));
        assert!(e.mentions("access_method_id", "m1"));
        assert!(!e.mentions("access_grant_id", "g2"));
    }
}
