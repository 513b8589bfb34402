//! `/access_grants/create|get|list`: the asynchronous answer, validation,
//! duplicates by access_grant_key, modes per entrance, filters.

use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn create_answers_at_once_with_unissued_methods() {
    let env = env().await;
    let user = env.user("guest-1").await;
    let grant = env
        .grant(json!({
            "user_identity_id": user,
            "acs_entrance_ids": [env.room201, env.lobby],
            "starts_at": STARTS,
            "ends_at": ENDS,
            "requested_access_methods": [{ "mode": "card" }, { "mode": "code" }],
            "reservation_key": "stay-1",
            "access_grant_key": "booking-1/guest-1",
            "name": "Stay 1",
        }))
        .await;
    let id = id_of(&grant, "access_grant_id");
    assert_eq!(grant["user_identity_id"], user);
    assert_eq!(grant["reservation_key"], "stay-1");
    assert_eq!(grant["access_grant_key"], "booking-1/guest-1");
    assert_eq!(grant["name"], "Stay 1");
    assert_eq!(grant["display_name"], "Stay 1");
    assert_eq!(grant["starts_at"], "2030-05-10T15:00:00.000Z");
    assert_eq!(grant["ends_at"], "2030-05-14T11:00:00.000Z");
    assert_eq!(
        grant["space_ids"],
        json!([env.space("room-201"), env.space("lobby")])
    );
    assert_eq!(grant["warnings"], json!([]));
    assert_eq!(grant["errors"], json!([]));
    let method_ids = grant["access_method_ids"].as_array().unwrap();
    assert_eq!(method_ids.len(), 2);
    let requested = grant["requested_access_methods"].as_array().unwrap();
    assert_eq!(requested[0]["mode"], "card");
    assert_eq!(
        requested[1]["created_access_method_ids"],
        json!([method_ids[1]])
    );

    let methods = env.methods(&id).await;
    assert_eq!(methods.len(), 2);
    for m in &methods {
        assert_eq!(m["is_issued"], false, "{m}");
        assert_eq!(m["issued_at"], json!(null));
    }
    assert_eq!(methods[1]["code"], json!(null));

    let got = env.get_grant(&id).await;
    assert_eq!(got.body["access_grant"], grant);
    let by_key = env
        .ok(
            "/access_grants/get",
            json!({ "access_grant_key": "booking-1/guest-1" }),
        )
        .await;
    assert_eq!(by_key["access_grant"]["access_grant_id"], id);
    assert_eq!(
        env.event_types()
            .iter()
            .filter(|t| t.starts_with("access_"))
            .collect::<Vec<_>>(),
        // Access methods are announced when issued, never when created.
        ["access_grant.created"]
    );
}

#[tokio::test]
async fn an_inline_user_identity_is_created_with_the_grant() {
    let env = env().await;
    let grant = env
        .grant(json!({
            "user_identity": { "user_identity_key": "walk-in", "full_name": "Walk In" },
            "space_ids": [env.space("room-102")],
            "ends_at": ENDS,
            "requested_access_methods": [{ "mode": "mobile_key" }],
            "reservation_key": "stay-9",
        }))
        .await;
    let users = env.fake.user_identities(WS);
    assert_eq!(users.len(), 1);
    assert_eq!(grant["user_identity_id"], users[0].user_identity_id);
    assert_eq!(grant["display_name"], "Access Grant for Walk In");
    assert!(grant["client_session_token"].is_string());
    // space_ids resolve to the space's entrances.
    assert_eq!(
        env.fake.grants(WS)[0].acs_entrance_ids,
        [env.room102.as_str()]
    );
    // A rejected grant creates no identity.
    env.fails(
        "/access_grants/create",
        json!({
            "user_identity": { "user_identity_key": "other" },
            "space_ids": [env.space("room-102")],
            "ends_at": ENDS,
            "requested_access_methods": [{ "mode": "code" }],
        }),
        400,
    )
    .await;
    assert_eq!(env.fake.user_identities(WS).len(), 1);
}

#[tokio::test]
async fn a_second_grant_with_the_same_access_grant_key_is_409() {
    let env = env().await;
    let user = env.user("g").await;
    let mut body = card_grant(&user, &[&env.room101], Some("stay-1"));
    body["access_grant_key"] = json!("k-1");
    env.grant(body.clone()).await;
    let (kind, _) = env.fails("/access_grants/create", body, 409).await;
    assert_eq!(kind, "duplicate_access_grant_key");
    assert_eq!(env.fake.grants(WS).len(), 1);
}

