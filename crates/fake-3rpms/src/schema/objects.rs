//! The types clients read: room stays, reservations and room access keys,
//! and their Relay connections.

use async_graphql::{Context, Interface, Object, SimpleObject, ID};

use super::{api, connection_complexity, core, shown};
use crate::cursor::{paginate, Page};
use crate::filter::DateScalar;
use crate::model::{format_date, Key, KeyKind, Reservation, ReservationStatus, Stay};

#[derive(SimpleObject, Clone)]
pub struct PageInfo {
    pub has_next_page: bool,
    pub end_cursor: Option<String>,
}

#[derive(SimpleObject, Clone)]
pub struct RoomSetup {
    pub id: ID,
    pub name: String,
}

pub struct RoomStay {
    hotel: String,
    stay: Stay,
}

impl RoomStay {
    pub(crate) fn new(hotel: String, stay: Stay) -> Self {
        RoomStay { hotel, stay }
    }
}

#[Object]
impl RoomStay {
    async fn id(&self) -> ID {
        ID(self.stay.id.clone())
    }

    #[graphql(name = "room_setup")]
    async fn room_setup(&self, ctx: &Context<'_>) -> RoomSetup {
        let world = core(ctx).world.lock();
        let name = world
            .hotel(&self.hotel)
            .and_then(|h| h.rooms.get(&self.stay.room_setup_id))
            .map(|r| r.name.clone())
            .unwrap_or_default();
        RoomSetup {
            id: ID(self.stay.room_setup_id.clone()),
            name,
        }
    }

    #[graphql(name = "reservation_from")]
    async fn reservation_from(&self) -> DateScalar {
        DateScalar(format_date(self.stay.from))
    }

    #[graphql(name = "reservation_to")]
    async fn reservation_to(&self) -> DateScalar {
        DateScalar(format_date(self.stay.to))
    }

    /// The key assigned to this stay, whoever created it. Null when none is
    /// assigned (and in hotels without room access keys).
    #[graphql(name = "roomAccessKey")]
    async fn room_access_key(&self, ctx: &Context<'_>) -> Option<RoomAccessKey> {
        let key_id = self.stay.key_id.as_deref()?;
        let world = core(ctx).world.lock();
        let hotel = world.hotel(&self.hotel)?;
        if !hotel.configured {
            return None;
        }
        hotel.keys.get(key_id).map(RoomAccessKey::of)
    }

    /// Not documented by the vendor: an assumed extra.
    #[graphql(visible = "super::with_reservation_status")]
    async fn reservation(&self, ctx: &Context<'_>) -> async_graphql::Result<ReservationNode> {
        let world = core(ctx).world.lock();
        world
            .hotel(&self.hotel)
            .and_then(|h| h.reservations.get(&self.stay.reservation_id))
            .map(|r| ReservationNode {
                hotel: self.hotel.clone(),
                reservation: r.clone(),
            })
            // Only possible if the control API removed it mid-request.
            .ok_or_else(|| async_graphql::Error::new("reservation not found"))
    }
}

#[derive(SimpleObject)]
pub struct RoomStayEdge {
    pub cursor: String,
    pub node: RoomStay,
}

#[derive(SimpleObject)]
pub struct RoomStayConnection {
    pub edges: Vec<RoomStayEdge>,
    pub page_info: PageInfo,
}

impl RoomStayConnection {
    pub(crate) fn of(hotel: &str, page: Page<Stay>) -> Self {
        RoomStayConnection {
            edges: page
                .edges
                .into_iter()
                .map(|(cursor, stay)| RoomStayEdge {
                    cursor,
                    node: RoomStay {
                        hotel: hotel.to_string(),
                        stay,
                    },
                })
                .collect(),
            page_info: PageInfo {
                has_next_page: page.has_next_page,
                end_cursor: page.end_cursor,
            },
        }
    }
}

pub struct ReservationNode {
    hotel: String,
    reservation: Reservation,
}

