//! Queries, pagination, filters, errors, keys and their rules.

use fake_3rpms::KeyKind;
use serde_json::{json, Value};

use crate::common::*;

const STAY_IDS: &str = "query($f: RoomStayFilter, $first: Int, $after: String) {
  room_stays(filter: $f, first: $first, after: $after) {
    edges { cursor node { id } }
    pageInfo { hasNextPage endCursor }
  }
}";

fn ids(resp: &Value, root: &str) -> Vec<String> {
    resp["data"][root]["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("no edges in {resp}"))
        .iter()
        .map(|e| e["node"]["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn pagination_default_page_cap_and_walk() {
    let env = env().await;
    let r = env.fake.add_reservation(HOTEL, "BIG");
    let all: Vec<String> = (0..45)
        .map(|_| {
            env.fake
                .add_room_stay(HOTEL, &r, "101", "2026-03-01", "2026-03-02")
        })
        .collect();

    // Default page is 20.
    let first = env.gql(READ, STAY_IDS, json!({})).await;
    assert_eq!(ids(&first, "room_stays").len(), 20);
    assert_eq!(first["data"]["room_stays"]["pageInfo"]["hasNextPage"], true);

    // Walking with `after` visits every stay once, in order.
    let mut seen = Vec::new();
    let mut after = Value::Null;
    loop {
        let page = env
            .gql(READ, STAY_IDS, json!({ "first": 7, "after": after }))
            .await;
        seen.extend(ids(&page, "room_stays"));
        let info = &page["data"]["room_stays"]["pageInfo"];
        if info["hasNextPage"] == false {
            break;
        }
        after = info["endCursor"].clone();
    }
    assert_eq!(seen, all);

    // 100 is the maximum; 101 and negatives are validation errors.
    let max = env.gql(READ, STAY_IDS, json!({ "first": 100 })).await;
    assert_eq!(ids(&max, "room_stays").len(), 45);
    for bad in [101, -1] {
        let resp = env.gql(READ, STAY_IDS, json!({ "first": bad })).await;
        assert_eq!(category(&resp), Some("validation"), "{resp}");
        assert_eq!(argument_path(&resp), json!(["first"]));
    }
    // Empty result: no edges, no end cursor.
    let none = env
        .gql(READ, STAY_IDS, json!({ "f": { "id": { "eq": "nope" } } }))
        .await;
    assert_eq!(
        none["data"]["room_stays"]["pageInfo"],
        json!({ "hasNextPage": false, "endCursor": null })
    );
}

#[tokio::test]
async fn cursors_are_opaque_and_bound_to_their_query() {
    let env = env().await;
    let r = env.fake.add_reservation(HOTEL, "C");
    for _ in 0..3 {
        env.fake
            .add_room_stay(HOTEL, &r, "101", "2026-03-01", "2026-03-02");
    }
    let page = env.gql(READ, STAY_IDS, json!({ "first": 1 })).await;
    let cursor = page["data"]["room_stays"]["pageInfo"]["endCursor"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        cursor.parse::<i64>().is_err(),
        "cursor is not a plain offset: {cursor}"
    );

    let reservations = env
        .gql(
            READ,
            "{ reservations(first: 1) { pageInfo { endCursor } } }",
            json!({}),
        )
        .await;
    let res_cursor = reservations["data"]["reservations"]["pageInfo"]["endCursor"].clone();

    let filtered = json!({ "reservation_from": { "ge": "2026-01-01" } });
    for (after, filter) in [
        (json!("garbage"), Value::Null),
        (json!("MTA"), Value::Null), // base64 of "10"
        (res_cursor, Value::Null),   // from another connection
        (json!(cursor), filtered),   // same connection, other filter
    ] {
        let resp = env
            .gql(READ, STAY_IDS, json!({ "after": after, "f": filter }))
            .await;
        assert_eq!(category(&resp), Some("validation"), "{resp}");
        assert_eq!(argument_path(&resp), json!(["after"]));
    }
    // A cursor is not valid in another hotel either.
    let other = env
        .gql(H2_WRITE, STAY_IDS, json!({ "after": cursor }))
        .await;
    assert_eq!(category(&other), Some("validation"));
    // And it works where it came from.
    let next = env.gql(READ, STAY_IDS, json!({ "after": cursor })).await;
    assert_eq!(ids(&next, "room_stays").len(), 2);
}

#[tokio::test]
async fn reservation_rooms_paginate_with_their_own_cursors() {
    let env = env().await;
    let a = env.fake.add_reservation(HOTEL, "A-1");
    let b = env.fake.add_reservation(HOTEL, "B-1");
    let stays: Vec<String> = (0..25)
        .map(|_| {
            env.fake
                .add_room_stay(HOTEL, &a, "201", "2026-03-01", "2026-03-03")
        })
        .collect();
    env.fake
        .add_room_stay(HOTEL, &b, "202", "2026-03-01", "2026-03-03");

    // The guide's query by reservation code.
    let query = "query($code: String!, $roomsCursor: String = null) {
      reservations(filter: {code: {eq: $code}}) { edges { node { id rooms(first: 20, after: $roomsCursor) {
        edges { node { id room_setup { name } roomAccessKey { ... on RoomAccessPin { pin } } } }
        pageInfo { hasNextPage endCursor } } } } } }";
    let p1 = env.gql(READ, query, json!({ "code": "A-1" })).await;
    let rooms = &p1["data"]["reservations"]["edges"][0]["node"]["rooms"];
    assert_eq!(rooms["edges"].as_array().unwrap().len(), 20);
    assert_eq!(rooms["edges"][0]["node"]["room_setup"]["name"], "Room 201");
    assert_eq!(rooms["pageInfo"]["hasNextPage"], true);
    let cursor = rooms["pageInfo"]["endCursor"].clone();
    let p2 = env
        .gql(READ, query, json!({ "code": "A-1", "roomsCursor": cursor }))
        .await;
    let rooms2 = &p2["data"]["reservations"]["edges"][0]["node"]["rooms"];
    let got: Vec<&str> = rooms2["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        got,
        stays[20..].iter().map(String::as_str).collect::<Vec<_>>()
    );
    assert_eq!(rooms2["pageInfo"]["hasNextPage"], false);

    // A's rooms cursor is not valid for B's rooms.
    let wrong = env
        .gql(READ, query, json!({ "code": "B-1", "roomsCursor": cursor }))
        .await;
    assert_eq!(category(&wrong), Some("validation"), "{wrong}");
}

#[tokio::test]
async fn filters_eq_in_dates_not_or() {
    let env = env().await;
    let r = env.fake.add_reservation(HOTEL, "F-1");
    let s1 = env
        .fake
        .add_room_stay(HOTEL, &r, "101", "2026-01-28", "2026-01-30"); // ends on start: out
    let s2 = env
        .fake
        .add_room_stay(HOTEL, &r, "102", "2026-01-29", "2026-01-31"); // overlaps
    let s3 = env
        .fake
        .add_room_stay(HOTEL, &r, "201", "2026-02-05", "2026-02-08"); // arrives on end: in
    let s4 = env
        .fake
        .add_room_stay(HOTEL, &r, "202", "2026-02-06", "2026-02-09"); // after: out

    let q = |f: Value| env.gql(READ, STAY_IDS, json!({ "f": f }));
    // The guide's window query.
    let window = q(json!({ "reservation_from": { "le": "2026-02-05" }, "reservation_to": { "gt": "2026-01-30" } })).await;
    assert_eq!(ids(&window, "room_stays"), [s2.clone(), s3.clone()]);

    assert_eq!(
        ids(&q(json!({ "id": { "eq": s4 } })).await, "room_stays"),
        [s4.as_str()]
    );
    assert_eq!(
        ids(
            &q(json!({ "id": { "in": [s1, s3, "unknown"] } })).await,
            "room_stays"
        ),
        [s1.clone(), s3.clone()]
    );
    assert_eq!(
        ids(&q(json!({ "id": { "in": [] } })).await, "room_stays"),
        Vec::<String>::new()
    );
    assert_eq!(
        ids(
            &q(json!({ "not": { "id": { "in": [s1, s2] } } })).await,
            "room_stays"
        ),
        [s3.clone(), s4.clone()]
    );
    assert_eq!(
        ids(&q(json!({ "or": [{ "id": { "eq": s1 } }, { "reservation_to": { "ge": "2026-02-09" } }] })).await, "room_stays"),
        [s1.clone(), s4.clone()]
    );
    assert_eq!(
        ids(
            &q(json!({ "reservation_from": { "eq": "2026-02-05" } })).await,
            "room_stays"
        ),
        [s3.as_str()]
    );
    assert_eq!(
        ids(
            &q(json!({ "reservation_to": { "lt": "2026-01-31" } })).await,
            "room_stays"
        ),
        [s1.as_str()]
    );
    // Fields of one filter AND.
    assert_eq!(
        ids(
            &q(json!({ "id": { "in": [s1, s2] }, "reservation_from": { "ge": "2026-01-29" } }))
                .await,
            "room_stays"
        ),
        [s2.as_str()]
    );

    // Reservation filters: code eq / in (by id only with the assumed
    // filter: documented.rs).
    let other = env.fake.add_reservation(HOTEL, "F-2");
    let res = |f: Value| {
        env.gql(READ, "query($f: ReservationFilter) { reservations(filter: $f) { edges { node { id code } } } }", json!({ "f": f }))
    };
    assert_eq!(
        ids(
            &res(json!({ "code": { "eq": "F-2" } })).await,
            "reservations"
        ),
        [other.as_str()]
    );
    assert_eq!(
        ids(
            &res(json!({ "code": { "in": ["F-1", "F-2"] } })).await,
            "reservations"
        ),
        [r.clone(), other.clone()]
    );
    assert_eq!(
        ids(
            &res(json!({ "not": { "code": { "eq": "F-1" } } })).await,
            "reservations"
        ),
        [other.as_str()]
    );
}

#[tokio::test]
async fn dates_must_be_yyyy_mm_dd() {
    let env = env().await;
    for bad in [
        "2026-2-01",
        "2026-02-30",
        "01.02.2026",
        "2026-02-01T00:00:00+00:00",
    ] {
        let resp = env
            .gql(
                READ,
                STAY_IDS,
                json!({ "f": { "or": [{ "reservation_from": { "le": bad } }] } }),
            )
            .await;
        assert_eq!(category(&resp), Some("validation"), "{bad}: {resp}");
        assert_eq!(
            argument_path(&resp),
            json!(["filter", "or", 0, "reservation_from", "le"])
        );
    }
    // Inline literals are checked the same way.
    let resp = env
        .gql(
            READ,
            r#"{ room_stays(filter: {reservation_to: {gt: "tomorrow"}}) { edges { cursor } } }"#,
            json!({}),
        )
        .await;
    assert_eq!(
        argument_path(&resp),
        json!(["filter", "reservation_to", "gt"])
    );
    // Dates come back in the same form.
    let stay = env.stay();
    let resp = env
        .gql(READ, "query($id: ID!) { room_stays(filter: {id: {eq: $id}}) { edges { node { arrival: reservation_from departure: reservation_to } } } }", json!({ "id": stay }))
        .await;
    assert_eq!(
        resp["data"]["room_stays"]["edges"][0]["node"],
        json!({ "arrival": "2026-03-01", "departure": "2026-03-04" })
    );
}

#[tokio::test]
async fn auth_errors_and_read_only_keys() {
    let env = env().await;
    let query = json!({ "query": "{ room_stays { edges { cursor } } }" });
    let (status, missing) = env.post_raw(None, None, query.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(category(&missing), Some("auth"));
    for key in ["api_nope", DISABLED] {
        let resp = env.post(key, query.clone()).await;
        assert_eq!(category(&resp), Some("auth"), "{key}: {resp}");
    }
    // A read key reads...
    let ok = env.post(READ, query.clone()).await;
    assert!(!has_errors(&ok), "{ok}");
    // ...but cannot mutate.
    let create = env
        .gql(READ, r#"mutation { createRoomAccessKey(input: {roomAccessPin: {pin: "1234"}}) { roomAccessKey { id } } }"#, json!({}))
        .await;
    assert_eq!(category(&create), Some("auth"));
    assert!(env.fake.keys(HOTEL).is_empty());
    // In a batch, every entry carries the auth error.
    let (_, batch) = env
        .post_raw(Some("api_nope"), None, json!([query, query]))
        .await;
    assert_eq!(batch.as_array().unwrap().len(), 2);
    assert!(batch
        .as_array()
        .unwrap()
        .iter()
        .all(|r| category(r) == Some("auth")));
}

#[tokio::test]
async fn accept_language_picks_english_otherwise_german() {
    let env = env().await;
    let body = json!({ "query": "{ room_stays { edges { cursor } } }" });
    let (_, en) = env
        .post_raw(Some("api_nope"), Some("en-GB,en;q=0.9"), body.clone())
        .await;
    let (_, de) = env
        .post_raw(Some("api_nope"), Some("de"), body.clone())
        .await;
    let (_, default) = env.post_raw(Some("api_nope"), None, body).await;
    assert_eq!(en["errors"][0]["message"], "Unknown API key");
    assert_eq!(de["errors"][0]["message"], "Unbekannter API-Schlüssel");
    assert_eq!(default["errors"][0]["message"], de["errors"][0]["message"]);
}

#[tokio::test]
async fn http_surface_post_only_and_uncategorised_schema_errors() {
    let env = env().await;
    let get = env.client.get(env.fake.graphql_url()).send().await.unwrap();
    assert_eq!(get.status().as_u16(), 405);
    let put = env
        .client
        .put(env.fake.graphql_url())
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status().as_u16(), 405);

    // Syntax and schema errors: HTTP 200, an error, no category.
    for q in [
        "{ room_stays { edges ",
        "{ room_stays { nope } }",
        "{ room_stays(first: \"x\") { edges { cursor } } }",
    ] {
        let resp = env.post(READ, json!({ "query": q })).await;
        assert!(has_errors(&resp), "{q}");
        assert_eq!(category(&resp), None, "{q}: {resp}");
    }
    // Not JSON / not a GraphQL request.
    let not_json = env
        .client
        .post(env.fake.graphql_url())
        .bearer_auth(READ)
        .body("{{")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status().as_u16(), 400);
    let (status, _) = env.post_raw(Some(READ), None, json!([])).await;
    assert_eq!(status, 400);
    let (status, _) = env.post_raw(Some(READ), None, json!(42)).await;
    assert_eq!(status, 400);
    let resp = env.post(READ, json!({ "query": 5 })).await;
    assert_eq!(category(&resp), None);
    assert!(has_errors(&resp));
    // Pathological nesting is refused without harm.
    let deep = format!("{}{}", "{".repeat(100_000), "}".repeat(100_000));
    let resp = env.post(READ, json!({ "query": deep })).await;
    assert!(has_errors(&resp));
    let resp = env
        .post(
            READ,
            json!({ "query": "{ room_stays { edges { cursor } } }", "variables": [1] }),
        )
        .await;
    assert!(has_errors(&resp));
}

#[tokio::test]
async fn key_contents_are_validated() {
    let env = env().await;
    let create = |input: Value| {
        env.gql(
            WRITE,
            "mutation($i: CreateRoomAccessKeyInput!) { createRoomAccessKey(input: $i) { roomAccessKey { __typename id ... on RoomAccessPin { pin } ... on RoomAccessKeyStorage { pin compartment } ... on RoomAccessQR { qrData } } } }",
            json!({ "i": input }),
        )
    };
    for pin in ["1234567890", "ABCD12", "abcd12", "0007", "z"] {
        let resp = create(json!({ "roomAccessPin": { "pin": pin } })).await;
        assert_eq!(
            resp["data"]["createRoomAccessKey"]["roomAccessKey"]["pin"], pin,
            "{resp}"
        );
        assert_eq!(
            resp["data"]["createRoomAccessKey"]["roomAccessKey"]["__typename"],
            "RoomAccessPin"
        );
    }
    for pin in ["", "12345678901", "12-34", "AbC1", "äö12", "12 34"] {
        let resp = create(json!({ "roomAccessPin": { "pin": pin } })).await;
        assert_eq!(category(&resp), Some("validation"), "{pin:?}: {resp}");
        assert_eq!(
            argument_path(&resp),
            json!(["input", "roomAccessPin", "pin"])
        );
    }
    let ok =
        create(json!({ "roomAccessKeyStorage": { "pin": "4711", "compartment": "3R" } })).await;
    assert_eq!(
        ok["data"]["createRoomAccessKey"]["roomAccessKey"]["compartment"],
        "3R"
    );
    assert_eq!(
        ok["data"]["createRoomAccessKey"]["roomAccessKey"]["__typename"],
        "RoomAccessKeyStorage"
    );
    // Compartments may mix case; they may not be empty, long or symbolic.
    assert!(!has_errors(
        &create(json!({ "roomAccessKeyStorage": { "pin": "4711", "compartment": "Ab1" } })).await
    ));
    for (pin, compartment, leaf) in [
        ("Ab", "3R", "pin"),
        ("4711", "", "compartment"),
        ("4711", "12345678901", "compartment"),
        ("4711", "3-R", "compartment"),
    ] {
        let resp =
            create(json!({ "roomAccessKeyStorage": { "pin": pin, "compartment": compartment } }))
                .await;
        assert_eq!(category(&resp), Some("validation"));
        assert_eq!(
            argument_path(&resp),
            json!(["input", "roomAccessKeyStorage", leaf])
        );
    }
    let qr512 = "q".repeat(512);
    let ok = create(json!({ "roomAccessQR": { "qrData": qr512 } })).await;
    assert_eq!(
        ok["data"]["createRoomAccessKey"]["roomAccessKey"]["qrData"],
        qr512
    );
    for qr in [String::new(), "q".repeat(513)] {
        let resp = create(json!({ "roomAccessQR": { "qrData": qr } })).await;
        assert_eq!(category(&resp), Some("validation"));
        assert_eq!(
            argument_path(&resp),
            json!(["input", "roomAccessQR", "qrData"])
        );
    }
    // Exactly one kind.
    for input in [
        json!({}),
        json!({ "roomAccessPin": { "pin": "1" }, "roomAccessQR": { "qrData": "x" } }),
    ] {
        let resp = create(input).await;
        assert_eq!(category(&resp), Some("validation"));
        assert_eq!(argument_path(&resp), json!(["input"]));
    }
    let pins = env
        .fake
        .keys(HOTEL)
        .iter()
        .filter(|k| k.type_name() == "RoomAccessPin")
        .count();
    assert_eq!(pins, 5);
}

#[tokio::test]
async fn one_key_per_stay_and_one_key_on_many_stays() {
    let env = env().await;
    let (s1, s2) = (env.stay(), env.stay());
    let k1 = env.create_pin(WRITE, "1111").await;
    let k2 = env.create_pin(WRITE, "2222").await;

    let added = env.add_key(WRITE, &s1, &k1).await;
    assert_eq!(
        added["data"]["addRoomAccessKey"]["roomStay"]["roomAccessKey"]["id"],
        k1.as_str()
    );
    // The same key on a second stay is fine.
    assert!(!has_errors(&env.add_key(WRITE, &s2, &k1).await));
    assert_eq!(
        env.fake.key(HOTEL, &k1).unwrap().assigned_stays,
        [s1.clone(), s2.clone()]
    );

    // A second key on a stay is not, nor the same key again.
    for k in [&k2, &k1] {
        let resp = env.add_key(WRITE, &s1, k).await;
        assert_eq!(category(&resp), Some("validation"), "{resp}");
        assert_eq!(argument_path(&resp), json!(["input", "roomStayId"]));
    }
    // Remove first, then add.
    let removed = env.remove_key(WRITE, &s1, &k1).await;
    assert_eq!(
        removed["data"]["removeRoomAccessKey"]["roomStay"]["roomAccessKey"],
        Value::Null
    );
    assert!(!has_errors(&env.add_key(WRITE, &s1, &k2).await));
    assert_eq!(
        env.fake.room_stay(HOTEL, &s1).unwrap().key_id.as_deref(),
        Some(k2.as_str())
    );
    // Removing a key that is not on the stay.
    let resp = env.remove_key(WRITE, &s1, &k1).await;
    assert_eq!(category(&resp), Some("validation"));
    assert_eq!(argument_path(&resp), json!(["input", "roomAccessKeyId"]));
}

#[tokio::test]
async fn integrations_touch_only_their_own_keys() {
    let env = env().await;
    let (s1, s2) = (env.stay(), env.stay());
    let theirs = env.create_pin(OTHER_WRITE, "9999").await;
    let foreign = env
        .fake
        .add_foreign_key(HOTEL, "staff", KeyKind::Pin { pin: "5555".into() });
    env.fake.assign_key(HOTEL, &s2, &foreign);

    for key in [&theirs, &foreign] {
        let add = env.add_key(WRITE, &s1, key).await;
        assert_eq!(category(&add), Some("validation"), "{add}");
        assert_eq!(argument_path(&add), json!(["input", "roomAccessKeyId"]));
        let delete = env.delete_key(WRITE, key).await;
        assert_eq!(category(&delete), Some("validation"));
    }
    let remove = env.remove_key(WRITE, &s2, &foreign).await;
    assert_eq!(category(&remove), Some("validation"));
    assert_eq!(
        env.fake.room_stay(HOTEL, &s2).unwrap().key_id.as_deref(),
        Some(foreign.as_str())
    );
    // The owner can.
    assert!(!has_errors(&env.add_key(OTHER_WRITE, &s1, &theirs).await));
    assert_eq!(env.fake.key(HOTEL, &theirs).unwrap().integration, "lockco");
}

#[tokio::test]
async fn delete_only_unassigned_keys_and_unknown_ids() {
    let env = env().await;
    let stay = env.stay();
    let key = env.create_pin(WRITE, "1234").await;
    env.add_key(WRITE, &stay, &key).await;
    let resp = env.delete_key(WRITE, &key).await;
    assert_eq!(category(&resp), Some("validation"));
    assert_eq!(argument_path(&resp), json!(["input", "roomAccessKeyId"]));

    env.remove_key(WRITE, &stay, &key).await;
    let resp = env.delete_key(WRITE, &key).await;
    assert_eq!(
        resp["data"]["deleteRoomAccessKey"]["deleted"], true,
        "{resp}"
    );
    assert!(env.fake.key(HOTEL, &key).is_none());

    // Unknown ids, including the key just deleted.
    assert_eq!(
        category(&env.delete_key(WRITE, &key).await),
        Some("validation")
    );
    let resp = env
        .add_key(WRITE, "no-such-stay", &env.create_pin(WRITE, "1").await)
        .await;
    assert_eq!(argument_path(&resp), json!(["input", "roomStayId"]));
    let resp = env.add_key(WRITE, &stay, "no-such-key").await;
    assert_eq!(argument_path(&resp), json!(["input", "roomAccessKeyId"]));
}

#[tokio::test]
async fn hotels_do_not_see_each_other() {
    let env = env().await;
    let stay = env.stay();
    let key = env.create_pin(WRITE, "1234").await;
    let h2_stay = env.stay_in(OTHER_HOTEL, "101", "2026-03-01", "2026-03-02");

    let resp = env.gql(H2_WRITE, STAY_IDS, json!({})).await;
    assert_eq!(ids(&resp, "room_stays"), [h2_stay.as_str()]);
    // h1's key and stay do not exist for h2 (same integration name).
    assert_eq!(
        category(&env.add_key(H2_WRITE, &h2_stay, &key).await),
        Some("validation")
    );
    assert_eq!(
        category(&env.add_key(H2_WRITE, &stay, &key).await),
        Some("validation")
    );
    assert_eq!(
        category(&env.delete_key(H2_WRITE, &key).await),
        Some("validation")
    );
    assert!(env.fake.keys(OTHER_HOTEL).is_empty());
}

#[tokio::test]
async fn unconfigured_hotel_gives_configuration_errors() {
    let env = env().await;
    let stay = env.stay();
    let key = env.create_pin(WRITE, "1234").await;
    env.add_key(WRITE, &stay, &key).await;
    env.fake.set_hotel_configured(HOTEL, false);

    let create = env
        .gql(WRITE, r#"mutation { createRoomAccessKey(input: {roomAccessPin: {pin: "bad pin!"}}) { roomAccessKey { id } } }"#, json!({}))
        .await;
    assert_eq!(category(&create), Some("configuration"), "{create}");
    assert_eq!(
        category(&env.remove_key(WRITE, &stay, &key).await),
        Some("configuration")
    );
    assert_eq!(
        category(&env.delete_key(WRITE, &key).await),
        Some("configuration")
    );
    // Reading still works; keys read as null.
    let read = env
        .gql(
            READ,
            "{ room_stays { edges { node { id roomAccessKey { id } } } } }",
            json!({}),
        )
        .await;
    assert!(!has_errors(&read));
    assert_eq!(
        read["data"]["room_stays"]["edges"][0]["node"]["roomAccessKey"],
        Value::Null
    );

    env.fake.set_hotel_configured(HOTEL, true);
    assert!(!has_errors(&env.remove_key(WRITE, &stay, &key).await));
}

#[tokio::test]
async fn unknown_key_types_show_through_typename() {
    let env = env().await;
    let (s1, s2) = (env.stay(), env.stay());
    let nfc = env.fake.add_foreign_key(
        HOTEL,
        "nfc-vendor",
        KeyKind::Nfc {
            nfc_data: "04A224".into(),
        },
    );
    env.fake.assign_key(HOTEL, &s1, &nfc);
    let pin = env.create_pin(WRITE, "1234").await;
    env.add_key(WRITE, &s2, &pin).await;

    // The guide's query: only known types are spread.
    let resp = env
        .gql(READ, "{ room_stays { edges { node { id roomAccessKey { __typename id ... on RoomAccessPin { pin } ... on RoomAccessKeyStorage { pin } ... on RoomAccessQR { qrData } } } } } }", json!({}))
        .await;
    let keys: Vec<&Value> = resp["data"]["room_stays"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["node"]["roomAccessKey"])
        .collect();
    assert_eq!(
        *keys[0],
        json!({ "__typename": "RoomAccessNfc", "id": nfc })
    );
    assert_eq!(
        *keys[1],
        json!({ "__typename": "RoomAccessPin", "id": pin, "pin": "1234" })
    );
    // And the type itself can be asked for.
    let resp = env.gql(READ, "{ room_stays(first: 1) { edges { node { roomAccessKey { ... on RoomAccessNfc { nfcData } } } } } }", json!({})).await;
    assert_eq!(
        resp["data"]["room_stays"]["edges"][0]["node"]["roomAccessKey"]["nfcData"],
        "04A224"
    );
}

#[tokio::test]
async fn control_changes_split_expire_move_delete() {
    let env = env().await;
    let stay = env.stay();
    let key = env.create_pin(WRITE, "1234").await;
    env.add_key(WRITE, &stay, &key).await;

    let second = env.fake.split_room_stay(HOTEL, &stay, "2026-03-02");
    let a = env.fake.room_stay(HOTEL, &stay).unwrap();
    let b = env.fake.room_stay(HOTEL, &second).unwrap();
    assert_eq!(
        (a.from.as_str(), a.to.as_str()),
        ("2026-03-01", "2026-03-02")
    );
    assert_eq!(
        (b.from.as_str(), b.to.as_str()),
        ("2026-03-02", "2026-03-04")
    );
    assert_eq!(
        (b.room_setup_id.as_str(), b.key_id.as_deref()),
        ("101", Some(key.as_str()))
    );
    assert_eq!(
        env.fake.key(HOTEL, &key).unwrap().assigned_stays,
        [stay.clone(), second.clone()]
    );

    env.fake.move_room_stay(HOTEL, &second, "202");
    env.fake
        .change_room_stay_dates(HOTEL, &stay, "2026-02-28", "2026-03-02");
    assert_eq!(
        env.fake.room_stay(HOTEL, &second).unwrap().room_setup_id,
        "202"
    );
    assert_eq!(env.fake.room_stay(HOTEL, &stay).unwrap().from, "2026-02-28");

    env.fake.delete_room_stay(HOTEL, &second);
    assert!(env.fake.room_stay(HOTEL, &second).is_none());
    assert_eq!(
        env.fake.key(HOTEL, &key).unwrap().assigned_stays,
        [stay.as_str()]
    );

    env.fake.expire_key(HOTEL, &key);
    assert!(env.fake.key(HOTEL, &key).is_none());
    assert_eq!(env.fake.room_stay(HOTEL, &stay).unwrap().key_id, None);
}

#[tokio::test]
async fn counts_requests_operations_and_root_fields() {
    let env = env().await;
    env.gql(
        READ,
        "{ room_stays { edges { cursor } } a: room_stays { edges { cursor } } }",
        json!({}),
    )
    .await;
    env.post(READ, json!([{ "query": "{ reservations { edges { cursor } } }" }, { "query": "query Q { ...F } fragment F on Query { room_stays { edges { cursor } } }" }])).await;
    env.create_pin(WRITE, "1").await;
    let c = env.fake.counts();
    assert_eq!(c.http_requests, 3);
    assert_eq!(c.graphql_operations, 4);
    assert_eq!(c.mutations, 1);
    assert_eq!(c.field("room_stays"), 3);
    assert_eq!(c.field("reservations"), 1);
    assert_eq!(c.field("createRoomAccessKey"), 1);
    env.fake.reset_counts();
    assert_eq!(env.fake.counts(), Default::default());
}

#[tokio::test]
async fn shutdown_stops_serving() {
    let env = env().await;
    let url = env.fake.graphql_url();
    let handle = env.fake.clone();
    env.post(
        READ,
        json!({ "query": "{ room_stays { edges { cursor } } }" }),
    )
    .await;
    handle.shutdown().await;
    let after = reqwest::Client::new()
        .post(url)
        .bearer_auth(READ)
        .json(&json!({ "query": "{ room_stays { edges { cursor } } }" }))
        .send()
        .await;
    assert!(after.is_err());
}
