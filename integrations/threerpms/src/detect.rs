//! Detect, don't assume: at the first connection keysmith asks 3RPMS's
//! schema (GraphQL introspection) whether each field, filter, enum value and
//! mutation that 3RPMS does not document exists, and uses it only where it
//! does; everywhere else the documented fallback of the inventory
//! (`inventory.rs`) applies.
//!
//! Type names are not guessed: introspection starts from the documented
//! `RoomStay` type and from the root fields (`reservations`,
//! `createWebhookEndpoint`) and follows their types. Two requests: the
//! roots, then the types they name.
use keysmith_core::{ErrorKind, Result};
use serde_json::{json, Value};

use crate::{
    errors::reasons,
    inventory::Assumption,
    queries,
    transport::{Operation, Transport},
};

/// What 3RPMS's schema offers beyond its documents, as far as keysmith
/// uses it. `Features::default()` is the documented-only client.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Features {
    /// `RoomStay.reservation { id }`.
    pub stay_reservation: bool,
    /// `Reservation.status` (read through `RoomStay.reservation`) and the
    /// values that mean cancelled; `None` when either is unknown.
    pub cancelled_statuses: Option<Vec<String>>,
    /// `reservations(filter: {id: {in: ...}})`.
    pub reservation_id_filter: bool,
    /// The webhook endpoint's status and how to change it.
    pub endpoint: EndpointFeatures,
    /// Whether 3RPMS answered introspection at all.
    pub introspected: bool,
}

/// What the schema says of webhook endpoints beyond
/// `createWebhookEndpoint(input: {url events})`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndpointFeatures {
    /// `CreateWebhookEndpointInput.status`'s value that enables an
    /// endpoint, when the field's enum has a recognisable one.
    pub enabled_value: Option<String>,
    /// Its value that disables one.
    pub disabled_value: Option<String>,
    /// Whether `status` must be given.
    pub status_required: bool,
    /// `updateWebhookEndpoint(input: {id status})`.
    pub update_mutation: bool,
}

impl EndpointFeatures {
    /// Created disabled, its secret stored, then enabled: the order that
    /// lets no signed delivery arrive before keysmith holds the secret.
    pub fn can_create_disabled(&self) -> bool {
        self.enabled_value.is_some() && self.disabled_value.is_some() && self.update_mutation
    }

    /// An old endpoint can be switched off through the API.
    pub fn can_retire(&self) -> bool {
        self.disabled_value.is_some() && self.update_mutation
    }
}

impl Features {
    /// Whether the stay reads say which reservation is cancelled.
    pub fn reads_cancellation(&self) -> bool {
        self.stay_reservation && self.cancelled_statuses.is_some()
    }

    /// A reservation's stays can be read by the reservation's id, with
    /// everything a stay read needs (the cancellation included).
    pub fn reads_reservations_by_id(&self) -> bool {
        self.reservation_id_filter && self.reads_cancellation()
    }

    /// Each assumption of the inventory, on or off.
    pub fn assumptions(&self) -> Vec<(Assumption, bool)> {
        vec![
            (Assumption::StayReservation, self.stay_reservation),
            (
                Assumption::ReservationStatus,
                self.cancelled_statuses.is_some(),
            ),
            (Assumption::ReservationIdFilter, self.reservation_id_filter),
            (
                Assumption::EndpointStatus,
                self.endpoint.enabled_value.is_some() || self.endpoint.disabled_value.is_some(),
            ),
            (
                Assumption::UpdateWebhookEndpoint,
                self.endpoint.update_mutation,
            ),
            (Assumption::Introspection, self.introspected),
        ]
    }

    /// The assumptions not in use, by name, for the log.
    pub fn off(&self) -> Vec<&'static str> {
        self.assumptions()
            .into_iter()
            .filter(|(_, on)| !on)
            .map(|(a, _)| a.name())
            .collect()
    }
}