impl ReservationNode {
    pub(crate) fn new(hotel: String, reservation: Reservation) -> Self {
        ReservationNode { hotel, reservation }
    }
}

#[Object(name = "Reservation")]
impl ReservationNode {
    async fn id(&self) -> ID {
        ID(self.reservation.id.clone())
    }

    async fn code(&self) -> &str {
        &self.reservation.code
    }

    /// Not documented by the vendor (nor are its values): an assumed extra.
    #[graphql(visible = "super::with_reservation_status")]
    async fn status(&self) -> ReservationStatus {
        self.reservation.status
    }

    /// The reservation's room stays in creation order (none of a cancelled
    /// reservation without the reservation status, as `room_stays`).
    #[graphql(complexity = "connection_complexity(first, child_complexity)")]
    async fn rooms(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<RoomStayConnection> {
        let core = core(ctx);
        let rows: Vec<(u64, Stay)> = {
            let world = core.world.lock();
            world
                .hotel(&self.hotel)
                .map(|h| {
                    h.stays
                        .iter()
                        .filter(|(_, s)| s.reservation_id == self.reservation.id)
                        .filter(|(_, s)| shown(&world, &self.hotel, core.assumed, s))
                        .map(|(pos, s)| (pos, s.clone()))
                        .collect()
                })
                .unwrap_or_default()
        };
        let scope = format!("rooms|{}|{}", self.hotel, self.reservation.id);
        let page = api(
            ctx,
            paginate(&core.cursors, &scope, rows, first, after.as_deref()),
        )?;
        Ok(RoomStayConnection::of(&self.hotel, page))
    }
}

#[derive(SimpleObject)]
#[graphql(name = "ReservationEdge")]
pub struct ReservationEdge {
    pub cursor: String,
    pub node: ReservationNode,
}

#[derive(SimpleObject)]
pub struct ReservationConnection {
    pub edges: Vec<ReservationEdge>,
    pub page_info: PageInfo,
}

// ---------------------------------------------------------- room access keys

#[derive(SimpleObject, Clone)]
pub struct RoomAccessPin {
    pub id: ID,
    pub pin: String,
}

#[derive(SimpleObject, Clone)]
pub struct RoomAccessKeyStorage {
    pub id: ID,
    pub pin: String,
    /// Where staff put the physical key: never to be shown to guests.
    pub compartment: String,
}

#[derive(SimpleObject, Clone)]
#[graphql(name = "RoomAccessQR")]
pub struct RoomAccessQr {
    pub id: ID,
    pub qr_data: String,
}

/// Not a vendor type: lets clients be tested against a key type they did
/// not ask for (the vendor warns new types may appear at any time).
#[derive(SimpleObject, Clone)]
pub struct RoomAccessNfc {
    pub id: ID,
    pub nfc_data: String,
}

#[derive(Interface, Clone)]
#[graphql(field(name = "id", ty = "&ID"))]
pub enum RoomAccessKey {
    Pin(RoomAccessPin),
    KeyStorage(RoomAccessKeyStorage),
    Qr(RoomAccessQr),
    Nfc(RoomAccessNfc),
}

impl RoomAccessKey {
    pub(crate) fn of(key: &Key) -> Self {
        let id = ID(key.id.clone());
        match &key.kind {
            KeyKind::Pin { pin } => RoomAccessKey::Pin(RoomAccessPin {
                id,
                pin: pin.clone(),
            }),
            KeyKind::KeyStorage { pin, compartment } => {
                RoomAccessKey::KeyStorage(RoomAccessKeyStorage {
                    id,
                    pin: pin.clone(),
                    compartment: compartment.clone(),
                })
            }
            KeyKind::Qr { qr_data } => RoomAccessKey::Qr(RoomAccessQr {
                id,
                qr_data: qr_data.clone(),
            }),
            KeyKind::Nfc { nfc_data } => RoomAccessKey::Nfc(RoomAccessNfc {
                id,
                nfc_data: nfc_data.clone(),
            }),
        }
    }
}
