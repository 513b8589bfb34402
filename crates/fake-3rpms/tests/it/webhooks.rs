//! Signed deliveries, retries, disabling, duplicates, reordering, faults.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use fake_3rpms::{
    sign, Assumed, DeliveryOutcome, FakeConfig, ReservationStatus, SignatureFault,
    WebhookEndpointStatus, SIGNATURE_HEADER,
};
use serde_json::{json, Value};

use crate::common::*;

/// What the test receiver does with one request.
#[derive(Clone, Copy)]
enum Reply {
    Status(u16),
    /// Never answer (the fake times out).
    Hang,
}

#[derive(Clone, Debug)]
struct Received {
    signature: Option<String>,
    body: String,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

#[derive(Default)]
struct ReceiverState {
    script: parking_lot::Mutex<VecDeque<Reply>>,
    /// Reply once the script is used up.
    fallback: parking_lot::Mutex<Option<u16>>,
    received: parking_lot::Mutex<Vec<Received>>,
}

struct Receiver {
    url: String,
    state: Arc<ReceiverState>,
}

impl Receiver {
    /// Requests recorded before they are answered, so once the fake has
    /// seen an answer (`webhooks_idle`), the record is there.
    async fn start(script: Vec<Reply>) -> Receiver {
        let state = Arc::new(ReceiverState {
            script: parking_lot::Mutex::new(script.into()),
            ..Default::default()
        });
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { url, state }
    }

    fn always(&self, status: u16) {
        *self.state.fallback.lock() = Some(status);
    }

    fn received(&self) -> Vec<Received> {
        self.state.received.lock().clone()
    }
}

async fn receive(
    State(state): State<Arc<ReceiverState>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    state.received.lock().push(Received {
        signature: headers
            .get(SIGNATURE_HEADER)
            .map(|v| v.to_str().unwrap().to_string()),
        body: String::from_utf8(body.to_vec()).unwrap(),
    });
    let reply = state.script.lock().pop_front();
    let reply = reply.unwrap_or(Reply::Status(state.fallback.lock().unwrap_or(200)));
    match reply {
        Reply::Status(code) => StatusCode::from_u16(code).unwrap(),
        Reply::Hang => std::future::pending().await,
    }
}

/// Millisecond retries; the default 5 s time-out, so that only a receiver
/// that hangs on purpose ever times out, however loaded the machine.
fn fast() -> FakeConfig {
    FakeConfig {
        webhook_retry_delay: Duration::from_millis(1),
        ..FakeConfig::default()
    }
}

/// Registers an endpoint through the API; returns (id, secret). Without a
/// status, as the vendor documents it (the endpoint is active); a status
/// needs the fake's assumed endpoint status.
async fn register(
    env: &Env,
    key: &str,
    url: &str,
    events: &[&str],
    status: Option<&str>,
) -> (String, String) {
    let mut input = json!({ "url": url, "events": events });
    if let Some(status) = status {
        input["status"] = json!(status);
    }
    let resp = env
        .gql(
            key,
            "mutation($i: CreateWebhookEndpointInput!) { createWebhookEndpoint(input: $i) { webhookEndpoint { id } secret } }",
            json!({ "i": input }),
        )
        .await;
    let p = &resp["data"]["createWebhookEndpoint"];
    (
        p["webhookEndpoint"]["id"]
            .as_str()
            .expect("endpoint")
            .to_string(),
        p["secret"].as_str().unwrap().to_string(),
    )
}

const ALL: &[&str] = &[
    "room_stay.created",
    "room_stay.updated",
    "room_stay.deleted",
    "reservation.created",
    "reservation.updated",
    "room_access_key.deleted",
];

/// Parses `t=<unix>,signature=<hex>[,signature=<hex>...]`.
fn parse_signature(header: &str) -> (i64, Vec<String>) {
    let mut t = None;
    let mut sigs = Vec::new();
    for part in header.split(',') {
        let (k, v) = part.split_once('=').unwrap();
        match k {
            "t" => t = Some(v.parse().unwrap()),
            "signature" => sigs.push(v.to_string()),
            other => panic!("unexpected part {other}"),
        }
    }
    (t.unwrap(), sigs)
}

/// Our own HMAC, independent of the fake's `sign`.
fn hmac_hex(secret: &str, t: i64, body: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

#[tokio::test]
async fn events_are_signed_and_shaped_as_documented() {
    let env = env_with(fast()).await;
    let rx = Receiver::start(vec![]).await;
    let (endpoint, secret) = register(&env, WRITE, &rx.url, ALL, None).await;

    let r = env.fake.add_reservation(HOTEL, "W-1");
    let stay = env
        .fake
        .add_room_stay(HOTEL, &r, "101", "2026-03-01", "2026-03-03");
    env.fake
        .change_room_stay_dates(HOTEL, &stay, "2026-03-02", "2026-03-04");
    env.fake.webhooks_idle().await;

    let got = rx.received();
    assert_eq!(got.len(), 3);
    for g in &got {
        let (t, sigs) = parse_signature(g.signature.as_deref().unwrap());
        assert_eq!(sigs, [hmac_hex(&secret, t, &g.body)]);
        assert_eq!(sigs[0], sign(&secret, t, &g.body));
        assert!(sigs[0]
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)));
    }
    let bodies: Vec<Value> = got.iter().map(Received::json).collect();
    assert_eq!(bodies[0]["type"], "reservation.created");
    assert_eq!(bodies[0]["data"]["object"]["id"], r.as_str());
    assert_eq!(bodies[1]["type"], "room_stay.created");
    assert_eq!(bodies[1]["data"]["updated_fields"], Value::Null);
    let updated = &bodies[2];
    assert_eq!(updated["type"], "room_stay.updated");
    assert_eq!(updated["data"]["object"]["id"], stay.as_str());
    assert_eq!(
        updated["data"]["updated_fields"],
        json!(["reservation_from", "reservation_to"])
    );
    assert_eq!(updated["webhook_endpoint_id"], endpoint.as_str());
    let id = updated["id"].as_str().unwrap();
    assert!(id.len() == 64 && id.chars().all(|c| c.is_ascii_alphanumeric()));
    assert!(updated["created_at"].is_i64());
    // Unknown fields a client must tolerate.
    assert!(updated.get("api_version").is_some());

