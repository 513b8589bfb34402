//! Access methods: asynchronous issuance, reissue after an update, the
//! asynchronous delete, card encoding through action attempts.

use std::time::Duration;

use fake_seam::FakeSeamConfig;
use serde_json::{json, Value};

use crate::common::*;

async fn card_and_code_grant(env: &Env) -> (String, Vec<String>) {
    let user = env.user("g").await;
    let grant = env
        .grant(json!({
            "user_identity_id": user,
            "acs_entrance_ids": [env.room201],
            "starts_at": STARTS,
            "ends_at": ENDS,
            "requested_access_methods": [{ "mode": "card" }, { "mode": "code", "code": "482913" }],
            "reservation_key": "stay-1",
            "access_grant_key": "k1",
        }))
        .await;
    let ids = grant["access_method_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    (id_of(&grant, "access_grant_id"), ids)
}

async fn method(env: &Env, id: &str) -> Value {
    env.ok("/access_methods/get", json!({ "access_method_id": id }))
        .await["access_method"]
        .clone()
}

#[tokio::test]
async fn methods_are_issued_only_when_the_fake_is_told() {
    let env = env().await;
    let (grant, ids) = card_and_code_grant(&env).await;
    assert!(env
        .methods(&grant)
        .await
        .iter()
        .all(|m| m["is_issued"] == false));

    env.fake.issue_pending();
    let card = method(&env, &ids[0]).await;
    assert_eq!(card["mode"], "card");
    assert_eq!(card["is_issued"], true);
    assert!(card["issued_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(card["is_encoding_required"], true);
    let code = method(&env, &ids[1]).await;
    assert_eq!(code["is_issued"], true);
    assert_eq!(code["code"], "482913");
    assert_eq!(code["is_encoding_required"], false);

    let types = env.event_types();
    for t in [
        "access_method.issued",
        "access_method.card_encoding_required",
        "access_grant.access_granted_to_door",
        "access_grant.access_granted_to_all_doors",
    ] {
        assert!(types.contains(&t.to_string()), "{t} in {types:?}");
    }
    let issued: Vec<Value> = env
        .fake
        .events(WS)
        .into_iter()
        .filter(|e| e["event_type"] == "access_method.issued")
        .collect();
    assert_eq!(issued.len(), 2);
    assert_eq!(issued[1]["code"], "482913");
    assert_eq!(issued[1]["access_grant_ids"], json!([grant]));
    assert_eq!(issued[1]["access_grant_keys"], json!(["k1"]));
}

#[tokio::test]
async fn with_a_zero_delay_methods_are_issued_in_the_background() {
    let env = env_with(FakeSeamConfig::default()).await;
    let (grant, _) = card_and_code_grant(&env).await;
    env.fake.settled().await;
    let methods = env.methods(&grant).await;
    assert!(
        methods.iter().all(|m| m["is_issued"] == true),
        "{methods:?}"
    );
}

#[tokio::test]
async fn a_taken_requested_code_is_replaced_with_a_warning() {
    let env = env().await;
    card_and_code_grant(&env).await;
    env.fake.issue_pending();
    let user = env.user("other").await;
    let grant = env
        .grant(json!({
            "user_identity_id": user,
            "acs_entrance_ids": [env.room201],
            "starts_at": STARTS, "ends_at": ENDS,
            "requested_access_methods": [{ "mode": "code", "code": "482913" }],
            "reservation_key": "stay-1",
        }))
        .await;
    env.fake.issue_pending();
    let id = id_of(&grant, "access_grant_id");
    let m = &env.methods(&id).await[0];
    assert_ne!(m["code"], "482913");
    assert_eq!(m["code"].as_str().unwrap().len(), 6);
    // Seam's definition has no warning for it: the code tells.
    let g = env.get_grant(&id).await.body["access_grant"].clone();
    assert_eq!(g["warnings"], json!([]));
}

#[tokio::test]
async fn an_update_revokes_and_reissues_and_cards_need_encoding_again() {
    let env = env().await;
    let (grant, ids) = card_and_code_grant(&env).await;
    env.fake.issue_pending();
    // Encode the card: no more encoding required.
    let attempt = env
        .ok(
            "/access_methods/encode",
            json!({ "access_method_id": ids[0], "acs_encoder_id": env.encoder }),
        )
        .await["action_attempt"]
        .clone();
    assert_eq!(attempt["status"], "pending");
    env.fake.finish_encodings();
    assert_eq!(method(&env, &ids[0]).await["is_encoding_required"], false);

    // A name-only update reissues nothing.
    let before = env.fake.events(WS).len();
    env.ok(
        "/access_grants/update",
        json!({ "access_grant_id": grant, "name": "Renamed" }),
    )
    .await;
    assert_eq!(env.fake.events(WS).len(), before);
    assert_eq!(
        env.get_grant(&grant).await.body["access_grant"]["name"],
        "Renamed"
    );

    env.ok(
        "/access_grants/update",
        json!({ "access_grant_id": grant, "ends_at": "2030-05-16T11:00:00Z" }),
    )
    .await;
    let g = env.get_grant(&grant).await.body["access_grant"].clone();
    assert_eq!(g["ends_at"], "2030-05-16T11:00:00.000Z");
    // No grant warning while reissuing (Seam's definition has none).
    assert_eq!(g["warnings"], json!([]));
    assert!(env
        .methods(&grant)
        .await
        .iter()
        .all(|m| m["is_issued"] == false));
    let types = env.event_types();
    assert!(types.contains(&"access_grant.access_times_changed".to_string()));
    assert_eq!(
        types
            .iter()
            .filter(|t| *t == "access_method.revoked")
            .count(),
        2
    );

    env.fake.issue_pending();
    let card = method(&env, &ids[0]).await;
    assert_eq!(card["is_issued"], true);
    assert_eq!(card["is_encoding_required"], true);
    // The code is kept.
    assert_eq!(method(&env, &ids[1]).await["code"], "482913");
    assert_eq!(env.fake.access_methods(WS)[0].reissue_count, 1);
    assert_eq!(
        env.get_grant(&grant).await.body["access_grant"]["warnings"],
        json!([])
    );
    let types = env.event_types();
    assert_eq!(
        types
            .iter()
            .filter(|t| *t == "access_method.reissued")
            .count(),
        2
    );
    assert_eq!(
        types
            .iter()
            .filter(|t| *t == "access_method.card_encoding_required")
            .count(),
        2
    );
    let changed = env
        .fake
        .events(WS)
        .into_iter()
        .find(|e| e["event_type"] == "access_grant.access_times_changed")
        .unwrap();
    assert_eq!(changed["ends_at"], "2030-05-16T11:00:00.000Z");
    assert_eq!(changed["access_grant_key"], "k1");
}

#[tokio::test]
async fn updates_are_validated() {
    let env = env().await;
    let (grant, _) = card_and_code_grant(&env).await;
    env.fails(
        "/access_grants/update",
        json!({ "access_grant_id": grant, "ends_at": "2030-05-01T00:00:00Z" }),
        400,
    )
    .await;
    env.fails(
        "/access_grants/update",
        json!({ "access_grant_id": "00000005-0000-4000-8000-0000000000ff", "name": "x" }),
        404,
    )
    .await;
    env.fails("/access_grants/update", json!({ "name": "x" }), 400)
        .await;
}

#[tokio::test]
async fn delete_tears_down_in_the_background() {
    let env = env().await;
    let (grant, ids) = card_and_code_grant(&env).await;
    env.fake.issue_pending();
    let r = env
        .ok("/access_grants/delete", json!({ "access_grant_id": grant }))
        .await;
    assert_eq!(r, json!({ "ok": true }));
    let g = env.get_grant(&grant).await;
    assert_eq!(g.status, 200);
    assert_eq!(
        g.body["access_grant"]["warnings"][0]["warning_code"],
        "being_deleted"
    );
    assert_eq!(
        method(&env, &ids[0]).await["warnings"][0]["warning_code"],
        "being_deleted"
    );
    assert!(env.fake.grants(WS)[0].being_deleted);
    // Deleting again meanwhile is fine; the key is still taken.
    env.ok("/access_grants/delete", json!({ "access_grant_id": grant }))
        .await;
    let (kind, _) = env
        .fails(
            "/access_grants/update",
            json!({ "access_grant_id": grant, "name": "x" }),
            400,
        )
        .await;
    assert_eq!(kind, "invalid_input");

    env.fake.finish_deletions();
    assert_eq!(env.get_grant(&grant).await.status, 404);
    env.fails(
        "/access_methods/get",
        json!({ "access_method_id": ids[0] }),
        404,
    )
    .await;
    env.fails(
        "/access_methods/list",
        json!({ "access_grant_id": grant }),
        404,
    )
    .await;
    let types = env.event_types();
    assert_eq!(
        types
            .iter()
            .filter(|t| *t == "access_method.deleted")
            .count(),
        2
    );
    assert_eq!(types.last().unwrap(), "access_grant.deleted");
    let (kind, _) = env
        .fails(
            "/access_grants/delete",
            json!({ "access_grant_id": grant }),
            404,
        )
        .await;
    assert_eq!(kind, "access_grant_not_found");
}

#[tokio::test]
async fn delete_with_a_delay_finishes_by_itself() {
    let env = env_with(FakeSeamConfig {
        delete_delay: Some(Duration::ZERO),
        ..FakeSeamConfig::manual()
    })
    .await;
    let (grant, _) = card_and_code_grant(&env).await;
    env.ok("/access_grants/delete", json!({ "access_grant_id": grant }))
        .await;
    env.fake.settled().await;
    assert_eq!(env.get_grant(&grant).await.status, 404);
}

#[tokio::test]
async fn encoding_is_an_action_attempt_that_succeeds_or_fails() {
    let env = env().await;
    let (grant, ids) = card_and_code_grant(&env).await;
    let encode = |method: &str| {
        env.post(
            "/access_methods/encode",
            json!({ "access_method_id": method, "acs_encoder_id": env.encoder }),
        )
    };
    let attempt_of = |r: &Reply| id_of(&r.body["action_attempt"], "action_attempt_id");
    let env_ref = &env;
    let poll = |id: String| async move {
        env_ref
            .ok("/action_attempts/get", json!({ "action_attempt_id": id }))
            .await["action_attempt"]
            .clone()
    };

    // Not issued yet: the attempt fails.
    let early = attempt_of(&encode(&ids[0]).await);
    env.fake.finish_encodings();
    let a = poll(early).await;
    assert_eq!(a["status"], "error");
    assert_eq!(a["error"]["type"], "uncategorized_error");
    assert_eq!(a["result"], json!(null));

    env.fake.issue_pending();
    let ok = encode(&ids[0]).await;
    assert_eq!(ok.status, 200);
    let a = &ok.body["action_attempt"];
    assert_eq!(a["action_type"], "ENCODE_CREDENTIAL");
    assert_eq!(a["status"], "pending");
    assert_eq!(
        (a["result"].clone(), a["error"].clone()),
        (json!(null), json!(null))
    );
    env.fake.finish_encodings();
    let a = poll(attempt_of(&ok)).await;
    assert_eq!(a["status"], "success", "{a}");
    assert_eq!(a["result"]["access_method"], "card");
    assert_eq!(a["error"], json!(null));
    assert_eq!(method(&env, &ids[0]).await["is_encoding_required"], false);

    // The sandbox switch makes the next encoding fail.
    env.ok(
        "/acs/encoders/simulate/next_credential_encode_will_fail",
        json!({ "acs_encoder_id": env.encoder }),
    )
    .await;
    let failing = encode(&ids[0]).await;
    env.fake.finish_encodings();
    let a = poll(attempt_of(&failing)).await;
    assert_eq!(a["status"], "error");
    assert_eq!(a["error"]["type"], "no_credential_on_encoder");

    // Only cards, only known encoders and methods.
    let (kind, _) = env
        .fails(
            "/access_methods/encode",
            json!({ "access_method_id": ids[1], "acs_encoder_id": env.encoder }),
            400,
        )
        .await;
    assert_eq!(kind, "invalid_input");
    let (kind, _) = env
        .fails(
            "/access_methods/encode",
            json!({ "access_method_id": ids[0], "acs_encoder_id": "00000003-0000-4000-8000-0000000000ff" }),
            404,
        )
        .await;
    assert_eq!(kind, "acs_encoder_not_found");
    let (kind, _) = env
        .fails(
            "/action_attempts/get",
            json!({ "action_attempt_id": "00000007-0000-4000-8000-0000000000ff" }),
            404,
        )
        .await;
    assert_eq!(kind, "action_attempt_not_found");
    let _ = grant;
}

#[tokio::test]
async fn access_methods_list_needs_a_known_grant_and_honours_filters() {
    let env = env().await;
    let (grant, _) = card_and_code_grant(&env).await;
    let r = env
        .ok("/access_methods/list", json!({ "access_grant_id": grant }))
        .await;
    assert_eq!(r["access_methods"].as_array().unwrap().len(), 2);
    // Not paginated: Seam's answer has no pagination.
    assert!(r.get("pagination").is_none());
    let none = env
        .ok(
            "/access_methods/list",
            json!({ "access_grant_id": grant, "acs_entrance_id": env.room101 }),
        )
        .await;
    assert_eq!(none["access_methods"], json!([]));
    env.fails("/access_methods/list", json!({}), 400).await;
    let (kind, _) = env
        .fails(
            "/access_methods/list",
            json!({ "access_grant_id": "00000005-0000-4000-8000-0000000000ff" }),
            404,
        )
        .await;
    assert_eq!(kind, "access_grant_not_found");
}

#[tokio::test]
async fn mobile_keys_get_an_instant_key_url_once_issued() {
    let env = env().await;
    let user = env.user("g").await;
    let mut body = card_grant(&user, &[&env.room101], Some("stay-1"));
    body["requested_access_methods"] = json!([{ "mode": "mobile_key" }]);
    let grant = env.grant(body).await;
    let id = id_of(&grant, "access_grant_id");
    assert!(grant.get("instant_key_url").is_none());
    assert!(grant["client_session_token"].is_string());
    env.fake.issue_pending();
    let m = &env.methods(&id).await[0];
    assert_eq!(m["mode"], "mobile_key");
    let url = m["instant_key_url"].as_str().unwrap();
    assert!(url.starts_with(&env.fake.base_url()));
    assert!(m.get("code").is_none());
    let g = env.get_grant(&id).await.body["access_grant"].clone();
    assert_eq!(g["instant_key_url"], url);
}