/// The features detected and the stay reads built for them.
#[derive(Clone, Debug)]
pub struct Detected {
    pub features: Features,
    pub queries: queries::StayQueries,
}

impl Detected {
    pub fn new(features: Features) -> Self {
        let queries = queries::StayQueries::for_features(&features);
        Self { features, queries }
    }

    /// The statuses that mean cancelled, when stay reads carry the status.
    pub fn cancelled(&self) -> Option<&[String]> {
        if self.features.reads_cancellation() {
            self.features.cancelled_statuses.as_deref()
        } else {
            None
        }
    }
}

const TYPE_REF: &str = "fragment TypeRef on __Type { kind name enumValues { name } \
     ofType { kind name enumValues { name } ofType { kind name enumValues { name } \
     ofType { kind name enumValues { name } } } } }";

fn roots_query() -> String {
    format!(
        "query KeysmithSchemaRoots {{ __schema {{ \
         queryType {{ fields {{ name args {{ name type {{ ...TypeRef }} }} }} }} \
         mutationType {{ fields {{ name args {{ name type {{ ...TypeRef }} }} }} }} }} \
         roomStay: __type(name: \"RoomStay\") {{ fields {{ name type {{ ...TypeRef }} }} }} }} \
         {TYPE_REF}"
    )
}

fn types_query() -> String {
    format!(
        "query KeysmithSchemaTypes($reservation: String! $reservationFilter: String! \
         $endpointInput: String! $updateInput: String!) {{ \
         reservation: __type(name: $reservation) {{ fields {{ name type {{ ...TypeRef }} }} }} \
         reservationFilter: __type(name: $reservationFilter) {{ inputFields {{ name }} }} \
         endpointInput: __type(name: $endpointInput) {{ inputFields {{ name type {{ ...TypeRef }} }} }} \
         updateInput: __type(name: $updateInput) {{ inputFields {{ name type {{ ...TypeRef }} }} }} }} \
         {TYPE_REF}"
    )
}

/// A type reference with its wrappers taken off: the named type, whether
/// it must be given (NON_NULL outside), and its enum values.
struct Named {
    name: String,
    required: bool,
    enum_values: Vec<String>,
}

fn named(type_ref: &Value) -> Option<Named> {
    let required = type_ref["kind"] == "NON_NULL";
    let mut t = type_ref;
    while t["kind"] == "NON_NULL" || t["kind"] == "LIST" {
        t = &t["ofType"];
    }
    Some(Named {
        name: t["name"].as_str()?.to_owned(),
        required,
        enum_values: t["enumValues"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v["name"].as_str().map(str::to_owned))
            .collect(),
    })
}

/// `{ fields | inputFields: [{ name type }] }` -> the entry named `name`.
fn member<'a>(ty: &'a Value, list: &str, name: &str) -> Option<&'a Value> {
    ty[list]
        .as_array()?
        .iter()
        .find(|f| f["name"].as_str() == Some(name))
}

fn arg_type(root: &Value, field: &str, arg: &str) -> Option<Named> {
    let field = member(root, "fields", field)?;
    let arg = field["args"]
        .as_array()?
        .iter()
        .find(|a| a["name"].as_str() == Some(arg))?;
    named(&arg["type"])
}

/// The first of `names` among `values`, ignoring case. Only a GraphQL
/// name is taken: it is written into a document as it is.
fn pick(values: &[String], names: &[&str]) -> Option<String> {
    names.iter().find_map(|wanted| {
        values
            .iter()
            .find(|v| v.eq_ignore_ascii_case(wanted) && queries::is_graphql_name(v))
            .cloned()
    })
}

/// Whether an error says 3RPMS cannot be asked right now (it blocks, does
/// not answer, refuses the key), rather than that it refuses introspection.
fn try_later(error: &keysmith_core::Error) -> bool {
    matches!(
        error.kind(),
        ErrorKind::Unavailable | ErrorKind::Unauthenticated | ErrorKind::PermissionDenied
    ) && error.reason() != reasons::UPSTREAM_BAD_ANSWER
}

