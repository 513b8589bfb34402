//! The `keysmith` binary itself: check-config, environment overrides, and
//! serve, which keeps every acknowledged write through a graceful stop on
//! SIGTERM and through being killed outright.
mod common;

use std::process::Stdio;

use common::process::{serve, sigterm, write_config, BIN};
use keysmith_api::v1::{self as pb, access_service_client::AccessServiceClient};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::Command,
};

#[test]
fn check_config_accepts_the_example_and_names_an_unknown_key() {
    let dir = tempfile::tempdir().unwrap();
    let good = write_config(dir.path(), "");
    let out = std::process::Command::new(BIN)
        .args(["check-config", good.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok"));

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        std::fs::read_to_string(&good)
            .unwrap()
            .replace("[server]", "[server]\nlisten_backlog = 5"),
    )
    .unwrap();
    let out = std::process::Command::new(BIN)
        .args(["check-config", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("listen_backlog"), "names the key: {stderr}");
}

#[test]
fn environment_variables_override_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), "");
    let out = std::process::Command::new(BIN)
        .args(["check-config", path.to_str().unwrap()])
        .env("KEYSMITH__SERVER__LISTEN", "127.0.0.1:6061")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("listen 127.0.0.1:6061"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[tokio::test]
async fn sigterm_stops_gracefully_and_keeps_every_acknowledged_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), "");
    let (mut child, addr, log) = serve(&path).await;
    let mut client = AccessServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    // The binary runs on the real clock.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut issued = Vec::new();
    for i in 0..20 {
        let key = client
            .issue(common::guest(
                &format!("guest-{i}"),
                &["lobby"],
                now,
                now + common::DAY,
                "",
            ))
            .await
            .expect("issued")
            .into_inner()
            .key
            .unwrap();
        issued.push(key.key_id);
    }
    sigterm(&child).await;
    let status = child.wait().await.unwrap();
    assert!(status.success(), "a graceful stop exits 0, got {status}");
    let log = log.await.unwrap().join("\n");
    assert!(log.contains("shutting down"), "{log}");

    let (mut child, addr, _log) = serve(&path).await;
    let mut client = AccessServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    for key_id in &issued {
        let key = client
            .get_key(pb::GetKeyRequest {
                property_id: common::PROPERTY.into(),
                key_id: key_id.clone(),
            })
            .await
            .expect("the key survived the stop")
            .into_inner();
        assert_eq!(&key.key_id, key_id);
    }
    sigterm(&child).await;
    assert!(child.wait().await.unwrap().success());
}

/// A process killed in the middle of a burst of writes keeps every write it
/// acknowledged: an answer goes out only after the store's group commit has
/// flushed the change out of the process, so the kill loses nothing that
/// was answered.
#[tokio::test]
async fn sigkill_under_concurrent_issues_loses_no_acknowledged_key() {
    const CLIENTS: usize = 16;
    const KILL_AFTER: usize = 300;
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), "");
    let (mut child, addr, _log) = serve(&path).await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let (acked, mut acks) = tokio::sync::mpsc::unbounded_channel();
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let mut client = AccessServiceClient::new(channel.clone());
        let acked = acked.clone();
        clients.push(tokio::spawn(async move {
            for i in 0.. {
                let request = common::guest(
                    &format!("guest-{c}-{i}"),
                    &["lobby"],
                    now,
                    now + common::DAY,
                    "",
                );
                match client.issue(request).await {
                    Ok(reply) => {
                        let _ = acked.send(reply.into_inner().key.unwrap().key_id);
                    }
                    // The server is gone: this client is done.
                    Err(_) => return,
                }
            }
        }));
    }
    drop(acked);
    let mut issued = Vec::new();
    while issued.len() < KILL_AFTER {
        issued.push(acks.recv().await.expect("the clients are issuing"));
    }
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    for client in clients {
        client.await.unwrap();
    }
    // Answers that arrived before the connection dropped were acknowledged too.
    while let Some(key_id) = acks.recv().await {
        issued.push(key_id);
    }

    let (mut child, addr, _log) = serve(&path).await;
    let mut client = AccessServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    for key_id in &issued {
        let found = client
            .get_key(pb::GetKeyRequest {
                property_id: common::PROPERTY.into(),
                key_id: key_id.clone(),
            })
            .await;
        assert!(
            found.is_ok(),
            "key {key_id}, acknowledged before the kill, is gone ({} acknowledged)",
            issued.len()
        );
    }
    sigterm(&child).await;
    assert!(child.wait().await.unwrap().success());
}

#[test]
fn serve_refuses_a_network_address_without_authentication() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), "");
    let out = std::process::Command::new(BIN)
        .args(["serve", "--config", path.to_str().unwrap()])
        .env("KEYSMITH__SERVER__LISTEN", "0.0.0.0:0")
        .output()
        .unwrap();
    assert!(!out.status.success(), "it must not start");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("without authentication") && stderr.contains("auth.mode"),
        "{stderr}"
    );
}

