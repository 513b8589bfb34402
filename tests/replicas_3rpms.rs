//! 3RPMS with two keysmith processes on one PostgreSQL database (issue 20):
//! a hotel's worker runs on the replica holding the hotel's lease, and a
//! webhook event that the other replica accepted wakes it at once (a signal
//! through the database), rather than waiting for its next round (here the
//! nightly sync, twelve hours away). Real `keysmith serve` processes, the
//! fake 3RPMS in the test process. Runs when `KEYSMITH_TEST_POSTGRES_URL`
//! names a server, in a fresh database dropped at the end; without it the
//! test says it was skipped and passes.
mod common;

use std::{net::SocketAddr, time::Duration};

use common::{
    process::{serve_with_env, write_config},
    PROPERTY,
};
use fake_3rpms::{Access, DeliveryOutcome, Fake3rpms, FakeConfig};
use keysmith_api::v1::{
    self as pb, access_service_client::AccessServiceClient, pms_service_client::PmsServiceClient,
};
use keysmith_store_postgres::testing::TestDatabase;
use tokio::process::Child;
use tonic::{transport::Channel, Streaming};

const API_KEY: &str = "api_keysmith_write";

/// The bound on the wait for the event to be applied: generous for a
/// loaded machine, and far below the twelve hours of the round.
const PATIENCE: Duration = Duration::from_secs(30);

/// A free port on loopback for a replica's webhook receiver, given to it
/// in its configuration (the log line that says where it serves comes
/// before the one the tests wait for).
async fn free_port() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

/// `[threerpms]` for the fake at `endpoint`: no initial sync, the nightly
/// round twelve hours from now, webhooks received on `listen`.
fn threerpms(endpoint: &str, listen: SocketAddr) -> String {
    let nightly = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_hours(12))
        .unwrap()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .time();
    format!(
        r#"
[threerpms]
endpoint = "{endpoint}"
initial_sync = false
retry_backoff_ms = 5
webhook_listen = "{listen}"

[[threerpms.hotels]]
property_id = "{PROPERTY}"
api_key = "{API_KEY}"
time_zone = "UTC"
nightly_at = "{:02}:{:02}"
rooms = [{{ room_setup_id = "rs-101", entrances = ["room-101"] }}]
"#,
        nightly.hour(),
        nightly.minute()
    )
}

/// Starts a replica on the database at `url`, its webhooks on `webhooks`.
async fn replica(
    config: &std::path::Path,
    url: &str,
    data_dir: std::path::PathBuf,
    webhooks: SocketAddr,
) -> (Child, Channel) {
    let env = [
        ("KEYSMITH__STORAGE__BACKEND", "postgres".to_owned()),
        ("KEYSMITH__STORAGE__POSTGRES__URL", url.to_owned()),
        ("KEYSMITH__STORAGE__POSTGRES__POOL_SIZE", "4".to_owned()),
        (
            "KEYSMITH__STORAGE__DATA_DIR",
            data_dir.display().to_string(),
        ),
        ("KEYSMITH__THREERPMS__WEBHOOK_LISTEN", webhooks.to_string()),
    ];
    let (process, addr, _log) = serve_with_env(config, &env).await;
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    (process, channel)
}

async fn next(stream: &mut Streaming<pb::WatchKeysResponse>) -> Option<pb::WatchKeysResponse> {
    tokio::time::timeout(PATIENCE, stream.message())
        .await
        .ok()
        .map(|m| m.expect("the watch goes on").expect("a message"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_the_other_replica_accepted_is_applied_without_waiting_for_a_round() {
    let Some(db) = TestDatabase::create(
        "tests/replicas_3rpms.rs",
        "cargo test --test replicas_3rpms",
    )
    .await
    else {
        return;
    };
    let fake = Fake3rpms::start(FakeConfig::default()).await.unwrap();
    fake.add_hotel(PROPERTY);
    fake.add_api_key(PROPERTY, "keysmith", API_KEY, Access::Write);
    fake.add_room(PROPERTY, "rs-101", "Room 101");

    let root = tempfile::tempdir().unwrap();
    let (on_a, on_b) = (free_port().await, free_port().await);
    // One file (and key-encryption key) for both; B's receiver address
    // comes from its environment.
    let config = write_config(root.path(), &threerpms(&fake.graphql_url(), on_a));
    // A starts first and takes the hotel's lease before it serves; B finds
    // it held.
    let (_a, a) = replica(&config, &db.url(), root.path().join("a"), on_a).await;
    let (_b, b) = replica(&config, &db.url(), root.path().join("b"), on_b).await;

    // 3RPMS delivers the hotel's events to B.
    let registered = PmsServiceClient::new(b.clone())
        .register_webhook_endpoint(pb::RegisterWebhookEndpointRequest {
            property_id: PROPERTY.into(),
            url: format!("http://{on_b}/3rpms/webhooks/{PROPERTY}"),
            replace: false,
            previous_endpoint_removed: false,
        })
        .await
        .expect("registered")
        .into_inner();
    assert!(registered.enabled);

    let mut watch = AccessServiceClient::new(a)
        .watch_keys(pb::WatchKeysRequest {
            property_id: PROPERTY.into(),
            ..Default::default()
        })
        .await
        .expect("watching")
        .into_inner();
    assert_eq!(
        next(&mut watch).await.expect("started").event_type,
        pb::KeyEventType::Watching as i32
    );

    // A stay from today: its created event goes to B, which queues it.
    let today = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    let reservation = fake.add_reservation(PROPERTY, "R-1");
    fake.add_room_stay(
        PROPERTY,
        &reservation,
        "rs-101",
        &today.to_string(),
        &today.tomorrow().unwrap().to_string(),
    );
    fake.webhooks_idle().await;
    let deliveries = fake.deliveries();
    assert!(!deliveries.is_empty());
    assert!(
        deliveries
            .iter()
            .all(|d| matches!(d.outcome, DeliveryOutcome::Delivered { .. })),
        "B accepted every event: {deliveries:?}"
    );

    // A, holding the lease, issues the stay's key now.
    let issued = next(&mut watch).await.unwrap_or_else(|| {
        panic!(
            "no key within {PATIENCE:?}: the replica holding the hotel's lease did not \
             hear of the event the other accepted (its next round is hours away)"
        )
    });
    assert_eq!(issued.event_type, pb::KeyEventType::Issued as i32);
    let key = issued.key.expect("a key");
    assert_eq!(
        key.entrances
            .iter()
            .map(|e| e.entrance_id.as_str())
            .collect::<Vec<_>>(),
        ["room-101"]
    );
}