/// Asks the schema. `Err` only when 3RPMS could not be asked (try again
/// later); refused or unreadable introspection gives the documented-only
/// features. `cancelled` is the hotel's configured cancellation values.
pub async fn detect(transport: &Transport, cancelled: Option<&[String]>) -> Result<Features> {
    let roots = match transport
        .send(&[Operation::query(roots_query(), json!({}))])
        .await
    {
        Ok(mut answers) => answers.pop().unwrap_or(Value::Null),
        Err(e) if try_later(&e) => return Err(e),
        Err(_) => return Ok(Features::default()),
    };
    if roots["__schema"].is_null() {
        return Ok(Features::default());
    }
    let schema = &roots["__schema"];
    let room_stay = &roots["roomStay"];
    let reservation_type =
        member(room_stay, "fields", "reservation").and_then(|f| named(&f["type"]));
    let filter_type = arg_type(&schema["queryType"], "reservations", "filter");
    let endpoint_input = arg_type(&schema["mutationType"], "createWebhookEndpoint", "input");
    let update_input = arg_type(&schema["mutationType"], "updateWebhookEndpoint", "input");
    let name_of = |n: &Option<Named>| n.as_ref().map(|n| n.name.clone()).unwrap_or_default();
    let types = match transport
        .send(&[Operation::query(
            types_query(),
            json!({
                "reservation": name_of(&reservation_type),
                "reservationFilter": name_of(&filter_type),
                "endpointInput": name_of(&endpoint_input),
                "updateInput": name_of(&update_input),
            }),
        )])
        .await
    {
        Ok(mut answers) => answers.pop().unwrap_or(Value::Null),
        Err(e) if try_later(&e) => return Err(e),
        Err(_) => return Ok(Features::default()),
    };

    let mut features = Features {
        introspected: true,
        stay_reservation: reservation_type.is_some(),
        ..Features::default()
    };
    if features.stay_reservation {
        let status =
            member(&types["reservation"], "fields", "status").and_then(|f| named(&f["type"]));
        if let Some(status) = status {
            features.cancelled_statuses = match cancelled {
                Some(configured) if !configured.is_empty() => Some(configured.to_vec()),
                _ => {
                    let found: Vec<String> = status
                        .enum_values
                        .into_iter()
                        .filter(|v| v.to_ascii_uppercase().contains("CANCEL"))
                        .collect();
                    (!found.is_empty()).then_some(found)
                }
            };
        }
    }
    features.reservation_id_filter =
        member(&types["reservationFilter"], "inputFields", "id").is_some();
    if let Some(status) =
        member(&types["endpointInput"], "inputFields", "status").and_then(|f| named(&f["type"]))
    {
        features.endpoint.enabled_value = pick(&status.enum_values, &["ENABLED", "ACTIVE"]);
        features.endpoint.disabled_value = pick(&status.enum_values, &["DISABLED", "INACTIVE"]);
        features.endpoint.status_required = status.required;
    }
    features.endpoint.update_mutation = member(&types["updateInput"], "inputFields", "id")
        .is_some()
        && member(&types["updateInput"], "inputFields", "status").is_some();
    Ok(features)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_picked_whatever_its_case_in_the_order_asked() {
        let values = vec!["Active".to_owned(), "ENABLED".to_owned()];
        assert_eq!(
            pick(&values, &["ENABLED", "ACTIVE"]).as_deref(),
            Some("ENABLED")
        );
        assert_eq!(pick(&values, &["DISABLED"]), None);
    }

    #[test]
    fn the_documented_only_client_uses_no_assumption() {
        let none = Features::default();
        assert!(!none.reads_cancellation() && !none.reads_reservations_by_id());
        assert!(!none.endpoint.can_create_disabled() && !none.endpoint.can_retire());
        assert_eq!(none.off().len(), none.assumptions().len());
    }
}