    let log = env.fake.deliveries();
    assert_eq!(log.len(), 3);
    assert!(log
        .iter()
        .all(|a| a.succeeded() && a.attempt == 1 && a.endpoint_id == endpoint));
    assert_eq!(log[2].event_id, id);
}

#[tokio::test]
async fn only_enabled_endpoints_of_the_hotel_get_subscribed_events() {
    // Disabling through the API needs the assumed endpoint status.
    let env = env_with(FakeConfig {
        assumed: Assumed {
            endpoint_status: true,
            ..Assumed::NONE
        },
        ..fast()
    })
    .await;
    let rx = Receiver::start(vec![]).await;
    let disabled_rx = Receiver::start(vec![]).await;
    let other_hotel_rx = Receiver::start(vec![]).await;
    let (endpoint, _) = register(
        &env,
        WRITE,
        &rx.url,
        &["reservation.updated", "room_access_key.deleted"],
        None,
    )
    .await;
    register(&env, WRITE, &disabled_rx.url, ALL, Some("DISABLED")).await;
    register(&env, H2_WRITE, &other_hotel_rx.url, ALL, None).await;

    let r = env.fake.add_reservation(HOTEL, "W-2");
    let stay = env
        .fake
        .add_room_stay(HOTEL, &r, "101", "2026-03-01", "2026-03-03");
    env.fake.move_room_stay(HOTEL, &stay, "102");
    env.fake
        .set_reservation_status(HOTEL, &r, ReservationStatus::Cancelled);
    let key = env.create_pin(WRITE, "1234").await;
    env.fake.expire_key(HOTEL, &key);
    env.fake.webhooks_idle().await;

    let got: Vec<Value> = rx.received().iter().map(Received::json).collect();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0]["type"], "reservation.updated");
    assert_eq!(got[0]["data"]["updated_fields"], json!(["status"]));
    assert_eq!(got[1]["type"], "room_access_key.deleted");
    assert_eq!(got[1]["data"]["object"]["id"], key.as_str());
    assert!(disabled_rx.received().is_empty());
    assert!(other_hotel_rx.received().is_empty());

    // Disabled through the API: no more events.
    let resp = env
        .gql(WRITE, "mutation($id: ID!) { updateWebhookEndpoint(input: {id: $id, status: DISABLED}) { webhookEndpoint { status } } }", json!({ "id": endpoint }))
        .await;
    assert_eq!(
        resp["data"]["updateWebhookEndpoint"]["webhookEndpoint"]["status"],
        "DISABLED"
    );
    env.fake
        .set_reservation_status(HOTEL, &r, ReservationStatus::Confirmed);
    env.fake.webhooks_idle().await;
    assert_eq!(rx.received().len(), 2);
}

