//! Fault switches: outage, 429, slow answers, answers lost after commit,
//! and per-route request counts.

use std::time::Duration;

use fake_seam::{Fault, UNTIL_CLEARED};
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn an_outage_answers_an_empty_503_for_n_requests() {
    let env = env().await;
    env.fake.fail_next(Fault::Outage503, 2);
    for _ in 0..2 {
        let r = env.post("/acs/entrances/list", json!({})).await;
        assert_eq!(r.status, 503);
        assert_eq!(r.body, serde_json::Value::Null, "empty body");
        assert!(r.request_id().is_some());
    }
    assert_eq!(env.post("/acs/entrances/list", json!({})).await.status, 200);
    let c = env.fake.counts();
    assert_eq!(c.route("/acs/entrances/list"), 3);
    assert_eq!(c.faulted("/acs/entrances/list"), 2);

    // Until cleared; control routes are never affected.
    env.fake.fail_next(Fault::Outage503, UNTIL_CLEARED);
    for _ in 0..5 {
        assert_eq!(env.post("/access_grants/list", json!({})).await.status, 503);
    }
    let r = env
        .client
        .post(env.url("/_fake/counts"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    env.fake.clear_faults();
    assert_eq!(env.post("/access_grants/list", json!({})).await.status, 200);
}

#[tokio::test]
async fn too_many_requests_carries_retry_after() {
    let env = env().await;
    env.fake
        .fail_next(Fault::TooManyRequests { retry_after_s: 7 }, 1);
    let r = env.post("/access_grants/list", json!({})).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.headers["retry-after"], "7");
    let (kind, _) = r.error();
    assert_eq!(kind, "rate_limited");
    assert!(r.request_id().is_some());
    assert_eq!(env.post("/access_grants/list", json!({})).await.status, 200);
}

#[tokio::test]
async fn a_slow_answer_still_arrives() {
    let env = env().await;
    env.fake
        .fail_next(Fault::Slow(Duration::from_millis(30)), 1);
    let user = env.user("g").await;
    assert_eq!(env.fake.counts().faulted("/user_identities/create"), 1);
    assert_eq!(env.fake.user_identities(WS)[0].user_identity_id, user);
}

#[tokio::test]
async fn a_lost_create_is_found_by_access_grant_key_not_duplicated() {
    let env = env().await;
    let user = env.user("g").await;
    env.fake.reset_counts();
    env.fake.fail_next(
        Fault::DropResponseAfterCommit {
            route: "/access_grants/create".into(),
        },
        1,
    );
    // Other routes are not affected.
    assert_eq!(env.post("/access_grants/list", json!({})).await.status, 200);

    let mut body = card_grant(&user, &[&env.room101], Some("stay-1"));
    body["access_grant_key"] = json!("booking-7/guest-1");
    let lost = env
        .client
        .post(env.url("/access_grants/create"))
        .bearer_auth(KEY)
        .json(&body)
        .send()
        .await;
    assert!(lost.is_err(), "the answer must be lost: {lost:?}");
    // ...but the change was committed.
    assert_eq!(env.fake.grants(WS).len(), 1);

    // The client's recovery: look the grant up by its key.
    let found = env
        .ok(
            "/access_grants/list",
            json!({ "access_grant_key": "booking-7/guest-1" }),
        )
        .await;
    assert_eq!(found["access_grants"].as_array().unwrap().len(), 1);
    // A blind retry would be refused, not duplicated.
    let (kind, _) = env.fails("/access_grants/create", body, 409).await;
    assert_eq!(kind, "duplicate_access_grant_key");
    assert_eq!(env.fake.grants(WS).len(), 1);

    let c = env.fake.counts();
    assert_eq!(c.route("/access_grants/create"), 2);
    assert_eq!(c.faulted("/access_grants/create"), 1);
    assert_eq!(c.route("/access_grants/list"), 2);
    assert_eq!(c.total, 4);
    env.fake.reset_counts();
    assert_eq!(env.fake.counts().total, 0);
}

#[tokio::test]
async fn a_withheld_answer_times_the_client_out_after_commit() {
    let env = env().await;
    let user = env.user("g").await;
    env.fake.fail_next(
        Fault::HangAfterCommit {
            route: "access_grants/create".into(),
        },
        1,
    );
    let r = env
        .client
        .post(env.url("/access_grants/create"))
        .bearer_auth(KEY)
        .timeout(Duration::from_millis(300))
        .json(&card_grant(&user, &[&env.lobby], None))
        .send()
        .await;
    assert!(r.unwrap_err().is_timeout());
    assert_eq!(env.fake.grants(WS).len(), 1);
    // The fake keeps serving other connections.
    assert_eq!(env.post("/access_grants/list", json!({})).await.status, 200);
}
