//! keysmith with 3RPMS, end to end: the real keysmith server on an ephemeral
//! port, the fake 3RPMS server on another, keysmith's gRPC API in between.
//! Every scenario of the room access keys guide, against the fake's
//! documented schema and against its assumed extras; departures that take
//! effect at once, the horizon, one failing event or stay parked while the
//! hotel goes on, webhook registration as the vendor says, the read API,
//! errors, the rate-limit block, and request efficiency.
mod common;

use std::time::Duration;

use common::{reflection, TestServer, PROPERTY, T0};
use fake_3rpms::{
    Access, Assumed, Fake3rpms, FakeConfig, KeyKind, Refusal, ReservationStatus,
    WebhookEndpointStatus,
};
use jiff::civil::Date;
use keysmith_api::v1::{self as pb, pms_service_client::PmsServiceClient};
use keysmith_server::Config;
use serde_json::json;
use tonic::{transport::Channel, Code};
use tonic_types::StatusExt;

const WRITE_KEY: &str = "api_keysmith_write";
const READ_KEY: &str = "api_keysmith_read";

/// The hotel's date at T0 (2030-03-17 17:46 UTC).
fn day(n: i64) -> String {
    let today = Date::constant(2030, 3, 17);
    today
        .checked_add(jiff::Span::new().days(n))
        .unwrap()
        .to_string()
}

fn unix(date: &str, hour: i8) -> i64 {
    let d: Date = date.parse().unwrap();
    d.at(hour, 0, 0, 0)
        .to_zoned(jiff::tz::TimeZone::UTC)
        .unwrap()
        .timestamp()
        .as_second()
}

struct Env {
    fake: Fake3rpms,
    server: TestServer,
    pms: PmsServiceClient<Channel>,
    /// keysmith's `[threerpms]`, for a restart.
    threerpms: serde_json::Value,
}

struct Options {
    fake: FakeConfig,
    api_key: &'static str,
    webhooks: bool,
    /// Extra PIN rooms t-0 .. t-(n-1), mapped from 3RPMS rooms rs-t-i.
    extra_rooms: usize,
    edit: fn(&mut serde_json::Value),
    /// Changes to keysmith's own configuration (authentication).
    server: fn(&mut Config),
}

impl Default for Options {
    fn default() -> Self {
        Self {
            fake: FakeConfig::default(),
            api_key: WRITE_KEY,
            webhooks: false,
            extra_rooms: 0,
            edit: |_| {},
            server: |_| {},
        }
    }
}

async fn env(options: Options) -> Env {
    if std::env::var_os("TEST_LOG").is_some() {
        keysmith_server::telemetry::init(&keysmith_server::config::LogConfig::default());
    }
    let fake = Fake3rpms::start(options.fake).await.unwrap();
    fake.add_hotel(PROPERTY);
    fake.add_api_key(PROPERTY, "keysmith", WRITE_KEY, Access::Write);
    fake.add_api_key(PROPERTY, "keysmith", READ_KEY, Access::Read);
    fake.add_room(PROPERTY, "rs-101", "Room 101");
    fake.add_room(PROPERTY, "rs-102", "Room 102");
    fake.add_room(PROPERTY, "rs-999", "Room 999 (not mapped)");
    let mut rooms = vec![
        json!({"room_setup_id": "rs-101", "entrances": ["room-101"]}),
        json!({"room_setup_id": "rs-102", "spaces": ["room-102"]}),
    ];
    for i in 0..options.extra_rooms {
        fake.add_room(PROPERTY, &format!("rs-t-{i}"), &format!("Test room {i}"));
        rooms.push(json!({"room_setup_id": format!("rs-t-{i}"), "entrances": [format!("t-{i}")]}));
    }
    let mut threerpms = json!({
        "endpoint": fake.graphql_url(),
        "connect_timeout_ms": 2000,
        "request_timeout_ms": 5000,
        "initial_sync": false,
        // A failed event is tried again at once (a few milliseconds): the
        // tests wait for it to be parked, never for the time to pass.
        "retry_backoff_ms": 5,
        "hotels": [{
            "property_id": PROPERTY,
            "api_key": options.api_key,
            "time_zone": "UTC",
            "rooms": rooms,
        }],
    });
    if options.webhooks {
        threerpms["webhook_listen"] = json!("127.0.0.1:0");
    }
    (options.edit)(&mut threerpms);
    let kept = threerpms.clone();
    let extra = options.extra_rooms;
    let edit_server = options.server;
    let server = TestServer::start_with(move |c: &mut Config| {
        edit_server(c);
        c.threerpms = Some(serde_json::from_value(threerpms).expect("threerpms config"));
        let property = &mut c.drivers.offline_lock.as_mut().unwrap().properties[0];
        let template = property
            .entrances
            .iter()
            .find(|e| e.id == "room-101")
            .unwrap()
            .clone();
        for i in 0..extra {
            let mut e = template.clone();
            e.id = format!("t-{i}");
            e.spaces = vec![format!("t-{i}")];
            property.entrances.push(e);
        }
    })
    .await;
    let addr = server.running.as_ref().unwrap().addr;
    let pms = PmsServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    Env {
        fake,
        server,
        pms,
        threerpms: kept,
    }
}

/// The fake with every assumed extra.
fn assuming_all() -> FakeConfig {
    FakeConfig {
        assumed: Assumed::ALL,
        ..FakeConfig::default()
    }
}

