//! The `fake-seam` binary seeds the demo workspace and serves it.

use std::process::Stdio;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

#[tokio::test]
async fn the_binary_serves_the_demo_workspace() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fake-seam"))
        .args(["--listen", "127.0.0.1:0", "--issue-delay-ms", "0"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("binary starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut banner = Vec::new();
    while let Some(line) = lines.next_line().await.unwrap() {
        if line == "ready" {
            break;
        }
        banner.push(line);
    }
    let base = banner[0]
        .strip_prefix("fake Seam Connect: ")
        .expect("first line names the URL")
        .to_string();
    assert!(banner.iter().any(|l| l.contains("seam_test_demo")));
    assert_eq!(
        banner.iter().filter(|l| l.starts_with("entrance")).count(),
        6
    );

    let client = reqwest::Client::new();
    let post = |route: &str, body: Value| {
        client
            .post(format!("{base}{route}"))
            .bearer_auth("seam_test_demo")
            .json(&body)
            .send()
    };
    let list: Value = post("/acs/entrances/list", json!({}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entrances = list["acs_entrances"].as_array().unwrap();
    assert_eq!(entrances.len(), 6);
    let named = |n: &str| entrances.iter().find(|e| e["display_name"] == n).unwrap();
    let room = named("Room 101");
    assert_eq!(room["can_belong_to_reservation"], true);
    assert_eq!(room["can_unlock_with_mobile_key"], true);
    assert!(room.get("can_unlock_with_code").is_none());
    assert_eq!(named("Room 201")["can_unlock_with_code"], true);
    let lobby = named("Lobby");
    assert!(lobby.get("can_belong_to_reservation").is_none());
    assert_eq!(lobby["can_unlock_with_code"], true);

    // A guest card for room 101 needs a reservation_key (Visionline-like).
    let user: Value = post("/user_identities/create", json!({}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let r = post(
        "/access_grants/create",
        json!({
            "user_identity_id": user["user_identity"]["user_identity_id"],
            "acs_entrance_ids": [room["acs_entrance_id"]],
            "ends_at": "2030-01-01T00:00:00Z",
            "requested_access_methods": [{ "mode": "card" }],
        }),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    child.kill().await.unwrap();
}
