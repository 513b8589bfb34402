//! `/user_identities/create|get|list`: keys unique per workspace.

use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn create_get_by_id_or_key_and_list() {
    let env = env().await;
    let created = env
        .ok(
            "/user_identities/create",
            json!({
                "user_identity_key": "guest-1",
                "full_name": "Ada Guest",
                "email_address": "ada@example.com",
                "phone_number": "+15555550100",
            }),
        )
        .await;
    let u = &created["user_identity"];
    let id = id_of(u, "user_identity_id");
    assert_eq!(u["display_name"], "Ada Guest");
    assert_eq!(u["workspace_id"], env.workspace_id());
    assert_eq!(u["acs_user_ids"], json!([]));

    let by_id = env
        .ok("/user_identities/get", json!({ "user_identity_id": id }))
        .await;
    assert_eq!(by_id["user_identity"], *u);
    let by_key = env
        .ok(
            "/user_identities/get",
            json!({ "user_identity_key": "guest-1" }),
        )
        .await;
    assert_eq!(by_key["user_identity"], *u);

    env.user("guest-2").await;
    let list = env.ok("/user_identities/list", json!({})).await;
    assert_eq!(list["user_identities"].as_array().unwrap().len(), 2);
    assert_eq!(list["pagination"]["has_next_page"], false);
    let searched = env
        .ok("/user_identities/list", json!({ "search": "ada" }))
        .await;
    assert_eq!(searched["user_identities"].as_array().unwrap().len(), 1);
    assert_eq!(env.fake.user_identities(WS).len(), 2);
}

#[tokio::test]
async fn a_reused_key_is_a_409_duplicate() {
    let env = env().await;
    env.user("guest-1").await;
    let (kind, _) = env
        .fails(
            "/user_identities/create",
            json!({ "user_identity_key": "guest-1" }),
            409,
        )
        .await;
    assert_eq!(kind, "duplicate_user_identity_key");
    assert_eq!(env.fake.user_identities(WS).len(), 1);
}

#[tokio::test]
async fn unknown_identities_are_404_and_bad_input_400() {
    let env = env().await;
    let (kind, _) = env
        .fails(
            "/user_identities/get",
            json!({ "user_identity_id": "00000004-0000-4000-8000-0000000000ff" }),
            404,
        )
        .await;
    assert_eq!(kind, "user_identity_not_found");
    env.fails(
        "/user_identities/get",
        json!({ "user_identity_key": "nobody" }),
        404,
    )
    .await;
    env.fails("/user_identities/get", json!({}), 400).await;
    let r = env
        .post(
            "/user_identities/create",
            json!({ "email_address": "not-an-email", "full_name": "" }),
        )
        .await;
    assert_eq!(r.status, 400);
    let ve = &r.body["error"]["validation_errors"];
    assert_eq!(ve["email_address"]["_errors"][0], "Invalid email");
    assert!(ve["full_name"]["_errors"][0].is_string());
}
