//! Runs full scenarios with tracing at TRACE and scans everything logged,
//! and every byte of every data directory once its server has stopped, for
//! each secret value: PINs, card, mobile-key and QR data, the site secret,
//! 3RPMS and Seam API keys, webhook secrets, key-storage compartments.
mod common;

use std::{
    io::Write,
    sync::{Arc, Mutex},
};

use common::*;
use keysmith_api::v1 as pb;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn no_secret_reaches_the_logs_even_at_trace_nor_the_data_files() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        // Everything at TRACE but the engines' internals, as keysmith itself
        // filters them (telemetry::QUIET_ENGINES: some are logged from a
        // thread's locals while it exits, where logging panics).
        .with_env_filter(format!(
            "trace,{}",
            keysmith_server::telemetry::QUIET_ENGINES
        ))
        .with_writer(move || writer.clone())
        .with_ansi(false)
        // Timestamps are full of six-digit runs that a random PIN can match.
        .without_time()
        .init();

    let s = TestServer::start().await;
    let mut req = guest("guest-secret", &["room-101", "gym"], T0, T0 + DAY, "stay-s");
    req.modes = vec![
        pb::CredentialMode::Pin as i32,
        pb::CredentialMode::Card as i32,
        pb::CredentialMode::MobileKey as i32,
    ];
    req.pin = "73910482".into();
    let key = s.issue(req.clone()).await.unwrap();
    let mut qr = guest("guest-qr", &["lobby"], T0, T0 + DAY, "");
    qr.modes = vec![pb::CredentialMode::Qr as i32];
    let qr_key = s.issue(qr).await.unwrap();
    // Errors that involve a PIN: reuse, malformed.
    let mut again = req.clone();
    again.holder_id = "other".into();
    assert!(s.issue(again).await.is_err());
    let mut bad = req.clone();
    bad.pin = "73a10482".into();
    assert!(s.issue(bad).await.is_err());
    s.present("room-101", "73910482", T0 + 60).await;
    s.present("room-101", &card(&key), T0 + 120).await;
    s.list(pb::ListKeysRequest {
        property_id: PROPERTY.into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut pin_only = guest("guest-pin-kept", &["room-102"], T0, T0 + DAY, "stay-kept");
    pin_only.modes = vec![pb::CredentialMode::Pin as i32];
    pin_only.pin = "58203917".into();
    let kept = s.issue(pin_only).await.unwrap();
    s.revoke_key(&key.key_id).await.unwrap();
    let mut disk = stored(s).await;

    let mut secrets: Vec<String> = vec![
        "73910482".into(),
        "73a10482".into(),
        "demo-site-secret-not-for-production".into(),
    ];
    secrets.push("58203917".into());
    for k in [&key, &qr_key, &kept] {
        for c in &k.credentials {
            match &c.data {
                Some(pb::credential::Data::CardData(d))
                | Some(pb::credential::Data::MobileKey(d))
                | Some(pb::credential::Data::QrData(d)) => secrets.push(d.clone()),
                Some(pb::credential::Data::Pin(p)) => secrets.push(p.clone()),
                _ => {}
            }
        }
    }
    secrets.extend(token_scenario(&mut disk).await);
    secrets.extend(threerpms_scenario(&mut disk).await);
    secrets.extend(seam_scenario(&mut disk).await);
    secrets.extend(plugin_scenario(&mut disk).await);

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("key issued"),
        "the scenario was logged at all"
    );
    assert!(logs.contains("stay-s"), "spans carry the reservation key");
    assert!(
        logs.contains("3RPMS webhook endpoint registered"),
        "the 3RPMS scenario was logged"
    );
    assert!(logs.contains("RefreshKey"), "the Seam scenario was logged");
    assert!(
        logs.contains("call refused by authentication"),
        "the token scenario was logged"
    );
    assert!(
        logs.contains("driver plugin loaded"),
        "the plugin scenario was logged"
    );
    for secret in &secrets {
        // Card data is long; its payload part alone must not leak either.
        let needle = if secret.len() > 40 {
            &secret[5..40]
        } else {
            secret.as_str()
        };
        assert!(
            !leaked(&logs, needle),
            "a secret reached the logs: {needle}"
        );
        // Stored records hold secrets as their bytes, whatever stands
        // around them.
        assert!(
            !disk.windows(needle.len()).any(|w| w == needle.as_bytes()),
            "a secret reached the data files in clear: {needle}"
        );
    }
}

