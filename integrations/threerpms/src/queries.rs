//! The GraphQL documents keysmith sends to 3RPMS, the guide's own where it
//! gives one.

/// The fields keysmith keeps of a room stay.
#[cfg(test)]
const ROOM_STAY_FIELDS: &str = "id room_setup { id } arrival: reservation_from \
     departure: reservation_to roomAccessKey { id } reservation { id status }";

/// Room stays between two dates, both included: the guide's window query, 100 a page.
pub const ROOM_STAYS_BETWEEN: &str = concat!(
    "query RoomStays($start:Date! $end:Date! $cursor:String) {",
    " room_stays(filter:{reservation_from:{le:$end} reservation_to:{gt:$start}} first:100 after:$cursor) {",
    "  edges { node { id room_setup { id } arrival: reservation_from departure: reservation_to roomAccessKey { id } reservation { id status } } }",
    "  pageInfo { endCursor hasNextPage } } }"
);

/// Up to 100 room stays by id, in one query.
pub const ROOM_STAYS_BY_IDS: &str = concat!(
    "query RoomStaysByIds($ids:[ID!]!) {",
    " room_stays(filter:{id:{in:$ids}} first:100) {",
    "  edges { node { id room_setup { id } arrival: reservation_from departure: reservation_to roomAccessKey { id } reservation { id status } } } } }"
);

/// The room stays of reservations by id (a `reservation.updated` event names
/// the reservation, not its stays).
pub const RESERVATION_STAYS: &str = concat!(
    "query ReservationStays($ids:[ID!]! $cursor:String) {",
    " reservations(filter:{id:{in:$ids}} first:10) {",
    "  edges { node { id rooms(first:100 after:$cursor) {",
    "   edges { node { id room_setup { id } arrival: reservation_from departure: reservation_to roomAccessKey { id } reservation { id status } } }",
    "   pageInfo { endCursor hasNextPage } } } } } }"
);

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

pub const CREATE_WEBHOOK_ENDPOINT: &str =
    "mutation CreateWebhookEndpoint($url:String! $events:[String!]!) { \
     createWebhookEndpoint(input:{url:$url status:DISABLED events:$events}) { \
     webhookEndpoint { id status } secret } }";

pub const ENABLE_WEBHOOK_ENDPOINT: &str = "mutation EnableWebhookEndpoint($id:ID!) { \
     updateWebhookEndpoint(input:{id:$id status:ENABLED}) { webhookEndpoint { id status } } }";

#[cfg(test)]
mod tests {
    #[test]
    fn the_stay_queries_share_their_fields() {
        for q in [
            super::ROOM_STAYS_BETWEEN,
            super::ROOM_STAYS_BY_IDS,
            super::RESERVATION_STAYS,
        ] {
            assert!(q.contains(super::ROOM_STAY_FIELDS), "{q}");
        }
    }
}
