//! The fake's data: hotels with rooms, reservations, room stays, room access
//! keys and webhook endpoints, plus the snapshots the control API hands out.

use std::collections::{BTreeMap, HashMap};

use jiff::civil::Date;
use rand::distr::{Alphanumeric, SampleString};
use rand::Rng;

/// Status of a reservation. The vendor's guide speaks of reservations being
/// "cancelled or re-activated" but publishes neither the field nor its
/// values: the schema shows them only with `Assumed::reservation_status`.
#[derive(async_graphql::Enum, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReservationStatus {
    Confirmed,
    Cancelled,
}

/// Whether an endpoint is delivered to. The vendor documents that an
/// endpoint failing for days is disabled, not how the status is spelled:
/// the schema shows it only with `Assumed::endpoint_status`.
#[derive(async_graphql::Enum, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WebhookEndpointStatus {
    Enabled,
    Disabled,
}

/// The contents of a room access key. `Nfc` is a type the real API does not
/// (yet) have: the fake holds it so clients can be tested against a type
/// they did not query for. It can only be created through the control API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyKind {
    Pin { pin: String },
    KeyStorage { pin: String, compartment: String },
    Qr { qr_data: String },
    Nfc { nfc_data: String },
}

/// The brief's name for the argument of `add_foreign_key`.
pub type ForeignKey = KeyKind;

impl KeyKind {
    /// The GraphQL `__typename` of a key of this kind.
    pub fn type_name(&self) -> &'static str {
        match self {
            KeyKind::Pin { .. } => "RoomAccessPin",
            KeyKind::KeyStorage { .. } => "RoomAccessKeyStorage",
            KeyKind::Qr { .. } => "RoomAccessQR",
            KeyKind::Nfc { .. } => "RoomAccessNfc",
        }
    }
}

/// The events a webhook endpoint may subscribe to: those the vendor's
/// webhooks page lists. The fake emits the first six; `client.updated`
/// can be subscribed to.
pub const WEBHOOK_EVENTS: &[&str] = &[
    "room_stay.created",
    "room_stay.updated",
    "room_stay.deleted",
    "reservation.created",
    "reservation.updated",
    "room_access_key.deleted",
    "client.updated",
];

/// Active (enabled) webhook endpoints a hotel may have per integration,
/// as the vendor limits them.
pub const MAX_ACTIVE_ENDPOINTS: usize = 5;

#[derive(Clone, Debug)]
pub(crate) struct Room {
    pub name: String,
}

#[derive(Clone, Debug)]
pub(crate) struct Reservation {
    pub id: String,
    pub code: String,
    pub status: ReservationStatus,
}

impl Reservation {
    pub fn is_cancelled(&self) -> bool {
        self.status == ReservationStatus::Cancelled
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Stay {
    pub id: String,
    pub reservation_id: String,
    pub room_setup_id: String,
    pub from: Date,
    pub to: Date,
    pub key_id: Option<String>,
}

#[derive(Clone, Debug)]
pub(crate) struct Key {
    pub id: String,
    pub integration: String,
    pub kind: KeyKind,
}

#[derive(Clone, Debug)]
pub(crate) struct Endpoint {
    pub id: String,
    /// The integration whose key created it: the vendor's limit on active
    /// endpoints counts per integration.
    pub integration: String,
    pub url: String,
    pub status: WebhookEndpointStatus,
    pub events: Vec<String>,
    pub secret: String,
    /// Deliveries in a row that failed every attempt; reset by a success.
    pub consecutive_failures: u32,
}

/// Rows in creation order with lookup by id: pagination walks the order,
/// mutations look up by id.
#[derive(Clone, Debug)]
pub(crate) struct Table<T> {
    rows: BTreeMap<u64, T>,
    index: HashMap<String, u64>,
    next_seq: u64,
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Table {
            rows: BTreeMap::new(),
            index: HashMap::new(),
            next_seq: 1,
        }
    }
}

impl<T> Table<T> {
    pub fn insert(&mut self, id: String, row: T) {
        let seq = self.next_seq;
        self.next_seq += 1;
        if let Some(old) = self.index.insert(id, seq) {
            self.rows.remove(&old);
        }
        self.rows.insert(seq, row);
    }

    pub fn get(&self, id: &str) -> Option<&T> {
        self.index.get(id).and_then(|seq| self.rows.get(seq))
    }

    pub fn get_mut(&mut self, id: &str) -> Option<&mut T> {
        let seq = *self.index.get(id)?;
        self.rows.get_mut(&seq)
    }

    pub fn remove(&mut self, id: &str) -> Option<T> {
        let seq = self.index.remove(id)?;
        self.rows.remove(&seq)
    }

    pub fn contains(&self, id: &str) -> bool {
        self.index.contains_key(id)
    }

