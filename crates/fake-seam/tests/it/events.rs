//! `/events/list`: since/between, types, ids; newest first.

use serde_json::{json, Value};

use crate::common::*;

fn types(v: &Value) -> Vec<String> {
    v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn events_list_filters_and_orders_newest_first() {
    let env = env().await;
    let user = env.user("g").await;
    let a = env
        .grant(card_grant(&user, &[&env.room101], Some("stay-1")))
        .await;
    let b = env
        .grant(card_grant(&user, &[&env.room102], Some("stay-2")))
        .await;
    env.fake.issue_pending();

    let all = env
        .ok("/events/list", json!({ "since": "2000-01-01T00:00:00Z" }))
        .await;
    assert!(all.get("pagination").is_none());
    let list = all["events"].as_array().unwrap();
    // 6 entrances added, 2 grants x (created, issued, card encoding
    // required, granted to door, to all doors).
    assert_eq!(list.len(), 6 + 2 * 5, "{:?}", types(&all));
    let first = &list[list.len() - 1];
    assert_eq!(first["event_type"], "acs_entrance.added");
    for key in ["event_id", "workspace_id", "created_at", "occurred_at"] {
        assert!(first[key].is_string(), "{key} in {first}");
    }
    assert_eq!(
        list[0]["event_type"],
        "access_grant.access_granted_to_all_doors"
    );

    let created = env
        .ok(
            "/events/list",
            json!({ "since": "2000-01-01T00:00:00Z", "event_types": ["access_grant.created"] }),
        )
        .await;
    let created = created["events"].as_array().unwrap();
    assert_eq!(created.len(), 2);
    assert_eq!(created[0]["access_grant_id"], b["access_grant_id"]);

    // access_grant_id also finds method events (access_grant_ids).
    let of_a = env
        .ok(
            "/events/list",
            json!({ "since": "2000-01-01T00:00:00Z", "access_grant_id": a["access_grant_id"] }),
        )
        .await;
    assert_eq!(
        of_a["events"].as_array().unwrap().len(),
        5,
        "{:?}",
        types(&of_a)
    );

    let one_type = env
        .ok(
            "/events/list",
            json!({ "since": "2000-01-01T00:00:00Z", "event_type": "access_method.issued", "limit": 1 }),
        )
        .await;
    assert_eq!(types(&one_type), ["access_method.issued"]);

    let future = env
        .ok("/events/list", json!({ "since": "2100-01-01T00:00:00Z" }))
        .await;
    assert_eq!(future["events"], json!([]));
    let between = env
        .ok(
            "/events/list",
            json!({ "between": ["2000-01-01T00:00:00Z", "2100-01-01T00:00:00Z"] }),
        )
        .await;
    assert_eq!(between["events"].as_array().unwrap().len(), list.len());
}

#[tokio::test]
async fn events_list_needs_since_or_between() {
    let env = env().await;
    let r = env.post("/events/list", json!({})).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error().0, "invalid_input");
    env.fails(
        "/events/list",
        json!({ "between": ["2000-01-01T00:00:00Z"] }),
        400,
    )
    .await;
    env.fails("/events/list", json!({ "since": "yesterday" }), 400)
        .await;
}
