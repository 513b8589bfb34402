//! The schema as the vendor documents it (the default), and each assumed
//! extra only when asked for: refused and not shown without it, working
//! with it. And the vendor's limits on webhook endpoints and the batch bound.

use fake_3rpms::{Assumed, FakeConfig, Refusal, ReservationStatus, WebhookEndpointStatus};
use serde_json::{json, Value};

use crate::common::*;

fn all_assumed() -> FakeConfig {
    FakeConfig {
        assumed: Assumed::ALL,
        ..FakeConfig::default()
    }
}

fn message(resp: &Value) -> &str {
    resp["errors"][0]["message"].as_str().unwrap_or_default()
}

/// What a query an assumed extra makes possible answers: refused like an
/// unknown field, without a category, before anything runs.
fn refused_as_unknown(resp: &Value, what: &str) {
    assert!(has_errors(resp), "{what}: {resp}");
    assert_eq!(category(resp), None, "{what}: {resp}");
    assert!(message(resp).starts_with("Unknown"), "{what}: {resp}");
    assert!(resp["data"].is_null(), "{what}: {resp}");
}

#[tokio::test]
async fn the_documented_schema_refuses_every_assumed_extra() {
    let env = env().await;
    let r = env.fake.add_reservation(HOTEL, "D-1");
    env.fake
        .add_room_stay(HOTEL, &r, "101", "2026-03-01", "2026-03-02");
    for (what, query, variables) in [
        (
            "RoomStay.reservation",
            "{ room_stays { edges { node { id reservation { id } } } } }",
            json!({}),
        ),
        (
            "Reservation.status",
            "{ reservations { edges { node { id status } } } }",
            json!({}),
        ),
        (
            "reservations by id, literal",
            "{ reservations(filter: {id: {eq: \"x\"}}) { edges { node { id } } } }",
            json!({}),
        ),
        (
            "reservations by id, from a variable",
            "query($f: ReservationFilter) { reservations(filter: $f) { edges { node { id } } } }",
            json!({ "f": { "code": { "eq": "D-1" }, "id": { "in": [r] } } }),
        ),
        (
            "the endpoint status as input",
            "mutation { createWebhookEndpoint(input: {url: \"https://x.test/h\", status: ENABLED, events: [\"room_stay.created\"]}) { secret } }",
            json!({}),
        ),
        (
            "the endpoint status as output",
            "mutation { createWebhookEndpoint(input: {url: \"https://x.test/h\", events: [\"room_stay.created\"]}) { webhookEndpoint { status } } }",
            json!({}),
        ),
        (
            "updateWebhookEndpoint",
            "mutation { updateWebhookEndpoint(input: {id: \"x\"}) { webhookEndpoint { id } } }",
            json!({}),
        ),
    ] {
        let resp = env.gql(WRITE, query, variables).await;
        refused_as_unknown(&resp, what);
    }
    // Even where no data would reach the field: it is the query that is
    // refused, as a server validates it.
    let resp = env
        .gql(
            READ,
            "{ room_stays(filter: {id: {eq: \"none\"}}) { edges { node { reservation { id } } } } }",
            json!({}),
        )
        .await;
    refused_as_unknown(&resp, "a field no row reaches");
    assert!(
        env.fake.webhook_endpoints(HOTEL).is_empty(),
        "nothing was created"
    );
}

#[tokio::test]
async fn introspection_shows_the_extras_only_when_asked_for() {
    let query = r#"{
      roomStay: __type(name: "RoomStay") { fields { name } }
      reservation: __type(name: "Reservation") { fields { name } }
      status: __type(name: "ReservationStatus") { enumValues { name } }
      filter: __type(name: "ReservationFilter") { inputFields { name } }
      input: __type(name: "CreateWebhookEndpointInput") { inputFields { name } }
      endpointStatus: __type(name: "WebhookEndpointStatus") { enumValues { name } }
      __schema { mutationType { fields { name } } }
    }"#;
    let names = |v: &Value, list: &str| -> Vec<String> {
        v[list]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|f| f["name"].as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    for (config, assumed) in [(FakeConfig::default(), false), (all_assumed(), true)] {
        let env = env_with(config).await;
        let resp = env.gql(READ, query, json!({})).await;
        let d = &resp["data"];
        assert!(!has_errors(&resp), "{resp}");
        assert_eq!(
            names(&d["roomStay"], "fields").contains(&"reservation".to_owned()),
            assumed
        );
        assert!(names(&d["roomStay"], "fields").contains(&"reservation_from".to_owned()));
        assert_eq!(
            names(&d["reservation"], "fields").contains(&"status".to_owned()),
            assumed
        );
        assert_eq!(!d["status"].is_null(), assumed, "{d}");
        assert_eq!(
            names(&d["filter"], "inputFields").contains(&"id".to_owned()),
            assumed
        );
        assert!(names(&d["filter"], "inputFields").contains(&"code".to_owned()));
        assert_eq!(
            names(&d["input"], "inputFields").contains(&"status".to_owned()),
            assumed
        );
        assert_eq!(!d["endpointStatus"].is_null(), assumed, "{d}");
        assert_eq!(
            names(&d["__schema"]["mutationType"], "fields")
                .contains(&"updateWebhookEndpoint".to_owned()),
            assumed
        );
        if assumed {
            assert_eq!(
                names(&d["status"], "enumValues"),
                ["CONFIRMED", "CANCELLED"]
            );
        }
    }
}