    /// Rows with their position, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &T)> {
        self.rows.iter().map(|(seq, row)| (*seq, row))
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.rows.values_mut()
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Hotel {
    /// Whether room access keys are set up; if not, key operations fail
    /// with a `configuration` error.
    pub configured: bool,
    pub rooms: BTreeMap<String, Room>,
    pub reservations: Table<Reservation>,
    pub stays: Table<Stay>,
    pub keys: Table<Key>,
    pub endpoints: Table<Endpoint>,
}

impl Hotel {
    pub fn new() -> Self {
        Hotel {
            configured: true,
            rooms: BTreeMap::new(),
            reservations: Table::default(),
            stays: Table::default(),
            keys: Table::default(),
            endpoints: Table::default(),
        }
    }

    /// Ids of the stays a key is assigned to, in stay order.
    pub fn stays_with_key(&self, key_id: &str) -> Vec<String> {
        self.stays
            .iter()
            .filter(|(_, s)| s.key_id.as_deref() == Some(key_id))
            .map(|(_, s)| s.id.clone())
            .collect()
    }

    /// A fresh id like "nQZA3P1U1", unique across this hotel's records.
    pub fn new_alnum_id(&self) -> String {
        loop {
            let id = Alphanumeric.sample_string(&mut rand::rng(), 9);
            if !self.id_taken(&id) {
                return id;
            }
        }
    }

    /// A fresh numeric id like "119157": the vendor's ids come in both forms.
    pub fn new_numeric_id(&self) -> String {
        loop {
            let id = rand::rng().random_range(100_000..10_000_000u32).to_string();
            if !self.id_taken(&id) {
                return id;
            }
        }
    }

    fn id_taken(&self, id: &str) -> bool {
        self.reservations.contains(id)
            || self.stays.contains(id)
            || self.keys.contains(id)
            || self.endpoints.contains(id)
    }
}

/// 64 alphanumeric characters, the form of webhook event and endpoint ids.
pub(crate) fn long_id() -> String {
    Alphanumeric.sample_string(&mut rand::rng(), 64)
}

/// Parses the vendor's `Date`: exactly `YYYY-MM-DD` and a real calendar day.
pub fn parse_date(s: &str) -> Option<Date> {
    let b = s.as_bytes();
    let shape_ok = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if !shape_ok {
        return None;
    }
    let year: i16 = s[0..4].parse().ok()?;
    let month: i8 = s[5..7].parse().ok()?;
    let day: i8 = s[8..10].parse().ok()?;
    Date::new(year, month, day).ok()
}

pub(crate) fn format_date(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), d.month(), d.day())
}

/// A room stay as the control API shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomStaySnapshot {
    pub id: String,
    pub reservation_id: String,
    pub room_setup_id: String,
    /// `YYYY-MM-DD`
    pub from: String,
    /// `YYYY-MM-DD`
    pub to: String,
    pub key_id: Option<String>,
}

impl RoomStaySnapshot {
    pub(crate) fn of(stay: &Stay) -> Self {
        RoomStaySnapshot {
            id: stay.id.clone(),
            reservation_id: stay.reservation_id.clone(),
            room_setup_id: stay.room_setup_id.clone(),
            from: format_date(stay.from),
            to: format_date(stay.to),
            key_id: stay.key_id.clone(),
        }
    }
}

/// A room access key as the control API shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeySnapshot {
    pub id: String,
    /// The integration that created it.
    pub integration: String,
    pub kind: KeyKind,
    /// Ids of the room stays it is assigned to.
    pub assigned_stays: Vec<String>,
}

impl KeySnapshot {
    pub(crate) fn of(hotel: &Hotel, key: &Key) -> Self {
        KeySnapshot {
            id: key.id.clone(),
            integration: key.integration.clone(),
            kind: key.kind.clone(),
            assigned_stays: hotel.stays_with_key(&key.id),
        }
    }

    /// The GraphQL type name, e.g. "RoomAccessPin".
    pub fn type_name(&self) -> &'static str {
        self.kind.type_name()
    }
}

/// A webhook endpoint as the control API shows it (the secret included, so
/// tests can check signatures).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookEndpointSnapshot {
    pub id: String,
    /// The integration that created it.
    pub integration: String,
    pub url: String,
    pub status: WebhookEndpointStatus,
    pub events: Vec<String>,
    pub secret: String,
    pub consecutive_failures: u32,
}

impl WebhookEndpointSnapshot {
    pub(crate) fn of(e: &Endpoint) -> Self {
        WebhookEndpointSnapshot {
            id: e.id.clone(),
            integration: e.integration.clone(),
            url: e.url.clone(),
            status: e.status,
            events: e.events.clone(),
            secret: e.secret.clone(),
            consecutive_failures: e.consecutive_failures,
        }
    }
}
