//! The GraphQL schema subset of 3RPMS: room stays, reservations, room
//! access keys and webhook endpoints, with the vendor's exact field names
//! (a mix of snake_case and camelCase).
//!
//! What the vendor does not document is marked `visible = "..."` with one
//! of the [`Assumed`] switches below: off, introspection does not show it
//! and `strict.rs` refuses a query that uses it, as a server without it
//! would. `objects.rs` holds the types read, `keys.rs` and `endpoints.rs`
//! the mutations.

use std::sync::Arc;

use async_graphql::{Context, EmptySubscription, MergedObject, Object, Schema};

use crate::chain;
use crate::config::{Access, Assumed};
use crate::cursor::{paginate, CursorCodec};
use crate::errors::{ApiError, ApiResult, Lang, Msg, PathSeg};
use crate::filter::{ReservationFilter, ReservationQuery, RoomStayFilter, StayQuery};
use crate::model::{Reservation, Stay};
use crate::state::{Principal, UndoLog, World};

mod endpoints;
mod keys;
mod objects;

pub use objects::{
    PageInfo, ReservationConnection, ReservationEdge, ReservationNode, RoomAccessKey, RoomStay,
    RoomStayConnection,
};

pub(crate) type FakeSchema = Schema<QueryRoot, MutationRoot, EmptySubscription>;

/// Data shared by every request: the world, the cursor signer and which
/// assumed extras the schema has.
pub(crate) struct Core {
    pub world: parking_lot::Mutex<World>,
    pub cursors: CursorCodec,
    pub assumed: Assumed,
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
    Schema::build(QueryRoot, MutationRoot::default(), EmptySubscription)
        .data(core)
        .directive(chain::chain)
        .limit_depth(MAX_DEPTH)
        .limit_complexity(MAX_COMPLEXITY)
        .finish()
}

/// The SDL of the schema with every assumed extra (for documentation and
/// the README; each extra is marked with its `visible` condition).
pub fn sdl() -> String {
    let core = Arc::new(Core {
        world: parking_lot::Mutex::new(World::default()),
        cursors: CursorCodec::new(std::time::Duration::from_secs(1)),
        assumed: Assumed::ALL,
    });
    build(core).sdl()
}

fn core<'a>(ctx: &Context<'a>) -> &'a Arc<Core> {
    // Registered in `build`; a schema without it cannot exist.
    ctx.data_unchecked::<Arc<Core>>()
}

/// Which assumed extras this fake has. Read by the `visible` conditions,
/// which also run outside requests (introspection at start-up).
fn assumed(ctx: &Context<'_>) -> Assumed {
    ctx.data_opt::<Arc<Core>>()
        .map(|c| c.assumed)
        .unwrap_or_default()
}

/// `visible` condition of `RoomStay.reservation` and `Reservation.status`.
pub(crate) fn with_reservation_status(ctx: &Context<'_>) -> bool {
    assumed(ctx).reservation_status
}

/// `visible` condition of `ReservationFilter.id`.
pub(crate) fn with_reservation_id_filter(ctx: &Context<'_>) -> bool {
    assumed(ctx).reservation_id_filter
}

/// `visible` condition of the webhook endpoint status and its mutation.
pub(crate) fn with_endpoint_status(ctx: &Context<'_>) -> bool {
    assumed(ctx).endpoint_status
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

/// Whether a stay is shown to clients: without the reservation status,
/// a cancelled reservation's stays are not (see [`Assumed`]).
fn shown(world: &World, hotel: &str, assumed: Assumed, stay: &Stay) -> bool {
    assumed.reservation_status
        || !world
            .hotel(hotel)
            .and_then(|h| h.reservations.get(&stay.reservation_id))
            .is_some_and(Reservation::is_cancelled)
}

// -------------------------------------------------------------------- query

pub struct QueryRoot;

#[Object(name = "Query")]
impl QueryRoot {
    /// Room stays of the caller's hotel in creation order. With the
    /// reservation status, stays of cancelled reservations are included
    /// (clients read `reservation.status`); without it they are not.
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
                        .filter(|(_, s)| shown(&world, hotel, core.assumed, s))
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
                    node: ReservationNode::new(hotel.clone(), reservation),
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

/// The mutations, by what they change.
#[derive(MergedObject, Default)]
#[graphql(name = "Mutation")]
pub struct MutationRoot(keys::KeyMutations, endpoints::EndpointMutations);
