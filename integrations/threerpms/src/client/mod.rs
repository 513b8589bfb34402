//! What keysmith asks of 3RPMS, in as few requests as the API allows: reads
//! (`read.rs`) page by 100 and look many stays up at once; writes
//! (`write.rs`) go in batches with `@chain`, create-and-assign pairs in one
//! request; `endpoints.rs` registers webhook endpoints.
use jiff::civil::Date;
use keysmith_core::{Result, Secret};
use serde::Deserialize;
use serde_json::Value;

use crate::{
    errors::{self},
    model::{RoomAccessKey, RoomStay, RoomStayKey},
    transport::{Operation, Transport},
};

mod endpoints;
mod read;
mod write;

pub use write::{Assignment, Creation, Rejected, WriteOutcome, WritePlan};

/// 3RPMS's largest page.
pub const PAGE_MAX: usize = 100;

/// Operations per request. 3RPMS documents no batch limit; 100 is the one
/// size it documents (its page maximum): 50 create-and-assign pairs.
pub const DEFAULT_BATCH_LIMIT: usize = 100;

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
    /// Asked for only where 3RPMS's schema has it.
    #[serde(default)]
    reservation: Option<ReservationNode>,
}

#[derive(Deserialize)]
struct ReservationNode {
    id: String,
    #[serde(default)]
    status: Option<String>,
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
    /// `cancelled`: the reservation statuses that mean cancelled, when the
    /// status is read at all.
    fn into_stay(self, cancelled: Option<&[String]>) -> Result<RoomStay> {
        let status = self.reservation.as_ref().and_then(|r| r.status.as_deref());
        let reservation_cancelled = match (status, cancelled) {
            (Some(status), Some(values)) => values.iter().any(|v| v.eq_ignore_ascii_case(status)),
            _ => false,
        };
        Ok(RoomStay {
            arrival: date(&self.arrival)?,
            departure: date(&self.departure)?,
            id: self.id,
            room_setup_id: self.room_setup.id,
            key_id: self.key.map(|k| k.id),
            reservation_cancelled,
            reservation_id: self.reservation.map(|r| r.id),
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

    async fn one(&self, operation: Operation) -> Result<Value> {
        let mut answers = self
            .transport
            .send(std::slice::from_ref(&operation))
            .await?;
        answers.pop().ok_or_else(|| errors::bad_answer("no answer"))
    }
}
