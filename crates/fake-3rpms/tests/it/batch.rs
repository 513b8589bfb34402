//! Batches, `@chain`, and all-or-nothing mutations.

use serde_json::{json, Value};

use crate::common::*;

const CREATE: &str = r#"mutation($input: CreateRoomAccessKeyInput!) {
  createRoomAccessKey(input: $input) { roomAccessKey { id @chain(variable: "roomAccessKeyId") } }
}"#;
const ADD: &str = "mutation($roomStayId: ID!, $roomAccessKeyId: ID!) {
  addRoomAccessKey(input: {roomStayId: $roomStayId, roomAccessKeyId: $roomAccessKeyId}) { roomStay { id roomAccessKey { id } } }
}";
const REMOVE: &str = "mutation($s: ID!, $k: ID!) { removeRoomAccessKey(input: {roomStayId: $s, roomAccessKeyId: $k}) { roomStay { id } } }";
const DELETE: &str =
    "mutation($k: ID!) { deleteRoomAccessKey(input: {roomAccessKeyId: $k}) { deleted } }";

fn create(pin: &str) -> Value {
    json!({ "query": CREATE, "variables": { "input": { "roomAccessPin": { "pin": pin } } } })
}

fn add(stay: &str) -> Value {
    json!({ "query": ADD, "variables": { "roomStayId": stay } })
}

#[tokio::test]
async fn chain_create_then_assign_in_one_request() {
    let env = env().await;
    let (s1, s2) = (env.stay(), env.stay());
    // The guide's interleaving: create, assign, create, assign.
    let resp = env
        .post(
            WRITE,
            json!([create("1111"), add(&s1), create("2222"), add(&s2)]),
        )
        .await;
    let answers = resp.as_array().unwrap();
    assert_eq!(answers.len(), 4);
    assert!(answers.iter().all(|a| !has_errors(a)), "{resp}");
    let k1 = answers[0]["data"]["createRoomAccessKey"]["roomAccessKey"]["id"]
        .as_str()
        .unwrap();
    let k2 = answers[2]["data"]["createRoomAccessKey"]["roomAccessKey"]["id"]
        .as_str()
        .unwrap();
    assert_ne!(k1, k2);
    assert_eq!(
        answers[1]["data"]["addRoomAccessKey"]["roomStay"]["roomAccessKey"]["id"],
        k1
    );
    assert_eq!(
        env.fake.room_stay(HOTEL, &s1).unwrap().key_id.as_deref(),
        Some(k1)
    );
    assert_eq!(
        env.fake.room_stay(HOTEL, &s2).unwrap().key_id.as_deref(),
        Some(k2)
    );

    // One HTTP request, four operations.
    let c = env.fake.counts();
    assert_eq!(
        (c.http_requests, c.graphql_operations, c.mutations),
        (1, 4, 4)
    );
    assert_eq!(
        (c.field("createRoomAccessKey"), c.field("addRoomAccessKey")),
        (2, 2)
    );
}

#[tokio::test]
async fn chained_value_reaches_only_the_next_entry() {
    let env = env().await;
    let stay = env.stay();
    // Entry 3 declares $roomAccessKeyId too, but the chain ended at entry 2.
    let resp = env
        .post(WRITE, json!([create("1111"), add(&stay), { "query": ADD, "variables": { "roomStayId": env.stay() } }]))
        .await;
    let answers = resp.as_array().unwrap();
    assert!(!has_errors(&answers[1]), "{resp}");
    assert!(has_errors(&answers[2]), "{resp}");
    // ... and since a mutation failed, everything was rolled back.
    assert!(env.fake.keys(HOTEL).is_empty());
    assert_eq!(env.fake.room_stay(HOTEL, &stay).unwrap().key_id, None);
}