/// Stays returned by `room_stays`, and rooms of reservation C-1.
async fn shown(env: &Env) -> (usize, usize) {
    let resp = env
        .gql(READ, "{ room_stays { edges { node { id } } } reservations(filter: {code: {eq: \"C-1\"}}) { edges { node { rooms { edges { node { id } } } } } } }", json!({}))
        .await;
    (
        resp["data"]["room_stays"]["edges"]
            .as_array()
            .unwrap()
            .len(),
        resp["data"]["reservations"]["edges"][0]["node"]["rooms"]["edges"]
            .as_array()
            .unwrap()
            .len(),
    )
}

#[tokio::test]
async fn without_the_status_a_cancelled_reservations_stays_are_not_returned() {
    let env = env().await;
    let r = env.fake.add_reservation(HOTEL, "C-1");
    let stay = env
        .fake
        .add_room_stay(HOTEL, &r, "101", "2026-03-01", "2026-03-02");
    assert_eq!(shown(&env).await, (1, 1));
    env.fake
        .set_reservation_status(HOTEL, &r, ReservationStatus::Cancelled);
    assert_eq!(shown(&env).await, (0, 0), "a cancelled stay is not shown");
    assert!(env.fake.room_stay(HOTEL, &stay).is_some(), "but it exists");
    env.fake
        .set_reservation_status(HOTEL, &r, ReservationStatus::Confirmed);
    assert_eq!(shown(&env).await, (1, 1), "re-activated, it is back");
}

