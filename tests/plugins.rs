//! Driver plugins end to end: the example keypad plugin is built as a
//! shared library, listed in the configuration, loaded by the real server
//! and used over gRPC like a built-in driver; libraries that must be
//! refused are refused at start-up with a message naming them.
mod common;

use std::sync::Arc;

use common::{
    plugins::{self, PANICKING_HOLDER},
    reason, TestServer, DAY, PROPERTY, T0,
};
use keysmith_api::v1 as pb;
use keysmith_core::service::Clock;
use keysmith_server::Config;
use sha2::{Digest, Sha256};
use tonic::Code;

async fn with_keypad() -> TestServer {
    let path = plugins::built().keypad.clone();
    TestServer::start_with(move |c| c.drivers.plugins.push(plugins::keypad(&path))).await
}

/// Starts keysmith with `edit` applied and returns why it refused to.
async fn start_error(edit: impl FnOnce(&mut Config)) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::config(dir.path());
    edit(&mut config);
    let clock: Arc<dyn Clock> = Arc::new(common::TestClock::new(T0));
    match keysmith_server::start_with_clock(config, clock).await {
        Ok(_) => panic!("keysmith started"),
        Err(e) => format!("{e:#}"),
    }
}

fn pin_request(holder: &str, doors: &[&str], pin: &str) -> pb::IssueRequest {
    let mut r = common::guest(holder, doors, T0, T0 + 2 * DAY, "");
    r.modes = vec![pb::CredentialMode::Pin as i32];
    r.pin = pin.into();
    r
}

async fn driver_keys(
    s: &TestServer,
    driver: &str,
) -> Result<pb::ListDriverKeysResponse, tonic::Status> {
    s.client
        .clone()
        .list_driver_keys(pb::ListDriverKeysRequest {
            property_id: PROPERTY.into(),
            driver: driver.into(),
            page_size: 0,
            page_token: String::new(),
        })
        .await
        .map(|r| r.into_inner())
}