/// Stops the server and reads every file of its data directory.
async fn stored(mut s: TestServer) -> Vec<u8> {
    s.running.take().unwrap().stop().await.unwrap();
    let mut bytes = Vec::new();
    let mut dirs = vec![s.data_dir.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                let mut file = std::fs::read(&path).unwrap();
                // fjall sets its journal's length ahead of what it writes:
                // the zeros past the last byte written hold nothing.
                file.truncate(file.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1));
                bytes.extend(file);
            }
        }
    }
    assert!(!bytes.is_empty(), "the server stored something");
    bytes
}

/// Bearer tokens: calls with a good token, a wrong one, and a malformed
/// header. Returns the tokens.
async fn token_scenario(disk: &mut Vec<u8>) -> Vec<String> {
    use keysmith_server::{
        auth::{generate_token, hash_token},
        config::{AuthMode, TokenConfig},
    };
    let good = generate_token();
    let wrong = generate_token();
    let config = TokenConfig {
        id: "front-desk".into(),
        sha256: hash_token(&good),
        properties: vec![PROPERTY.into()],
        scopes: vec!["keys.issue".into(), "keys.read".into()],
        max_in_flight: 8,
        requests_per_minute: None,
    };
    let s = TestServer::start_with(move |c| {
        c.auth.mode = AuthMode::Tokens;
        c.auth.tokens = vec![config];
    })
    .await;
    for header in [
        format!("Bearer {good}"),
        format!("Bearer {wrong}"),
        format!("Basic {wrong}"),
    ] {
        let mut request = tonic::Request::new(guest(
            "token-guest",
            &["room-101"],
            T0,
            T0 + DAY,
            "stay-token",
        ));
        request
            .metadata_mut()
            .insert("authorization", header.parse().unwrap());
        let _ = s.client.clone().issue(request).await;
    }
    disk.extend(stored(s).await);
    vec![good, wrong]
}