#[tokio::test]
async fn with_the_id_filter_reservations_are_found_by_id() {
    let env = env_with(all_assumed()).await;
    let r = env.fake.add_reservation(HOTEL, "F-1");
    env.fake.add_reservation(HOTEL, "F-2");
    let resp = env
        .gql(
            READ,
            "query($f: ReservationFilter) { reservations(filter: $f) { edges { node { id code } } } }",
            json!({ "f": { "id": { "in": [r] } } }),
        )
        .await;
    let edges = resp["data"]["reservations"]["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 1);
    assert_eq!(edges[0]["node"]["code"], "F-1");
}

#[tokio::test]
async fn with_the_reservation_status_cancelled_stays_stay_visible() {
    let env = env_with(all_assumed()).await;
    let r = env.fake.add_reservation(HOTEL, "X-1");
    let stay = env
        .fake
        .add_room_stay(HOTEL, &r, "301", "2026-03-01", "2026-03-02");
    env.fake
        .set_reservation_status(HOTEL, &r, ReservationStatus::Cancelled);
    let resp = env
        .gql(
            READ,
            "{ room_stays { edges { node { id reservation { id code status } } } } }",
            json!({}),
        )
        .await;
    let node = &resp["data"]["room_stays"]["edges"][0]["node"];
    assert_eq!(node["id"], stay.as_str());
    assert_eq!(
        node["reservation"],
        json!({ "id": r, "code": "X-1", "status": "CANCELLED" })
    );
    env.fake
        .set_reservation_status(HOTEL, &r, ReservationStatus::Confirmed);
    assert_eq!(
        env.fake.reservation_status(HOTEL, &r),
        Some(ReservationStatus::Confirmed)
    );
}

#[tokio::test]
async fn with_the_endpoint_status_endpoints_can_be_switched() {
    let env = env_with(all_assumed()).await;
    let create = "mutation($i: CreateWebhookEndpointInput!) { createWebhookEndpoint(input: $i) { webhookEndpoint { id status url events } secret } }";
    let resp = env
        .gql(WRITE, create, json!({ "i": { "url": "https://example.test/hook", "status": "ENABLED", "events": ["room_stay.created", "room_stay.updated"] } }))
        .await;
    let payload = &resp["data"]["createWebhookEndpoint"];
    let id = payload["webhookEndpoint"]["id"].as_str().unwrap();
    assert_eq!(id.len(), 64);
    assert!(id.chars().all(|c| c.is_ascii_alphanumeric()));
    assert_eq!(payload["webhookEndpoint"]["status"], "ENABLED");
    assert_eq!(
        payload["webhookEndpoint"]["events"],
        json!(["room_stay.created", "room_stay.updated"])
    );
    assert_eq!(
        payload["secret"].as_str(),
        Some(env.fake.webhook_endpoints(HOTEL)[0].secret.as_str())
    );

    // The secret has no field to be read again.
    let resp = env.gql(WRITE, "mutation($id: ID!) { updateWebhookEndpoint(input: {id: $id}) { webhookEndpoint { secret } } }", json!({ "id": id })).await;
    assert!(has_errors(&resp));
    assert_eq!(category(&resp), None);

    let update = "mutation($id: ID!, $s: WebhookEndpointStatus) { updateWebhookEndpoint(input: {id: $id, status: $s}) { webhookEndpoint { id status } } }";
    let resp = env
        .gql(WRITE, update, json!({ "id": id, "s": "DISABLED" }))
        .await;
    assert_eq!(
        resp["data"]["updateWebhookEndpoint"]["webhookEndpoint"]["status"],
        "DISABLED"
    );
    // Other hotels do not see it; read keys cannot register.
    assert_eq!(
        category(
            &env.gql(H2_WRITE, update, json!({ "id": id, "s": "ENABLED" }))
                .await
        ),
        Some("validation")
    );
    assert_eq!(
        category(
            &env.gql(READ, update, json!({ "id": id, "s": "ENABLED" }))
                .await
        ),
        Some("auth")
    );

    for (input, path) in [
        (
            json!({ "url": "not a url", "status": "ENABLED", "events": ["room_stay.created"] }),
            json!(["input", "url"]),
        ),
        (
            json!({ "url": "ftp://x.test/", "status": "ENABLED", "events": ["room_stay.created"] }),
            json!(["input", "url"]),
        ),
        (
            json!({ "url": "http://x.test/", "status": "ENABLED", "events": ["room_stay.created"] }),
            json!(["input", "url"]),
        ),
        (
            json!({ "url": "https://x.test/", "status": "ENABLED", "events": [] }),
            json!(["input", "events"]),
        ),
        (
            json!({ "url": "https://x.test/", "status": "ENABLED", "events": ["room_stay.created", "invoice.paid"] }),
            json!(["input", "events", 1]),
        ),
    ] {
        let resp = env.gql(WRITE, create, json!({ "i": input })).await;
        assert_eq!(category(&resp), Some("validation"), "{resp}");
        assert_eq!(argument_path(&resp), path);
    }
}

#[tokio::test]
async fn endpoints_are_created_active_with_the_documented_fields() {
    let env = env().await;
    let resp = env
        .gql(
            WRITE,
            "mutation($i: CreateWebhookEndpointInput!) { createWebhookEndpoint(input: $i) { webhookEndpoint { id url events } secret } }",
            json!({ "i": { "url": "https://example.test/hook", "events": ["room_stay.created", "client.updated"] } }),
        )
        .await;
    assert!(!has_errors(&resp), "{resp}");
    let endpoints = env.fake.webhook_endpoints(HOTEL);
    assert_eq!(endpoints.len(), 1);
    assert_eq!(endpoints[0].status, WebhookEndpointStatus::Enabled);
    assert_eq!(endpoints[0].integration, "keysmith");
    assert_eq!(
        endpoints[0].events,
        ["room_stay.created", "client.updated"],
        "every event the vendor lists may be subscribed to"
    );
}

async fn create(env: &Env, key: &str, url: &str) -> Value {
    env.gql(
        key,
        "mutation($i: CreateWebhookEndpointInput!) { createWebhookEndpoint(input: $i) { webhookEndpoint { id } } }",
        json!({ "i": { "url": url, "events": ["room_stay.created"] } }),
    )
    .await
}

#[tokio::test]
async fn only_https_is_delivered_to_and_plain_http_only_on_loopback() {
    let env = env().await;
    for url in [
        "https://example.test/hook",
        "http://127.0.0.1:9/hook",
        "http://[::1]:9/hook",
        "http://localhost:9/hook",
    ] {
        let resp = create(&env, WRITE, url).await;
        assert!(!has_errors(&resp), "{url}: {resp}");
    }
    for url in [
        "http://example.test/hook",
        "http://10.1.2.3/hook",
        "ftp://x.test/",
    ] {
        let resp = create(&env, OTHER_WRITE, url).await;
        assert_eq!(category(&resp), Some("validation"), "{url}: {resp}");
        assert_eq!(argument_path(&resp), json!(["input", "url"]));
    }
}

#[tokio::test]
async fn at_most_five_active_endpoints_per_hotel_and_integration() {
    let env = env_with(all_assumed()).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let resp = create(&env, WRITE, &format!("https://x.test/{i}")).await;
        ids.push(
            resp["data"]["createWebhookEndpoint"]["webhookEndpoint"]["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let sixth = create(&env, WRITE, "https://x.test/6").await;
    assert_eq!(category(&sixth), Some("validation"), "{sixth}");
    assert_eq!(env.fake.webhook_endpoints(HOTEL).len(), 5);
    // Another integration of the hotel, or another hotel, has its own five.
    assert!(!has_errors(
        &create(&env, OTHER_WRITE, "https://x.test/o").await
    ));
    assert!(!has_errors(
        &create(&env, H2_WRITE, "https://x.test/h2").await
    ));
    // A disabled endpoint does not count; enabling a sixth is refused.
    let update = "mutation($id: ID!, $s: WebhookEndpointStatus) { updateWebhookEndpoint(input: {id: $id, status: $s}) { webhookEndpoint { status } } }";
    let resp = env
        .gql(WRITE, update, json!({ "id": ids[0], "s": "DISABLED" }))
        .await;
    assert!(!has_errors(&resp), "{resp}");
    assert!(!has_errors(&create(&env, WRITE, "https://x.test/7").await));
    let resp = env
        .gql(WRITE, update, json!({ "id": ids[0], "s": "ENABLED" }))
        .await;
    assert_eq!(category(&resp), Some("validation"), "{resp}");
    // Staff can remove one in 3RPMS.
    env.fake.remove_webhook_endpoint(HOTEL, &ids[1]);
    let resp = env
        .gql(WRITE, update, json!({ "id": ids[0], "s": "ENABLED" }))
        .await;
    assert!(!has_errors(&resp), "{resp}");
}

#[tokio::test]
async fn a_batch_is_bounded_to_a_hundred_operations() {
    let env = env().await;
    let entry = json!({ "query": "{ room_stays(first: 1) { edges { cursor } } }" });
    let hundred = Value::Array(vec![entry.clone(); 100]);
    let resp = env.post(READ, hundred).await;
    assert_eq!(resp.as_array().unwrap().len(), 100);
    let (status, resp) = env
        .post_raw(Some(READ), Some("en"), Value::Array(vec![entry; 101]))
        .await;
    assert_eq!(status, 400);
    assert!(message(&resp).contains("100"), "{resp}");
}

#[tokio::test]
async fn a_refused_operation_fails_alone() {
    let env = env().await;
    let r = env.fake.add_reservation(HOTEL, "P-1");
    let stay = env
        .fake
        .add_room_stay(HOTEL, &r, "101", "2026-03-01", "2026-03-02");
    let poisoned = stay.clone();
    env.fake
        .refuse_operations(Refusal::Validation, move |_, variables| {
            variables.to_string().contains(&poisoned)
        });
    let by_id =
        "query($ids: [ID!]!) { room_stays(filter: {id: {in: $ids}}) { edges { node { id } } } }";
    let resp = env
        .post(
            READ,
            json!([
                { "query": by_id, "variables": { "ids": [stay] } },
                { "query": by_id, "variables": { "ids": ["other"] } },
            ]),
        )
        .await;
    assert_eq!(category(&resp[0]), Some("validation"));
    assert!(!has_errors(&resp[1]), "{resp}");
    assert_eq!(env.fake.counts().refused, 1);
    env.fake.stop_refusing();
    let resp = env.gql(READ, by_id, json!({ "ids": [stay] })).await;
    assert!(!has_errors(&resp), "{resp}");
}