#[test]
fn token_create_prints_a_token_whose_hash_is_the_config_entry() {
    let out = std::process::Command::new(BIN)
        .args([
            "token",
            "create",
            "--id",
            "front-desk",
            "--property",
            "demo-hotel",
            "--scope",
            "keys.issue",
            "--scope",
            "keys.read",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let token = stdout
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("ks_"))
        .expect("the token");
    let hash = keysmith_server::auth::hash_token(token);
    assert!(stdout.contains(&format!("sha256 = \"{hash}\"")), "{stdout}");
    assert!(
        stdout.contains("scopes = [\"keys.issue\", \"keys.read\"]"),
        "{stdout}"
    );
    let bad = std::process::Command::new(BIN)
        .args([
            "token",
            "create",
            "--id",
            "x",
            "--property",
            "p",
            "--scope",
            "keys.write",
        ])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown scope"));
}

#[tokio::test]
async fn development_mode_is_announced_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    // The embedded default, on an ephemeral port and a fresh directory.
    let mut child = Command::new(BIN)
        .arg("serve")
        .env("KEYSMITH__SERVER__LISTEN", "127.0.0.1:0")
        .env("KEYSMITH__METRICS__LISTEN", "127.0.0.1:0")
        .env("KEYSMITH__STORAGE__DATA_DIR", dir.path().join("data"))
        .env(
            "KEYSMITH__STORAGE__ENCRYPTION__KEY_FILE",
            dir.path().join("kek"),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    while let Some(line) = lines.next_line().await.unwrap() {
        let announced = line.contains("DEVELOPMENT MODE");
        seen.push(line);
        if announced {
            break;
        }
    }
    assert!(
        seen.iter()
            .any(|l| l.contains("DEVELOPMENT MODE") && l.contains("no authentication")),
        "{seen:?}"
    );
    child.kill().await.unwrap();
}

/// Runs `keysmith encryption ARGS --addr ADDR` and returns its stdout.
async fn encryption_cli(addr: &str, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .arg("encryption")
        .args(args)
        .args(["--addr", &format!("http://{addr}")])
        .env_remove("KEYSMITH_TOKEN")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "keysmith encryption {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The value `keysmith encryption status` prints after `label`.
fn field(status: &str, label: &str) -> String {
    status
        .lines()
        .find_map(|line| line.strip_prefix(label))
        .unwrap_or_else(|| panic!("no {label:?} in {status}"))
        .trim()
        .to_owned()
}

#[tokio::test]
async fn the_encryption_subcommands_rotate_both_keys_of_a_running_keysmith() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let (child, addr, _log) = serve(&config).await;

    let before = encryption_cli(&addr, &["status"]).await;
    assert_eq!(field(&before, "key-encryption key:"), "development");
    let first_data_key = field(&before, "current data key:");

    // A new data key; --wait returns once every record is sealed with it.
    let rotated = encryption_cli(&addr, &["rotate-data-key", "--wait"]).await;
    let second_data_key = field(&rotated, "current data key:");
    assert_ne!(second_data_key, first_data_key);
    assert_eq!(field(&rotated, "resealing:"), "no");
    assert_eq!(
        field(&rotated, "data keys stored:"),
        format!("[{second_data_key}]"),
        "the old data key is gone once nothing uses it"
    );

    // A new key-encryption key, read by keysmith from a file on its machine.
    let new_kek = dir.path().join("kek-2");
    let out = Command::new(BIN)
        .args(["encryption", "generate-key", "--id", "kek-2", "--out"])
        .arg(&new_kek)
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    let rewrapped = encryption_cli(
        &addr,
        &[
            "rotate-key-encryption-key",
            "--key-id",
            "kek-2",
            "--key-file",
            new_kek.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(field(&rewrapped, "key-encryption key:"), "kek-2");
    let after = encryption_cli(&addr, &["status"]).await;
    assert_eq!(field(&after, "key-encryption key:"), "kek-2");
    assert_eq!(field(&after, "current data key:"), second_data_key);
    drop(child);
}

/// Issue 18: a Seam webhook secret of "", "whsec_" or a short key was
/// accepted at start, and a delivery signed with an empty key verified.
#[test]
fn check_config_refuses_a_weak_webhook_secret_naming_the_field_not_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let seam = |secret: &str| {
        format!(
            "[drivers.seam]\nbase_url = \"http://127.0.0.1:9\"\nwebhook_listen = \
             \"127.0.0.1:0\"\n\n[[drivers.seam.workspaces]]\nproperty_id = \"seam-hotel\"\n\
             api_key = \"seam_test_key\"\nwebhook_secret = {secret:?}\n"
        )
    };
    // "c2hvcnQta2V5" is base64 for "short-key".
    for (secret, why) in [
        ("", "not a Svix secret"),
        ("whsec_", "empty"),
        ("whsec_c2hvcnQta2V5", "9 bytes"),
    ] {
        let path = write_config(dir.path(), &seam(secret));
        let out = std::process::Command::new(BIN)
            .args(["check-config", path.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{secret:?} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("drivers.seam.workspaces[0].webhook_secret") && stderr.contains(why),
            "{secret:?}: {stderr}"
        );
        if secret.len() > "whsec_".len() {
            assert!(!stderr.contains(&secret["whsec_".len()..]), "{stderr}");
        }
    }
    // 24 random bytes, as Svix makes them.
    let strong = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let path = write_config(dir.path(), &seam(strong));
    let out = std::process::Command::new(BIN)
        .args(["check-config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
