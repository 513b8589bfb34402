//! The inventory: every field, argument, enum value and mutation of 3RPMS
//! that keysmith uses, and where each comes from. 3RPMS publishes no
//! schema; what its documents show is used as is ([`DOCUMENTED`]), and
//! everything else is an [`Assumption`]: detected in 3RPMS's schema before
//! use (`detect.rs`), with a fallback that relies on documented things only.
//! README.md's 3RPMS section shows the same list (a test keeps them
//! together).
//!
//! The documents: the 3RPMS guide "Using room access keys", and the 3RPMS
//! knowledge base (GraphQL API: Get started, Rate limiting, Errors,
//! Pagination, Filters, Extra features; Webhooks).

/// Something keysmith uses as 3RPMS documents it.
#[derive(Clone, Copy, Debug)]
pub struct Documented {
    /// The field, argument, value or mutation, as keysmith sends it.
    pub what: &'static str,
    /// Where 3RPMS documents it.
    pub source: &'static str,
}

/// What keysmith uses as documented.
pub const DOCUMENTED: &[Documented] = &[
    Documented {
        what: "room_stays(filter: {reservation_from: {le}, reservation_to: {gt}}, first, after)",
        source: "guide 'Using room access keys', 1. Retrieve Room Stays",
    },
    Documented {
        what: "room_stays(filter: {id: {in}}) and room_stays(filter: {id: {eq}}, first: 1)",
        source: "guide, 4. Listen for Room Stay Changes; Reading Room Access Key",
    },
    Documented {
        what: "RoomStay { id room_setup { id name } reservation_from reservation_to roomAccessKey { id } }",
        source: "guide, fragment RoomStaySubset; Reading Room Access Key",
    },
    Documented {
        what: "reservations(filter: {code: {eq}}) { rooms(first, after) { pageInfo } }",
        source: "guide, Reading Room Access Key (by reservation code)",
    },
    Documented {
        what: "RoomAccessPin { pin }, RoomAccessKeyStorage { pin compartment }, RoomAccessQR { qrData }, __typename",
        source: "guide, Reading Room Access Key (new types may appear at any time)",
    },
    Documented {
        what: "createRoomAccessKey(input: {roomAccessPin | roomAccessKeyStorage | roomAccessQR}) { roomAccessKey { id } }",
        source: "guide, 2. Create a Room Access Key",
    },
    Documented {
        what: "addRoomAccessKey(input: {roomStayId roomAccessKeyId})",
        source: "guide, 3. Assign a Room Access Key",
    },
    Documented {
        what: "removeRoomAccessKey(input: {roomStayId roomAccessKeyId})",
        source: "guide, 5. Revoke a Room Access Key",
    },
    Documented {
        what: "deleteRoomAccessKey(input: {roomAccessKeyId}) { deleted }",
        source: "guide, 6. Delete a Room Access Key",
    },
    Documented {
        what: "first <= 100, pageInfo { hasNextPage endCursor }",
        source: "knowledge base, Pagination",
    },
    Documented {
        what: "batches (a JSON array of operations), @chain(variable:)",
        source: "knowledge base, Extra features: Batches, Chained operations",
    },
    Documented {
        what: "errors[].extensions.category: configuration, validation, auth",
        source: "knowledge base, Errors",
    },
    Documented {
        what: "createWebhookEndpoint(input: {url events}) { webhookEndpoint { id } secret }",
        source: "knowledge base, Webhooks (status is named there, its values are not)",
    },
    Documented {
        what: "events room_stay.created|updated|deleted, reservation.created|updated, room_access_key.deleted",
        source: "guide, 4. Listen for Room Stay Changes; knowledge base, Webhooks",
    },
    Documented {
        what: "HTTPS delivery, at most 5 active endpoints per hotel and integration",
        source: "knowledge base, Webhooks",
    },
];

/// A part of 3RPMS's schema that its documents do not show.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Assumption {
    /// 3RPMS answers GraphQL introspection.
    Introspection,
    /// `RoomStay.reservation { id }`.
    StayReservation,
    /// `Reservation.status` and its cancelled value(s).
    ReservationStatus,
    /// `reservations(filter: {id: {in}})`.
    ReservationIdFilter,
    /// `CreateWebhookEndpointInput.status` with an enabled and a disabled
    /// value.
    EndpointStatus,
    /// `updateWebhookEndpoint(input: {id status})`.
    UpdateWebhookEndpoint,
}

impl Assumption {
    pub const ALL: [Assumption; 6] = [
        Assumption::Introspection,
        Assumption::StayReservation,
        Assumption::ReservationStatus,
        Assumption::ReservationIdFilter,
        Assumption::EndpointStatus,
        Assumption::UpdateWebhookEndpoint,
    ];

