//! Transport: the methods of Seam's definition (POST + JSON, GET with a
//! query string, PATCH), bearer keys per workspace, envelopes, error
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
    // Seam's SDK sends a call without parameters as an empty body of
    // whatever type its HTTP library chose.
    let r = send(Some("application/x-www-form-urlencoded"), "")
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// What Seam's SDK sends: GET with a query string for the routes its
/// definition lists GET for, PATCH for updates.
#[tokio::test]
async fn get_with_a_query_string_and_patch_as_seams_sdk_sends_them() {
    let env = env().await;
    let user = env.user("sdk").await;
    let grant = env
        .grant(card_grant(&user, &[&env.room101], Some("stay-1")))
        .await;
    let id = id_of(&grant, "access_grant_id");
    let get = |route: &str, query: &str| {
        env.client
            .get(format!("{}?{query}", env.url(route)))
            .bearer_auth(KEY)
            .send()
    };
    let r = get("/access_grants/get", &format!("access_grant_id={id}"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["access_grant"]["access_grant_id"], id);
    // Arrays repeat their name; numbers are typed by the route's schema.
    let query = format!(
        "acs_encoder_ids={}&acs_encoder_ids={}&limit=1",
        env.encoder, env.encoder
    );
    let r = get("/acs/encoders/list", &query).await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["acs_encoders"].as_array().unwrap().len(), 1, "{v}");
    // What the schema refuses in a query is refused as in a body.
    let r = get("/user_identities/get", "user_identity_id=nope")
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    let r = env
        .client
        .patch(env.url("/access_grants/update"))
        .bearer_auth(KEY)
        .json(&json!({ "access_grant_id": id, "ends_at": "2030-05-15T11:00:00Z" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        env.fake.grants(WS)[0].ends_at.map(|t| t.to_string()),
        Some("2030-05-15T11:00:00Z".into())
    );
}

#[tokio::test]
async fn the_methods_of_seams_definition_and_known_routes() {
    let env = env().await;
    // /access_grants/list takes GET and POST; PUT is not in the definition.
    let r = env
        .client
        .put(env.url("/access_grants/list"))
        .bearer_auth(KEY)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert!(r.headers().contains_key("seam-request-id"));
    // /access_grants/create is POST only.
    let r = env
        .client
        .get(env.url("/access_grants/create"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
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
    assert_eq!(grant["workspace_id"], env.workspace_id());

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
