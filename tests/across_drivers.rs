//! A change to a key is all-or-nothing across its drivers. The key here
//! spans three: the simulated lock's room-101, and two instances of the
//! test-kit plugin (`tk-a`, which never fails, and `tk-b`, where holders
//! named `flaky-<operation>` fail that operation once). When `tk-b` fails,
//! keysmith and every driver must agree afterwards, and a retry of the same
//! request_id must complete the change.
mod common;

use common::{plugins, *};
use keysmith_api::v1 as pb;
use tonic::Code;

async fn server() -> TestServer {
    let path = plugins::built().testkit.clone();
    TestServer::start_with(move |c| {
        c.drivers
            .plugins
            .push(plugins::testkit(&path, "tk-a", &["tk-a-door"], false));
        c.drivers
            .plugins
            .push(plugins::testkit(&path, "tk-b", &["tk-b-door"], true));
    })
    .await
}

fn three_drivers(holder: &str, rk: &str) -> pb::IssueRequest {
    let mut req = guest(
        holder,
        &["room-101", "tk-a-door", "tk-b-door"],
        T0,
        T0 + 2 * DAY,
        rk,
    );
    req.request_id = format!("issue-{holder}");
    req
}

/// The keys a driver holds on its side, with their windows' ends.
async fn held(s: &TestServer, driver: &str) -> Vec<(String, i64)> {
    s.client
        .clone()
        .list_driver_keys(pb::ListDriverKeysRequest {
            property_id: PROPERTY.into(),
            driver: driver.into(),
            page_size: 100,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .keys
        .into_iter()
        .map(|k| (k.key_id, k.ends_at.unwrap().seconds))
        .collect()
}

fn revoke_request(key_id: &str, request_id: &str) -> pb::RevokeRequest {
    pb::RevokeRequest {
        property_id: PROPERTY.into(),
        request_id: request_id.into(),
        target: Some(pb::revoke_request::Target::KeyId(key_id.into())),
    }
}

fn update_request(key_id: &str, request_id: &str, end: i64) -> pb::UpdateKeyRequest {
    pb::UpdateKeyRequest {
        property_id: PROPERTY.into(),
        request_id: request_id.into(),
        key_id: key_id.into(),
        starts_at: Some(ts(T0)),
        ends_at: Some(ts(end)),
    }
}

fn encode_request(key_id: &str, request_id: &str) -> pb::EncodeKeyRequest {
    pb::EncodeKeyRequest {
        property_id: PROPERTY.into(),
        request_id: request_id.into(),
        key_id: key_id.into(),
        encoder_id: String::new(),
    }
}

fn offline_card(key: &pb::AccessKey) -> String {
    key.credentials
        .iter()
        .find_map(|c| match (&c.data, c.driver.as_str()) {
            (Some(pb::credential::Data::CardData(d)), "offline-lock") => Some(d.clone()),
            _ => None,
        })
        .expect("an offline card")
}

#[tokio::test(flavor = "multi_thread")]
async fn an_issue_failing_at_one_driver_is_withdrawn_everywhere_and_a_retry_issues_it() {
    let s = server().await;
    let req = three_drivers("flaky-issue", "stay-i");
    let err = s.issue(req.clone()).await.unwrap_err();
    assert_eq!(
        reason(&err),
        (Code::Unavailable, "DRIVER_UNAVAILABLE".into())
    );
    let all = s
        .list(pb::ListKeysRequest {
            property_id: PROPERTY.into(),
            include_revoked: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(all.keys.is_empty(), "keysmith stored nothing");
    assert!(
        held(&s, "tk-a").await.is_empty(),
        "tk-a's part was withdrawn"
    );
    assert!(held(&s, "tk-b").await.is_empty());

    let key = s.issue(req).await.unwrap();
    assert_eq!(key.state(), pb::KeyState::Active);
    assert_eq!(held(&s, "tk-a").await, [(key.key_id.clone(), T0 + 2 * DAY)]);
    assert_eq!(held(&s, "tk-b").await, [(key.key_id.clone(), T0 + 2 * DAY)]);
    let r = s.present("room-101", &offline_card(&key), T0 + HOUR).await;
    assert!(r.granted, "{r:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revocation_failing_at_one_driver_is_revoking_until_a_retry_completes_it() {
    let s = server().await;
    let key = s
        .issue(three_drivers("flaky-revoke", "stay-r"))
        .await
        .unwrap();
    let err = s
        .client
        .clone()
        .revoke(revoke_request(&key.key_id, "revoke-1"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);

    let now = s.get(&key.key_id).await.unwrap();
    assert_eq!(now.state(), pb::KeyState::Revoking);
    let pending = now
        .warnings
        .iter()
        .find(|w| w.code == "REVOKE_INCOMPLETE")
        .expect("a REVOKE_INCOMPLETE warning");
    assert!(pending.message.contains("tk-b"), "{}", pending.message);
    assert!(held(&s, "tk-a").await.is_empty(), "tk-a revoked its part");
    assert_eq!(held(&s, "tk-b").await.len(), 1, "tk-b still holds it");
    let listed = s
        .list(pb::ListKeysRequest {
            property_id: PROPERTY.into(),
            states: vec![pb::KeyState::Revoking as i32],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.keys.len(), 1, "REVOKING keys are listed as such");

    let done = s
        .client
        .clone()
        .revoke(revoke_request(&key.key_id, "revoke-1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(done.keys[0].state(), pb::KeyState::Revoked);
    assert!(done.keys[0]
        .warnings
        .iter()
        .all(|w| w.code != "REVOKE_INCOMPLETE"));
    assert!(held(&s, "tk-b").await.is_empty());
    // The same request again is answered from its first answer.
    let again = s
        .client
        .clone()
        .revoke(revoke_request(&key.key_id, "revoke-1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.keys, done.keys);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_window_change_failing_at_one_driver_is_put_back_and_a_retry_changes_it() {
    let s = server().await;
    let key = s
        .issue(three_drivers("flaky-update", "stay-u"))
        .await
        .unwrap();
    let err = s
        .client
        .clone()
        .update_key(update_request(&key.key_id, "update-1", T0 + 4 * DAY))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    let now = s.get(&key.key_id).await.unwrap();
    assert_eq!(now.ends_at, Some(ts(T0 + 2 * DAY)));
    assert_eq!(now.state(), pb::KeyState::Active);
    assert_eq!(
        held(&s, "tk-a").await,
        [(key.key_id.clone(), T0 + 2 * DAY)],
        "tk-a took the new window and was put back"
    );
    assert_eq!(held(&s, "tk-b").await, [(key.key_id.clone(), T0 + 2 * DAY)]);

    let updated = s
        .client
        .clone()
        .update_key(update_request(&key.key_id, "update-1", T0 + 4 * DAY))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.ends_at, Some(ts(T0 + 4 * DAY)));
    assert_eq!(updated.state(), pb::KeyState::EncodingRequired);
    assert_eq!(held(&s, "tk-a").await, [(key.key_id.clone(), T0 + 4 * DAY)]);
    assert_eq!(held(&s, "tk-b").await, [(key.key_id.clone(), T0 + 4 * DAY)]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_encoding_failing_at_one_driver_keeps_what_was_encoded_and_a_retry_finishes() {
    let s = server().await;
    let key = s
        .issue(three_drivers("flaky-encode", "stay-e"))
        .await
        .unwrap();
    s.client
        .clone()
        .update_key(update_request(&key.key_id, "", T0 + 4 * DAY))
        .await
        .unwrap();
    let err = s
        .client
        .clone()
        .encode_key(encode_request(&key.key_id, "encode-1"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);

    let partly = s.get(&key.key_id).await.unwrap();
    assert_eq!(partly.state(), pb::KeyState::EncodingRequired);
    let still_to_encode: Vec<&str> = partly
        .credentials
        .iter()
        .filter(|c| c.encoding_required)
        .map(|c| c.driver.as_str())
        .collect();
    assert_eq!(still_to_encode, ["tk-b"]);
    let pending = partly
        .warnings
        .iter()
        .find(|w| w.code == "ENCODE_INCOMPLETE")
        .expect("an ENCODE_INCOMPLETE warning");
    assert!(pending.message.contains("tk-b"), "{}", pending.message);
    // The re-encoded offline card is in the answer's key and opens.
    let r = s
        .present("room-101", &offline_card(&partly), T0 + 3 * DAY)
        .await;
    assert!(r.granted, "{r:?}");

    let done = s
        .client
        .clone()
        .encode_key(encode_request(&key.key_id, "encode-1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(done.state(), pb::KeyState::Active);
    assert!(done.credentials.iter().all(|c| !c.encoding_required));
    assert!(done.warnings.iter().all(|w| w.code != "ENCODE_INCOMPLETE"));
    assert_eq!(
        offline_card(&done),
        offline_card(&partly),
        "the retry encoded only what was left"
    );
}

/// A key whose driver was removed from the configuration can still be
/// revoked (with a warning naming the driver), by key and by reservation;
/// other changes are refused with a reason, never INTERNAL.
#[tokio::test(flavor = "multi_thread")]
async fn a_key_whose_driver_is_gone_is_revoked_in_keysmith_with_a_warning() {
    let s = server().await;
    let single = s
        .issue(guest("g1", &["tk-a-door"], T0, T0 + DAY, ""))
        .await
        .unwrap();
    let stay = s.issue(three_drivers("g2", "stay-1")).await.unwrap();

    // Restarted on the embedded default: the test-kit drivers are gone.
    let s = s.restart().await;
    let err = s
        .update_window(&single.key_id, T0, T0 + 2 * DAY)
        .await
        .unwrap_err();
    assert_eq!(
        reason(&err),
        (Code::FailedPrecondition, "DRIVER_NOT_CONFIGURED".into())
    );

    let revoked = s.revoke_key(&single.key_id).await.unwrap();
    assert_eq!(revoked.keys[0].state(), pb::KeyState::Revoked);
    assert!(revoked
        .warnings
        .iter()
        .any(|w| w.code == "DRIVER_NOT_CONFIGURED" && w.message.contains("tk-a")));

    let cleared = s.revoke_reservation("stay-1").await.unwrap();
    assert_eq!(cleared.keys.len(), 1);
    assert_eq!(cleared.keys[0].key_id, stay.key_id);
    assert_eq!(cleared.keys[0].state(), pb::KeyState::Revoked);
    let named: Vec<&str> = cleared
        .warnings
        .iter()
        .filter(|w| w.code == "DRIVER_NOT_CONFIGURED")
        .map(|w| w.message.as_str())
        .collect();
    assert_eq!(named.len(), 2, "{named:?}");
}

/// The key follower refreshes keys still being issued for every driver
/// whose capability says `refresh`, a plugin's too: a key the test-kit
/// plugin issues asynchronously becomes ACTIVE without a RefreshKey call.
#[tokio::test(flavor = "multi_thread")]
async fn the_key_follower_refreshes_a_plugins_asynchronous_keys() {
    let s = server().await;
    let issuing = s
        .issue(guest("async-1", &["tk-a-door"], T0, T0 + DAY, ""))
        .await
        .unwrap();
    assert_eq!(issuing.state(), pb::KeyState::Issuing);
    assert!(issuing.credentials.iter().all(|c| c.data.is_none()));

    s.running.as_ref().unwrap().follow_keys_now().await;
    let followed = s.get(&issuing.key_id).await.unwrap();
    assert_eq!(followed.state(), pb::KeyState::Active);
    assert!(followed.credentials.iter().all(|c| c.data.is_some()));
}
