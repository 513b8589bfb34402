//! The GraphQL documents keysmith sends to 3RPMS, the guide's own where it
//! gives one. Those that may use an assumed field (`inventory.rs`) are
//! built for the features detected (`detect.rs`).
use crate::detect::Features;

/// The fields keysmith keeps of a room stay: the guide's `RoomStaySubset`,
/// and the stay's reservation where 3RPMS's schema has it.
fn stay_fields(features: &Features) -> String {
    let mut fields = String::from(
        "id room_setup { id } arrival: reservation_from departure: reservation_to roomAccessKey { id }",
    );
    if features.reads_cancellation() {
        fields.push_str(" reservation { id status }");
    } else if features.stay_reservation {
        fields.push_str(" reservation { id }");
    }
    fields
}

/// The stay reads, built for what 3RPMS's schema offers.
#[derive(Clone, Debug)]
pub struct StayQueries {
    /// Room stays between two dates, both included: the guide's window
    /// query, 100 a page.
    pub between: String,
    /// Up to 100 room stays by id, in one query: the guide's webhook query.
    pub by_ids: String,
    /// The room stays of reservations by id (a `reservation.updated` event
    /// names the reservation, not its stays), when the schema allows it.
    pub of_reservations: Option<String>,
}

impl StayQueries {
    pub fn for_features(features: &Features) -> Self {
        let fields = stay_fields(features);
        Self {
            between: format!(
                "query RoomStays($start:Date! $end:Date! $cursor:String) {{ \
                 room_stays(filter:{{reservation_from:{{le:$end}} reservation_to:{{gt:$start}}}} first:100 after:$cursor) {{ \
                 edges {{ node {{ {fields} }} }} pageInfo {{ endCursor hasNextPage }} }} }}"
            ),
            by_ids: format!(
                "query RoomStaysByIds($ids:[ID!]!) {{ \
                 room_stays(filter:{{id:{{in:$ids}}}} first:100) {{ edges {{ node {{ {fields} }} }} }} }}"
            ),
            of_reservations: features.reads_reservations_by_id().then(|| {
                format!(
                    "query ReservationStays($ids:[ID!]! $cursor:String) {{ \
                     reservations(filter:{{id:{{in:$ids}}}} first:10) {{ edges {{ node {{ id \
                     rooms(first:100 after:$cursor) {{ edges {{ node {{ {fields} }} }} \
                     pageInfo {{ endCursor hasNextPage }} }} }} }} }} }}"
                )
            }),
        }
    }
}

/// Every room of a reservation by its code, with the key of each. The
/// compartment is asked for only for staff.
pub const RESERVATION_ROOM_KEYS: &str = concat!(
    "query ReservationRoomAccessKeys($code:String! $cursor:String $staff:Boolean!) {",
    " reservations(filter:{code:{eq:$code}} first:1) {",
    "  edges { node { id rooms(first:100 after:$cursor) {",
    "   edges { node { id room_setup { id name } roomAccessKey { __typename id",
    "    ... on RoomAccessPin { pin }",
    "    ... on RoomAccessKeyStorage { pin compartment @include(if:$staff) }",
    "    ... on RoomAccessQR { qrData } } } }",
    "   pageInfo { hasNextPage endCursor } } } } } }"
);

/// One room stay's key by the stay's id.
pub const ROOM_STAY_KEY: &str = concat!(
    "query RoomAccessKey($id:ID! $staff:Boolean!) {",
    " room_stays(filter:{id:{eq:$id}} first:1) {",
    "  edges { node { id room_setup { id name } roomAccessKey { __typename id",
    "   ... on RoomAccessPin { pin }",
    "   ... on RoomAccessKeyStorage { pin compartment @include(if:$staff) }",
    "   ... on RoomAccessQR { qrData } } } } } }"
);

/// Creates a key and hands its id to the next operation of the batch.
pub const CREATE_KEY_CHAINED: &str = "mutation CreateRoomAccessKey($input:CreateRoomAccessKeyInput!) { \
     createRoomAccessKey(input:$input) { roomAccessKey { id @chain(variable:\"roomAccessKeyId\") } } }";

/// Assigns a key to a stay; after CREATE_KEY_CHAINED the key id is chained,
/// not sent.
pub const ADD_KEY: &str = "mutation AddRoomAccessKey($roomStayId:ID! $roomAccessKeyId:ID!) { \
     addRoomAccessKey(input:{roomStayId:$roomStayId roomAccessKeyId:$roomAccessKeyId}) { \
     roomStay { id roomAccessKey { id } } } }";

pub const REMOVE_KEY: &str =
    "mutation RemoveRoomAccessKey($roomStayId:ID! $roomAccessKeyId:ID!) { \
     removeRoomAccessKey(input:{roomStayId:$roomStayId roomAccessKeyId:$roomAccessKeyId}) { \
     roomStay { id } } }";

pub const DELETE_KEY: &str = "mutation DeleteRoomAccessKey($roomAccessKeyId:ID!) { \
     deleteRoomAccessKey(input:{roomAccessKeyId:$roomAccessKeyId}) { deleted } }";

/// Registers a webhook endpoint with the documented fields, and `status`
/// when the schema has a value for it (an enum literal introspection named).
pub fn create_webhook_endpoint(status: Option<&str>) -> String {
    let status = status
        .map(|value| format!(" status:{value}"))
        .unwrap_or_default();
    format!(
        "mutation CreateWebhookEndpoint($url:String! $events:[String!]!) {{ \
         createWebhookEndpoint(input:{{url:$url events:$events{status}}}) {{ \
         webhookEndpoint {{ id }} secret }} }}"
    )
}

/// Sets an endpoint's status (an enum literal introspection named).
pub fn update_webhook_endpoint(status: &str) -> String {
    format!(
        "mutation UpdateWebhookEndpoint($id:ID!) {{ \
         updateWebhookEndpoint(input:{{id:$id status:{status}}}) {{ webhookEndpoint {{ id }} }} }}"
    )
}

/// Whether an enum value from introspection can be written into a document
/// as it is: a GraphQL name.
pub fn is_graphql_name(value: &str) -> bool {
    let mut chars = value.chars();
    chars
        .next()
        .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_only_reads_ask_for_no_reservation() {
        let q = StayQueries::for_features(&Features::default());
        for query in [&q.between, &q.by_ids] {
            assert!(!query.contains("reservation {"), "{query}");
        }
        assert!(q.of_reservations.is_none());
    }

    #[test]
    fn detected_fields_are_asked_for_in_every_stay_read() {
        let features = Features {
            stay_reservation: true,
            cancelled_statuses: Some(vec!["CANCELLED".into()]),
            reservation_id_filter: true,
            ..Features::default()
        };
        let q = StayQueries::for_features(&features);
        for query in [&q.between, &q.by_ids, q.of_reservations.as_ref().unwrap()] {
            assert!(query.contains("reservation { id status }"), "{query}");
        }
    }

    #[test]
    fn only_names_are_written_into_a_document() {
        assert!(is_graphql_name("DISABLED") && is_graphql_name("_x1"));
        for bad in ["", "1A", "A B", "A}", "A\"", "ÄCTIVE"] {
            assert!(!is_graphql_name(bad), "{bad}");
        }
    }
}