#[tokio::test]
async fn a_plugin_driver_is_listed_routed_and_issues_lists_and_revokes_pins() {
    let s = with_keypad().await;
    let drivers = s
        .client
        .clone()
        .list_drivers(pb::ListDriversRequest {})
        .await
        .unwrap()
        .into_inner()
        .drivers;
    let keypad = drivers.iter().find(|d| d.name == "keypad").expect("listed");
    assert_eq!(keypad.kind(), pb::DriverKind::Plugin);
    assert_eq!(keypad.version, "0.1.0");
    let cap = keypad.capability.clone().unwrap();
    assert!(cap.issue && cap.revoke && cap.update && cap.list && cap.reservations);
    assert_eq!(cap.modes, vec![pb::CredentialMode::Pin as i32]);
    let lock = drivers.iter().find(|d| d.name == "offline-lock").unwrap();
    assert_eq!(lock.kind(), pb::DriverKind::BuiltIn);

    let entrances = s
        .client
        .clone()
        .list_entrances(pb::ListEntrancesRequest {
            property_id: PROPERTY.into(),
            refresh: true,
        })
        .await
        .unwrap()
        .into_inner()
        .entrances;
    let room = entrances
        .iter()
        .find(|e| e.entrance_id == "keypad-501")
        .expect("the plugin's door is routed");
    assert_eq!(room.driver, "keypad");
    assert_eq!(room.name, "Room 501");
    assert_eq!(room.space_ids, ["suite-501"]);
    assert!(room.capability.as_ref().unwrap().can_belong_to_reservation);
    let gate = entrances
        .iter()
        .find(|e| e.entrance_id == "keypad-gate")
        .unwrap();
    assert!(!gate.capability.as_ref().unwrap().can_belong_to_reservation);

    // A generated PIN, and a caller's PIN.
    let key = s
        .issue(pin_request("g1", &["keypad-501", "keypad-gate"], ""))
        .await
        .expect("issued through the plugin");
    assert_eq!(key.state(), pb::KeyState::Active);
    assert!(key.entrances.iter().all(|e| e.driver == "keypad"));
    let generated = common::pin(&key);
    assert_eq!(generated.len(), 6);
    assert!(generated.chars().all(|c| c.is_ascii_digit()));
    assert_eq!(key.credentials[0].driver, "keypad");
    let chosen = s
        .issue(pin_request("g2", &["keypad-502"], "7391"))
        .await
        .unwrap();
    assert_eq!(common::pin(&chosen), "7391");

    // Through a space, too.
    let mut by_space = pin_request("g3", &[], "");
    by_space.space_ids = vec!["suite-501".into()];
    let suite = s.issue(by_space).await.unwrap();
    assert_eq!(suite.entrances[0].entrance_id, "keypad-501");

    let listed = s
        .list(pb::ListKeysRequest {
            property_id: PROPERTY.into(),
            entrance_id: "keypad-501".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.keys.len(), 2);

    let held = driver_keys(&s, "keypad").await.unwrap();
    let ids: Vec<&str> = held.keys.iter().map(|k| k.key_id.as_str()).collect();
    assert_eq!(ids.len(), 3);
    assert!(ids.contains(&key.key_id.as_str()));
    let record = held.keys.iter().find(|k| k.key_id == key.key_id).unwrap();
    assert_eq!(record.keysmith_state(), pb::KeyState::Active);
    assert_eq!(record.holder_id, "g1");
    assert_eq!(record.entrance_ids, ["keypad-501", "keypad-gate"]);
    assert!(record.driver_ref.starts_with("kp-"));
    assert!(
        !format!("{held:?}").contains(&generated),
        "the driver's list never carries a PIN"
    );

    let revoked = s.revoke_key(&key.key_id).await.unwrap();
    assert_eq!(revoked.keys[0].state(), pb::KeyState::Revoked);
    let held = driver_keys(&s, "keypad").await.unwrap();
    assert!(held.keys.iter().all(|k| k.key_id != key.key_id));
    // Its PIN is free again at the gate.
    let reused = s
        .issue(pin_request("g4", &["keypad-gate"], &generated))
        .await
        .unwrap();
    assert_eq!(common::pin(&reused), generated);
}

#[tokio::test]
async fn the_plugins_errors_reach_the_caller_with_their_reason() {
    let s = with_keypad().await;
    s.issue(pin_request("g1", &["keypad-501"], "2468"))
        .await
        .unwrap();
    let err = s
        .issue(pin_request("g2", &["keypad-501"], "2468"))
        .await
        .unwrap_err();
    assert_eq!(reason(&err), (Code::AlreadyExists, "PIN_IN_USE".to_owned()));
    assert_eq!(common::violations(&err), ["pin"]);

    let err = s
        .client
        .clone()
        .list_driver_keys(pb::ListDriverKeysRequest {
            property_id: PROPERTY.into(),
            driver: "keypad".into(),
            page_size: 10,
            page_token: "not-a-token".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        reason(&err),
        (Code::InvalidArgument, "INVALID_PAGE_TOKEN".to_owned())
    );

    // The core's checks apply before the plugin is asked: no CARD here.
    let mut card = pin_request("g3", &["keypad-502"], "");
    card.modes = vec![pb::CredentialMode::Card as i32];
    let err = s.issue(card).await.unwrap_err();
    assert_eq!(
        reason(&err),
        (
            Code::InvalidArgument,
            "CREDENTIAL_MODE_NOT_SUPPORTED".to_owned()
        )
    );
}

#[tokio::test]
async fn listing_a_drivers_keys_needs_a_driver_that_can() {
    let s = with_keypad().await;
    let err = driver_keys(&s, "offline-lock").await.unwrap_err();
    assert_eq!(
        reason(&err),
        (
            Code::FailedPrecondition,
            "OPERATION_NOT_SUPPORTED".to_owned()
        )
    );
    let err = driver_keys(&s, "no-such-driver").await.unwrap_err();
    assert_eq!(
        reason(&err),
        (Code::NotFound, "DRIVER_NOT_FOUND".to_owned())
    );
    assert_eq!(common::violations(&err), ["driver"]);
    let err = driver_keys(&s, "").await.unwrap_err();
    assert_eq!(
        reason(&err),
        (Code::InvalidArgument, "FIELD_REQUIRED".to_owned())
    );
}

#[tokio::test]
async fn a_panic_in_issue_fails_that_call_and_the_server_keeps_serving() {
    let s = with_keypad().await;
    let err = s
        .issue(pin_request(PANICKING_HOLDER, &["keypad-501"], "8642"))
        .await
        .unwrap_err();
    assert_eq!(reason(&err), (Code::Internal, "PLUGIN_PANICKED".to_owned()));
    assert_eq!(err.message(), "the plugin panicked in issue");
    assert!(!format!("{err:?}").contains("8642"));

    // The same plugin, the same door, the next call: served.
    let key = s
        .issue(pin_request("g1", &["keypad-501"], "8642"))
        .await
        .expect("the next call succeeds");
    assert_eq!(common::pin(&key), "8642");
    let listed = s
        .list(pb::ListKeysRequest {
            property_id: PROPERTY.into(),
            holder_id: PANICKING_HOLDER.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(listed.keys.is_empty(), "the failed call stored nothing");
}

#[tokio::test]
async fn a_plugin_built_for_another_abi_version_is_refused_at_start() {
    let path = plugins::built().faulty.clone();
    let shown = path.display().to_string();
    let err = start_error(move |c| {
        let mut plugin = plugins::keypad(&path);
        plugin.name = "from-the-future".into();
        c.drivers.plugins.push(plugin);
    })
    .await;
    assert!(
        err.contains(&format!(
            "plugin {shown}: speaks driver ABI 99 but this keysmith speaks ABI 1"
        )),
        "{err}"
    );
    assert!(
        err.contains("rebuild the plugin against keysmith-plugin"),
        "{err}"
    );
}

#[tokio::test]
async fn a_plugin_is_loaded_only_when_its_sha256_matches() {
    let path = plugins::built().keypad.clone();
    let digest = hex(&Sha256::digest(std::fs::read(&path).unwrap()));
    let wrong = "0".repeat(64);
    let shown = path.display().to_string();
    let p = path.clone();
    let w = wrong.clone();
    let err = start_error(move |c| {
        let mut plugin = plugins::keypad(&p);
        plugin.sha256 = Some(w);
        c.drivers.plugins.push(plugin);
    })
    .await;
    assert!(
        err.contains(&format!(
            "plugin {shown}: has sha256 {digest} but the configuration expects {wrong}"
        )),
        "{err}"
    );

    let s = TestServer::start_with(move |c| {
        let mut plugin = plugins::keypad(&path);
        plugin.sha256 = Some(digest.to_uppercase());
        c.drivers.plugins.push(plugin);
    })
    .await;
    s.issue(pin_request("g1", &["keypad-502"], ""))
        .await
        .expect("the verified plugin serves");
}

#[tokio::test]
async fn a_missing_library_or_a_refused_config_stops_the_start_with_the_path() {
    let err = start_error(|c| {
        c.drivers
            .plugins
            .push(plugins::keypad("/nonexistent/libkeypad.so".as_ref()))
    })
    .await;
    assert!(err.contains("plugin /nonexistent/libkeypad.so"), "{err}");

    let path = plugins::built().keypad.clone();
    let shown = path.display().to_string();
    let err = start_error(move |c| {
        let mut plugin = plugins::keypad(&path);
        plugin.config = keysmith_core::Secret::new(serde_json::json!({ "properties": [] }));
        c.drivers.plugins.push(plugin);
    })
    .await;
    assert!(
        err.contains(&format!(
            "plugin {shown}: refused its configuration: config.properties: must list at \
             least one property"
        )),
        "{err}"
    );
}

#[tokio::test]
async fn a_plugin_may_not_take_a_built_in_drivers_name() {
    let path = plugins::built().keypad.clone();
    let err = start_error(move |c| {
        let mut plugin = plugins::keypad(&path);
        plugin.name = "offline-lock".into();
        c.drivers.plugins.push(plugin);
    })
    .await;
    assert!(
        err.contains("two drivers are named \"offline-lock\""),
        "{err}"
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
