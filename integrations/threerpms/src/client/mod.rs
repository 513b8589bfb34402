//! What keysmith asks of 3RPMS, in as few requests as the API allows: reads
//! page by 100 and look many stays up at once; writes (`write.rs`) go in
//! batches with `@chain`, create-and-assign pairs in one request.
use jiff::civil::Date;
use keysmith_core::{Result, Secret};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::{
    errors::{self},
    model::{RoomAccessKey, RoomStay, RoomStayKey},
    queries,
    transport::{Operation, Transport},
};

mod write;

pub use write::{Assignment, Creation, Rejected, WriteOutcome, WritePlan};

/// 3RPMS's largest page.
pub const PAGE_MAX: usize = 100;

/// Operations per request. 3RPMS documents no batch limit; 200 operations
/// is 100 create-and-assign pairs, the same as its page size.
pub const DEFAULT_BATCH_LIMIT: usize = 200;

/// Reservations asked for in one query, each with a page of 100 rooms.
const RESERVATIONS_PER_QUERY: usize = 10;

#[derive(Clone, Debug)]
pub struct Client {
    transport: Transport,
    batch_limit: usize,
}

#[derive(Deserialize)]
struct Connection<T> {
    edges: Vec<Edge<T>>,
    #[serde(rename = "pageInfo", default)]
    page_info: Option<PageInfo>,
}

#[derive(Deserialize)]
struct Edge<T> {
    node: T,
}

#[derive(Deserialize)]
struct PageInfo {
    #[serde(rename = "hasNextPage")]
    has_next_page: bool,
    #[serde(rename = "endCursor")]
    end_cursor: Option<String>,
}

#[derive(Deserialize)]
struct IdOnly {
    id: String,
}

#[derive(Deserialize)]
struct StayNode {
    id: String,
    room_setup: IdOnly,
    arrival: String,
    departure: String,
    #[serde(rename = "roomAccessKey")]
    key: Option<IdOnly>,
    reservation: ReservationNode,
}

#[derive(Deserialize)]
struct ReservationNode {
    id: String,
    status: String,
}

#[derive(Deserialize)]
struct RoomSetup {
    id: String,
    name: String,
}

#[derive(Deserialize)]
struct KeyedStayNode {
    id: String,
    room_setup: RoomSetup,
    #[serde(rename = "roomAccessKey")]
    key: Option<KeyNode>,
}

#[derive(Deserialize)]
struct KeyNode {
    #[serde(rename = "__typename")]
    type_name: String,
    id: String,
    #[serde(default)]
    pin: Option<String>,
    #[serde(default)]
    compartment: Option<String>,
    #[serde(rename = "qrData", default)]
    qr_data: Option<String>,
}

#[derive(Deserialize)]
struct ReservationRooms {
    id: String,
    rooms: Connection<StayNode>,
}

#[derive(Deserialize)]
struct ReservationKeyedRooms {
    rooms: Connection<KeyedStayNode>,
}

fn field<T: for<'de> Deserialize<'de>>(data: Value, name: &str) -> Result<T> {
    let value = match data {
        Value::Object(mut map) => map.remove(name).unwrap_or(Value::Null),
        _ => Value::Null,
    };
    serde_json::from_value(value).map_err(|e| errors::bad_answer(format!("{name}: {e}")))
}

fn date(s: &str) -> Result<Date> {
    s.parse()
        .map_err(|e| errors::bad_answer(format!("date {s:?}: {e}")))
}

impl StayNode {
    fn into_stay(self) -> Result<RoomStay> {
        Ok(RoomStay {
            arrival: date(&self.arrival)?,
            departure: date(&self.departure)?,
            id: self.id,
            room_setup_id: self.room_setup.id,
            key_id: self.key.map(|k| k.id),
            reservation_cancelled: self.reservation.status.eq_ignore_ascii_case("CANCELLED"),
            reservation_id: self.reservation.id,
        })
    }
}

impl KeyNode {
    fn into_key(self) -> RoomAccessKey {
        let secret = |v: Option<String>| Secret::new(v.unwrap_or_default());
        match self.type_name.as_str() {
            "RoomAccessPin" => RoomAccessKey::Pin {
                id: self.id,
                pin: secret(self.pin),
            },
            "RoomAccessKeyStorage" => RoomAccessKey::KeyStorage {
                id: self.id,
                pin: secret(self.pin),
                compartment: secret(self.compartment),
            },
            "RoomAccessQR" => RoomAccessKey::Qr {
                id: self.id,
                qr_data: secret(self.qr_data),
            },
            _ => RoomAccessKey::Unknown {
                id: self.id,
                type_name: self.type_name,
            },
        }
    }
}

