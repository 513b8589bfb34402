//! Shared set-up: a fake with two hotels, keys of two integrations, and a
//! tiny GraphQL client over real HTTP.

use fake_3rpms::{Access, Fake3rpms, FakeConfig};
use serde_json::{json, Value};

pub const HOTEL: &str = "h1";
pub const OTHER_HOTEL: &str = "h2";
/// Write key of integration "keysmith" in h1.
pub const WRITE: &str = "api_write";
/// Read key of integration "messaging" in h1.
pub const READ: &str = "api_read";
/// Write key of another lock integration, "lockco", in h1.
pub const OTHER_WRITE: &str = "api_lockco";
pub const DISABLED: &str = "api_disabled";
/// Write key of integration "keysmith" in h2.
pub const H2_WRITE: &str = "api_h2";

pub struct Env {
    pub fake: Fake3rpms,
    pub client: reqwest::Client,
}

pub async fn env() -> Env {
    env_with(FakeConfig::default()).await
}

pub async fn env_with(config: FakeConfig) -> Env {
    let fake = Fake3rpms::start(config).await.expect("fake starts");
    for hotel in [HOTEL, OTHER_HOTEL] {
        fake.add_hotel(hotel);
        for room in ["101", "102", "201", "202", "301"] {
            fake.add_room(hotel, room, &format!("Room {room}"));
        }
    }
    fake.add_api_key(HOTEL, "keysmith", WRITE, Access::Write);
    fake.add_api_key(HOTEL, "messaging", READ, Access::Read);
    fake.add_api_key(HOTEL, "lockco", OTHER_WRITE, Access::Write);
    fake.add_api_key(HOTEL, "keysmith", DISABLED, Access::Disabled);
    fake.add_api_key(OTHER_HOTEL, "keysmith", H2_WRITE, Access::Write);
    Env {
        fake,
        client: reqwest::Client::new(),
    }
}

impl Env {
    /// A stay in h1, room 101, on a fresh reservation.
    pub fn stay(&self) -> String {
        self.stay_in(HOTEL, "101", "2026-03-01", "2026-03-04")
    }

    pub fn stay_in(&self, hotel: &str, room: &str, from: &str, to: &str) -> String {
        let r = self.fake.add_reservation(hotel, "R-1");
        self.fake.add_room_stay(hotel, &r, room, from, to)
    }

    /// POSTs any JSON body; returns status and parsed answer.
    pub async fn post_raw(
        &self,
        key: Option<&str>,
        lang: Option<&str>,
        body: Value,
    ) -> (u16, Value) {
        let mut req = self.client.post(self.fake.graphql_url()).json(&body);
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        if let Some(lang) = lang {
            req = req.header("accept-language", lang);
        }
        let resp = req.send().await.expect("request answered");
        let status = resp.status().as_u16();
        (status, resp.json().await.expect("JSON answer"))
    }

    pub async fn post(&self, key: &str, body: Value) -> Value {
        let (status, value) = self.post_raw(Some(key), None, body).await;
        assert_eq!(status, 200, "{value}");
        value
    }

    pub async fn gql(&self, key: &str, query: &str, variables: Value) -> Value {
        self.post(key, json!({ "query": query, "variables": variables }))
            .await
    }

    /// Creates a PIN key through the API; returns its id.
    pub async fn create_pin(&self, key: &str, pin: &str) -> String {
        let r = self
            .gql(
                key,
                "mutation($i: CreateRoomAccessKeyInput!) { createRoomAccessKey(input: $i) { roomAccessKey { id } } }",
                json!({ "i": { "roomAccessPin": { "pin": pin } } }),
            )
            .await;
        r["data"]["createRoomAccessKey"]["roomAccessKey"]["id"]
            .as_str()
            .expect("key created")
            .to_string()
    }

    pub async fn add_key(&self, key: &str, stay: &str, key_id: &str) -> Value {
        self.gql(
            key,
            "mutation($s: ID!, $k: ID!) { addRoomAccessKey(input: {roomStayId: $s, roomAccessKeyId: $k}) { roomStay { id roomAccessKey { id } } } }",
            json!({ "s": stay, "k": key_id }),
        )
        .await
    }

    pub async fn remove_key(&self, key: &str, stay: &str, key_id: &str) -> Value {
        self.gql(
            key,
            "mutation($s: ID!, $k: ID!) { removeRoomAccessKey(input: {roomStayId: $s, roomAccessKeyId: $k}) { roomStay { id roomAccessKey { id } } } }",
            json!({ "s": stay, "k": key_id }),
        )
        .await
    }

    pub async fn delete_key(&self, key: &str, key_id: &str) -> Value {
        self.gql(
            key,
            "mutation($k: ID!) { deleteRoomAccessKey(input: {roomAccessKeyId: $k}) { deleted } }",
            json!({ "k": key_id }),
        )
        .await
    }
}

/// `extensions.category` of the first error, if any.
pub fn category(resp: &Value) -> Option<&str> {
    resp["errors"][0]["extensions"]["category"].as_str()
}

pub fn argument_path(resp: &Value) -> Value {
    resp["errors"][0]["extensions"]["argumentPath"].clone()
}

pub fn has_errors(resp: &Value) -> bool {
    resp["errors"].as_array().is_some_and(|e| !e.is_empty())
}