#[tokio::test]
async fn failures_are_retried_until_delivered() {
    // A short time-out, as the receiver hangs once on purpose.
    let env = env_with(FakeConfig {
        webhook_timeout: Duration::from_millis(500),
        ..fast()
    })
    .await;
    // 500, a redirect and a time-out are all failures.
    let rx = Receiver::start(vec![Reply::Status(500), Reply::Status(302), Reply::Hang]).await;
    register(&env, WRITE, &rx.url, ALL, None).await;
    env.fake.add_reservation(HOTEL, "W-3");
    env.fake.webhooks_idle().await;

    let log = env.fake.deliveries();
    let outcomes: Vec<&DeliveryOutcome> = log.iter().map(|a| &a.outcome).collect();
    assert_eq!(
        outcomes,
        [
            &DeliveryOutcome::Rejected { status: 500 },
            &DeliveryOutcome::Rejected { status: 302 },
            &DeliveryOutcome::TimedOut,
            &DeliveryOutcome::Delivered { status: 200 },
        ]
    );
    assert_eq!(
        log.iter().map(|a| a.attempt).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    assert!(log.iter().all(|a| a.event_id == log[0].event_id));
    // The receiver saw the same event four times.
    let ids: Vec<Value> = rx
        .received()
        .iter()
        .map(|r| r.json()["id"].clone())
        .collect();
    assert_eq!(ids.len(), 4);
    assert!(ids.iter().all(|id| *id == ids[0]));
}

#[tokio::test]
async fn an_endpoint_that_keeps_failing_is_disabled() {
    let env = env_with(FakeConfig {
        webhook_max_attempts: 2,
        webhook_disable_after: 2,
        ..fast()
    })
    .await;
    let rx = Receiver::start(vec![]).await;
    rx.always(503);
    register(&env, WRITE, &rx.url, ALL, None).await;

    env.fake.add_reservation(HOTEL, "W-4");
    env.fake.webhooks_idle().await;
    assert_eq!(
        env.fake.webhook_endpoints(HOTEL)[0].status,
        WebhookEndpointStatus::Enabled
    );
    env.fake.add_reservation(HOTEL, "W-5");
    env.fake.webhooks_idle().await;
    assert_eq!(
        env.fake.webhook_endpoints(HOTEL)[0].status,
        WebhookEndpointStatus::Disabled
    );
    assert_eq!(env.fake.deliveries().len(), 4);

    env.fake.add_reservation(HOTEL, "W-6");
    env.fake.webhooks_idle().await;
    assert_eq!(rx.received().len(), 4);
}

#[tokio::test]
async fn duplicate_deliveries_share_the_event_id() {
    let env = env_with(FakeConfig {
        duplicate_webhooks: true,
        ..fast()
    })
    .await;
    let rx = Receiver::start(vec![]).await;
    register(&env, WRITE, &rx.url, ALL, None).await;
    env.fake.add_reservation(HOTEL, "W-7");
    env.fake.webhooks_idle().await;
    let got: Vec<Value> = rx.received().iter().map(Received::json).collect();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0]["id"], got[1]["id"]);

    // Switchable at run time.
    env.fake.set_duplicate_webhooks(false);
    env.fake.add_reservation(HOTEL, "W-8");
    env.fake.webhooks_idle().await;
    assert_eq!(rx.received().len(), 3);
}