#[tokio::test]
async fn chain_misuse_is_an_error() {
    let env = env().await;
    let stay = env.stay();
    let key = env.create_pin(WRITE, "1234").await;
    env.add_key(WRITE, &stay, &key).await;

    // Under a list (edges).
    let under_list = json!({ "query": r#"{ room_stays { edges { node { id @chain(variable: "roomStayId") } } } }"# });
    let resp = env.post(READ, json!([under_list, { "query": "query($roomStayId: ID!) { room_stays(filter: {id: {eq: $roomStayId}}) { edges { cursor } } }" }])).await;
    assert!(has_errors(&resp[0]), "{resp}");
    assert_eq!(category(&resp[0]), None);
    // The same through a fragment.
    let via_fragment = json!({ "query": r#"{ room_stays { edges { ...N } } } fragment N on RoomStayEdge { node { id @chain(variable: "x") } }"# });
    assert!(has_errors(&env.post(READ, via_fragment).await));

    // Declared twice in one entry.
    let twice = json!({ "query": r#"{ a: room_stays(first: 1) { pageInfo { endCursor @chain(variable: "c") } } b: room_stays(first: 1) { pageInfo { endCursor @chain(variable: "c") } } }"# });
    let resp = env.post(READ, twice).await;
    assert!(has_errors(&resp), "{resp}");
    assert_eq!(category(&resp), None);

    // The next entry sends the chained variable itself.
    let resp = env
        .post(WRITE, json!([create("5678"), { "query": ADD, "variables": { "roomStayId": env.stay(), "roomAccessKeyId": key } }]))
        .await;
    assert!(has_errors(&resp[1]), "{resp}");
    assert_eq!(category(&resp[1]), None);

    // The next entry does not declare it.
    let resp = env
        .post(
            WRITE,
            json!([create("5678"), { "query": REMOVE, "variables": { "s": stay, "k": key } }]),
        )
        .await;
    assert!(has_errors(&resp[1]), "{resp}");

    // A variable as the name.
    let resp = env
        .post(READ, json!({ "query": "query($n: String!) { room_stays(first: 1) { pageInfo { endCursor @chain(variable: $n) } } }", "variables": { "n": "x" } }))
        .await;
    assert!(has_errors(&resp), "{resp}");

    // The previous entry failed, so there is no value to chain.
    let resp = env
        .post(WRITE, json!([create("Bad-Pin"), add(&env.stay())]))
        .await;
    assert_eq!(category(&resp[0]), Some("validation"));
    assert!(has_errors(&resp[1]));
    // None of it changed anything: only the key made outside the batches.
    assert_eq!(env.fake.keys(HOTEL).len(), 1);
    assert_eq!(
        env.fake.room_stay(HOTEL, &stay).unwrap().key_id.as_deref(),
        Some(key.as_str())
    );
}

#[tokio::test]
async fn chain_into_a_query_and_single_entries() {
    let env = env().await;
    let stay = env.stay();
    let first = json!({ "query": r#"{ room_stays(first: 1) { pageInfo { endCursor @chain(variable: "after") } } }"# });
    let second = json!({ "query": "query($after: String) { room_stays(first: 1, after: $after) { pageInfo { hasNextPage } } }" });
    let resp = env.post(READ, json!([first, second])).await;
    assert!(
        resp.as_array().unwrap().iter().all(|r| !has_errors(r)),
        "{resp}"
    );
    // A single object gets a single object back, even with @chain (the value goes nowhere).
    let resp = env.post(READ, json!({ "query": r#"{ room_stays { edges { cursor } pageInfo { endCursor @chain(variable: "c") } } }"# })).await;
    assert!(resp.is_object());
    assert!(!has_errors(&resp), "{resp}");
    assert_eq!(
        resp["data"]["room_stays"]["edges"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let _ = stay;
}

#[tokio::test]
async fn a_failing_entry_rolls_back_every_mutation_of_the_request() {
    let env = env().await;
    let (s1, s2) = (env.stay(), env.stay());
    let old = env.create_pin(WRITE, "0000").await;
    env.add_key(WRITE, &s1, &old).await;

    // Replace the key: create+assign on s2, remove+delete the old one, then
    // an entry that fails. A query rides along.
    let query = json!({ "query": "{ room_stays { edges { node { id } } } }" });
    let bad =
        json!({ "query": ADD, "variables": { "roomStayId": "unknown", "roomAccessKeyId": old } });
    let resp = env
        .post(
            WRITE,
            json!([
                create("1111"),
                add(&s2),
                { "query": REMOVE, "variables": { "s": s1, "k": old } },
                { "query": DELETE, "variables": { "k": old } },
                query,
                bad,
            ]),
        )
        .await;
    let answers = resp.as_array().unwrap();
    assert_eq!(answers.len(), 6);
    // Entries ran in order and answered as usual...
    assert!(answers[..5].iter().all(|a| !has_errors(a)), "{resp}");
    assert_eq!(answers[3]["data"]["deleteRoomAccessKey"]["deleted"], true);
    assert_eq!(
        answers[4]["data"]["room_stays"]["edges"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(category(&answers[5]), Some("validation"));
    // ...but nothing stuck.
    let keys = env.fake.keys(HOTEL);
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].id, old);
    assert_eq!(keys[0].assigned_stays, [s1.as_str()]);
    assert_eq!(env.fake.room_stay(HOTEL, &s2).unwrap().key_id, None);
    assert_eq!(env.fake.counts().rollbacks, 1);

    // Without the failing entry the same batch sticks.
    let resp = env
        .post(WRITE, json!([create("1111"), add(&s2), { "query": REMOVE, "variables": { "s": s1, "k": old } }, { "query": DELETE, "variables": { "k": old } }]))
        .await;
    assert!(
        resp.as_array().unwrap().iter().all(|a| !has_errors(a)),
        "{resp}"
    );
    assert!(env.fake.key(HOTEL, &old).is_none());
    assert!(env.fake.room_stay(HOTEL, &s2).unwrap().key_id.is_some());
}

#[tokio::test]
async fn a_failing_query_in_a_mutating_request_rolls_back_too() {
    let env = env().await;
    let resp = env
        .post(
            WRITE,
            json!([
                { "query": r#"mutation { createRoomAccessKey(input: {roomAccessPin: {pin: "1111"}}) { roomAccessKey { id } } }"# },
                { "query": "{ room_stays(first: 500) { edges { cursor } } }" },
            ]),
        )
        .await;
    assert!(!has_errors(&resp[0]), "{resp}");
    assert_eq!(category(&resp[1]), Some("validation"), "{resp}");
    assert!(env.fake.keys(HOTEL).is_empty());
    // A read-only request with errors rolls back nothing (there is nothing).
    let resp = env
        .post(
            READ,
            json!([{ "query": "{ room_stays { edges { cursor } } }" }, { "query": "{ nope }" }]),
        )
        .await;
    assert!(!has_errors(&resp[0]));
    assert!(has_errors(&resp[1]));
    assert_eq!(env.fake.counts().rollbacks, 1);
}

#[tokio::test]
async fn webhook_endpoint_mutations_roll_back_as_well() {
    let env = env().await;
    let create_endpoint = json!({
        "query": "mutation { createWebhookEndpoint(input: {url: \"https://x.test/h\", events: [\"room_stay.created\"]}) { secret } }"
    });
    let resp = env
        .post(WRITE, json!([create_endpoint, { "query": "{ nope }" }]))
        .await;
    assert!(!has_errors(&resp[0]));
    assert!(env.fake.webhook_endpoints(HOTEL).is_empty());
}
