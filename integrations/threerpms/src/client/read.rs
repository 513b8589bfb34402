//! Reads: room stays by date window, by id and by reservation, for the
//! sync; room stays with their keys, for the read API.
use jiff::civil::Date;
use keysmith_core::Result;
use serde_json::{json, Value};

use super::{
    field, Client, Connection, KeyedStayNode, PageInfo, ReservationKeyedRooms, ReservationRooms,
    StayNode, PAGE_MAX,
};
use crate::{
    detect::Detected,
    model::{RoomStay, RoomStayKey},
    queries,
    transport::Operation,
};

/// Reservations asked for in one query, each with a page of 100 rooms.
const RESERVATIONS_PER_QUERY: usize = 10;

impl Client {
    /// Every room stay from `first` to `last` (dates, both included), every
    /// page. Returns the stays and the number of requests it took.
    pub async fn room_stays_between(
        &self,
        detected: &Detected,
        first: Date,
        last: Date,
    ) -> Result<(Vec<RoomStay>, usize)> {
        let mut stays = Vec::new();
        let mut cursor: Option<String> = None;
        let mut requests = 0;
        loop {
            let data = self
                .one(Operation::query(
                    detected.queries.between.clone(),
                    json!({ "start": first.to_string(), "end": last.to_string(), "cursor": cursor }),
                ))
                .await?;
            requests += 1;
            let page: Connection<StayNode> = field(data, "room_stays")?;
            for edge in page.edges {
                stays.push(edge.node.into_stay(detected.cancelled())?);
            }
            match page.page_info {
                Some(PageInfo {
                    has_next_page: true,
                    end_cursor: Some(next),
                }) => cursor = Some(next),
                _ => return Ok((stays, requests)),
            }
        }
    }

    /// The room stays with these ids (those that still exist), 100 ids a
    /// query and as many queries a request as the batch limit allows.
    pub async fn room_stays_by_ids(
        &self,
        detected: &Detected,
        ids: &[String],
    ) -> Result<(Vec<RoomStay>, usize)> {
        let operations: Vec<Operation> = ids
            .chunks(PAGE_MAX)
            .map(|chunk| Operation::query(detected.queries.by_ids.clone(), json!({ "ids": chunk })))
            .collect();
        let mut stays = Vec::new();
        let mut requests = 0;
        for request in operations.chunks(self.batch_limit) {
            let answers = self.transport.send(request).await?;
            requests += 1;
            for data in answers {
                let page: Connection<StayNode> = field(data, "room_stays")?;
                for edge in page.edges {
                    stays.push(edge.node.into_stay(detected.cancelled())?);
                }
            }
        }
        Ok((stays, requests))
    }

    /// The room stays of these reservations, every page of rooms, where
    /// 3RPMS's schema allows reading reservations by id (see
    /// [`Detected`]); `None` where it does not. Ten reservations a query (a
    /// hundred reservations of a hundred rooms each is more than a GraphQL
    /// server's complexity budget allows), and as many queries a request as
    /// the batch limit allows.
    pub async fn reservation_stays(
        &self,
        detected: &Detected,
        reservation_ids: &[String],
    ) -> Result<Option<(Vec<RoomStay>, usize)>> {
        let Some(query) = &detected.queries.of_reservations else {
            return Ok(None);
        };
        let operations: Vec<Operation> = reservation_ids
            .chunks(RESERVATIONS_PER_QUERY)
            .map(|chunk| {
                Operation::query(
                    query.clone(),
                    json!({ "ids": chunk, "cursor": Value::Null }),
                )
            })
            .collect();
        let mut stays = Vec::new();
        let mut requests = 0;
        // Reservations with more rooms than one page, and where to go on.
        let mut pending: Vec<(String, String)> = Vec::new();
        for request in operations.chunks(self.batch_limit) {
            let answers = self.transport.send(request).await?;
            requests += 1;
            for data in answers {
                let page: Connection<ReservationRooms> = field(data, "reservations")?;
                for edge in page.edges {
                    let reservation = edge.node;
                    for room in reservation.rooms.edges {
                        stays.push(room.node.into_stay(detected.cancelled())?);
                    }
                    if let Some(PageInfo {
                        has_next_page: true,
                        end_cursor: Some(next),
                    }) = reservation.rooms.page_info
                    {
                        pending.push((reservation.id, next));
                    }
                }
            }
        }
        for (id, after) in pending {
            let mut cursor = Some(after);
            while let Some(after) = cursor.take() {
                let data = self
                    .one(Operation::query(
                        query.clone(),
                        json!({ "ids": [id.clone()], "cursor": after }),
                    ))
                    .await?;
                requests += 1;
                let page: Connection<ReservationRooms> = field(data, "reservations")?;
                for edge in page.edges {
                    for room in edge.node.rooms.edges {
                        stays.push(room.node.into_stay(detected.cancelled())?);
                    }
                    if let Some(PageInfo {
                        has_next_page: true,
                        end_cursor: Some(next),
                    }) = edge.node.rooms.page_info
                    {
                        cursor = Some(next);
                    }
                }
            }
        }
        Ok(Some((stays, requests)))
    }

    /// Every room of the reservation with this code and the key of each,
    /// every page. `None` when no reservation has the code.
    pub async fn reservation_room_keys(
        &self,
        code: &str,
        staff: bool,
    ) -> Result<Option<Vec<RoomStayKey>>> {
        let mut rooms = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let data = self
                .one(Operation::query(
                    queries::RESERVATION_ROOM_KEYS,
                    json!({ "code": code, "cursor": cursor, "staff": staff }),
                ))
                .await?;
            let page: Connection<ReservationKeyedRooms> = field(data, "reservations")?;
            let Some(edge) = page.edges.into_iter().next() else {
                return Ok(None);
            };
            let connection = edge.node.rooms;
            rooms.extend(connection.edges.into_iter().map(|e| e.node.into_view()));
            match connection.page_info {
                Some(PageInfo {
                    has_next_page: true,
                    end_cursor: Some(next),
                }) => cursor = Some(next),
                _ => return Ok(Some(rooms)),
            }
        }
    }

    /// One room stay and its key; `None` when there is no such stay.
    pub async fn room_stay_key(
        &self,
        room_stay_id: &str,
        staff: bool,
    ) -> Result<Option<RoomStayKey>> {
        let data = self
            .one(Operation::query(
                queries::ROOM_STAY_KEY,
                json!({ "id": room_stay_id, "staff": staff }),
            ))
            .await?;
        let page: Connection<KeyedStayNode> = field(data, "room_stays")?;
        Ok(page.edges.into_iter().next().map(|e| e.node.into_view()))
    }
}
