//! The `/_fake/*` control routes: the control API over HTTP.

use serde_json::{json, Value};

use crate::common::*;

async fn control(env: &Env, route: &str, body: Value) -> (u16, Value) {
    let r = env
        .client
        .post(env.url(route))
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test]
async fn seeding_and_driving_the_fake_over_http() {
    let env = env().await;
    let ok = |v: (u16, Value)| {
        assert_eq!(v.0, 200, "{}", v.1);
        v.1
    };
    ok(control(
        &env,
        "/_fake/add_workspace",
        json!({ "workspace_id": "ws3", "api_key": "seam_test_3" }),
    )
    .await);
    ok(control(
        &env,
        "/_fake/add_acs_system",
        json!({ "workspace_id": "ws3", "acs_system_id": "s", "name": "S", "requires_reservation_for_guest_cards": true }),
    )
    .await);
    let e = ok(control(
        &env,
        "/_fake/add_entrance",
        json!({ "workspace_id": "ws3", "acs_system_id": "s", "display_name": "Door", "can_unlock_with_code": true }),
    )
    .await);
    let entrance = e["acs_entrance_id"].as_str().unwrap().to_string();

    let as3 = |route: &'static str, body: Value| env.post_as(Some("seam_test_3"), route, body);
    let list = as3("/acs/entrances/list", json!({})).await;
    assert_eq!(list.body["acs_entrances"][0]["acs_entrance_id"], entrance);
    let u = as3("/user_identities/create", json!({})).await;
    let user = id_of(&u.body["user_identity"], "user_identity_id");
    let g = as3(
        "/access_grants/create",
        json!({
            "user_identity_id": user, "acs_entrance_ids": [entrance], "ends_at": ENDS,
            "requested_access_methods": [{ "mode": "code" }],
        }),
    )
    .await;
    assert_eq!(g.status, 200, "{}", g.body);
    ok(control(&env, "/_fake/issue_pending", json!({})).await);
    let grant_id = id_of(&g.body["access_grant"], "access_grant_id");
    let m = as3(
        "/access_methods/list",
        json!({ "access_grant_id": grant_id }),
    )
    .await;
    assert_eq!(m.body["access_methods"][0]["is_issued"], true);

    // Faults over HTTP.
    ok(control(
        &env,
        "/_fake/fail_next",
        json!({ "fault": { "type": "outage_503" }, "count": 1 }),
    )
    .await);
    assert_eq!(as3("/access_grants/list", json!({})).await.status, 503);
    ok(control(
        &env,
        "/_fake/fail_next",
        json!({ "fault": { "type": "too_many_requests", "retry_after_s": 2 } }),
    )
    .await);
    assert_eq!(as3("/access_grants/list", json!({})).await.status, 429);
    assert_eq!(as3("/access_grants/list", json!({})).await.status, 429);
    ok(control(&env, "/_fake/clear_faults", json!({})).await);
    assert_eq!(as3("/access_grants/list", json!({})).await.status, 200);
    let counts = ok(control(&env, "/_fake/counts", json!({})).await);
    assert_eq!(counts["counts"]["by_route"]["/access_grants/list"], 4);
    assert_eq!(counts["counts"]["faulted"]["/access_grants/list"], 3);

    ok(control(
        &env,
        "/_fake/add_encoder",
        json!({ "workspace_id": "ws3", "acs_system_id": "s", "display_name": "E" }),
    )
    .await);
    ok(control(
        &env,
        "/_fake/remove_entrance",
        json!({ "workspace_id": "ws3", "acs_entrance_id": entrance }),
    )
    .await);
    ok(control(
        &env,
        "/_fake/fail_next",
        json!({ "fault": { "type": "slow", "delay_ms": 1 }, "count": 1 }),
    )
    .await);
    ok(control(
        &env,
        "/_fake/fail_next",
        json!({ "fault": { "type": "drop_response_after_commit", "route": "/user_identities/create" }, "count": 1 }),
    )
    .await);
    let lost = env
        .client
        .post(env.url("/user_identities/create"))
        .bearer_auth("seam_test_3")
        .json(&json!({ "user_identity_key": "lost" }))
        .send()
        .await;
    assert!(lost.is_err());
    let found = as3(
        "/user_identities/get",
        json!({ "user_identity_key": "lost" }),
    )
    .await;
    assert_eq!(found.status, 200);
    let deliveries = ok(control(&env, "/_fake/deliveries", json!({})).await);
    assert_eq!(deliveries["deliveries"], json!([]));
    ok(control(&env, "/_fake/reset_counts", json!({})).await);
    assert_eq!(env.fake.counts().total, 0);
}

#[tokio::test]
async fn control_routes_reject_bad_input_without_panicking() {
    let env = env().await;
    let (status, body) = control(
        &env,
        "/_fake/add_entrance",
        json!({ "workspace_id": "nope" }),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["type"], "invalid_input");
    let (status, body) = control(
        &env,
        "/_fake/add_entrance",
        json!({ "workspace_id": "nope", "acs_system_id": "s", "display_name": "D" }),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["type"], "workspace_not_found");
    let (status, _) = control(
        &env,
        "/_fake/fail_next",
        json!({ "fault": { "type": "slow" } }),
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = control(
        &env,
        "/_fake/add_webhook",
        json!({ "workspace_id": WS, "url": "not a url" }),
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = control(&env, "/_fake/no_such_thing", json!({})).await;
    assert_eq!(status, 404);
    // The API key of another workspace cannot be taken over.
    let (status, _) = control(
        &env,
        "/_fake/add_workspace",
        json!({ "workspace_id": "x", "api_key": KEY }),
    )
    .await;
    assert_eq!(status, 409);
}