/// Both modes of the fake: the documented schema, and every assumed extra.
fn both_modes() -> [(&'static str, FakeConfig); 2] {
    [
        ("documented", FakeConfig::default()),
        ("assumed", assuming_all()),
    ]
}

impl Env {
    fn stay(&self, reservation: &str, room: &str, from: &str, to: &str) -> String {
        self.fake
            .add_room_stay(PROPERTY, reservation, room, from, to)
    }

    async fn sync(&self) -> pb::SyncRoomStaysResponse {
        self.pms
            .clone()
            .sync_room_stays(pb::SyncRoomStaysRequest {
                property_id: PROPERTY.into(),
                room_stay_ids: vec![],
            })
            .await
            .expect("sync")
            .into_inner()
    }

    /// keysmith's keys for a room stay (every generation), newest last.
    async fn keys_of(&self, stay: &str) -> Vec<pb::AccessKey> {
        let mut out = Vec::new();
        for generation in ["", ":1", ":2"] {
            let page = self
                .server
                .list(pb::ListKeysRequest {
                    property_id: PROPERTY.into(),
                    reservation_key: format!("3rpms-stay:{stay}{generation}"),
                    include_revoked: true,
                    ..Default::default()
                })
                .await
                .unwrap();
            out.extend(page.keys);
        }
        out
    }

    async fn live_key(&self, stay: &str) -> pb::AccessKey {
        let keys = self.keys_of(stay).await;
        let live: Vec<_> = keys
            .into_iter()
            .filter(|k| k.state != pb::KeyState::Revoked as i32)
            .collect();
        assert_eq!(live.len(), 1, "one live key for {stay}: {live:?}");
        live.into_iter().next().unwrap()
    }

    /// The PIN 3RPMS shows on the stay.
    fn published_pin(&self, stay: &str) -> (String, String) {
        let s = self.fake.room_stay(PROPERTY, stay).expect("stay");
        let key_id = s.key_id.expect("a key on the stay");
        let key = self.fake.key(PROPERTY, &key_id).expect("key exists");
        assert_eq!(key.integration, "keysmith");
        match key.kind {
            KeyKind::Pin { pin } => (key_id, pin),
            other => panic!("expected a pin, got {other:?}"),
        }
    }

    async fn webhooks_settled(&self) {
        self.fake.webhooks_idle().await;
        self.server
            .running
            .as_ref()
            .unwrap()
            .webhooks_processed(PROPERTY)
            .await;
    }

    async fn register_webhooks(&self) {
        let addr = self.server.running.as_ref().unwrap().webhook_addr.unwrap();
        let answer = self
            .pms
            .clone()
            .register_webhook_endpoint(pb::RegisterWebhookEndpointRequest {
                property_id: PROPERTY.into(),
                url: format!("http://{addr}/3rpms/webhooks/{PROPERTY}"),
                replace: false,
                previous_endpoint_removed: false,
            })
            .await
            .expect("registered")
            .into_inner();
        assert!(answer.enabled);
        let endpoints = self.fake.webhook_endpoints(PROPERTY);
        assert_eq!(endpoints.len(), 1);
        assert_eq!(endpoints[0].id, answer.endpoint_id);
        assert_eq!(endpoints[0].status, WebhookEndpointStatus::Enabled);
    }

    /// The keys of a stay are all revoked, and 3RPMS shows none on it.
    async fn assert_no_key(&self, stay: &str, rpms_key: &str) {
        let keys = self.keys_of(stay).await;
        assert!(!keys.is_empty(), "{stay} had a key");
        assert!(
            keys.iter().all(|k| k.state == pb::KeyState::Revoked as i32),
            "every key of {stay} revoked: {keys:?}"
        );
        if let Some(s) = self.fake.room_stay(PROPERTY, stay) {
            assert_eq!(s.key_id, None, "3RPMS shows no key on {stay}");
        }
        assert!(
            self.fake.key(PROPERTY, rpms_key).is_none(),
            "the 3RPMS key is deleted"
        );
    }

    async fn parked(&self) -> Vec<pb::ParkedItem> {
        self.pms
            .clone()
            .list_parked_items(pb::ListParkedItemsRequest {
                property_id: PROPERTY.into(),
            })
            .await
            .expect("listed")
            .into_inner()
            .items
    }

    async fn register(
        &self,
        url: String,
        replace: bool,
        previous_endpoint_removed: bool,
    ) -> Result<pb::RegisterWebhookEndpointResponse, tonic::Status> {
        self.pms
            .clone()
            .register_webhook_endpoint(pb::RegisterWebhookEndpointRequest {
                property_id: PROPERTY.into(),
                url,
                replace,
                previous_endpoint_removed,
            })
            .await
            .map(tonic::Response::into_inner)
    }

    /// The receiver's URL (plain http: a loopback address).
    fn hook_url(&self) -> String {
        let addr = self.server.running.as_ref().unwrap().webhook_addr.unwrap();
        format!("http://{addr}/3rpms/webhooks/{PROPERTY}")
    }
}

fn pin_of(key: &pb::AccessKey) -> String {
    common::pin(key)
}

/// With 3RPMS configured, reflection lists PmsService beside the services
/// always served (without it, it does not: tests/reflection.rs).
#[tokio::test]
async fn reflection_lists_pms_service_when_3rpms_is_configured() {
    let env = env(Options::default()).await;
    let channel = &env.server.channel;
    for listed in [
        reflection::v1::services(channel).await,
        reflection::v1alpha::services(channel).await,
    ] {
        for served in [
            "keysmith.v1.PmsService",
            "keysmith.v1.AccessService",
            "keysmith.sim.v1.LockSimulatorService",
        ] {
            assert!(listed.iter().any(|s| s == served), "{served} in {listed:?}");
        }
    }
}

#[tokio::test]
async fn the_window_sync_gives_every_stay_a_working_key_in_one_read_and_one_write() {
    let e = env(Options::default()).await;
    let r = e.fake.add_reservation(PROPERTY, "R-1001");
    let s1 = e.stay(&r, "rs-101", &day(0), &day(2));
    let s2 = e.stay(&r, "rs-102", &day(1), &day(3));
    let later = e.stay(&r, "rs-101", &day(10), &day(12));
    let unmapped = e.stay(&r, "rs-999", &day(1), &day(2));
    e.fake.reset_counts();

    let report = e.sync().await;
    assert_eq!(report.read_requests, 1);
    assert_eq!(report.write_requests, 1);
    assert_eq!(report.keys_issued, 2);
    assert_eq!(report.keys_published, 2);
    // And, the first time, the two requests that introspect the schema.
    assert_eq!(e.fake.counts().http_requests, 4, "{:?}", e.fake.counts());
    assert!(report
        .skipped
        .iter()
        .any(|s| s.room_stay_id == unmapped && s.why.contains("no entrance mapping")));

    for (stay, entrance, arrival, departure) in [
        (&s1, "room-101", day(0), day(2)),
        (&s2, "room-102", day(1), day(3)),
    ] {
        let key = e.live_key(stay).await;
        assert_eq!(key.state, pb::KeyState::Active as i32);
        assert_eq!(key.entrances[0].entrance_id, entrance);
        assert_eq!(key.starts_at.unwrap().seconds, unix(&arrival, 15));
        assert_eq!(key.ends_at.unwrap().seconds, unix(&departure, 11));
        let (_, published) = e.published_pin(stay);
        assert_eq!(published, pin_of(&key), "3RPMS shows the lock's PIN");
        let at = unix(&arrival, 16).max(T0);
        assert!(
            e.server.present(entrance, &published, at).await.granted,
            "the published PIN opens {entrance}"
        );
    }
    assert_eq!(e.fake.room_stay(PROPERTY, &later).unwrap().key_id, None);

    // keysmith remembers which 3RPMS stay and key each of its keys is for.
    let k1 = e.live_key(&s1).await;
    let links = e
        .pms
        .clone()
        .list_room_stay_links(pb::ListRoomStayLinksRequest {
            property_id: PROPERTY.into(),
            key_id: k1.key_id.clone(),
            room_stay_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .links;
    assert_eq!(links.len(), 1);
    assert_eq!(links[0].room_stay_id, s1);
    assert_eq!(links[0].room_setup_id, "rs-101");
    assert_eq!(links[0].arrival, day(0));
    assert_eq!(
        Some(links[0].pms_key_id.clone()),
        e.fake.room_stay(PROPERTY, &s1).unwrap().key_id
    );

    // Nothing changed: a second sync reads and writes nothing more.
    e.fake.reset_counts();
    let again = e.sync().await;
    assert_eq!((again.keys_issued, again.write_requests), (0, 0));
    assert_eq!(e.fake.counts().http_requests, 1);
}

/// Reads page by 100; writes go 100 operations a request (a create and its
/// assignment are two), the bound the fake holds keysmith to.
#[tokio::test]
async fn bringing_n_stays_into_sync_costs_a_read_per_hundred_and_a_write_per_fifty() {
    for n in [1usize, 20, 200] {
        let e = env(Options {
            extra_rooms: n,
            ..Options::default()
        })
        .await;
        let r = e.fake.add_reservation(PROPERTY, "GROUP");
        for i in 0..n {
            e.stay(&r, &format!("rs-t-{i}"), &day(1), &day(3));
        }
        e.fake.reset_counts();
        let report = e.sync().await;
        let reads = n.div_ceil(100) as i32;
        let writes = n.div_ceil(50) as i32;
        assert_eq!(report.keys_issued as usize, n);
        assert_eq!(report.keys_published as usize, n);
        assert!(report.failed.is_empty(), "{:?}", report.failed);
        assert_eq!(report.read_requests, reads, "n={n}");
        assert_eq!(report.write_requests, writes, "n={n}");
        let http = e.fake.counts().http_requests;
        // And the two requests of schema introspection, once.
        assert_eq!(http, (reads + writes) as u64 + 2, "n={n}");
        println!(
            "THREERPMS_EFFICIENCY n={n} requests={} (and 2 of introspection) naive={}",
            http - 2,
            3 * n
        );
    }
}

#[tokio::test]
async fn stay_changes_reach_keysmith_through_signed_webhooks_as_documented() {
    guide_scenarios_through_webhooks(FakeConfig::default()).await;
}

#[tokio::test]
async fn stay_changes_reach_keysmith_through_signed_webhooks_with_assumed_extras() {
    guide_scenarios_through_webhooks(assuming_all()).await;
}

/// Every scenario of the guide's "Listen for Room Stay Changes". Without the
/// reservation status, a cancelled reservation shows by its stays no longer
/// being returned; with it, by the status.
async fn guide_scenarios_through_webhooks(fake: FakeConfig) {
    let e = env(Options {
        fake,
        webhooks: true,
        // The split stay below arrives on day 7.
        edit: |c| c["hotels"][0]["sync_days"] = json!(10),
        ..Options::default()
    })
    .await;
    e.register_webhooks().await;
    let r1 = e.fake.add_reservation(PROPERTY, "R-1");
    let s1 = e.stay(&r1, "rs-101", &day(0), &day(2));
    let s2 = e.stay(&r1, "rs-102", &day(1), &day(3));
    e.webhooks_settled().await;
    // The created events already brought both stays into step.
    let k1 = e.live_key(&s1).await;
    let (rpms1, pin1) = e.published_pin(&s1);
    assert_eq!(pin1, pin_of(&k1));
    e.live_key(&s2).await;

    // Departure moved: the same key, its window follows, 3RPMS unchanged.
    e.fake
        .change_room_stay_dates(PROPERTY, &s1, &day(0), &day(4));
    e.webhooks_settled().await;
    let k1b = e.live_key(&s1).await;
    assert_eq!(k1b.key_id, k1.key_id);
    assert_eq!(k1b.ends_at.unwrap().seconds, unix(&day(4), 11));
    assert_eq!(k1b.state, pb::KeyState::Active as i32, "re-encoded at once");
    assert_eq!(e.published_pin(&s1), (rpms1.clone(), pin1.clone()));
    assert!(
        e.server
            .present("room-101", &pin1, unix(&day(3), 12))
            .await
            .granted,
        "the PIN opens on the new last day"
    );

    // Moved to another room: the old key is revoked, a new one published.
    let (old_rpms2, _) = e.published_pin(&s2);
    let old2 = e.live_key(&s2).await;
    e.fake.move_room_stay(PROPERTY, &s2, "rs-101");
    e.webhooks_settled().await;
    let new2 = e.live_key(&s2).await;
    assert_ne!(new2.key_id, old2.key_id);
    assert_eq!(new2.entrances[0].entrance_id, "room-101");
    let revoked = e.keys_of(&s2).await;
    assert!(revoked
        .iter()
        .any(|k| k.key_id == old2.key_id && k.state == pb::KeyState::Revoked as i32));
    let (new_rpms2, pin2) = e.published_pin(&s2);
    assert_ne!(new_rpms2, old_rpms2);
    assert_eq!(pin2, pin_of(&new2));
    assert!(
        e.fake.key(PROPERTY, &old_rpms2).is_none(),
        "old 3RPMS key deleted"
    );

    // Deleted: keysmith revokes, the 3RPMS key is deleted.
    e.fake.delete_room_stay(PROPERTY, &s1);
    e.webhooks_settled().await;
    assert!(e
        .keys_of(&s1)
        .await
        .iter()
        .all(|k| k.state == pb::KeyState::Revoked as i32));
    assert!(e.fake.key(PROPERTY, &rpms1).is_none());

    // Cancelled, then re-activated: revoked and removed, then a new key.
    let r2 = e.fake.add_reservation(PROPERTY, "R-2");
    let s4 = e.stay(&r2, "rs-102", &day(2), &day(5));
    e.webhooks_settled().await;
    let first = e.live_key(&s4).await;
    let (rpms4, _) = e.published_pin(&s4);
    e.fake
        .set_reservation_status(PROPERTY, &r2, ReservationStatus::Cancelled);
    e.webhooks_settled().await;
    assert!(e
        .keys_of(&s4)
        .await
        .iter()
        .all(|k| k.state == pb::KeyState::Revoked as i32));
    assert_eq!(e.fake.room_stay(PROPERTY, &s4).unwrap().key_id, None);
    assert!(e.fake.key(PROPERTY, &rpms4).is_none());
    e.fake
        .set_reservation_status(PROPERTY, &r2, ReservationStatus::Confirmed);
    e.webhooks_settled().await;
    let again = e.live_key(&s4).await;
    assert_ne!(again.key_id, first.key_id, "a new key, not the revoked one");
    let (_, pin4) = e.published_pin(&s4);
    assert_eq!(pin4, pin_of(&again));

    // Split: the new stay shows up with the same 3RPMS key; keysmith shares
    // its key and the window covers both stays.
    let r3 = e.fake.add_reservation(PROPERTY, "R-3");
    let s5 = e.stay(&r3, "rs-102", &day(5), &day(9));
    e.webhooks_settled().await;
    let k5 = e.live_key(&s5).await;
    let (rpms5, pin5) = e.published_pin(&s5);
    let s6 = e.fake.split_room_stay(PROPERTY, &s5, &day(7));
    e.webhooks_settled().await;
    assert_eq!(
        e.fake.room_stay(PROPERTY, &s6).unwrap().key_id,
        Some(rpms5.clone())
    );
    assert!(
        e.keys_of(&s6).await.is_empty(),
        "no second key for the split"
    );
    let k5b = e.live_key(&s5).await;
    assert_eq!(k5b.key_id, k5.key_id);
    assert_eq!(k5b.ends_at.unwrap().seconds, unix(&day(9), 11));

    // 3RPMS deleted keysmith's key (its own cleanup): republished, same PIN.
    e.fake.expire_key(PROPERTY, &rpms5);
    e.webhooks_settled().await;
    let (new5, again5) = e.published_pin(&s5);
    assert_ne!(new5, rpms5);
    assert_eq!(again5, pin5);
    let (new6, again6) = e.published_pin(&s6);
    assert_ne!(new6, rpms5);
    assert_eq!(again6, pin5, "both stays show the PIN that opens the room");
}

#[tokio::test]
async fn events_out_of_order_and_twice_end_in_the_same_state() {
    let fake = FakeConfig {
        duplicate_webhooks: true,
        ..FakeConfig::default()
    };
    let e = env(Options {
        fake,
        webhooks: true,
        ..Options::default()
    })
    .await;
    e.register_webhooks().await;
    e.fake.set_reorder_webhooks(true);
    e.fake.hold_webhooks();
    let r = e.fake.add_reservation(PROPERTY, "R-9");
    let s = e.stay(&r, "rs-101", &day(1), &day(2));
    e.fake
        .change_room_stay_dates(PROPERTY, &s, &day(1), &day(3));
    e.fake.move_room_stay(PROPERTY, &s, "rs-102");
    e.fake.release_webhooks();
    e.webhooks_settled().await;
    let key = e.live_key(&s).await;
    assert_eq!(key.entrances[0].entrance_id, "room-102");
    assert_eq!(key.ends_at.unwrap().seconds, unix(&day(3), 11));
    let (_, pin) = e.published_pin(&s);
    assert_eq!(pin, pin_of(&key));
    assert_eq!(
        e.fake.keys(PROPERTY).len(),
        1,
        "exactly one 3RPMS key, whatever the order"
    );
}

#[tokio::test]
async fn a_badly_signed_webhook_is_refused_and_changes_nothing() {
    let e = env(Options {
        webhooks: true,
        ..Options::default()
    })
    .await;
    e.register_webhooks().await;
    let event = e.fake.send_badly_signed_event(PROPERTY);
    e.fake.webhooks_idle().await;
    let attempts: Vec<_> = e
        .fake
        .deliveries()
        .into_iter()
        .filter(|d| d.event_id == event)
        .collect();
    assert!(!attempts.is_empty());
    assert!(attempts.iter().all(|d| matches!(
        d.outcome,
        fake_3rpms::DeliveryOutcome::Rejected { status: 401 }
    )));
    e.fake.reset_counts();
    e.webhooks_settled().await;
    assert_eq!(e.fake.counts().http_requests, 0, "nothing was acted on");
}

#[tokio::test]
async fn reads_give_pins_to_guests_and_compartments_only_to_staff() {
    let e = env(Options {
        api_key: READ_KEY,
        ..Options::default()
    })
    .await;
    let r = e.fake.add_reservation(PROPERTY, "R-READ");
    let a = e.stay(&r, "rs-101", &day(0), &day(1));
    let b = e.stay(&r, "rs-102", &day(0), &day(1));
    let c = e.stay(&r, "rs-999", &day(0), &day(1));
    let pin = e.fake.add_foreign_key(
        PROPERTY,
        "doorlock",
        KeyKind::Pin {
            pin: "482913".into(),
        },
    );
    let storage = e.fake.add_foreign_key(
        PROPERTY,
        "keybox",
        KeyKind::KeyStorage {
            pin: "ABC123".into(),
            compartment: "C7".into(),
        },
    );
    let nfc = e.fake.add_foreign_key(
        PROPERTY,
        "future",
        KeyKind::Nfc {
            nfc_data: "04A224".into(),
        },
    );
    e.fake.assign_key(PROPERTY, &a, &pin);
    e.fake.assign_key(PROPERTY, &b, &storage);
    e.fake.assign_key(PROPERTY, &c, &nfc);
    // More rooms than one page of 100.
    for _ in 0..103 {
        e.stay(&r, "rs-999", &day(3), &day(4));
    }

    let list = |view: pb::KeyView| {
        let mut pms = e.pms.clone();
        async move {
            pms.list_reservation_room_keys(pb::ListReservationRoomKeysRequest {
                property_id: PROPERTY.into(),
                reservation_code: "R-READ".into(),
                view: view as i32,
            })
            .await
            .unwrap()
            .into_inner()
            .rooms
        }
    };
    let guest = list(pb::KeyView::Guest).await;
    assert_eq!(guest.len(), 106, "every page of rooms");
    let by_stay = |rooms: &[pb::RoomStayKey], id: &str| {
        rooms
            .iter()
            .find(|r| r.room_stay_id == id)
            .and_then(|r| r.key.clone())
            .unwrap()
    };
    let k = by_stay(&guest, &a);
    assert_eq!(
        (k.r#type, k.pin.as_str()),
        (pb::PmsKeyType::Pin as i32, "482913")
    );
    let k = by_stay(&guest, &b);
    assert_eq!(k.r#type, pb::PmsKeyType::KeyStorage as i32);
    assert_eq!(k.pin, "ABC123");
    assert_eq!(k.compartment, "", "never to guests");
    let k = by_stay(&guest, &c);
    assert_eq!(k.r#type, pb::PmsKeyType::Unknown as i32);
    assert_eq!(k.type_name, "RoomAccessNfc");
    let staff = list(pb::KeyView::Staff).await;
    assert_eq!(by_stay(&staff, &b).compartment, "C7");

    let one = e
        .pms
        .clone()
        .get_room_stay_key(pb::GetRoomStayKeyRequest {
            property_id: PROPERTY.into(),
            room_stay_id: b.clone(),
            view: pb::KeyView::Unspecified as i32,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(one.room_name, "Room 102");
    assert_eq!(one.key.unwrap().compartment, "");

    let missing = e
        .pms
        .clone()
        .get_room_stay_key(pb::GetRoomStayKeyRequest {
            property_id: PROPERTY.into(),
            room_stay_id: "no-such-stay".into(),
            view: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    assert_eq!(
        missing.get_details_error_info().unwrap().reason,
        "ROOM_STAY_NOT_FOUND"
    );
}

#[tokio::test]
async fn upstream_errors_map_by_category() {
    // A read-only key cannot write: PERMISSION_DENIED, nothing half-done.
    let e = env(Options {
        api_key: READ_KEY,
        ..Options::default()
    })
    .await;
    let r = e.fake.add_reservation(PROPERTY, "R-E");
    let s = e.stay(&r, "rs-101", &day(0), &day(1));
    let err = e
        .pms
        .clone()
        .sync_room_stays(pb::SyncRoomStaysRequest {
            property_id: PROPERTY.into(),
            room_stay_ids: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    let info = err.get_details_error_info().unwrap();
    assert_eq!(info.reason, "THREERPMS_AUTH");
    assert_eq!(info.domain, "keysmith.dev");
    assert!(info.metadata.contains_key("upstream_message"));
    assert_eq!(e.fake.room_stay(PROPERTY, &s).unwrap().key_id, None);
    // The lock's key was issued first and is remembered: another try
    // publishes that same key rather than issuing a second one.
    assert_eq!(e.keys_of(&s).await.len(), 1);
    e.pms
        .clone()
        .sync_room_stays(pb::SyncRoomStaysRequest {
            property_id: PROPERTY.into(),
            room_stay_ids: vec![s.clone()],
        })
        .await
        .unwrap_err();
    assert_eq!(e.keys_of(&s).await.len(), 1, "not issued twice");

    // The hotel is not set up for keys at 3RPMS: FAILED_PRECONDITION.
    let e = env(Options::default()).await;
    let r = e.fake.add_reservation(PROPERTY, "R-F");
    e.stay(&r, "rs-101", &day(0), &day(1));
    e.fake.set_hotel_configured(PROPERTY, false);
    let err = e
        .pms
        .clone()
        .sync_room_stays(pb::SyncRoomStaysRequest {
            property_id: PROPERTY.into(),
            room_stay_ids: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert_eq!(
        err.get_details_error_info().unwrap().reason,
        "THREERPMS_CONFIGURATION"
    );

    // An unknown key: UNAUTHENTICATED.
    let e = env(Options {
        api_key: "api_wrong",
        ..Options::default()
    })
    .await;
    let err = e
        .pms
        .clone()
        .get_room_stay_key(pb::GetRoomStayKeyRequest {
            property_id: PROPERTY.into(),
            room_stay_id: "x".into(),
            view: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");

    // Bad input never reaches 3RPMS.
    e.fake.reset_counts();
    for (request, field) in [
        (
            pb::GetRoomStayKeyRequest {
                property_id: PROPERTY.into(),
                room_stay_id: String::new(),
                view: 0,
            },
            "room_stay_id",
        ),
        (
            pb::GetRoomStayKeyRequest {
                property_id: PROPERTY.into(),
                room_stay_id: "x".into(),
                view: 9,
            },
            "view",
        ),
    ] {
        let err = e.pms.clone().get_room_stay_key(request).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        let violations = err.get_details_bad_request().unwrap().field_violations;
        assert_eq!(violations[0].field, field);
    }
    assert_eq!(e.fake.counts().http_requests, 0);
}

#[tokio::test]
async fn a_rate_limit_block_stops_keysmith_sending_and_answers_unavailable() {
    let fake = FakeConfig {
        rate_limit_per_minute: 3,
        block_duration: Duration::from_secs(600),
        ..FakeConfig::default()
    };
    let e = env(Options {
        fake,
        api_key: READ_KEY,
        edit: |c| {
            c["request_timeout_ms"] = json!(300);
            c["connect_timeout_ms"] = json!(300);
            c["timeouts_before_block"] = json!(1);
            c["block_backoff_seconds"] = json!(900);
        },
        ..Options::default()
    })
    .await;
    let read = || {
        let mut pms = e.pms.clone();
        async move {
            pms.get_room_stay_key(pb::GetRoomStayKeyRequest {
                property_id: PROPERTY.into(),
                room_stay_id: "any".into(),
                view: 0,
            })
            .await
        }
    };
    for _ in 0..3 {
        assert_eq!(read().await.unwrap_err().code(), Code::NotFound);
    }
    // The fourth goes over the limit: 3RPMS blocks and never answers.
    let err = read().await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert_eq!(
        err.get_details_error_info().unwrap().reason,
        "THREERPMS_RATE_LIMITED"
    );
    let retry = err.get_details_retry_info().unwrap().retry_delay.unwrap();
    assert!(retry > Duration::from_secs(60), "{retry:?}");
    assert!(e.fake.is_blocked());

    // While blocked keysmith does not even try.
    let tried = e.fake.counts().blocked_connections;
    for _ in 0..5 {
        let err = read().await.unwrap_err();
        assert_eq!(err.code(), Code::Unavailable);
        assert_eq!(
            err.get_details_error_info().unwrap().reason,
            "THREERPMS_RATE_LIMITED"
        );
    }
    assert_eq!(e.fake.counts().blocked_connections, tried);
}

#[tokio::test]
async fn a_published_key_revoked_through_keysmith_is_replaced_in_3rpms() {
    let e = env(Options::default()).await;
    let r = e.fake.add_reservation(PROPERTY, "R-LOST");
    let s = e.stay(&r, "rs-101", &day(0), &day(3));
    e.sync().await;
    let lost = e.live_key(&s).await;
    let (old_rpms, _) = e.published_pin(&s);

    // The guest's PIN leaked: the front desk revokes it through keysmith.
    e.server.revoke_key(&lost.key_id).await.unwrap();
    e.webhooks_settled().await;

    let new = e.live_key(&s).await;
    assert_ne!(new.key_id, lost.key_id);
    assert!(
        e.fake.key(PROPERTY, &old_rpms).is_none(),
        "the old key is gone from 3RPMS"
    );
    let (new_rpms, pin) = e.published_pin(&s);
    assert_ne!(new_rpms, old_rpms);
    assert_eq!(pin, pin_of(&new));
    assert!(e.server.present("room-101", &pin, T0 + 600).await.granted);
}

/// Check-out one minute before T0 (2030-03-17 17:46:40 UTC): a departure
/// moved to today has then ended one minute ago.
fn check_out_a_minute_ago(c: &mut serde_json::Value) {
    c["hotels"][0]["check_out"] = json!("17:45:40");
}

/// Item 5 on the webhook path: the departure moves earlier; a key that
/// still opens after the guest left is the worst outcome there is.
#[tokio::test]
async fn a_departure_moved_earlier_takes_effect_at_once_through_webhooks() {
    for (mode, fake) in both_modes() {
        let e = env(Options {
            fake,
            webhooks: true,
            edit: check_out_a_minute_ago,
            ..Options::default()
        })
        .await;
        e.register_webhooks().await;
        let r = e.fake.add_reservation(PROPERTY, "R-EARLY");
        let leaving = e.stay(&r, "rs-101", &day(-1), &day(3));
        let shorter = e.stay(&r, "rs-102", &day(0), &day(5));
        e.webhooks_settled().await;
        let (rpms, pin) = e.published_pin(&leaving);
        let staying = e.live_key(&shorter).await;

        // The guest left a minute ago; the other stay now ends on day 2.
        e.fake
            .change_room_stay_dates(PROPERTY, &leaving, &day(-1), &day(0));
        e.fake
            .change_room_stay_dates(PROPERTY, &shorter, &day(0), &day(2));
        e.webhooks_settled().await;

        e.assert_no_key(&leaving, &rpms).await;
        assert_ne!(
            e.fake.room_stay(PROPERTY, &leaving).unwrap().key_id,
            Some(rpms.clone()),
            "{mode}: 3RPMS no longer shows the departed guest's PIN {pin}"
        );
        let shortened = e.live_key(&shorter).await;
        assert_eq!(shortened.key_id, staying.key_id, "{mode}");
        assert_eq!(
            shortened.ends_at.unwrap().seconds,
            unix(&day(2), 17) + 45 * 60 + 40,
            "{mode}: the key ends at the new departure"
        );
        let (_, published) = e.published_pin(&shorter);
        assert_eq!(published, pin_of(&shortened), "{mode}");
    }
}

/// Item 5 on the nightly path (SyncRoomStays runs the nightly round): a
/// departure moved to a minute ago, a cancelled reservation and a deleted
/// stay each lose their key at once, in keysmith and in 3RPMS, and the
/// other stays go on.
#[tokio::test]
async fn departures_cancellations_and_deletions_take_effect_at_the_nightly_sync() {
    for (mode, fake) in both_modes() {
        let e = env(Options {
            fake,
            edit: check_out_a_minute_ago,
            ..Options::default()
        })
        .await;
        let r = e.fake.add_reservation(PROPERTY, "R-NIGHT");
        let cancelled = e.fake.add_reservation(PROPERTY, "R-CANCEL");
        let left = e.stay(&r, "rs-101", &day(-1), &day(2));
        let deleted = e.stay(&r, "rs-102", &day(1), &day(3));
        let called_off = e.stay(&cancelled, "rs-102", &day(4), &day(6));
        let other = e.stay(&r, "rs-101", &day(3), &day(5));
        e.sync().await;
        let rpms: Vec<String> = [&left, &deleted, &called_off]
            .iter()
            .map(|s| e.published_pin(s).0)
            .collect();

        e.fake
            .change_room_stay_dates(PROPERTY, &left, &day(-1), &day(0));
        e.fake.delete_room_stay(PROPERTY, &deleted);
        e.fake
            .set_reservation_status(PROPERTY, &cancelled, ReservationStatus::Cancelled);
        let report = e.sync().await;

        assert!(report.failed.is_empty(), "{mode}: {:?}", report.failed);
        assert_eq!(report.keys_revoked, 3, "{mode}");
        for (stay, rpms) in [&left, &deleted, &called_off].into_iter().zip(&rpms) {
            e.assert_no_key(stay, rpms).await;
        }
        assert_eq!(
            e.live_key(&other).await.state,
            pb::KeyState::Active as i32,
            "{mode}"
        );
    }
}

/// Item 6: with `sync_days = 1`, a stay two days out named by a webhook
/// gets no key; it gets one once it enters the horizon.
#[tokio::test]
async fn the_horizon_holds_on_the_webhook_path() {
    for (mode, fake) in both_modes() {
        let e = env(Options {
            fake,
            webhooks: true,
            edit: |c| c["hotels"][0]["sync_days"] = json!(1),
            ..Options::default()
        })
        .await;
        e.register_webhooks().await;
        let r = e.fake.add_reservation(PROPERTY, "R-LATER");
        let later = e.stay(&r, "rs-101", &day(2), &day(4));
        let today = e.stay(&r, "rs-102", &day(0), &day(1));
        e.webhooks_settled().await;

        assert!(e.keys_of(&later).await.is_empty(), "{mode}: no key yet");
        assert_eq!(e.fake.room_stay(PROPERTY, &later).unwrap().key_id, None);
        e.live_key(&today).await;

        // Two days on, the stay is today's: the nightly round keys it.
        e.server.clock.set(T0 + 2 * 86_400);
        e.sync().await;
        let key = e.live_key(&later).await;
        assert_eq!(e.published_pin(&later).1, pin_of(&key), "{mode}");
    }
}

/// Item 4: 3RPMS refuses one query shape (reading a reservation by id):
/// that event is tried again with back-off and parked with its reason,
/// every other stay still gets its key, and the parked item is listed and
/// can be queued again.
#[tokio::test]
async fn one_permanently_failing_event_is_parked_and_the_hotel_goes_on() {
    let e = env(Options {
        fake: assuming_all(),
        webhooks: true,
        ..Options::default()
    })
    .await;
    e.register_webhooks().await;
    let poisoned = e.fake.add_reservation(PROPERTY, "R-POISON");
    let refused = poisoned.clone();
    e.fake
        .refuse_operations(Refusal::Validation, move |query, variables| {
            query.contains("reservations(filter:{id:") && variables.to_string().contains(&refused)
        });
    let fine = e.fake.add_reservation(PROPERTY, "R-FINE");
    let a = e.stay(&poisoned, "rs-101", &day(0), &day(2));
    let b = e.stay(&fine, "rs-102", &day(1), &day(3));
    // Tests wait for the queue, never for time: a hang here is the failure.
    tokio::time::timeout(Duration::from_secs(60), e.webhooks_settled())
        .await
        .expect("the hotel's queue went on past the failing event");

    for stay in [&a, &b] {
        let key = e.live_key(stay).await;
        assert_eq!(e.published_pin(stay).1, pin_of(&key));
    }
    let parked = e.parked().await;
    assert_eq!(parked.len(), 1, "{parked:?}");
    assert_eq!(parked[0].kind, "reservation.created");
    assert_eq!(parked[0].object_id, poisoned);
    assert!(
        parked[0].reason.contains("THREERPMS_VALIDATION"),
        "{parked:?}"
    );
    assert_eq!(parked[0].attempts, 3, "a validation error is tried thrice");
    assert!(e.fake.counts().refused >= 3);

    // Fixed upstream: queued again, it goes through and leaves the list.
    e.fake.stop_refusing();
    let retried = e
        .pms
        .clone()
        .retry_parked_item(pb::RetryParkedItemRequest {
            property_id: PROPERTY.into(),
            item_id: parked[0].item_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retried.item.unwrap().object_id, poisoned);
    e.webhooks_settled().await;
    assert!(e.parked().await.is_empty());
    let again = e
        .pms
        .clone()
        .retry_parked_item(pb::RetryParkedItemRequest {
            property_id: PROPERTY.into(),
            item_id: parked[0].item_id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::NotFound);
}

/// Item 4 on the nightly path: the read of one stay keysmith keeps is
/// refused; the sync goes on for every other stay, the stay is tried again
/// with back-off and parked, and the parked item survives a restart.
#[tokio::test]
async fn the_nightly_sync_never_waits_on_a_parked_stay() {
    let e = env(Options::default()).await;
    let r = e.fake.add_reservation(PROPERTY, "R-N");
    let poisoned = e.stay(&r, "rs-101", &day(0), &day(2));
    e.sync().await;
    // Out of the window: the nightly round reads it by id, and 3RPMS
    // refuses that read.
    e.fake
        .change_room_stay_dates(PROPERTY, &poisoned, &day(20), &day(22));
    let refused = poisoned.clone();
    e.fake
        .refuse_operations(Refusal::Validation, move |query, variables| {
            query.contains("RoomStaysByIds") && variables.to_string().contains(&refused)
        });
    let newcomer = e.stay(&r, "rs-102", &day(1), &day(3));

    let report = e.sync().await;
    assert_eq!(report.keys_issued, 1, "the newcomer is keyed all the same");
    assert_eq!(report.failed.len(), 1, "{:?}", report.failed);
    assert_eq!(report.failed[0].room_stay_id, poisoned);
    let key = e.live_key(&newcomer).await;
    assert_eq!(e.published_pin(&newcomer).1, pin_of(&key));
    tokio::time::timeout(Duration::from_secs(60), e.webhooks_settled())
        .await
        .expect("the retries end in the dead-letter list");
    let parked = e.parked().await;
    assert_eq!(parked.len(), 1, "{parked:?}");
    assert_eq!(parked[0].kind, "keysmith.retry_stay");
    assert_eq!(parked[0].object_id, poisoned);

    // The next nightly round does not wait on it either, nor parks it twice.
    assert_eq!(e.sync().await.failed.len(), 1);
    e.webhooks_settled().await;
    assert_eq!(e.parked().await.len(), 1);

    // Durable: after a restart it is still listed, and can be retried.
    let Env {
        fake,
        server,
        threerpms,
        ..
    } = e;
    let kept = threerpms.clone();
    let server = server
        .restart_with(move |c| {
            c.threerpms = Some(serde_json::from_value(kept).unwrap());
        })
        .await;
    let addr = server.running.as_ref().unwrap().addr;
    let e = Env {
        pms: PmsServiceClient::connect(format!("http://{addr}"))
            .await
            .unwrap(),
        fake,
        server,
        threerpms,
    };
    let parked = e.parked().await;
    assert_eq!(parked.len(), 1, "the list survived the restart");
    e.fake.stop_refusing();
    e.pms
        .clone()
        .retry_parked_item(pb::RetryParkedItemRequest {
            property_id: PROPERTY.into(),
            item_id: parked[0].item_id.clone(),
        })
        .await
        .unwrap();
    e.webhooks_settled().await;
    assert!(e.parked().await.is_empty());
    // Moved beyond the horizon, the stay's key went.
    assert!(e
        .keys_of(&poisoned)
        .await
        .iter()
        .all(|k| k.state == pb::KeyState::Revoked as i32));
}

/// Item 7: HTTPS only (plain http to loopback for tests), and a replaced
/// endpoint is switched off: however often the endpoint is replaced, one is
/// active, within 3RPMS's five.
#[tokio::test]
async fn webhook_registration_keeps_to_https_and_one_active_endpoint() {
    let e = env(Options {
        fake: assuming_all(),
        webhooks: true,
        ..Options::default()
    })
    .await;
    let refused = e
        .register(
            format!("http://keysmith.example.com/3rpms/webhooks/{PROPERTY}"),
            false,
            false,
        )
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(e.fake.webhook_endpoints(PROPERTY).is_empty());

    e.register_webhooks().await;
    for _ in 0..6 {
        e.register(e.hook_url(), true, false)
            .await
            .expect("replaced");
    }
    let endpoints = e.fake.webhook_endpoints(PROPERTY);
    assert_eq!(endpoints.len(), 7);
    let active: Vec<_> = endpoints
        .iter()
        .filter(|ep| ep.status == WebhookEndpointStatus::Enabled)
        .collect();
    assert_eq!(active.len(), 1, "{endpoints:?}");
    assert_eq!(active[0].id, endpoints[6].id, "the newest");

    // Deliveries come to the one active endpoint and are acted on.
    let r = e.fake.add_reservation(PROPERTY, "R-HOOK");
    let stay = e.stay(&r, "rs-101", &day(0), &day(1));
    e.webhooks_settled().await;
    e.live_key(&stay).await;
}

/// Item 7 where 3RPMS documents no way to switch an endpoint off: replacing
/// is refused until the operator says the old endpoint was removed in
/// 3RPMS, so keysmith never leaves an endpoint it cannot retire active.
#[tokio::test]
async fn without_a_way_to_retire_an_endpoint_replacing_waits_for_the_operator() {
    let e = env(Options {
        webhooks: true,
        ..Options::default()
    })
    .await;
    e.register_webhooks().await;
    let first = e.fake.webhook_endpoints(PROPERTY)[0].id.clone();
    let refused = e.register(e.hook_url(), true, false).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert_eq!(
        refused.get_details_error_info().unwrap().reason,
        "WEBHOOK_RETIREMENT_UNSUPPORTED"
    );
    assert_eq!(e.fake.webhook_endpoints(PROPERTY).len(), 1);

    e.fake.remove_webhook_endpoint(PROPERTY, &first);
    let replaced = e.register(e.hook_url(), true, true).await.unwrap();
    let endpoints = e.fake.webhook_endpoints(PROPERTY);
    assert_eq!(endpoints.len(), 1);
    assert_eq!(endpoints[0].id, replaced.endpoint_id);
    let r = e.fake.add_reservation(PROPERTY, "R-NEW-HOOK");
    let stay = e.stay(&r, "rs-101", &day(0), &day(1));
    e.webhooks_settled().await;
    e.live_key(&stay).await;
}

/// Item 3: where 3RPMS refuses introspection, keysmith uses only what 3RPMS
/// documents, even against a 3RPMS that has the extras.
#[tokio::test]
async fn refused_introspection_leaves_the_documented_client() {
    let e = env(Options {
        fake: assuming_all(),
        ..Options::default()
    })
    .await;
    e.fake.refuse_operations(Refusal::Schema, |query, _| {
        query.contains("__schema") || query.contains("__type") || query.contains("reservation {")
    });
    let r = e.fake.add_reservation(PROPERTY, "R-PLAIN");
    let stay = e.stay(&r, "rs-101", &day(0), &day(2));
    let report = e.sync().await;
    assert_eq!(report.keys_issued, 1);
    assert_eq!(e.fake.counts().refused, 1, "introspection only, once");
    let key = e.live_key(&stay).await;
    assert_eq!(e.published_pin(&stay).1, pin_of(&key));
}

/// Test tokens for the PMS's security table (test material only).
const PMS_FULL: &str = "ks_test_pms_full_0000000000000000000000000000";
const PMS_READER: &str = "ks_test_pms_reader_00000000000000000000000000";
const PMS_ISSUER: &str = "ks_test_pms_issuer_00000000000000000000000000";
const PMS_OTHER: &str = "ks_test_pms_other_000000000000000000000000000";

fn pms_tokens(c: &mut Config) {
    use keysmith_server::{
        auth::hash_token,
        config::{AuthMode, TokenConfig},
    };
    let all = [
        "keys.issue",
        "keys.revoke",
        "keys.read",
        "keys.read_secrets",
        "keysmith.admin",
    ];
    let token = |id: &str, token: &str, property: &str, scopes: &[&str]| TokenConfig {
        id: id.into(),
        sha256: hash_token(token),
        properties: vec![property.into()],
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        max_in_flight: 64,
        requests_per_minute: None,
    };
    c.auth.mode = AuthMode::Tokens;
    c.auth.max_failures_per_minute = 1000;
    c.auth.tokens = vec![
        token("full", PMS_FULL, PROPERTY, &all),
        token("reader", PMS_READER, PROPERTY, &["keys.read"]),
        token("issuer", PMS_ISSUER, PROPERTY, &["keys.issue"]),
        token("other", PMS_OTHER, "other-hotel", &all),
    ];
}

/// Every PmsService RPC against {no token, wrong token, token without the
/// scope, token for another property, right token}; and PINs and
/// compartments withheld from a token without keys.read_secrets.
#[tokio::test]
async fn pms_rpcs_need_the_right_token() {
    let e = env(Options {
        server: pms_tokens,
        ..Default::default()
    })
    .await;
    let r = e.fake.add_reservation(PROPERTY, "R-SEC");
    // In a room keysmith does not serve, so that the sync leaves its key be.
    let stay = e.stay(&r, "rs-999", &day(0), &day(2));
    let key = e.fake.add_foreign_key(
        PROPERTY,
        "now",
        KeyKind::KeyStorage {
            pin: "ABC123".into(),
            compartment: "C7".into(),
        },
    );
    e.fake.assign_key(PROPERTY, &stay, &key);

    let call = |rpc: &'static str, token: Option<&'static str>| {
        let channel = e.server.channel.clone();
        let stay = stay.clone();
        async move {
            let mut pms =
                PmsServiceClient::with_interceptor(channel, move |mut req: tonic::Request<()>| {
                    if let Some(t) = token {
                        req.metadata_mut()
                            .insert("authorization", format!("Bearer {t}").parse().unwrap());
                    }
                    Ok(req)
                });
            let p = || PROPERTY.to_owned();
            match rpc {
                "GetRoomStayKey" => pms
                    .get_room_stay_key(pb::GetRoomStayKeyRequest {
                        property_id: p(),
                        room_stay_id: stay,
                        view: pb::KeyView::Staff as i32,
                    })
                    .await
                    .map(|r| r.into_inner().key),
                "ListReservationRoomKeys" => pms
                    .list_reservation_room_keys(pb::ListReservationRoomKeysRequest {
                        property_id: p(),
                        reservation_code: "R-SEC".into(),
                        view: pb::KeyView::Staff as i32,
                    })
                    .await
                    .map(|r| r.into_inner().rooms.into_iter().find_map(|r| r.key)),
                "ListRoomStayLinks" => pms
                    .list_room_stay_links(pb::ListRoomStayLinksRequest {
                        property_id: p(),
                        ..Default::default()
                    })
                    .await
                    .map(|_| None),
                "SyncRoomStays" => pms
                    .sync_room_stays(pb::SyncRoomStaysRequest {
                        property_id: p(),
                        room_stay_ids: vec![],
                    })
                    .await
                    .map(|_| None),
                "RegisterWebhookEndpoint" => pms
                    .register_webhook_endpoint(pb::RegisterWebhookEndpointRequest {
                        property_id: p(),
                        url: "http://127.0.0.1:9/3rpms/webhooks/demo-hotel".into(),
                        replace: false,
                        previous_endpoint_removed: false,
                    })
                    .await
                    .map(|_| None),
                "ListParkedItems" => pms
                    .list_parked_items(pb::ListParkedItemsRequest { property_id: p() })
                    .await
                    .map(|_| None),
                "RetryParkedItem" => pms
                    .retry_parked_item(pb::RetryParkedItemRequest {
                        property_id: p(),
                        item_id: "1".into(),
                    })
                    .await
                    .map(|_| None),
                other => panic!("no call for {other}"),
            }
        }
    };
    // With the right token: the call's own answer (nothing is parked).
    let rpcs = [
        ("GetRoomStayKey", "keys.read", Code::Ok),
        ("ListReservationRoomKeys", "keys.read", Code::Ok),
        ("ListRoomStayLinks", "keys.read", Code::Ok),
        ("SyncRoomStays", "keys.issue", Code::Ok),
        ("RegisterWebhookEndpoint", "keysmith.admin", Code::Ok),
        ("ListParkedItems", "keys.read", Code::Ok),
        ("RetryParkedItem", "keysmith.admin", Code::NotFound),
    ];
    let mut failures = Vec::new();
    for (rpc, scope, allowed) in rpcs {
        let unscoped = if scope == "keys.read" {
            PMS_ISSUER
        } else {
            PMS_READER
        };
        let cases = [
            ("no token", None, Code::Unauthenticated),
            ("wrong token", Some("ks_not_a_token"), Code::Unauthenticated),
            (
                "token without the scope",
                Some(unscoped),
                Code::PermissionDenied,
            ),
            (
                "token for another property",
                Some(PMS_OTHER),
                Code::NotFound,
            ),
            ("right token", Some(PMS_FULL), allowed),
        ];
        for (who, token, expected) in cases {
            let got = match call(rpc, token).await {
                Ok(_) => Code::Ok,
                Err(s) => s.code(),
            };
            if got != expected {
                failures.push(format!(
                    "{rpc} with {who}: expected {expected:?}, got {got:?}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // The full token sees the PIN and the compartment; a reader without
    // keys.read_secrets sees that they exist, not what they are.
    let seen = call("GetRoomStayKey", Some(PMS_FULL))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (seen.pin.as_str(), seen.compartment.as_str()),
        ("ABC123", "C7")
    );
    for rpc in ["GetRoomStayKey", "ListReservationRoomKeys"] {
        let hidden = call(rpc, Some(PMS_READER)).await.unwrap().unwrap();
        assert!(hidden.data_redacted, "{rpc}: {hidden:?}");
        assert_eq!(
            (hidden.pin.as_str(), hidden.compartment.as_str()),
            ("", ""),
            "{rpc}"
        );
        assert_eq!(hidden.r#type, pb::PmsKeyType::KeyStorage as i32);
    }
}

/// The keys the sync issues on its own are in the audit log, under the
/// sync's name, next to the operator's SyncRoomStays call.
#[tokio::test]
async fn the_sync_writes_what_it_does_to_the_audit_log() {
    let e = env(Options::default()).await;
    let r = e.fake.add_reservation(PROPERTY, "R-AUDIT");
    let stay = e.stay(&r, "rs-101", &day(0), &day(2));
    let report = e.sync().await;
    assert_eq!(report.keys_issued, 1);
    let records =
        keysmith_api::v1::audit_service_client::AuditServiceClient::new(e.server.channel.clone())
            .list_audit_records(pb::ListAuditRecordsRequest {
                property_id: PROPERTY.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .records;
    let seen: Vec<(&str, &str, &str)> = records
        .iter()
        .map(|r| {
            (
                r.action.as_str(),
                r.token_id.as_str(),
                r.reservation_key.as_str(),
            )
        })
        .collect();
    let stay_key = format!("3rpms-stay:{stay}");
    assert_eq!(
        seen,
        vec![
            ("Issue", "3rpms-sync", stay_key.as_str()),
            ("SyncRoomStays", "development", ""),
        ]
    );
    assert_eq!(records[0].key_ids.len(), 1);
}
