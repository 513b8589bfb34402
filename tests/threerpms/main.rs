//! keysmith with 3RPMS, end to end: the real keysmith server on an ephemeral
//! port, the fake 3RPMS server on another, keysmith's gRPC API in between.
//! This file holds the set-up; the tests are by subject: `guide.rs` (every
//! scenario of the room access keys guide, against the fake's documented
//! schema and against its assumed extras), `departures.rs` (departures that
//! take effect at once, the horizon), `poison.rs` (one failing event or stay
//! parked while the hotel goes on), `registration.rs` (webhook registration
//! as the vendor says), `sync.rs` (the window sync, efficiency, schema
//! detection), `api.rs` (the read API, errors, the rate-limit block),
//! `security.rs` (tokens and scopes, the audit log).
#[path = "../common/mod.rs"]
mod common;

mod api;
mod departures;
mod guide;
mod poison;
mod registration;
mod security;
mod sync;

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
