//! `Fake3rpms`: starting and stopping the fake, and the Rust control API
//! tests use to arrange data, cause changes (which emit webhooks) and look
//! at what clients did.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::batch::{Engine, Refusal};
use crate::config::{Access, FakeConfig};
use crate::counts::{Counters, RequestCounts};
use crate::cursor::CursorCodec;
use crate::model::{
    parse_date, Hotel, KeyKind, KeySnapshot, ReservationStatus, Room, RoomStaySnapshot,
    WebhookEndpointSnapshot,
};
use crate::rate_limit::RateLimiter;
use crate::schema::{self, Core};
use crate::server::{self, Http};
use crate::state::{ApiKey, Event, World};
use crate::types::TypeInfo;
use crate::webhooks::{DeliveryAttempt, SignatureFault, Webhooks};

struct Inner {
    core: Arc<Core>,
    http: Arc<Http>,
    webhooks: Webhooks,
    addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    server: parking_lot::Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The last handle gone: stop serving and delivering.
        let _ = self.shutdown.send(true);
    }
}

/// A running fake 3RPMS. Cheap to clone; all clones control the same server.
#[derive(Clone)]
pub struct Fake3rpms {
    inner: Arc<Inner>,
}

fn date(s: &str) -> jiff::civil::Date {
    parse_date(s).unwrap_or_else(|| panic!("fake-3rpms: {s:?} is not a YYYY-MM-DD date"))
}

