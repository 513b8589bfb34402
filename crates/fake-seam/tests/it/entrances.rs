//! `/acs/entrances/list`: capability flags left out when false, filters.

use serde_json::{json, Value};

use crate::common::*;

fn by_id<'a>(list: &'a Value, id: &str) -> &'a Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|e| e["acs_entrance_id"] == id)
        .unwrap_or_else(|| panic!("{id} in {list}"))
}

#[tokio::test]
async fn capability_flags_are_omitted_unless_true() {
    let env = env().await;
    let body = env.ok("/acs/entrances/list", json!({})).await;
    let list = &body["acs_entrances"];
    assert_eq!(list.as_array().unwrap().len(), 6);

    let room = by_id(list, &env.room101);
    assert_eq!(room["can_belong_to_reservation"], true);
    assert_eq!(room["can_unlock_with_card"], true);
    assert_eq!(room["can_unlock_with_mobile_key"], true);
    assert!(room.get("can_unlock_with_code").is_none(), "{room}");
    assert!(
        room["acs_system_id"]
            .as_str()
            .is_some_and(|id| id.len() == 36),
        "{room}"
    );
    assert_eq!(room["space_ids"], json!([env.space("room-101")]));
    assert!(
        room.get("workspace_id").is_none(),
        "not in Seam's acs_entrance"
    );
    assert_eq!(room["display_name"], "Room 101");
    assert_eq!(room["errors"], json!([]));
    assert!(room["connected_account_id"].is_string());
    assert!(room["created_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(room["visionline_metadata"]["door_category"], "guest");

    let lobby = by_id(list, &env.lobby);
    for absent in ["can_belong_to_reservation", "can_unlock_with_mobile_key"] {
        assert!(lobby.get(absent).is_none(), "{absent} in {lobby}");
    }
    assert_eq!(lobby["can_unlock_with_code"], true);
    assert!(lobby.get("visionline_metadata").is_none());
    assert_eq!(by_id(list, &env.room201)["can_unlock_with_code"], true);
}

#[tokio::test]
async fn filters_by_system_space_and_ids() {
    let env = env().await;
    let ids = |v: Value| -> Vec<String> {
        v["acs_entrances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["acs_entrance_id"].as_str().unwrap().to_string())
            .collect()
    };
    let plain = env
        .ok(
            "/acs/entrances/list",
            json!({ "acs_system_id": env.plain_system_id }),
        )
        .await;
    assert_eq!(ids(plain), [env.lobby.clone(), env.gym.clone()]);
    let space = env
        .ok(
            "/acs/entrances/list",
            json!({ "space_id": env.space("room-203") }),
        )
        .await;
    assert_eq!(ids(space), [env.room203.as_str()]);
    let some = env
        .ok(
            "/acs/entrances/list",
            json!({ "acs_entrance_ids": [env.gym, env.room102] }),
        )
        .await;
    assert_eq!(ids(some), [env.room102.clone(), env.gym.clone()]);
    let searched = env
        .ok("/acs/entrances/list", json!({ "search": "roOm 2" }))
        .await;
    assert_eq!(ids(searched), [env.room201.clone(), env.room203.clone()]);
    // Ids the fake mints are UUIDs; anything else is invalid input.
    let (kind, _) = env
        .fails(
            "/acs/entrances/list",
            json!({ "acs_entrance_ids": ["room-101"] }),
            400,
        )
        .await;
    assert_eq!(kind, "invalid_input");
}

#[tokio::test]
async fn removed_entrances_disappear_and_grants_lose_access() {
    let env = env().await;
    let user = env.user("g1").await;
    let grant = env
        .grant(card_grant(
            &user,
            &[&env.room101, &env.lobby],
            Some("stay-1"),
        ))
        .await;
    env.fake.remove_entrance(WS, &env.lobby);
    let list = env.ok("/acs/entrances/list", json!({})).await;
    assert_eq!(list["acs_entrances"].as_array().unwrap().len(), 5);
    let g = env
        .get_grant(grant["access_grant_id"].as_str().unwrap())
        .await;
    // Seam's definition has no grant warning for a lost door: the event says.
    assert_eq!(g.body["access_grant"]["warnings"], json!([]));
    let types = env.event_types();
    assert!(types.contains(&"access_grant.access_to_door_lost".to_string()));
    assert!(types.contains(&"acs_entrance.removed".to_string()));
    assert!(types.contains(&"access_grant.access_to_door_lost".to_string()));
}