impl KeyedStayNode {
    fn into_view(self) -> RoomStayKey {
        RoomStayKey {
            room_stay_id: self.id,
            room_name: self.room_setup.name,
            room_setup_id: self.room_setup.id,
            key: self.key.map(KeyNode::into_key),
        }
    }
}

impl Client {
    pub fn new(transport: Transport) -> Self {
        Self {
            transport,
            batch_limit: DEFAULT_BATCH_LIMIT,
        }
    }

    pub fn with_batch_limit(mut self, limit: usize) -> Self {
        // A create and its chained assignment must share a request.
        self.batch_limit = limit.max(2);
        self
    }

    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// Every room stay from `first` to `last` (dates, both included), every
    /// page. Returns the stays and the number of requests it took.
    pub async fn room_stays_between(
        &self,
        first: Date,
        last: Date,
    ) -> Result<(Vec<RoomStay>, usize)> {
        let mut stays = Vec::new();
        let mut cursor: Option<String> = None;
        let mut requests = 0;
        loop {
            let data = self
                .one(Operation::query(
                    queries::ROOM_STAYS_BETWEEN,
                    json!({ "start": first.to_string(), "end": last.to_string(), "cursor": cursor }),
                ))
                .await?;
            requests += 1;
            let page: Connection<StayNode> = field(data, "room_stays")?;
            for edge in page.edges {
                stays.push(edge.node.into_stay()?);
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
    pub async fn room_stays_by_ids(&self, ids: &[String]) -> Result<(Vec<RoomStay>, usize)> {
        let operations: Vec<Operation> = ids
            .chunks(PAGE_MAX)
            .map(|chunk| Operation::query(queries::ROOM_STAYS_BY_IDS, json!({ "ids": chunk })))
            .collect();
        let mut stays = Vec::new();
        let mut requests = 0;
        for request in operations.chunks(self.batch_limit) {
            let answers = self.transport.send(request).await?;
            requests += 1;
            for data in answers {
                let page: Connection<StayNode> = field(data, "room_stays")?;
                for edge in page.edges {
                    stays.push(edge.node.into_stay()?);
                }
            }
        }
        Ok((stays, requests))
    }

    /// The room stays of these reservations, every page of rooms. Ten
    /// reservations a query (a hundred reservations of a hundred rooms each
    /// is more than a GraphQL server's complexity budget allows), and as
    /// many queries a request as the batch limit allows.
    pub async fn reservation_stays(
        &self,
        reservation_ids: &[String],
    ) -> Result<(Vec<RoomStay>, usize)> {
        let operations: Vec<Operation> = reservation_ids
            .chunks(RESERVATIONS_PER_QUERY)
            .map(|chunk| {
                Operation::query(
                    queries::RESERVATION_STAYS,
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
                        stays.push(room.node.into_stay()?);
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
                        queries::RESERVATION_STAYS,
                        json!({ "ids": [id.clone()], "cursor": after }),
                    ))
                    .await?;
                requests += 1;
                let page: Connection<ReservationRooms> = field(data, "reservations")?;
                for edge in page.edges {
                    for room in edge.node.rooms.edges {
                        stays.push(room.node.into_stay()?);
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
        Ok((stays, requests))
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

    /// Registers a webhook endpoint, disabled: the answer carries the secret,
    /// readable only this once, which the caller stores before enabling.
    pub async fn create_webhook_endpoint(
        &self,
        url: &str,
        events: &[&str],
    ) -> Result<(String, Secret<String>)> {
        let data = self
            .one(Operation::mutation(
                queries::CREATE_WEBHOOK_ENDPOINT,
                json!({ "url": url, "events": events }),
            ))
            .await?;
        #[derive(Deserialize)]
        struct Created {
            #[serde(rename = "webhookEndpoint")]
            endpoint: IdOnly,
            secret: String,
        }
        let created: Created = field(data, "createWebhookEndpoint")?;
        Ok((created.endpoint.id, Secret::new(created.secret)))
    }

    pub async fn enable_webhook_endpoint(&self, id: &str) -> Result<()> {
        self.one(Operation::mutation(
            queries::ENABLE_WEBHOOK_ENDPOINT,
            json!({ "id": id }),
        ))
        .await
        .map(drop)
    }

    async fn one(&self, operation: Operation) -> Result<Value> {
        let mut answers = self
            .transport
            .send(std::slice::from_ref(&operation))
            .await?;
        answers.pop().ok_or_else(|| errors::bad_answer("no answer"))
    }
}
