//! What keysmith asks of 3RPMS, in as few requests as the API allows: reads
//! page by 100 and look many stays up at once; writes go in batches with
//! `@chain`, create-and-assign pairs in one request.
use jiff::civil::Date;
use keysmith_core::{ErrorKind, Result, Secret};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::{
    errors::{self},
    model::{NewKey, RoomAccessKey, RoomStay, RoomStayKey},
    queries,
    transport::{Operation, Transport},
};

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

/// Changes to make in 3RPMS, sent in this order: removals (a stay takes one
/// key, so an old key leaves before a new one comes), assignments of existing
/// keys, new keys created and assigned, then deletions of keys no stay holds.
#[derive(Clone, Debug, Default)]
pub struct WritePlan {
    pub removals: Vec<Assignment>,
    pub assignments: Vec<Assignment>,
    pub creations: Vec<Creation>,
    pub deletions: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assignment {
    pub room_stay_id: String,
    pub key_id: String,
}

#[derive(Clone, Debug)]
pub struct Creation {
    pub room_stay_id: String,
    pub key: NewKey,
}

impl WritePlan {
    pub fn is_empty(&self) -> bool {
        self.removals.is_empty()
            && self.assignments.is_empty()
            && self.creations.is_empty()
            && self.deletions.is_empty()
    }
}

/// The 3RPMS key created for each stay of the plan's creations.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct WriteOutcome {
    pub created: Vec<Assignment>,
    pub requests: usize,
    /// Steps 3RPMS refused as invalid, each alone in its request; the rest
    /// of the plan was carried out.
    pub rejected: Vec<Rejected>,
}

/// A step of a plan that 3RPMS refused.
#[derive(Debug)]
pub struct Rejected {
    pub room_stay_id: Option<String>,
    pub key_id: Option<String>,
    pub error: keysmith_core::Error,
}

impl PartialEq for Rejected {
    fn eq(&self, other: &Self) -> bool {
        self.room_stay_id == other.room_stay_id && self.key_id == other.key_id
    }
}

impl Eq for Rejected {}

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

fn new_key_input(key: &NewKey) -> Value {
    match key {
        NewKey::Pin(pin) => json!({ "roomAccessPin": { "pin": pin.expose() } }),
        NewKey::KeyStorage { pin, compartment } => json!({
            "roomAccessKeyStorage": { "pin": pin.expose(), "compartment": compartment.expose() }
        }),
        NewKey::Qr(data) => json!({ "roomAccessQR": { "qrData": data.expose() } }),
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

    /// Carries out a plan in as few requests as the batch limit allows. Each
    /// request is all-or-nothing at 3RPMS. A request refused as invalid is
    /// split until the refused step is alone (see `WriteOutcome::rejected`);
    /// any other failure stops the plan there: the requests before it have
    /// happened, none after it is sent, and the caller reconciles from a
    /// fresh read.
    pub async fn write(&self, plan: &WritePlan) -> Result<WriteOutcome> {
        for creation in &plan.creations {
            creation.key.validate()?;
        }
        // Steps of one or two operations that must share a request.
        let mut steps: Vec<Vec<Operation>> = Vec::new();
        for a in &plan.removals {
            steps.push(vec![Operation::mutation(
                queries::REMOVE_KEY,
                json!({ "roomStayId": a.room_stay_id, "roomAccessKeyId": a.key_id }),
            )]);
        }
        for a in &plan.assignments {
            steps.push(vec![Operation::mutation(
                queries::ADD_KEY,
                json!({ "roomStayId": a.room_stay_id, "roomAccessKeyId": a.key_id }),
            )]);
        }
        let first_creation = steps.len();
        for c in &plan.creations {
            steps.push(vec![
                Operation::mutation(
                    queries::CREATE_KEY_CHAINED,
                    json!({ "input": new_key_input(&c.key) }),
                ),
                // The key id comes from the create, through @chain.
                Operation::mutation(queries::ADD_KEY, json!({ "roomStayId": c.room_stay_id })),
            ]);
        }
        let after_creations = steps.len();
        for key_id in &plan.deletions {
            steps.push(vec![Operation::mutation(
                queries::DELETE_KEY,
                json!({ "roomAccessKeyId": key_id }),
            )]);
        }

        // Groups of steps, one request each, within the batch limit.
        let mut groups: std::collections::VecDeque<Vec<usize>> = Default::default();
        let mut group = Vec::new();
        let mut size = 0;
        for (i, step) in steps.iter().enumerate() {
            if size + step.len() > self.batch_limit && !group.is_empty() {
                groups.push_back(std::mem::take(&mut group));
                size = 0;
            }
            size += step.len();
            group.push(i);
        }
        if !group.is_empty() {
            groups.push_back(group);
        }

        let mut outcome = WriteOutcome::default();
        while let Some(group) = groups.pop_front() {
            let request: Vec<Operation> = group
                .iter()
                .flat_map(|&i| steps[i].iter().cloned())
                .collect();
            outcome.requests += 1;
            let answers = match self.transport.send(&request).await {
                Ok(answers) => answers,
                // One bad step fails its whole request (all-or-nothing), and
                // would fail it again on every retry: halve the request until
                // the bad step stands alone, so the others still go through.
                Err(e) if e.kind() == ErrorKind::InvalidArgument && group.len() > 1 => {
                    let (first, second) = group.split_at(group.len() / 2);
                    groups.push_front(second.to_vec());
                    groups.push_front(first.to_vec());
                    continue;
                }
                Err(e) if e.kind() == ErrorKind::InvalidArgument => {
                    let step = group[0];
                    let (room_stay_id, key_id) = if step < plan.removals.len() {
                        let a = &plan.removals[step];
                        (Some(a.room_stay_id.clone()), Some(a.key_id.clone()))
                    } else if step < first_creation {
                        let a = &plan.assignments[step - plan.removals.len()];
                        (Some(a.room_stay_id.clone()), Some(a.key_id.clone()))
                    } else if step < after_creations {
                        (
                            Some(plan.creations[step - first_creation].room_stay_id.clone()),
                            None,
                        )
                    } else {
                        (None, Some(plan.deletions[step - after_creations].clone()))
                    };
                    outcome.rejected.push(Rejected {
                        room_stay_id,
                        key_id,
                        error: e,
                    });
                    continue;
                }
                Err(e) => return Err(e),
            };
            let mut answers = answers.into_iter();
            for step in group {
                let is_creation = (first_creation..after_creations).contains(&step);
                if is_creation {
                    let created = answers.next().unwrap_or(Value::Null);
                    let _assigned = answers.next();
                    #[derive(Deserialize)]
                    struct Created {
                        #[serde(rename = "roomAccessKey")]
                        key: IdOnly,
                    }
                    let created: Created = field(created, "createRoomAccessKey")?;
                    outcome.created.push(Assignment {
                        room_stay_id: plan.creations[step - first_creation].room_stay_id.clone(),
                        key_id: created.key.id,
                    });
                } else {
                    answers.next();
                }
            }
        }
        Ok(outcome)
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
