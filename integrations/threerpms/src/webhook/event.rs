//! A 3RPMS webhook event: which object changed, and maybe which fields.
//!
//! The event names an object and nothing more of it; the worker reads the
//! object's current state from 3RPMS, which is also what makes unordered
//! delivery harmless. Unknown fields and unknown event types are accepted,
//! so that 3RPMS adding either never turns deliveries into failures that it
//! retries for days and then disables the endpoint over.
use keysmith_core::{reasons, Error, Result};
use serde::{Deserialize, Serialize};

/// The longest event id kept. 3RPMS sends 64 ASCII characters; the bound
/// keeps a dedup key small whatever arrives.
pub const MAX_EVENT_ID_LEN: usize = 128;

/// One delivery's content, as kept in the inbox. The field names here are
/// the storage format, independent of the wire format.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookEvent {
    /// Unique per event, repeated on every retry: the dedup key.
    pub id: String,
    /// The JSON `type`, e.g. `room_stay.updated`; any value is kept.
    pub kind: String,
    /// Unix seconds at which 3RPMS created the event (not the delivery).
    pub created_at: i64,
    pub endpoint_id: String,
    /// The id of the room stay, reservation or key the event is about.
    pub object_id: String,
    /// None when 3RPMS did not say: any field may have changed.
    pub updated_fields: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct Wire {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    created_at: i64,
    webhook_endpoint_id: String,
    data: WireData,
}

#[derive(Deserialize)]
struct WireData {
    object: WireObject,
    #[serde(default)]
    updated_fields: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct WireObject {
    id: String,
}

impl WebhookEvent {
    /// Parses the body of a delivery. Errors are InvalidArgument: resending
    /// the same body cannot succeed.
    pub fn parse(body: &[u8]) -> Result<Self> {
        let wire: Wire = serde_json::from_slice(body).map_err(|e| {
            Error::invalid_field(
                reasons::FIELD_INVALID,
                "body",
                format!("not a 3RPMS webhook event: {e}"),
            )
        })?;
        let event = Self {
            id: wire.id,
            kind: wire.kind,
            created_at: wire.created_at,
            endpoint_id: wire.webhook_endpoint_id,
            object_id: wire.data.object.id,
            updated_fields: wire.data.updated_fields,
        };
        event.validate()?;
        Ok(event)
    }

    /// The id becomes part of a store key, so it must be present and bounded.
    pub fn validate(&self) -> Result<()> {
        if self.id.is_empty() {
            return Err(Error::invalid_field(
                reasons::FIELD_REQUIRED,
                "id",
                "is required",
            ));
        }
        if self.id.len() > MAX_EVENT_ID_LEN {
            return Err(Error::invalid_field(
                reasons::FIELD_TOO_LONG,
                "id",
                format!("must be at most {MAX_EVENT_ID_LEN} bytes"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use keysmith_core::ErrorKind;
    use serde_json::json;

    use super::*;

    fn body(value: serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&value).unwrap()
    }

    fn example() -> serde_json::Value {
        json!({
            "id": "evt_0123456789abcdef",
            "type": "room_stay.updated",
            "created_at": 1_767_225_600,
            "webhook_endpoint_id": "we_1",
            "data": {
                "object": {"id": "rs_42"},
                "updated_fields": ["reservation_from", "room_setup"]
            }
        })
    }

    #[test]
    fn a_documented_event_parses() {
        let event = WebhookEvent::parse(&body(example())).unwrap();
        assert_eq!(
            event,
            WebhookEvent {
                id: "evt_0123456789abcdef".into(),
                kind: "room_stay.updated".into(),
                created_at: 1_767_225_600,
                endpoint_id: "we_1".into(),
                object_id: "rs_42".into(),
                updated_fields: Some(vec!["reservation_from".into(), "room_setup".into()]),
            }
        );
    }

    #[test]
    fn absent_or_null_updated_fields_mean_anything_changed() {
        let mut value = example();
        value["data"]["updated_fields"] = serde_json::Value::Null;
        assert_eq!(
            WebhookEvent::parse(&body(value.clone()))
                .unwrap()
                .updated_fields,
            None
        );
        value["data"]
            .as_object_mut()
            .unwrap()
            .remove("updated_fields");
        assert_eq!(
            WebhookEvent::parse(&body(value)).unwrap().updated_fields,
            None
        );
    }

    #[test]
    fn unknown_fields_and_types_are_accepted() {
        let mut value = example();
        value["type"] = json!("invoice.paid");
        value["livemode"] = json!(true);
        value["data"]["previous"] = json!({"x": 1});
        value["data"]["object"]["name"] = json!("Suite");
        let event = WebhookEvent::parse(&body(value)).unwrap();
        assert_eq!(event.kind, "invoice.paid");
    }

    #[test]
    fn event_ids_must_be_present_and_bounded() {
        for id in [String::new(), "x".repeat(MAX_EVENT_ID_LEN + 1)] {
            let mut value = example();
            value["id"] = json!(id);
            let err = WebhookEvent::parse(&body(value)).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidArgument);
            assert_eq!(err.violations()[0].field, "id");
        }
        let mut value = example();
        value["id"] = json!("x".repeat(MAX_EVENT_ID_LEN));
        assert!(WebhookEvent::parse(&body(value)).is_ok());
    }

    #[test]
    fn bodies_that_are_not_events_are_invalid_arguments() {
        let mut missing_object = example();
        missing_object["data"]
            .as_object_mut()
            .unwrap()
            .remove("object");
        let mut numeric_id = example();
        numeric_id["id"] = json!(7);
        for bad in [
            b"".to_vec(),
            b"not json".to_vec(),
            b"[]".to_vec(),
            b"{\"id\":".to_vec(),
            body(missing_object),
            body(numeric_id),
        ] {
            let err = WebhookEvent::parse(&bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        }
    }

    #[test]
    fn the_storage_form_round_trips() {
        let event = WebhookEvent::parse(&body(example())).unwrap();
        let stored = serde_json::to_vec(&event).unwrap();
        assert_eq!(
            serde_json::from_slice::<WebhookEvent>(&stored).unwrap(),
            event
        );
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        /// JSON-shaped bytes: events with any member values, and noise.
        fn body() -> impl Strategy<Value = Vec<u8>> {
            let event = (
                ".{0,140}",
                ".{0,20}",
                any::<i64>(),
                ".{0,8}",
                ".{0,8}",
                proptest::option::of(prop::collection::vec(".{0,8}", 0..3)),
            )
                .prop_map(|(id, kind, created_at, endpoint, object, fields)| {
                    serde_json::to_vec(&serde_json::json!({
                        "id": id, "type": kind, "created_at": created_at,
                        "webhook_endpoint_id": endpoint,
                        "data": {"object": {"id": object}, "updated_fields": fields},
                    }))
                    .unwrap()
                });
            prop_oneof![event, prop::collection::vec(any::<u8>(), 0..128)]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// Any body parses into a bounded event or is an INVALID_ARGUMENT
            /// refusal, never a panic; what parses survives its storage form.
            #[test]
            fn any_body_parses_or_is_refused(bytes in body()) {
                match WebhookEvent::parse(&bytes) {
                    Ok(event) => {
                        prop_assert!(!event.id.is_empty() && event.id.len() <= MAX_EVENT_ID_LEN);
                        let stored = serde_json::to_vec(&event).unwrap();
                        prop_assert_eq!(serde_json::from_slice::<WebhookEvent>(&stored).unwrap(), event);
                    }
                    Err(err) => prop_assert_eq!(err.kind(), ErrorKind::InvalidArgument),
                }
            }
        }
    }
}