impl Fake3rpms {
    /// Starts a fake on an ephemeral port of 127.0.0.1.
    pub async fn start(config: FakeConfig) -> std::io::Result<Fake3rpms> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), config).await
    }

    pub async fn start_on(addr: SocketAddr, config: FakeConfig) -> std::io::Result<Fake3rpms> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let core = Arc::new(Core {
            world: parking_lot::Mutex::new(World::default()),
            cursors: CursorCodec::new(config.cursor_ttl),
            assumed: config.assumed,
        });
        let schema = schema::build(core.clone());
        let types = TypeInfo::of(&schema).await;
        let counts = Arc::new(Counters::default());
        let (shutdown, stop) = watch::channel(false);
        let webhooks = Webhooks::start(core.clone(), &config, stop.clone())?;
        let http = Arc::new(Http {
            engine: Engine {
                core: core.clone(),
                schema,
                types,
                counts: counts.clone(),
                write_gate: tokio::sync::Mutex::new(()),
                max_batch: config.max_batch_operations.max(1),
                refusal: parking_lot::Mutex::new(None),
            },
            limiter: RateLimiter::new(
                config.rate_limit_per_minute,
                config.rate_limit_window,
                config.block_duration,
            ),
            counts,
        });
        let server = tokio::spawn(server::serve(listener, http.clone(), stop));
        tracing::info!(%addr, "fake 3RPMS listening");
        Ok(Fake3rpms {
            inner: Arc::new(Inner {
                core,
                http,
                webhooks,
                addr,
                shutdown,
                server: parking_lot::Mutex::new(Some(server)),
            }),
        })
    }

    /// `http://127.0.0.1:PORT/graphql`
    pub fn graphql_url(&self) -> String {
        format!("http://{}/graphql", self.inner.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// Stops serving and delivering. Held connections are dropped.
    pub async fn shutdown(self) {
        let _ = self.inner.shutdown.send(true);
        let task = self.inner.server.lock().take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }

    /// Applies a change and announces its events to webhook endpoints.
    fn change<T>(&self, f: impl FnOnce(&mut World) -> (T, Vec<Event>)) -> T {
        let (out, planned) = {
            let mut world = self.inner.core.world.lock();
            let (out, events) = f(&mut world);
            let planned = self.inner.webhooks.plan(&world, events);
            (out, planned)
        };
        self.inner.webhooks.enqueue(planned);
        out
    }

    fn read<T>(&self, f: impl FnOnce(&World) -> T) -> T {
        f(&self.inner.core.world.lock())
    }

    // ------------------------------------------------------------ set-up

    /// Adds a hotel (configured for room access keys). Adding it again is a no-op.
    pub fn add_hotel(&self, hotel: &str) {
        self.change(|w| {
            w.hotels.entry(hotel.to_string()).or_insert_with(Hotel::new);
            ((), vec![])
        })
    }

    /// Whether the hotel has room access keys set up; if not, key mutations
    /// fail with `configuration` errors and `roomAccessKey` reads null.
    pub fn set_hotel_configured(&self, hotel: &str, configured: bool) {
        self.change(|w| {
            w.hotel_or_panic(hotel).configured = configured;
            ((), vec![])
        })
    }

    /// Issues (or changes) an API key of `integration` for `hotel`.
    pub fn add_api_key(&self, hotel: &str, integration: &str, api_key: &str, access: Access) {
        self.change(|w| {
            w.hotel_or_panic(hotel);
            w.api_keys.insert(
                api_key.to_string(),
                ApiKey {
                    hotel: hotel.to_string(),
                    integration: integration.to_string(),
                    access,
                },
            );
            ((), vec![])
        })
    }

    /// Adds a room (a "room setup" in 3RPMS terms).
    pub fn add_room(&self, hotel: &str, room_setup_id: &str, name: &str) {
        self.change(|w| {
            w.hotel_or_panic(hotel).rooms.insert(
                room_setup_id.to_string(),
                Room {
                    name: name.to_string(),
                },
            );
            ((), vec![])
        })
    }

    // --------------------------------------------- changes (emit webhooks)

    /// Adds a confirmed reservation; returns its id. Emits `reservation.created`.
    pub fn add_reservation(&self, hotel: &str, code: &str) -> String {
        self.change(|w| w.add_reservation(hotel, code))
    }

    /// Emits `reservation.updated` with `updated_fields: ["status"]`.
    pub fn set_reservation_status(
        &self,
        hotel: &str,
        reservation_id: &str,
        status: ReservationStatus,
    ) {
        self.change(|w| ((), w.set_reservation_status(hotel, reservation_id, status)))
    }

    /// Adds a room stay (dates `YYYY-MM-DD`); returns its id. Emits `room_stay.created`.
    pub fn add_room_stay(
        &self,
        hotel: &str,
        reservation_id: &str,
        room_setup_id: &str,
        from: &str,
        to: &str,
    ) -> String {
        let (from, to) = (date(from), date(to));
        self.change(|w| w.add_stay(hotel, reservation_id, room_setup_id, from, to))
    }

    /// Moves a stay to another room. Emits `room_stay.updated` `["room_setup"]`.
    pub fn move_room_stay(&self, hotel: &str, stay_id: &str, room_setup_id: &str) {
        self.change(|w| ((), w.move_stay(hotel, stay_id, room_setup_id)))
    }

    /// Emits `room_stay.updated` `["reservation_from", "reservation_to"]`.
    pub fn change_room_stay_dates(&self, hotel: &str, stay_id: &str, from: &str, to: &str) {
        let (from, to) = (date(from), date(to));
        self.change(|w| ((), w.change_stay_dates(hotel, stay_id, from, to)))
    }

    /// Deletes a stay and its key assignment (the key itself stays).
    /// Emits `room_stay.deleted`.
    pub fn delete_room_stay(&self, hotel: &str, stay_id: &str) {
        self.change(|w| ((), w.delete_stay(hotel, stay_id)))
    }

    /// Splits a stay at `at`: the original ends there, a new stay in the
    /// same room runs from `at` to the old end and reuses the same room
    /// access key. Returns the new stay's id. Emits `room_stay.updated`
    /// `["reservation_to"]` then `room_stay.created`.
    pub fn split_room_stay(&self, hotel: &str, stay_id: &str, at: &str) -> String {
        let at = date(at);
        self.change(|w| w.split_stay(hotel, stay_id, at))
    }

    /// 3RPMS's own clean-up: unassigns the key everywhere and deletes it.
    /// Emits `room_access_key.deleted`.
    pub fn expire_key(&self, hotel: &str, key_id: &str) {
        self.change(|w| ((), w.expire_key(hotel, key_id)))
    }

    /// A key created by another integration (or of a type the API cannot
    /// create, like `KeyKind::Nfc`); returns its id. Emits nothing.
    pub fn add_foreign_key(&self, hotel: &str, integration: &str, kind: KeyKind) -> String {
        self.change(|w| (w.add_foreign_key(hotel, integration, kind), vec![]))
    }

    /// Assigns a key to a stay as hotel staff would, replacing any key it
    /// had. Emits `room_stay.updated` `["roomAccessKey"]`.
    pub fn assign_key(&self, hotel: &str, stay_id: &str, key_id: &str) {
        self.change(|w| ((), w.assign_key(hotel, stay_id, key_id)))
    }

    // ------------------------------------------------------------ looking

    pub fn room_stay(&self, hotel: &str, stay_id: &str) -> Option<RoomStaySnapshot> {
        self.read(|w| w.hotel(hotel)?.stays.get(stay_id).map(RoomStaySnapshot::of))
    }

    /// All room stays of a hotel in creation order.
    pub fn room_stays(&self, hotel: &str) -> Vec<RoomStaySnapshot> {
        self.read(|w| {
            w.hotel(hotel)
                .map(|h| {
                    h.stays
                        .iter()
                        .map(|(_, s)| RoomStaySnapshot::of(s))
                        .collect()
                })
                .unwrap_or_default()
        })
    }

    pub fn reservation_status(
        &self,
        hotel: &str,
        reservation_id: &str,
    ) -> Option<ReservationStatus> {
        self.read(|w| {
            w.hotel(hotel)?
                .reservations
                .get(reservation_id)
                .map(|r| r.status)
        })
    }

    pub fn key(&self, hotel: &str, key_id: &str) -> Option<KeySnapshot> {
        self.read(|w| {
            let h = w.hotel(hotel)?;
            h.keys.get(key_id).map(|k| KeySnapshot::of(h, k))
        })
    }

    /// All keys of a hotel in creation order.
    pub fn keys(&self, hotel: &str) -> Vec<KeySnapshot> {
        self.read(|w| {
            w.hotel(hotel)
                .map(|h| h.keys.iter().map(|(_, k)| KeySnapshot::of(h, k)).collect())
                .unwrap_or_default()
        })
    }

    /// Webhook endpoints of a hotel, secrets included.
    pub fn webhook_endpoints(&self, hotel: &str) -> Vec<WebhookEndpointSnapshot> {
        self.read(|w| {
            w.hotel(hotel)
                .map(|h| {
                    h.endpoints
                        .iter()
                        .map(|(_, e)| WebhookEndpointSnapshot::of(e))
                        .collect()
                })
                .unwrap_or_default()
        })
    }

    /// Removes a webhook endpoint, as hotel staff can in 3RPMS (the API
    /// documents no way to). Emits nothing.
    pub fn remove_webhook_endpoint(&self, hotel: &str, endpoint_id: &str) {
        self.change(|w| {
            w.remove_endpoint(hotel, endpoint_id);
            ((), vec![])
        })
    }

    // ------------------------------------------------------------ faults

    /// From now on, refuses every operation `matches` picks (given its query
    /// text and the variables sent), as 3RPMS refuses a query shape it does
    /// not accept; the other operations of a batch run as usual. Replaces
    /// an earlier refusal. Counted in `counts().refused`.
    pub fn refuse_operations(
        &self,
        refusal: Refusal,
        matches: impl Fn(&str, &serde_json::Value) -> bool + Send + Sync + 'static,
    ) {
        *self.inner.http.engine.refusal.lock() = Some((refusal, Box::new(matches)));
    }

    /// Ends `refuse_operations`.
    pub fn stop_refusing(&self) {
        *self.inner.http.engine.refusal.lock() = None;
    }

    // ---------------------------------------------------------- counting

    pub fn counts(&self) -> RequestCounts {
        self.inner.http.counts.snapshot()
    }

    pub fn reset_counts(&self) {
        self.inner.http.counts.reset()
    }

    // -------------------------------------------------------- rate limit

    /// Whether any client IP is blocked right now.
    pub fn is_blocked(&self) -> bool {
        self.inner.http.limiter.is_blocked()
    }

    /// Resolves once a block is running (at once if one already is).
    pub async fn wait_for_block(&self) {
        let limiter = &self.inner.http.limiter;
        let mut rx = limiter.subscribe_blocks();
        let _ = rx.wait_for(|_| limiter.is_blocked()).await;
    }

    /// Resolves once no IP is blocked (sleeps until the blocks end).
    pub async fn wait_until_unblocked(&self) {
        while let Some(end) = self.inner.http.limiter.latest_block_end() {
            tokio::time::sleep_until(end).await;
        }
    }

    // ---------------------------------------------------------- webhooks

    /// Resolves when no delivery is queued, in flight or waiting to be
    /// retried. Never resolves while deliveries are held.
    pub async fn webhooks_idle(&self) {
        self.inner.webhooks.idle().await
    }

    /// Every delivery attempt so far, oldest first.
    pub fn deliveries(&self) -> Vec<DeliveryAttempt> {
        self.inner.webhooks.attempts()
    }

    pub fn clear_deliveries(&self) {
        self.inner.webhooks.clear_attempts()
    }

    pub fn set_duplicate_webhooks(&self, on: bool) {
        self.inner.webhooks.set_duplicate(on)
    }

    pub fn set_reorder_webhooks(&self, on: bool) {
        self.inner.webhooks.set_reorder(on)
    }

    /// Queue events without sending them until `release_webhooks`, so a
    /// group of changes is delivered as one group (see `reorder_webhooks`).
    pub fn hold_webhooks(&self) {
        self.inner.webhooks.hold()
    }

    pub fn release_webhooks(&self) {
        self.inner.webhooks.release()
    }

    /// Sends a `room_stay.updated` event signed with a wrong secret to the
    /// hotel's subscribed endpoints (once, no retries); returns its id.
    pub fn send_badly_signed_event(&self, hotel: &str) -> String {
        self.send_event_with_signature_fault(hotel, SignatureFault::WrongSecret)
    }

    /// Like `send_badly_signed_event` with any signature fault.
    pub fn send_event_with_signature_fault(&self, hotel: &str, fault: SignatureFault) -> String {
        let planned = self.read(|w| {
            let object_id = w
                .hotel(hotel)
                .and_then(|h| h.stays.iter().next().map(|(_, s)| s.id.clone()))
                .unwrap_or_else(|| "0".to_string());
            self.inner
                .webhooks
                .plan(w, vec![Event::new(hotel, "room_stay.updated", &object_id)])
        });
        self.inner
            .webhooks
            .enqueue_faulty(planned, fault)
            .pop()
            .unwrap_or_default()
    }
}
