//! The GraphQL schema subset of 3RPMS: room stays, reservations, room
//! access keys and webhook endpoints, with the vendor's exact field names
//! (a mix of snake_case and camelCase).

use std::sync::Arc;

use async_graphql::{
    Context, EmptySubscription, InputObject, Interface, Object, Schema, SimpleObject, ID,
};

use crate::chain;
use crate::config::Access;
use crate::cursor::{paginate, CursorCodec, Page};
use crate::errors::{arg_path, ApiError, ApiResult, Lang, Msg, PathSeg};
use crate::filter::{DateScalar, ReservationFilter, ReservationQuery, RoomStayFilter, StayQuery};
use crate::model::{
    format_date, Key, KeyKind, Reservation, ReservationStatus, Stay, WebhookEndpointStatus,
};
use crate::state::{check_compartment, check_pin, check_qr_data, Principal, UndoLog, World};

pub(crate) type FakeSchema = Schema<QueryRoot, MutationRoot, EmptySubscription>;

/// Data shared by every request: the world and the cursor signer.
pub(crate) struct Core {
    pub world: parking_lot::Mutex<World>,
    pub cursors: CursorCodec,
}

/// Per-entry data: who calls, in which language, and where the request's
/// undo records go.
pub(crate) struct RequestCtx {
    pub principal: Principal,
    pub lang: Lang,
    pub undo: Arc<UndoLog>,
}

/// Complexity limits keep a malicious nesting of `reservation { rooms { ... } }`
/// from building gigantic answers; legitimate queries stay far below.
const MAX_DEPTH: usize = 16;
const MAX_COMPLEXITY: usize = 100_000;

pub(crate) fn build(core: Arc<Core>) -> FakeSchema {
    Schema::build(QueryRoot, MutationRoot, EmptySubscription)
        .data(core)
        .directive(chain::chain)
        .limit_depth(MAX_DEPTH)
        .limit_complexity(MAX_COMPLEXITY)
        .finish()
}

/// The SDL of the schema (for documentation and the README).
pub fn sdl() -> String {
    let core = Arc::new(Core {
        world: parking_lot::Mutex::new(World::default()),
        cursors: CursorCodec::new(std::time::Duration::from_secs(1)),
    });
    build(core).sdl()
}

fn core<'a>(ctx: &Context<'a>) -> &'a Arc<Core> {
    // Registered in `build`; a schema without it cannot exist.
    ctx.data_unchecked::<Arc<Core>>()
}

fn req<'a>(ctx: &Context<'a>) -> async_graphql::Result<&'a RequestCtx> {
    // Every request the server runs carries a RequestCtx; a missing one
    // would be a bug in the fake, reported instead of panicking.
    ctx.data::<RequestCtx>()
}

fn lang(ctx: &Context<'_>) -> Lang {
    ctx.data_opt::<RequestCtx>()
        .map(|r| r.lang)
        .unwrap_or_default()
}

fn api<T>(ctx: &Context<'_>, r: ApiResult<T>) -> async_graphql::Result<T> {
    r.map_err(|e| e.into_gql(lang(ctx)))
}

/// Mutations need a Write key. The batch executor already rejects mutation
/// operations of Read keys before running them; this is the second lock.
fn writer<'a>(ctx: &Context<'a>) -> async_graphql::Result<&'a RequestCtx> {
    let r = req(ctx)?;
    if r.principal.access != Access::Write {
        return Err(ApiError::auth(Msg::ReadOnlyApiKey).into_gql(r.lang));
    }
    Ok(r)
}

fn connection_complexity(first: Option<i32>, child: usize) -> usize {
    (first
        .unwrap_or(crate::cursor::DEFAULT_PAGE)
        .clamp(1, crate::cursor::MAX_PAGE) as usize)
        .saturating_mul(child)
}

