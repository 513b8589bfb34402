//! The demo binary: seeds `demo-hotel` and serves it.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::json;

/// Kills the child even when an assertion fails.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn demo_binary_seeds_the_demo_hotel() {
    let mut child = Child(
        Command::new(env!("CARGO_BIN_EXE_fake-3rpms"))
            .args(["--listen", "127.0.0.1:0"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("binary starts"),
    );
    let stdout = child.0.stdout.take().unwrap();
    // The first line names the URL; it is printed once the server listens.
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next().unwrap().unwrap();
    // Keep reading so the banner never meets a closed pipe.
    std::thread::spawn(move || lines.for_each(drop));
    let url = first.rsplit(' ').next().unwrap().to_string();
    assert!(
        url.starts_with("http://127.0.0.1:") && url.ends_with("/graphql"),
        "{first}"
    );

    let client = reqwest::Client::new();
    let ask = |key: &'static str, query: &'static str| {
        client
            .post(&url)
            .bearer_auth(key)
            .json(&json!({ "query": query }))
            .send()
    };
    let stays: serde_json::Value = ask(
        "api_demo_read",
        "{ room_stays(first: 100) { edges { node { room_setup { id name } } } } }",
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let rooms: Vec<&str> = stays["data"]["room_stays"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["room_setup"]["id"].as_str().unwrap())
        .collect();
    assert!(rooms.len() >= 5, "{stays}");
    assert!(rooms.contains(&"101") && rooms.contains(&"401"));
    assert_eq!(
        stays["data"]["room_stays"]["edges"][0]["node"]["room_setup"]["name"],
        "Room 101"
    );

    let created: serde_json::Value = ask(
        "api_demo_write",
        r#"mutation { createRoomAccessKey(input: {roomAccessPin: {pin: "2468"}}) { roomAccessKey { id } } }"#,
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert!(
        created["data"]["createRoomAccessKey"]["roomAccessKey"]["id"].is_string(),
        "{created}"
    );
    let read_only: serde_json::Value = ask(
        "api_demo_read",
        r#"mutation { createRoomAccessKey(input: {roomAccessPin: {pin: "2468"}}) { roomAccessKey { id } } }"#,
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(read_only["errors"][0]["extensions"]["category"], "auth");
}