#[tokio::test]
async fn reordering_delivers_a_group_backwards() {
    let env = env_with(FakeConfig {
        reorder_webhooks: true,
        ..fast()
    })
    .await;
    let rx = Receiver::start(vec![]).await;
    register(&env, WRITE, &rx.url, ALL, None).await;
    let key = env.create_pin(WRITE, "1234").await;

    env.fake.hold_webhooks();
    let r = env.fake.add_reservation(HOTEL, "W-9");
    let stay = env
        .fake
        .add_room_stay(HOTEL, &r, "101", "2026-03-01", "2026-03-05");
    env.fake.assign_key(HOTEL, &stay, &key);
    let second = env.fake.split_room_stay(HOTEL, &stay, "2026-03-03");
    env.fake.delete_room_stay(HOTEL, &second);
    env.fake.release_webhooks();
    env.fake.webhooks_idle().await;

    let got: Vec<(String, String)> = rx
        .received()
        .iter()
        .map(|r| {
            let v = r.json();
            (
                v["type"].as_str().unwrap().to_string(),
                v["data"]["object"]["id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected_in_order = [
        ("reservation.created", r.as_str()),
        ("room_stay.created", stay.as_str()),
        ("room_stay.updated", stay.as_str()), // key assigned
        ("room_stay.updated", stay.as_str()), // split: ends earlier
        ("room_stay.created", second.as_str()),
        ("room_stay.deleted", second.as_str()),
    ];
    let reversed: Vec<(String, String)> = expected_in_order
        .iter()
        .rev()
        .map(|(t, id)| (t.to_string(), id.to_string()))
        .collect();
    assert_eq!(got, reversed);
}

#[tokio::test]
async fn faulty_signatures_on_demand() {
    let env = env_with(fast()).await;
    let stay = env.stay();
    let rx = Receiver::start(vec![]).await;
    let (_, secret) = register(&env, WRITE, &rx.url, ALL, None).await;
    // A receiver that checks signatures answers 400: still one attempt each.
    rx.always(400);

    let id = env.fake.send_badly_signed_event(HOTEL);
    env.fake.send_event_with_signature_fault(
        HOTEL,
        SignatureFault::StaleTimestamp(Duration::from_secs(3600)),
    );
    env.fake
        .send_event_with_signature_fault(HOTEL, SignatureFault::Missing);
    env.fake.webhooks_idle().await;

    let got = rx.received();
    assert_eq!(got.len(), 3);
    let bad = &got[0];
    assert_eq!(bad.json()["id"], id.as_str());
    assert_eq!(bad.json()["data"]["object"]["id"], stay.as_str());
    let (t, sigs) = parse_signature(bad.signature.as_deref().unwrap());
    assert_ne!(sigs[0], hmac_hex(&secret, t, &bad.body));
    let (t, sigs) = parse_signature(got[1].signature.as_deref().unwrap());
    assert_eq!(sigs[0], hmac_hex(&secret, t, &got[1].body));
    assert!(t < got[1].json()["created_at"].as_i64().unwrap() - 3000);
    assert!(got[2].signature.is_none());
    let log = env.fake.deliveries();
    assert_eq!(log.len(), 3);
    assert!(log.iter().all(|a| a.faulty_signature && a.attempt == 1));
    // Faults do not count against the endpoint.
    assert_eq!(env.fake.webhook_endpoints(HOTEL)[0].consecutive_failures, 0);
}

#[tokio::test]
async fn a_rotated_secret_adds_a_second_signature() {
    let env = env_with(FakeConfig {
        webhook_stale_signature: true,
        ..fast()
    })
    .await;
    let rx = Receiver::start(vec![]).await;
    let (_, secret) = register(&env, WRITE, &rx.url, ALL, None).await;
    env.fake.add_reservation(HOTEL, "W-10");
    env.fake.webhooks_idle().await;
    let got = &rx.received()[0];
    let (t, sigs) = parse_signature(got.signature.as_deref().unwrap());
    assert_eq!(sigs.len(), 2);
    let good = hmac_hex(&secret, t, &got.body);
    assert_ne!(sigs[0], good);
    assert_eq!(sigs[1], good);
}

#[tokio::test]
async fn idle_resolves_at_once_without_endpoints() {
    let env = env_with(fast()).await;
    env.stay();
    env.fake.webhooks_idle().await;
    assert!(env.fake.deliveries().is_empty());
}
