//! Cursor pagination: `limit`, opaque `page_cursor`, default limits of 900
//! (entrances) and 500 (other lists), limits out of range.

use serde_json::{json, Value};

use crate::common::*;

fn ids(v: &Value, list: &str, id: &str) -> Vec<String> {
    v[list]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e[id].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn cursors_walk_a_list_page_by_page() {
    let env = env().await;
    let first = env.ok("/acs/entrances/list", json!({ "limit": 4 })).await;
    let p = &first["pagination"];
    assert_eq!(p["has_next_page"], true);
    let cursor = p["next_page_cursor"].as_str().unwrap().to_string();
    assert!(p["next_page_url"]
        .as_str()
        .unwrap()
        .starts_with(&env.fake.base_url()));
    assert_eq!(ids(&first, "acs_entrances", "acs_entrance_id").len(), 4);

    let second = env
        .ok(
            "/acs/entrances/list",
            json!({ "limit": 4, "page_cursor": cursor }),
        )
        .await;
    assert_eq!(
        ids(&second, "acs_entrances", "acs_entrance_id"),
        [env.lobby.clone(), env.gym.clone()]
    );
    assert_eq!(
        second["pagination"],
        json!({ "has_next_page": false, "next_page_cursor": null, "next_page_url": null })
    );

    // A cursor belongs to its query.
    let (kind, _) = env
        .fails(
            "/acs/entrances/list",
            json!({ "page_cursor": cursor, "acs_system_id": PLAIN }),
            400,
        )
        .await;
    assert_eq!(kind, "invalid_input");
    env.fails(
        "/acs/entrances/list",
        json!({ "page_cursor": "bm90IGEgY3Vyc29y" }),
        400,
    )
    .await;
}

#[tokio::test]
async fn limits_out_of_range_are_invalid_input() {
    let env = env().await;
    for limit in [json!(0), json!(-1), json!(1.5), json!("5")] {
        for route in [
            "/acs/entrances/list",
            "/access_grants/list",
            "/user_identities/list",
        ] {
            let r = env.post(route, json!({ "limit": limit })).await;
            assert_eq!(r.status, 400, "{route} {limit}");
            let (kind, _) = r.error();
            assert_eq!(kind, "invalid_input");
            assert!(r.body["error"]["validation_errors"]["limit"].is_object());
        }
    }
}

#[tokio::test]
async fn default_limits_are_900_for_entrances_and_500_otherwise() {
    let env = env().await;
    for n in 0..900 {
        env.fake
            .add_entrance(WS, PLAIN, common_door(&format!("Door {n}"), "floor"));
    }
    let page = env.ok("/acs/entrances/list", json!({})).await;
    assert_eq!(page["acs_entrances"].as_array().unwrap().len(), 900);
    assert_eq!(page["pagination"]["has_next_page"], true);
    let rest = env
        .ok(
            "/acs/entrances/list",
            json!({ "page_cursor": page["pagination"]["next_page_cursor"] }),
        )
        .await;
    assert_eq!(rest["acs_entrances"].as_array().unwrap().len(), 6);

    // 501 identities (created concurrently: order is still creation order).
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..501 {
        let (client, url) = (env.client.clone(), env.url("/user_identities/create"));
        tasks.spawn(async move {
            let r = client
                .post(url)
                .bearer_auth(KEY)
                .json(&json!({ "user_identity_key": format!("u{n}") }))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let page = env.ok("/user_identities/list", json!({})).await;
    let first = ids(&page, "user_identities", "user_identity_id");
    assert_eq!(first.len(), 500);
    assert!(first.windows(2).all(|w| w[0] < w[1]), "creation order");
    let rest = env
        .ok(
            "/user_identities/list",
            json!({ "page_cursor": page["pagination"]["next_page_cursor"] }),
        )
        .await;
    assert_eq!(rest["user_identities"].as_array().unwrap().len(), 1);
    assert_eq!(rest["pagination"]["has_next_page"], false);
}
