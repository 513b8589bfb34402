//! Shared set-up: a fake with two workspaces; in the first a Visionline-like
//! system (rooms 101, 102, 203: reservation, card, mobile key; room 201
//! also code) and a plain one (lobby, gym: card and code, no reservation),
//! plus an encoder; and a tiny Seam client over real HTTP.

use fake_seam::{EntranceSeed, FakeSeam, FakeSeamConfig};
use reqwest::header::HeaderMap;
use serde_json::{json, Value};

pub const WS: &str = "ws_one";
pub const KEY: &str = "seam_test_one";
pub const OTHER_WS: &str = "ws_two";
pub const OTHER_KEY: &str = "seam_test_two";
pub const VISIONLINE: &str = "sys-visionline";
pub const PLAIN: &str = "sys-plain";

pub const STARTS: &str = "2030-05-10T15:00:00Z";
pub const ENDS: &str = "2030-05-14T11:00:00Z";

pub struct Env {
    pub fake: FakeSeam,
    pub client: reqwest::Client,
    pub room101: String,
    pub room102: String,
    pub room201: String,
    pub room203: String,
    pub lobby: String,
    pub gym: String,
    pub encoder: String,
    /// The `acs_system_id` of the plain system.
    pub plain_system_id: String,
}

/// A reply: status, headers and JSON body (`Value::Null` if none).
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn request_id(&self) -> Option<&str> {
        self.headers
            .get("seam-request-id")
            .and_then(|v| v.to_str().ok())
    }

    /// Asserts the error envelope and returns (type, message).
    pub fn error(&self) -> (String, String) {
        assert_eq!(self.body["ok"], false, "{}", self.body);
        let e = &self.body["error"];
        (
            e["type"].as_str().expect("error.type").to_string(),
            e["message"].as_str().expect("error.message").to_string(),
        )
    }
}

/// No background step runs on its own: tests drive them.
pub async fn env() -> Env {
    env_with(FakeSeamConfig::manual()).await
}

pub fn room(name: &str, space: &str, code: bool) -> EntranceSeed {
    EntranceSeed {
        display_name: name.into(),
        space_key: Some(space.into()),
        can_belong_to_reservation: true,
        can_unlock_with_card: true,
        can_unlock_with_mobile_key: true,
        can_unlock_with_code: code,
    }
}

pub fn common_door(name: &str, space: &str) -> EntranceSeed {
    EntranceSeed {
        display_name: name.into(),
        space_key: Some(space.into()),
        can_unlock_with_card: true,
        can_unlock_with_code: true,
        ..EntranceSeed::default()
    }
}

pub async fn env_with(config: FakeSeamConfig) -> Env {
    let fake = FakeSeam::start(config).await.expect("fake starts");
    fake.add_workspace(WS, KEY);
    fake.add_workspace(OTHER_WS, OTHER_KEY);
    fake.add_acs_system(WS, VISIONLINE, "Visionline", true);
    let plain_system_id = fake.add_acs_system(WS, PLAIN, "Common doors", false);
    let room101 = fake.add_entrance(WS, VISIONLINE, room("Room 101", "room-101", false));
    let room102 = fake.add_entrance(WS, VISIONLINE, room("Room 102", "room-102", false));
    let room201 = fake.add_entrance(WS, VISIONLINE, room("Room 201", "room-201", true));
    let room203 = fake.add_entrance(WS, VISIONLINE, room("Room 203", "room-203", false));
    let lobby = fake.add_entrance(WS, PLAIN, common_door("Lobby", "lobby"));
    let gym = fake.add_entrance(WS, PLAIN, common_door("Gym", "gym"));
    let encoder = fake.add_encoder(WS, VISIONLINE, "Front desk");
    Env {
        fake,
        client: reqwest::Client::new(),
        room101,
        room102,
        room201,
        room203,
        lobby,
        gym,
        encoder,
        plain_system_id,
    }
}

impl Drop for Env {
    /// Every answer and event of the fake kept to Seam's definition (what
    /// the tests themselves sent is their business: some send nonsense).
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        let broken: Vec<String> = self
            .fake
            .contract_violations()
            .into_iter()
            .filter(|v| !v.starts_with("request to"))
            .collect();
        assert!(broken.is_empty(), "outside Seam's definition: {broken:#?}");
    }
}

impl Env {
    /// The `space_id` of a seeded space (`room-101`, `lobby`, ...).
    pub fn space(&self, key: &str) -> String {
        self.fake.space_id(WS, key)
    }

    /// The workspace's `workspace_id`.
    pub fn workspace_id(&self) -> String {
        self.fake.workspace_id(WS)
    }

    pub fn url(&self, route: &str) -> String {
        format!("{}{route}", self.fake.base_url())
    }

    /// POSTs JSON with an optional API key.
    pub async fn post_as(&self, key: Option<&str>, route: &str, body: Value) -> Reply {
        let mut req = self.client.post(self.url(route)).json(&body);
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        let resp = req.send().await.expect("request answered");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body read");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).expect("JSON body")
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn post(&self, route: &str, body: Value) -> Reply {
        self.post_as(Some(KEY), route, body).await
    }

    /// POSTs and asserts a 200 with `ok: true`.
    pub async fn ok(&self, route: &str, body: Value) -> Value {
        let r = self.post(route, body).await;
        assert_eq!(r.status, 200, "{route}: {}", r.body);
        assert_eq!(r.body["ok"], true, "{route}: {}", r.body);
        r.body
    }

    /// Asserts the status and returns (type, message).
    pub async fn fails(&self, route: &str, body: Value, status: u16) -> (String, String) {
        let r = self.post(route, body).await;
        assert_eq!(r.status, status, "{route}: {}", r.body);
        r.error()
    }

    pub async fn user(&self, key: &str) -> String {
        let b = self
            .ok(
                "/user_identities/create",
                json!({ "user_identity_key": key, "full_name": format!("Guest {key}") }),
            )
            .await;
        b["user_identity"]["user_identity_id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Creates a grant and returns it.
    pub async fn grant(&self, body: Value) -> Value {
        self.ok("/access_grants/create", body).await["access_grant"].clone()
    }

    pub async fn get_grant(&self, id: &str) -> Reply {
        self.post("/access_grants/get", json!({ "access_grant_id": id }))
            .await
    }

    pub async fn methods(&self, grant_id: &str) -> Vec<Value> {
        self.ok(
            "/access_methods/list",
            json!({ "access_grant_id": grant_id }),
        )
        .await["access_methods"]
            .as_array()
            .unwrap()
            .clone()
    }

    /// Event types of the workspace, oldest first.
    pub fn event_types(&self) -> Vec<String> {
        self.fake
            .events(WS)
            .iter()
            .map(|e| e["event_type"].as_str().unwrap().to_string())
            .collect()
    }
}

/// A card grant body for `user` on `doors` in the standard window.
pub fn card_grant(user: &str, doors: &[&String], reservation_key: Option<&str>) -> Value {
    let mut b = json!({
        "user_identity_id": user,
        "acs_entrance_ids": doors,
        "starts_at": STARTS,
        "ends_at": ENDS,
        "requested_access_methods": [{ "mode": "card" }],
    });
    if let Some(k) = reservation_key {
        b["reservation_key"] = json!(k);
    }
    b
}

pub fn id_of(v: &Value, key: &str) -> String {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} in {v}"))
        .to_string()
}