#[tokio::test]
async fn every_requested_mode_must_be_supported_by_every_entrance() {
    let env = env().await;
    let user = env.user("g").await;
    let mut body = card_grant(&user, &[&env.room101, &env.lobby], Some("stay-1"));
    body["requested_access_methods"] = json!([{ "mode": "code" }]);
    let (kind, message) = env.fails("/access_grants/create", body.clone(), 400).await;
    assert_eq!(kind, "invalid_input");
    assert!(message.contains(&env.room101), "{message}");
    body["requested_access_methods"] = json!([{ "mode": "mobile_key" }]);
    let (_, message) = env.fails("/access_grants/create", body.clone(), 400).await;
    assert!(message.contains(&env.lobby), "{message}");
    body["acs_entrance_ids"] = json!([env.room201, env.lobby]);
    body["requested_access_methods"] = json!([{ "mode": "code", "code": "4321" }]);
    env.grant(body).await;
}

#[tokio::test]
async fn required_fields_and_time_rules() {
    let env = env().await;
    let user = env.user("g").await;
    let base = card_grant(&user, &[&env.room101], Some("stay-1"));
    let cases = [
        (
            "requested_access_methods",
            json!(null),
            "requested_access_methods",
        ),
        (
            "requested_access_methods",
            json!([]),
            "requested_access_methods",
        ),
        ("ends_at", json!("2030-05-10T14:00:00Z"), "ends_at"),
        ("ends_at", json!("2020-01-01T00:00:00Z"), "ends_at"),
        ("acs_entrance_ids", json!([]), "_errors"),
    ];
    for (field, value, error_at) in cases {
        let mut body = base.clone();
        if value.is_null() {
            body.as_object_mut().unwrap().remove(field);
        } else {
            body[field] = value.clone();
        }
        let r = env.post("/access_grants/create", body).await;
        assert_eq!(r.status, 400, "{field}={value}: {}", r.body);
        let ve = &r.body["error"]["validation_errors"];
        let at = if error_at == "_errors" {
            &ve["_errors"]
        } else {
            &ve[error_at]["_errors"]
        };
        assert!(!at.as_array().unwrap().is_empty(), "{field}={value}: {ve}");
    }
    assert!(env.fake.grants(WS).is_empty());
}

#[tokio::test]
async fn unknown_references_are_404() {
    let env = env().await;
    let user = env.user("g").await;
    let ghost = "00000002-0000-4000-8000-0000000000ff";
    let (kind, _) = env
        .fails(
            "/access_grants/create",
            card_grant(&user, &[&ghost.to_string()], None),
            404,
        )
        .await;
    assert_eq!(kind, "acs_entrance_not_found");
    let (kind, _) = env
        .fails(
            "/access_grants/create",
            card_grant("00000004-0000-4000-8000-0000000000ff", &[&env.lobby], None),
            404,
        )
        .await;
    assert_eq!(kind, "user_identity_not_found");
    let mut body = card_grant(&user, &[], None);
    body["space_ids"] = json!(["00000013-0000-4000-8000-0000000000ff"]);
    let (kind, _) = env.fails("/access_grants/create", body, 404).await;
    assert_eq!(kind, "space_not_found");
    let (kind, _) = env
        .fails(
            "/access_grants/get",
            json!({ "access_grant_id": "00000005-0000-4000-8000-0000000000ff" }),
            404,
        )
        .await;
    assert_eq!(kind, "access_grant_not_found");
}

#[tokio::test]
async fn list_filters_by_reservation_key_grant_key_user_and_entrance() {
    let env = env().await;
    let (g1, g2) = (env.user("g1").await, env.user("g2").await);
    let mut a = card_grant(&g1, &[&env.room101, &env.lobby], Some("stay-1"));
    a["access_grant_key"] = json!("a");
    let a = id_of(&env.grant(a).await, "access_grant_id");
    let b = id_of(
        &env.grant(card_grant(&g2, &[&env.room101], Some("stay-1")))
            .await,
        "access_grant_id",
    );
    let c = id_of(
        &env.grant(card_grant(&g2, &[&env.room102], Some("stay-2")))
            .await,
        "access_grant_id",
    );
    let list = |filter: serde_json::Value| {
        let env = &env;
        async move {
            env.ok("/access_grants/list", filter).await["access_grants"]
                .as_array()
                .unwrap()
                .iter()
                .map(|g| g["access_grant_id"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(list(json!({})).await, [a.clone(), b.clone(), c.clone()]);
    assert_eq!(
        list(json!({ "reservation_key": "stay-1" })).await,
        [a.clone(), b.clone()]
    );
    assert_eq!(list(json!({ "access_grant_key": "a" })).await, [a.as_str()]);
    assert_eq!(
        list(json!({ "user_identity_id": g2 })).await,
        [b.clone(), c.clone()]
    );
    assert_eq!(
        list(json!({ "acs_entrance_id": env.lobby })).await,
        [a.as_str()]
    );
    assert_eq!(
        list(json!({ "reservation_key": "stay-1", "limit": 1 })).await,
        [a]
    );
}
