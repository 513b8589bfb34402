//! The Prometheus endpoint, end to end: the real server with the simulated
//! lock and the fake Seam, a scenario over gRPC (keys issued, one refused,
//! listed, one revoked, a Seam key issued and made active by Seam's signed
//! events), then `GET /metrics` on the metrics address, checked series by
//! series.
//!
//! One test in this file: the recorder is the process's, so another test
//! running beside it would move the same counters.
mod common;

use common::{guest, metrics::scrape, reason, TestServer, DAY, PROPERTY, T0};
use fake_seam::{EntranceSeed, FakeSeam, FakeSeamConfig};
use keysmith_api::v1 as pb;
use serde_json::json;
use tonic::Code;

const WS: &str = "ws_metrics";
const SEAM_KEY: &str = "seam_metrics_key";

#[tokio::test]
async fn a_scrape_after_a_scenario_counts_what_happened() {
    let (s, fake, seam_room) = start().await;
    let metrics = s
        .running
        .as_ref()
        .unwrap()
        .metrics_addr
        .expect("metrics are on by default");

    let kept = s
        .issue(guest("g1", &["room-101"], T0, T0 + DAY, "stay-1"))
        .await
        .unwrap();
    let revoked = s
        .issue(guest("g2", &["room-102"], T0, T0 + DAY, "stay-2"))
        .await
        .unwrap();
    let refused = s
        .issue(guest("g3", &["room-201"], T0, T0 + DAY, ""))
        .await
        .unwrap_err();
    assert_eq!(reason(&refused).1, "RESERVATION_KEY_REQUIRED");
    for _ in 0..2 {
        s.list(pb::ListKeysRequest {
            property_id: PROPERTY.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    s.revoke_key(&revoked.key_id).await.unwrap();
    let mut pin = guest("g4", &[&seam_room], T0, T0 + 2 * DAY, "stay-seam");
    pin.modes = vec![pb::CredentialMode::Pin as i32];
    let seam_key = s.issue(pin).await.unwrap();
    assert_eq!(seam_key.state, pb::KeyState::Issuing as i32);
    let lock = &kept.entrances[0].driver;
    let seam = &seam_key.entrances[0].driver;

    let before = scrape(metrics).await;
    assert_eq!(
        before.get("keysmith_keys", &keys(lock, "ACTIVE")),
        Some(1.0)
    );
    assert_eq!(
        before.get("keysmith_keys", &keys(seam, "ISSUING")),
        Some(1.0)
    );

    // Seam issues the PIN and tells keysmith through its signed events.
    fake.issue_pending();
    fake.webhooks_idle().await;
    let delivered = fake.deliveries();
    assert!(!delivered.is_empty());
    assert!(delivered.iter().all(|d| d.succeeded()), "{delivered:?}");
    let after = scrape(metrics).await;

    // RPCs by method and code, with their latency histograms.
    let rpc = |method: &str, code: &str| {
        vec![
            ("service", "keysmith.v1.AccessService".to_owned()),
            ("method", method.to_owned()),
            ("code", code.to_owned()),
        ]
    };
    let refused_code = code_name(refused.code());
    for (method, code, calls) in [
        ("Issue", "OK", 3.0),
        ("Issue", refused_code, 1.0),
        ("ListKeys", "OK", 2.0),
        ("Revoke", "OK", 1.0),
    ] {
        let labels = rpc(method, code);
        assert_eq!(
            after.get("keysmith_rpc_requests_total", &labels),
            Some(calls),
            "{method} {code}"
        );
        assert_eq!(
            after.get("keysmith_rpc_duration_seconds_count", &labels),
            Some(calls),
            "{method} {code}"
        );
    }
    assert_eq!(
        after.get("keysmith_rpc_requests_total", &rpc("GetKey", "OK")),
        None,
        "a method never called has no series"
    );

    // Driver calls by driver, operation and outcome: the refused Issue
    // never reached a driver.
    let driver_call = |driver: &str, operation: &str| {
        vec![
            ("driver", driver.to_owned()),
            ("operation", operation.to_owned()),
            ("outcome", "ok".to_owned()),
        ]
    };
    assert_eq!(
        after.get("keysmith_driver_calls_total", &driver_call(lock, "issue")),
        Some(2.0)
    );
    assert_eq!(
        after.get("keysmith_driver_calls_total", &driver_call(lock, "revoke")),
        Some(1.0)
    );
    assert_eq!(
        after.get("keysmith_driver_calls_total", &driver_call(seam, "issue")),
        Some(1.0)
    );
    assert!(
        after
            .get("keysmith_driver_calls_total", &driver_call(seam, "refresh"))
            .unwrap_or(0.0)
            >= 1.0,
        "Seam's events refreshed the key"
    );
    assert_eq!(
        after.sum(
            "keysmith_driver_call_seconds_count",
            &[("driver", lock.clone())]
        ),
        3.0
    );

    // Seam's events: each delivery accepted.
    assert_eq!(
        after.get(
            "keysmith_webhook_deliveries_total",
            &[
                ("source", "seam".to_owned()),
                ("outcome", "accepted".to_owned())
            ]
        ),
        Some(delivered.len() as f64)
    );

    // Keys by state: the revoked key is gone, the Seam key has left ISSUING.
    assert_eq!(after.get("keysmith_keys", &keys(lock, "ACTIVE")), Some(1.0));
    assert_eq!(after.get("keysmith_keys", &keys(seam, "ACTIVE")), Some(1.0));
    assert_eq!(
        after.get("keysmith_keys", &keys(seam, "ISSUING")),
        Some(0.0)
    );

    // The committer: every batch flushed once (the audit log writes in the
    // background, and a batch may be between its flush and its size being
    // recorded), and at least the four changes (three keys, one
    // revocation) were written.
    let batches = after.get("keysmith_store_batch_writes_count", &[]).unwrap();
    let flushes = after
        .get("keysmith_store_flush_seconds_count", &[])
        .unwrap();
    assert!(
        batches >= 1.0 && (batches..=batches + 1.0).contains(&flushes),
        "{batches} batches, {flushes} flushes"
    );
    assert!(after.get("keysmith_store_batch_writes_sum", &[]).unwrap() >= 4.0);
    assert!(after.get("keysmith_store_size_bytes", &[]).unwrap() > 0.0);

    // The listing cache: each listing was a hit or a miss, and the first,
    // of a property not yet held, a miss.
    let lookups = |outcome: &str| {
        after
            .get(
                "keysmith_listing_cache_lookups_total",
                &[("outcome", outcome.to_owned())],
            )
            .unwrap_or(0.0)
    };
    assert!(lookups("miss") >= 1.0);
    assert!(lookups("hit") + lookups("miss") >= 2.0);
    assert!(after
        .get("keysmith_listing_cache_evictions_total", &[])
        .is_some());
}

/// The fake Seam with one workspace and one room, and keysmith with the
/// embedded default (the simulated lock's demo hotel) plus that room, its
/// Svix receiver registered with the fake; the store read at every scrape.
async fn start() -> (TestServer, FakeSeam, String) {
    let events = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap()
    };
    let fake = FakeSeam::start(FakeSeamConfig::manual()).await.unwrap();
    fake.add_workspace(WS, SEAM_KEY);
    fake.add_acs_system(WS, "sys_visionline", "Visionline", true);
    let room = fake.add_entrance(
        WS,
        "sys_visionline",
        EntranceSeed {
            display_name: "Room 501".into(),
            space_key: Some("space-501".into()),
            can_belong_to_reservation: true,
            can_unlock_with_code: true,
            ..EntranceSeed::default()
        },
    );
    let secret = fake.add_webhook(WS, &format!("http://{events}/seam/webhooks/{PROPERTY}"));
    let base_url = fake.base_url();
    let server = TestServer::start_with(move |c| {
        c.metrics.sample_interval_seconds = 0;
        c.drivers.seam = Some(
            serde_json::from_value(json!({
                "base_url": base_url,
                "connect_timeout_ms": 1000,
                "request_timeout_ms": 1000,
                "max_retries": 2,
                "backoff_ms": 5,
                // Events, not polling, make the key active here.
                "poll_interval_ms": 3_600_000,
                "entrance_refresh_seconds": 3600,
                "webhook_listen": events.to_string(),
                "workspaces": [{
                    "property_id": PROPERTY,
                    "api_key": SEAM_KEY,
                    "webhook_secret": secret,
                }],
            }))
            .unwrap(),
        );
    })
    .await;
    (server, fake, room)
}

fn keys(driver: &str, state: &str) -> Vec<(&'static str, String)> {
    vec![
        ("property", PROPERTY.to_owned()),
        ("driver", driver.to_owned()),
        ("state", state.to_owned()),
    ]
}

fn code_name(code: Code) -> &'static str {
    match code {
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        other => panic!("unexpected refusal {other:?}"),
    }
}