/// The keypad plugin: a generated and a caller's PIN, a PIN refused as in
/// use, a panic in issue, the driver's list, a revocation.
async fn plugin_scenario(disk: &mut Vec<u8>) -> Vec<String> {
    let path = plugins::built().keypad.clone();
    let s = TestServer::start_with(move |c| c.drivers.plugins.push(plugins::keypad(&path))).await;
    let pin_request = |holder: &str, pin: &str| {
        let mut r = guest(holder, &["keypad-501", "keypad-gate"], T0, T0 + DAY, "");
        r.modes = vec![pb::CredentialMode::Pin as i32];
        r.pin = pin.into();
        r
    };
    let generated = s.issue(pin_request("guest-kp-1", "")).await.unwrap();
    let chosen = s
        .issue(pin_request("guest-kp-2", "51928374"))
        .await
        .unwrap();
    assert!(s
        .issue(pin_request("guest-kp-3", "51928374"))
        .await
        .is_err());
    assert!(s
        .issue(pin_request(plugins::PANICKING_HOLDER, "60418273"))
        .await
        .is_err());
    s.client
        .clone()
        .list_driver_keys(pb::ListDriverKeysRequest {
            property_id: PROPERTY.into(),
            driver: "keypad".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    s.revoke_key(&chosen.key_id).await.unwrap();
    disk.extend(stored(s).await);
    vec![pin(&generated), pin(&chosen), "60418273".into()]
}

/// 3RPMS: a sync that publishes a PIN, a webhook registration, a delivery,
/// reads with a key-storage compartment. Returns the secrets it handled.
async fn threerpms_scenario(disk: &mut Vec<u8>) -> Vec<String> {
    use fake_3rpms::{Access, Fake3rpms, FakeConfig, KeyKind};
    let api_key = "api_threerpms_secret_1234";
    let fake = Fake3rpms::start(FakeConfig::default()).await.unwrap();
    fake.add_hotel(PROPERTY);
    fake.add_api_key(PROPERTY, "keysmith", api_key, Access::Write);
    fake.add_room(PROPERTY, "rs-101", "Room 101");
    let r = fake.add_reservation(PROPERTY, "R-SECRET");
    let stay = fake.add_room_stay(PROPERTY, &r, "rs-101", "2030-03-17", "2030-03-19");
    let other = fake.add_room_stay(PROPERTY, &r, "rs-101", "2030-03-19", "2030-03-20");
    let storage = fake.add_foreign_key(
        PROPERTY,
        "keybox",
        KeyKind::KeyStorage {
            pin: "KB4711".into(),
            compartment: "SECRET7".into(),
        },
    );
    fake.assign_key(PROPERTY, &other, &storage);
    let url = fake.graphql_url();
    let s = TestServer::start_with(move |c| {
        c.threerpms = Some(
            serde_json::from_value(serde_json::json!({
                "endpoint": url,
                "initial_sync": false,
                "webhook_listen": "127.0.0.1:0",
                "hotels": [{
                    "property_id": PROPERTY,
                    "api_key": api_key,
                    "time_zone": "UTC",
                    "rooms": [{"room_setup_id": "rs-101", "entrances": ["room-101"]}],
                }],
            }))
            .unwrap(),
        )
    })
    .await;
    let addr = s.running.as_ref().unwrap().addr;
    let mut pms =
        keysmith_api::v1::pms_service_client::PmsServiceClient::connect(format!("http://{addr}"))
            .await
            .unwrap();
    let hook = s.running.as_ref().unwrap().webhook_addr.unwrap();
    pms.register_webhook_endpoint(pb::RegisterWebhookEndpointRequest {
        property_id: PROPERTY.into(),
        url: format!("http://{hook}/3rpms/webhooks/{PROPERTY}"),
        replace: false,
        previous_endpoint_removed: false,
    })
    .await
    .unwrap();
    pms.sync_room_stays(pb::SyncRoomStaysRequest {
        property_id: PROPERTY.into(),
        room_stay_ids: vec![],
    })
    .await
    .unwrap();
    fake.change_room_stay_dates(PROPERTY, &stay, "2030-03-17", "2030-03-20");
    fake.webhooks_idle().await;
    s.running
        .as_ref()
        .unwrap()
        .webhooks_processed(PROPERTY)
        .await;
    for view in [pb::KeyView::Guest, pb::KeyView::Staff] {
        pms.list_reservation_room_keys(pb::ListReservationRoomKeysRequest {
            property_id: PROPERTY.into(),
            reservation_code: "R-SECRET".into(),
            view: view as i32,
        })
        .await
        .unwrap();
    }
    disk.extend(stored(s).await);
    let mut secrets = vec![api_key.to_owned(), "KB4711".into(), "SECRET7".into()];
    for endpoint in fake.webhook_endpoints(PROPERTY) {
        secrets.push(endpoint.secret);
    }
    for key in fake.keys(PROPERTY) {
        if let KeyKind::Pin { pin } = key.kind {
            secrets.push(pin);
        }
    }
    secrets
}

/// Seam: a code issued asynchronously and refreshed. Returns its secrets.
async fn seam_scenario(disk: &mut Vec<u8>) -> Vec<String> {
    use fake_seam::{EntranceSeed, FakeSeam, FakeSeamConfig};
    let api_key = "seam_test_secret_key_5678";
    let fake = FakeSeam::start(FakeSeamConfig::manual()).await.unwrap();
    fake.add_workspace("ws", api_key);
    fake.add_acs_system("ws", "sys", "Rooms", false);
    let door = fake.add_entrance(
        "ws",
        "sys",
        EntranceSeed {
            display_name: "Room 9".into(),
            can_belong_to_reservation: true,
            can_unlock_with_code: true,
            ..EntranceSeed::default()
        },
    );
    let base_url = fake.base_url();
    let s = TestServer::start_with(move |c| {
        c.drivers.seam = Some(
            serde_json::from_value(serde_json::json!({
                "base_url": base_url,
                "poll_interval_ms": 3_600_000,
                "workspaces": [{ "property_id": PROPERTY, "api_key": api_key }],
            }))
            .unwrap(),
        )
    })
    .await;
    let mut req = guest("guest-seam", &[door.as_str()], T0, T0 + DAY, "stay-seam");
    req.modes = vec![pb::CredentialMode::Pin as i32];
    let key = s.issue(req).await.unwrap();
    fake.issue_pending();
    let key = s
        .client
        .clone()
        .refresh_key(pb::RefreshKeyRequest {
            property_id: PROPERTY.into(),
            key_id: key.key_id,
        })
        .await
        .unwrap()
        .into_inner();
    disk.extend(stored(s).await);
    vec![api_key.to_owned(), pin(&key)]
}

/// Whether `secret` stands in the logs. A short secret (a PIN) counts only
/// where it stands alone, as a leak would print it (`pin=482913`,
/// `"482913"`), not as six digits inside an id or a port.
fn leaked(logs: &str, secret: &str) -> bool {
    if secret.len() >= 12 {
        return logs.contains(secret);
    }
    logs.match_indices(secret).any(|(at, _)| {
        let before = logs[..at].chars().next_back();
        let after = logs[at + secret.len()..].chars().next();
        let apart = |c: Option<char>| c.is_none_or(|c| !c.is_ascii_alphanumeric());
        apart(before) && apart(after)
    })
}
