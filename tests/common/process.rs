//! `keysmith serve` as a process of its own (the binary cargo built for the
//! tests), configured by a file and `KEYSMITH__…` variables, and the
//! signals a test sends it. Shared by tests/binary.rs and tests/replicas.rs.
use std::{path::Path, process::Stdio};

use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
    task::JoinHandle,
};

pub const BIN: &str = env!("CARGO_BIN_EXE_keysmith");

/// Writes the embedded default, on ephemeral loopback ports, with its data
/// and key-encryption key under `dir`, plus `extra`, as `dir/keysmith.toml`.
pub fn write_config(dir: &Path, extra: &str) -> std::path::PathBuf {
    let text = keysmith_server::config::DEFAULT_CONFIG
        .replace("listen = \"127.0.0.1:50051\"", "listen = \"127.0.0.1:0\"")
        .replace("listen = \"127.0.0.1:9464\"", "listen = \"127.0.0.1:0\"")
        .replace(
            "data_dir = \"./keysmith-data\"",
            &format!("data_dir = {:?}", dir.join("data").display().to_string()),
        )
        .replace(
            "key_file = \"./keysmith-dev.key\"",
            &format!("key_file = {:?}", dir.join("kek").display().to_string()),
        );
    let path = dir.join("keysmith.toml");
    std::fs::write(&path, format!("{text}\n{extra}")).unwrap();
    path
}

/// Starts `keysmith serve` and reads its JSON log until it says where it
/// serves: the log line is the synchronisation, not a sleep. Returns the
/// process, its gRPC address and the rest of its log once it ends.
pub async fn serve(config: &Path) -> (Child, String, JoinHandle<Vec<String>>) {
    serve_with_env(config, &[]).await
}

/// [`serve`] with `env` (`KEYSMITH__…` overrides) set for the process.
pub async fn serve_with_env(
    config: &Path,
    env: &[(&str, String)],
) -> (Child, String, JoinHandle<Vec<String>>) {
    let mut child = Command::new(BIN)
        .args(["serve", "--config", config.to_str().unwrap()])
        .env("KEYSMITH__LOG__FORMAT", "json")
        .env("KEYSMITH__LOG__FILTER", "info")
        .env_remove("RUST_LOG")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines
            .next_line()
            .await
            .unwrap()
            .expect("keysmith exited before serving");
        let value: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        // The JSON log puts an event's fields at the top level.
        if value["message"] == "keysmith is serving" {
            break value["addr"].as_str().unwrap().to_owned();
        }
    };
    let rest = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Ok(Some(line)) = lines.next_line().await {
            seen.push(line);
        }
        seen
    });
    (child, addr, rest)
}

pub async fn sigterm(child: &Child) {
    let pid = child.id().expect("running").to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(status.success());
}
