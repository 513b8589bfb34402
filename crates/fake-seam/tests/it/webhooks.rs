//! Svix webhooks: the bare event, signed as Svix signs (checked here with
//! our own HMAC), retried on failure, awaited without sleeping.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use fake_seam::{DeliveryOutcome, FakeSeamConfig};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::common::*;

#[derive(Default)]
struct Receiver {
    got: parking_lot::Mutex<Vec<(HeaderMap, String)>>,
    /// Answer 500 to this many requests first...
    fail_first: AtomicU32,
    /// ...of those whose body contains this (all if empty).
    failing_body: &'static str,
}

async fn receive(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let body = String::from_utf8_lossy(&body).into_owned();
    let failing = body.contains(r.failing_body)
        && r.fail_first
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
    r.got.lock().push((headers, body));
    if failing {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::NO_CONTENT
    }
}

/// A webhook receiver on 127.0.0.1; returns its URL.
async fn receiver(r: Arc<Receiver>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route("/hook", post(receive))
        .with_state(r);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}/hook")
}

/// Svix verification, written from Svix's documentation.
fn verify(secret: &str, headers: &HeaderMap, body: &str) -> bool {
    let h = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).unwrap_or("");
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{}.{}.{}", h("svix-id"), h("svix-timestamp"), body).as_bytes());
    let expected = STANDARD.encode(mac.finalize().into_bytes());
    h("svix-signature")
        .split(' ')
        .filter_map(|s| s.strip_prefix("v1,"))
        .any(|s| s == expected)
}

#[tokio::test]
async fn events_are_delivered_signed_as_svix_does() {
    let env = env().await;
    let r = Arc::new(Receiver::default());
    let secret = env.fake.add_webhook(WS, &receiver(r.clone()).await);
    assert!(secret.starts_with("whsec_"));
    let user = env.user("g").await;
    env.grant(card_grant(&user, &[&env.room101], Some("stay-1")))
        .await;
    env.fake.issue_pending();
    env.fake.webhooks_idle().await;

    let got = r.got.lock().clone();
    let events: Vec<Value> = got
        .iter()
        .map(|(_, b)| serde_json::from_str(b).unwrap())
        .collect();
    let types: Vec<&str> = events
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    // In event order, entrance events came before the endpoint existed.
    assert_eq!(
        types,
        [
            "access_grant.created",
            "access_method.issued",
            "access_method.card_encoding_required",
            "access_grant.access_granted_to_door",
            "access_grant.access_granted_to_all_doors",
        ]
    );
    for ((headers, body), event) in got.iter().zip(&events) {
        assert!(verify(&secret, headers, body), "signature of {body}");
        assert!(!verify(
            "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            headers,
            body
        ));
        assert!(headers["svix-id"].to_str().unwrap().starts_with("msg_"));
        let ts: i64 = headers["svix-timestamp"].to_str().unwrap().parse().unwrap();
        assert!(ts > 1_700_000_000);
        assert_eq!(headers["content-type"], "application/json");
        // The bare event object, as /events/list shows it.
        assert!(event.get("event_id").is_some() && event.get("data").is_none());
        assert_eq!(event["workspace_id"], env.workspace_id());
    }
    let listed = env.fake.events(WS);
    assert!(listed.contains(&events[0]));
    assert!(env.fake.deliveries().iter().all(|d| d.succeeded()));
}

#[tokio::test]
async fn failed_deliveries_are_retried_with_the_same_message_id() {
    let env = env_with(FakeSeamConfig {
        webhook_retry_delay: Duration::from_millis(1),
        webhook_max_attempts: 3,
        ..FakeSeamConfig::manual()
    })
    .await;
    // Only the first event fails (twice): retries of one event never race
    // with another's.
    let r = Arc::new(Receiver {
        fail_first: AtomicU32::new(2),
        failing_body: "access_grant.created",
        ..Receiver::default()
    });
    let secret = env.fake.add_webhook(WS, &receiver(r.clone()).await);
    env.user("g").await; // no event
    let user = env.user("g2").await;
    env.grant(json!({
        "user_identity_id": user,
        "acs_entrance_ids": [env.lobby],
        "ends_at": ENDS,
        "requested_access_methods": [{ "mode": "code" }],
    }))
    .await;
    env.fake.webhooks_idle().await;
    let attempts = env.fake.deliveries();
    let created: Vec<_> = attempts
        .iter()
        .filter(|d| d.event_type == "access_grant.created")
        .collect();
    assert_eq!(created.len(), 3, "{attempts:?}");
    assert_eq!(
        created[0].outcome,
        DeliveryOutcome::Rejected { status: 500 }
    );
    assert_eq!(
        created[1].outcome,
        DeliveryOutcome::Rejected { status: 500 }
    );
    assert!(created[2].succeeded());
    assert!(created.iter().all(|d| d.svix_id == created[0].svix_id));
    assert_eq!(
        created.iter().map(|d| d.attempt).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    for (headers, body) in r.got.lock().iter() {
        assert!(verify(&secret, headers, body));
    }
}

#[tokio::test]
async fn deliveries_stop_after_the_last_attempt() {
    let env = env_with(FakeSeamConfig {
        webhook_retry_delay: Duration::from_millis(1),
        webhook_max_attempts: 2,
        ..FakeSeamConfig::manual()
    })
    .await;
    let r = Arc::new(Receiver {
        fail_first: AtomicU32::new(u32::MAX),
        ..Receiver::default()
    });
    env.fake.add_webhook(WS, &receiver(r.clone()).await);
    // Nothing listens here: connection refused.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = format!("http://{}/hook", closed.local_addr().unwrap());
    drop(closed);
    env.fake.add_webhook(WS, &dead);
    env.fake.remove_entrance(WS, &env.gym);
    env.fake.webhooks_idle().await;
    let attempts = env.fake.deliveries();
    assert_eq!(attempts.len(), 4, "{attempts:?}");
    assert!(attempts.iter().all(|d| !d.succeeded()));
    assert!(attempts
        .iter()
        .any(|d| matches!(d.outcome, DeliveryOutcome::Failed { .. })));
    assert_eq!(r.got.lock().len(), 2);
}