    /// As README.md and the log name it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Introspection => "introspection (__schema, __type)",
            Self::StayReservation => "RoomStay.reservation { id }",
            Self::ReservationStatus => "Reservation.status (cancelled values)",
            Self::ReservationIdFilter => "reservations(filter: {id: {in}})",
            Self::EndpointStatus => "CreateWebhookEndpointInput.status ENABLED/DISABLED",
            Self::UpdateWebhookEndpoint => "updateWebhookEndpoint(input: {id status})",
        }
    }

    /// How keysmith learns whether 3RPMS has it.
    pub fn detected_by(self) -> &'static str {
        match self {
            Self::Introspection => "the first introspection request is answered",
            Self::StayReservation => "__type(name: \"RoomStay\") lists `reservation`",
            Self::ReservationStatus => {
                "the reservation type lists `status`; its enumValues containing CANCEL, or \
                 `cancelled_reservation_statuses`"
            }
            Self::ReservationIdFilter => "the `reservations` filter type lists `id`",
            Self::EndpointStatus => {
                "the createWebhookEndpoint input lists `status`, an enum with ENABLED (or \
                 ACTIVE) and DISABLED (or INACTIVE)"
            }
            Self::UpdateWebhookEndpoint => {
                "the mutation type lists updateWebhookEndpoint, its input `id` and `status`"
            }
        }
    }

    /// What keysmith does without it.
    pub fn fallback(self) -> &'static str {
        match self {
            Self::Introspection => {
                "every assumption is off (logged once, naming them): documented fields only"
            }
            Self::StayReservation => {
                "the key's holder is the room stay; a reservation event re-syncs the window"
            }
            Self::ReservationStatus => {
                "a stay 3RPMS no longer returns when read by id counts as gone (deleted or \
                 cancelled): its key is revoked, removed and deleted"
            }
            Self::ReservationIdFilter => {
                "a reservation event re-syncs the window (the documented window query, and \
                 the stays keysmith keeps read by id)"
            }
            Self::EndpointStatus => {
                "the endpoint is created with url and events only and its secret stored at \
                 once; a delivery that arrives first is answered 503 and redelivered"
            }
            Self::UpdateWebhookEndpoint => {
                "`replace` cannot retire the old endpoint: it is refused until the operator \
                 says the old endpoint was removed in 3RPMS (previous_endpoint_removed)"
            }
        }
    }
}

/// Assumptions no schema can confirm, each with how keysmith copes when
/// it is wrong.
pub const UNCHECKABLE: &[(&str, &str)] = &[
    (
        "a batch is answered with an array in request order",
        "the answers are counted; a count that differs fails the request, which is retried",
    ),
    (
        "a batch of batch_limit operations is accepted",
        "batch_limit is configurable; a refused request is split until the refused step stands alone",
    ),
    (
        "GraphQL errors come with HTTP 200",
        "errors[] decide whatever the status; a non-2xx status without them is UNAVAILABLE",
    ),
    (
        "events keysmith did not subscribe to (client.updated, ...)",
        "acknowledged and ignored",
    ),
];

/// What the operator may set, apart from the hotel and its rooms.
pub const CONFIGURABLE: &[(&str, &str)] = &[
    (
        "threerpms.detect_schema",
        "off: documented fields only, no introspection",
    ),
    (
        "threerpms.hotels.cancelled_reservation_statuses",
        "the reservation statuses that mean cancelled",
    ),
    (
        "threerpms.batch_limit",
        "operations per request (100: 3RPMS's page maximum, the one size it documents)",
    ),
    (
        "threerpms.dead_letter_after_attempts",
        "failures before an event is parked (8)",
    ),
    (
        "threerpms.retry_backoff_ms",
        "the first wait before a retry, doubling to an hour (30000)",
    ),
    (
        "threerpms.hotels.sync_days",
        "the horizon: days kept supplied with keys (7, as 3RPMS recommends)",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    const README: &str = include_str!("../../../README.md");

    /// The README's 3RPMS section shows the inventory: every documented
    /// item, every assumption with its fallback, every setting.
    #[test]
    fn the_readme_lists_the_inventory() {
        let section = README
            .split("## 3RPMS")
            .nth(1)
            .expect("README.md has a 3RPMS section");
        let flat = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
        let section = flat(section);
        let mut missing = Vec::new();
        for d in DOCUMENTED {
            if !section.contains(&flat(d.what)) {
                missing.push(d.what.to_owned());
            }
        }
        for a in Assumption::ALL {
            for text in [a.name(), a.fallback()] {
                if !section.contains(&flat(text)) {
                    missing.push(text.to_owned());
                }
            }
        }
        for (what, handling) in UNCHECKABLE {
            for text in [what, handling] {
                if !section.contains(&flat(text)) {
                    missing.push((*text).to_owned());
                }
            }
        }
        for (key, _) in CONFIGURABLE {
            if !section.contains(key) {
                missing.push((*key).to_owned());
            }
        }
        assert!(
            missing.is_empty(),
            "README.md's 3RPMS section lacks: {missing:#?}"
        );
    }
}