// ------------------------------------------------------------------ objects

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
    fn of(hotel: &str, page: Page<Stay>) -> Self {
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

#[Object(name = "Reservation")]
impl ReservationNode {
    async fn id(&self) -> ID {
        ID(self.reservation.id.clone())
    }

    async fn code(&self) -> &str {
        &self.reservation.code
    }

    async fn status(&self) -> ReservationStatus {
        self.reservation.status
    }

    /// The reservation's room stays in creation order.
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
    fn of(key: &Key) -> Self {
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

// -------------------------------------------------------------------- query

pub struct QueryRoot;

#[Object(name = "Query")]
impl QueryRoot {
    /// Room stays of the caller's hotel in creation order. Stays of
    /// cancelled reservations are included: clients read `reservation.status`.
    #[graphql(
        name = "room_stays",
        complexity = "connection_complexity(first, child_complexity)"
    )]
    async fn room_stays(
        &self,
        ctx: &Context<'_>,
        filter: Option<RoomStayFilter>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<RoomStayConnection> {
        let r = req(ctx)?;
        let core = core(ctx);
        let query = match &filter {
            Some(f) => api(ctx, StayQuery::compile(f, &[PathSeg::from("filter")]))?,
            None => StayQuery::default(),
        };
        let hotel = &r.principal.hotel;
        let rows: Vec<(u64, Stay)> = {
            let world = core.world.lock();
            world
                .hotel(hotel)
                .map(|h| {
                    h.stays
                        .iter()
                        .filter(|(_, s)| query.matches(s))
                        .map(|(pos, s)| (pos, s.clone()))
                        .collect()
                })
                .unwrap_or_default()
        };
        let scope = format!("room_stays|{hotel}|{query:?}");
        let page = api(
            ctx,
            paginate(&core.cursors, &scope, rows, first, after.as_deref()),
        )?;
        Ok(RoomStayConnection::of(hotel, page))
    }

    /// Reservations of the caller's hotel in creation order.
    #[graphql(complexity = "connection_complexity(first, child_complexity)")]
    async fn reservations(
        &self,
        ctx: &Context<'_>,
        filter: Option<ReservationFilter>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<ReservationConnection> {
        let r = req(ctx)?;
        let core = core(ctx);
        let query = filter
            .as_ref()
            .map(ReservationQuery::compile)
            .unwrap_or_default();
        let hotel = &r.principal.hotel;
        let rows: Vec<(u64, Reservation)> = {
            let world = core.world.lock();
            world
                .hotel(hotel)
                .map(|h| {
                    h.reservations
                        .iter()
                        .filter(|(_, x)| query.matches(x))
                        .map(|(pos, x)| (pos, x.clone()))
                        .collect()
                })
                .unwrap_or_default()
        };
        let scope = format!("reservations|{hotel}|{query:?}");
        let page = api(
            ctx,
            paginate(&core.cursors, &scope, rows, first, after.as_deref()),
        )?;
        Ok(ReservationConnection {
            edges: page
                .edges
                .into_iter()
                .map(|(cursor, reservation)| ReservationEdge {
                    cursor,
                    node: ReservationNode {
                        hotel: hotel.clone(),
                        reservation,
                    },
                })
                .collect(),
            page_info: PageInfo {
                has_next_page: page.has_next_page,
                end_cursor: page.end_cursor,
            },
        })
    }
}

// ---------------------------------------------------------------- mutations

#[derive(InputObject)]
pub struct RoomAccessPinInput {
    pub pin: String,
}

#[derive(InputObject)]
pub struct RoomAccessKeyStorageInput {
    pub pin: String,
    pub compartment: String,
}

#[derive(InputObject)]
#[graphql(name = "RoomAccessQRInput")]
pub struct RoomAccessQrInput {
    pub qr_data: String,
}

/// Exactly one of the three must be given (checked by the resolver, so a
/// violation is a `validation` error with an `argumentPath`).
#[derive(InputObject)]
pub struct CreateRoomAccessKeyInput {
    pub room_access_pin: Option<RoomAccessPinInput>,
    pub room_access_key_storage: Option<RoomAccessKeyStorageInput>,
    #[graphql(name = "roomAccessQR")]
    pub room_access_qr: Option<RoomAccessQrInput>,
}

impl CreateRoomAccessKeyInput {
    fn to_kind(&self) -> ApiResult<KeyKind> {
        let at = |field: &str, leaf: &str, msg: Msg| {
            ApiError::validation(msg, arg_path!["input", field, leaf])
        };
        match (
            &self.room_access_pin,
            &self.room_access_key_storage,
            &self.room_access_qr,
        ) {
            (Some(p), None, None) => {
                check_pin(&p.pin).map_err(|m| at("roomAccessPin", "pin", m))?;
                Ok(KeyKind::Pin { pin: p.pin.clone() })
            }
            (None, Some(s), None) => {
                check_pin(&s.pin).map_err(|m| at("roomAccessKeyStorage", "pin", m))?;
                check_compartment(&s.compartment)
                    .map_err(|m| at("roomAccessKeyStorage", "compartment", m))?;
                Ok(KeyKind::KeyStorage {
                    pin: s.pin.clone(),
                    compartment: s.compartment.clone(),
                })
            }
            (None, None, Some(q)) => {
                check_qr_data(&q.qr_data).map_err(|m| at("roomAccessQR", "qrData", m))?;
                Ok(KeyKind::Qr {
                    qr_data: q.qr_data.clone(),
                })
            }
            _ => Err(ApiError::validation(
                Msg::OneKeyTypeRequired,
                arg_path!["input"],
            )),
        }
    }
}

#[derive(SimpleObject)]
pub struct CreateRoomAccessKeyPayload {
    pub room_access_key: RoomAccessKey,
}

#[derive(InputObject)]
pub struct AddRoomAccessKeyInput {
    pub room_stay_id: ID,
    pub room_access_key_id: ID,
}

#[derive(InputObject)]
pub struct RemoveRoomAccessKeyInput {
    pub room_stay_id: ID,
    pub room_access_key_id: ID,
}

#[derive(SimpleObject)]
pub struct AddRoomAccessKeyPayload {
    pub room_stay: RoomStay,
}

#[derive(SimpleObject)]
pub struct RemoveRoomAccessKeyPayload {
    pub room_stay: RoomStay,
}

#[derive(InputObject)]
pub struct DeleteRoomAccessKeyInput {
    pub room_access_key_id: ID,
}

#[derive(SimpleObject)]
pub struct DeleteRoomAccessKeyPayload {
    pub deleted: bool,
}

#[derive(SimpleObject, Clone)]
pub struct WebhookEndpoint {
    pub id: ID,
    pub status: WebhookEndpointStatus,
    pub url: String,
    pub events: Vec<String>,
}

#[derive(InputObject)]
pub struct CreateWebhookEndpointInput {
    pub url: String,
    pub status: WebhookEndpointStatus,
    pub events: Vec<String>,
}

/// The secret is only readable here, once: `WebhookEndpoint` has no field for it.
#[derive(SimpleObject)]
pub struct CreateWebhookEndpointPayload {
    pub webhook_endpoint: WebhookEndpoint,
    pub secret: String,
}

#[derive(InputObject)]
pub struct UpdateWebhookEndpointInput {
    pub id: ID,
    pub status: Option<WebhookEndpointStatus>,
}

#[derive(SimpleObject)]
pub struct UpdateWebhookEndpointPayload {
    pub webhook_endpoint: WebhookEndpoint,
}

/// Reads a stay for a mutation's answer after the change.
fn stay_after(world: &World, hotel: &str, stay_id: &str) -> ApiResult<RoomStay> {
    world
        .hotel(hotel)
        .and_then(|h| h.stays.get(stay_id))
        .map(|s| RoomStay {
            hotel: hotel.to_string(),
            stay: s.clone(),
        })
        .ok_or_else(|| {
            ApiError::validation(
                Msg::UnknownRoomStay(stay_id.into()),
                arg_path!["input", "roomStayId"],
            )
        })
}

fn endpoint_view(world: &World, hotel: &str, id: &str) -> ApiResult<WebhookEndpoint> {
    world
        .hotel(hotel)
        .and_then(|h| h.endpoints.get(id))
        .map(|e| WebhookEndpoint {
            id: ID(e.id.clone()),
            status: e.status,
            url: e.url.clone(),
            events: e.events.clone(),
        })
        .ok_or_else(|| {
            ApiError::validation(
                Msg::UnknownWebhookEndpoint(id.into()),
                arg_path!["input", "id"],
            )
        })
}

pub struct MutationRoot;

#[Object(name = "Mutation")]
impl MutationRoot {
    async fn create_room_access_key(
        &self,
        ctx: &Context<'_>,
        input: CreateRoomAccessKeyInput,
    ) -> async_graphql::Result<CreateRoomAccessKeyPayload> {
        let r = writer(ctx)?;
        let mut world = core(ctx).world.lock();
        // Configuration is checked before contents: an unconfigured hotel
        // says so whatever the input.
        if let Some(h) = world.hotel(&r.principal.hotel) {
            if !h.configured {
                return api(
                    ctx,
                    Err(ApiError::configuration(Msg::RoomAccessKeysNotConfigured)),
                );
            }
        }
        let kind = api(ctx, input.to_kind())?;
        let id = api(ctx, world.create_key(&r.principal, kind.clone(), &r.undo))?;
        let key = Key {
            id,
            integration: r.principal.integration.clone(),
            kind,
        };
        Ok(CreateRoomAccessKeyPayload {
            room_access_key: RoomAccessKey::of(&key),
        })
    }

    async fn add_room_access_key(
        &self,
        ctx: &Context<'_>,
        input: AddRoomAccessKeyInput,
    ) -> async_graphql::Result<AddRoomAccessKeyPayload> {
        let r = writer(ctx)?;
        let mut world = core(ctx).world.lock();
        api(
            ctx,
            world.add_key(
                &r.principal,
                &input.room_stay_id,
                &input.room_access_key_id,
                &r.undo,
            ),
        )?;
        let room_stay = api(
            ctx,
            stay_after(&world, &r.principal.hotel, &input.room_stay_id),
        )?;
        Ok(AddRoomAccessKeyPayload { room_stay })
    }

    async fn remove_room_access_key(
        &self,
        ctx: &Context<'_>,
        input: RemoveRoomAccessKeyInput,
    ) -> async_graphql::Result<RemoveRoomAccessKeyPayload> {
        let r = writer(ctx)?;
        let mut world = core(ctx).world.lock();
        api(
            ctx,
            world.remove_key(
                &r.principal,
                &input.room_stay_id,
                &input.room_access_key_id,
                &r.undo,
            ),
        )?;
        let room_stay = api(
            ctx,
            stay_after(&world, &r.principal.hotel, &input.room_stay_id),
        )?;
        Ok(RemoveRoomAccessKeyPayload { room_stay })
    }

    async fn delete_room_access_key(
        &self,
        ctx: &Context<'_>,
        input: DeleteRoomAccessKeyInput,
    ) -> async_graphql::Result<DeleteRoomAccessKeyPayload> {
        let r = writer(ctx)?;
        let mut world = core(ctx).world.lock();
        api(
            ctx,
            world.delete_key(&r.principal, &input.room_access_key_id, &r.undo),
        )?;
        Ok(DeleteRoomAccessKeyPayload { deleted: true })
    }

    async fn create_webhook_endpoint(
        &self,
        ctx: &Context<'_>,
        input: CreateWebhookEndpointInput,
    ) -> async_graphql::Result<CreateWebhookEndpointPayload> {
        let r = writer(ctx)?;
        let mut world = core(ctx).world.lock();
        let (id, secret) = api(
            ctx,
            world.create_endpoint(
                &r.principal,
                &input.url,
                input.status,
                &input.events,
                &r.undo,
            ),
        )?;
        let webhook_endpoint = api(ctx, endpoint_view(&world, &r.principal.hotel, &id))?;
        Ok(CreateWebhookEndpointPayload {
            webhook_endpoint,
            secret,
        })
    }

    async fn update_webhook_endpoint(
        &self,
        ctx: &Context<'_>,
        input: UpdateWebhookEndpointInput,
    ) -> async_graphql::Result<UpdateWebhookEndpointPayload> {
        let r = writer(ctx)?;
        let mut world = core(ctx).world.lock();
        api(
            ctx,
            world.update_endpoint(&r.principal, &input.id, input.status, &r.undo),
        )?;
        let webhook_endpoint = api(ctx, endpoint_view(&world, &r.principal.hotel, &input.id))?;
        Ok(UpdateWebhookEndpointPayload { webhook_endpoint })
    }
}
