//! Transport: POST + JSON, bearer keys per workspace, envelopes, error
//! shapes and `seam-request-id`.

use serde_json::{json, Value};

use crate::common::*;

#[tokio::test]
async fn missing_or_unknown_api_key_is_401_with_the_error_envelope() {
    let env = env().await;
    for key in [None, Some("seam_test_nope")] {
        let r = env.post_as(key, "/acs/entrances/list", json!({})).await;
        assert_eq!(r.status, 401);
        let (kind, message) = r.error();
        assert_eq!(kind, "unauthorized");
        assert!(!message.is_empty());
        assert_eq!(r.body["error"]["request_id"], r.request_id().unwrap());
        assert!(r.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json"));
    }
    // A non-bearer scheme is no key either.
    let r = env
        .client
        .post(env.url("/acs/entrances/list"))
        .header("authorization", format!("Basic {KEY}"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn json_content_type_and_an_object_body_are_required() {
    let env = env().await;
    let send = |content_type: Option<&'static str>, body: &'static str| {
        let mut req = env
            .client
            .post(env.url("/acs/entrances/list"))
            .bearer_auth(KEY)
            .body(body);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        req.send()
    };
    for (ct, body) in [
        (None, "{}"),
        (Some("text/plain"), "{}"),
        (Some("application/json"), "{not json"),
        (Some("application/json"), "[1, 2]"),
    ] {
        let r = send(ct, body).await.unwrap();
        assert_eq!(r.status(), 400, "{ct:?} {body}");
        assert!(r.headers().contains_key("seam-request-id"));
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["type"], "invalid_input", "{v}");
        assert_eq!(v["ok"], false);
    }
    // A charset parameter and an empty body are fine.
    let r = send(Some("application/json; charset=utf-8"), "")
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn only_post_and_known_routes() {
    let env = env().await;
    let r = env
        .client
        .get(env.url("/access_grants/list"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert!(r.headers().contains_key("seam-request-id"));
    let r = env.post("/devices/list", json!({})).await;
    assert_eq!(r.status, 404);
    assert!(r.request_id().is_some());
}

#[tokio::test]
async fn every_answer_has_its_own_request_id() {
    let env = env().await;
    let a = env.post("/acs/entrances/list", json!({})).await;
    let b = env
        .post("/access_grants/get", json!({ "access_grant_id": "x" }))
        .await;
    assert_eq!((a.status, b.status), (200, 400));
    let (ida, idb) = (a.request_id().unwrap(), b.request_id().unwrap());
    assert_ne!(ida, idb);
    assert_eq!(b.body["error"]["request_id"], idb);
}

#[tokio::test]
async fn schema_violations_list_every_field_in_validation_errors() {
    let env = env().await;
    let r = env
        .post(
            "/access_grants/create",
            json!({
                "user_identity_id": "not-a-uuid",
                "acs_entrance_ids": [env.room101],
                "starts_at": "next tuesday",
                "requested_access_methods": [{ "mode": "pin" }, { "mode": "code", "code": "12" }],
                "name": 42,
            }),
        )
        .await;
    assert_eq!(r.status, 400);
    let (kind, _) = r.error();
    assert_eq!(kind, "invalid_input");
    let ve = &r.body["error"]["validation_errors"];
    assert_eq!(ve["_errors"], json!([]));
    assert_eq!(ve["user_identity_id"]["_errors"][0], "Invalid uuid");
    assert_eq!(ve["starts_at"]["_errors"][0], "Invalid datetime");
    assert!(ve["requested_access_methods"]["0"]["mode"]["_errors"][0]
        .as_str()
        .unwrap()
        .starts_with("Invalid enum value"));
    assert!(ve["requested_access_methods"]["1"]["code"]["_errors"]
        .as_array()
        .is_some());
    assert_eq!(ve["name"]["_errors"][0], "Expected string, received number");
    // Nothing was created.
    assert!(env.fake.grants(WS).is_empty());
}

#[tokio::test]
async fn data_is_per_workspace() {
    let env = env().await;
    let user = env.user("g1").await;
    let grant = env
        .grant(card_grant(&user, &[&env.room101], Some("stay-1")))
        .await;
    let id = id_of(&grant, "access_grant_id");
    assert_eq!(grant["workspace_id"], WS);

    let other = |route: &'static str, body: Value| env.post_as(Some(OTHER_KEY), route, body);
    assert_eq!(
        other("/access_grants/get", json!({ "access_grant_id": id }))
            .await
            .status,
        404
    );
    let list = other("/access_grants/list", json!({})).await;
    assert_eq!(list.body["access_grants"], json!([]));
    let entrances = other("/acs/entrances/list", json!({})).await;
    assert_eq!(entrances.body["acs_entrances"], json!([]));
    let users = other("/user_identities/list", json!({})).await;
    assert_eq!(users.body["user_identities"], json!([]));
    // Keys are unique per workspace only.
    let r = other(
        "/user_identities/create",
        json!({ "user_identity_key": "g1" }),
    )
    .await;
    assert_eq!(r.status, 200);
    // Another workspace cannot use this one's entrances.
    let u2 = id_of(&r.body["user_identity"], "user_identity_id");
    let r = other(
        "/access_grants/create",
        card_grant(&u2, &[&env.room101], Some("stay-1")),
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.error().0, "acs_entrance_not_found");
}
