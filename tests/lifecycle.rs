//! The data lifecycle, end to end: keys leave the live set when they end,
//! and the store after `storage.key_retention_days`, with their reservation
//! and what the lock's encoder kept for them; audit records after
//! `storage.audit_retention_days`; a lock's block list stays within its
//! capacity. The sweeper is run with `Running::sweep_now`, the clock moved
//! by the test.
mod common;

use common::*;
use keysmith_api::v1::{self as pb, audit_service_client::AuditServiceClient};
use pb::ReservationBehaviour::Override;
use tonic::Code;

async fn all_keys(s: &TestServer) -> Vec<pb::AccessKey> {
    s.list(pb::ListKeysRequest {
        property_id: PROPERTY.into(),
        include_revoked: true,
        ..Default::default()
    })
    .await
    .unwrap()
    .keys
}

async fn in_force(s: &TestServer) -> Vec<String> {
    s.list(pb::ListKeysRequest {
        property_id: PROPERTY.into(),
        ..Default::default()
    })
    .await
    .unwrap()
    .keys
    .into_iter()
    .map(|k| k.key_id)
    .collect()
}

async fn audit_records(s: &TestServer) -> Vec<pb::AuditRecord> {
    AuditServiceClient::new(s.channel.clone())
        .list_audit_records(pb::ListAuditRecordsRequest {
            property_id: PROPERTY.into(),
            page_size: 500,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .records
}

fn pin_key(holder: &str, entrance: &str, end: i64, rk: &str, pin: &str) -> pb::IssueRequest {
    let mut r = guest(holder, &[entrance], T0, end, rk);
    r.modes = vec![pb::CredentialMode::Pin as i32];
    r.pin = pin.into();
    r
}

#[tokio::test(flavor = "multi_thread")]
async fn ended_keys_leave_the_live_set_then_the_store_after_the_retention() {
    let s = TestServer::start().await;
    let stay = s
        .issue(pin_key("g1", "room-102", T0 + DAY, "stay-a", "246802"))
        .await
        .unwrap();
    let revoked = s
        .issue(guest("g2", &["room-201"], T0, T0 + 3 * DAY, "stay-b"))
        .await
        .unwrap();
    s.revoke_key(&revoked.key_id).await.unwrap();
    let long = s
        .issue(guest("g3", &["lobby"], T0, T0 + 200 * DAY, ""))
        .await
        .unwrap();
    let running = s.running.as_ref().unwrap();

    // Day 2: the stay has ended; the sweeper moves it out of the live set.
    s.clock.set(T0 + 2 * DAY);
    let report = running.sweep_now().await;
    assert_eq!(report.expired, 1, "{report:?}");
    assert_eq!(report.purged_keys, 0);
    assert_eq!(in_force(&s).await, std::slice::from_ref(&long.key_id));
    assert_eq!(all_keys(&s).await.len(), 3);
    assert_eq!(
        s.get(&stay.key_id).await.unwrap().state(),
        pb::KeyState::Expired
    );
    // The PIN still stands for the stay at the keypad until it is purged.
    let r = s.present("room-102", "246802", T0 + HOUR).await;
    assert!(r.granted, "{r:?}");

    // Past the key retention (90 days by default) the ended keys are gone,
    // with their reservations; the long key is untouched.
    s.clock.set(T0 + 3 * DAY + 91 * DAY);
    let report = running.sweep_now().await;
    assert_eq!(report.purged_keys, 2, "{report:?}");
    assert_eq!(report.purged_reservations, 2, "{report:?}");
    let left: Vec<String> = all_keys(&s).await.into_iter().map(|k| k.key_id).collect();
    assert_eq!(left, std::slice::from_ref(&long.key_id));
    let err = s.get(&stay.key_id).await.unwrap_err();
    assert_eq!(reason(&err), (Code::NotFound, "KEY_NOT_FOUND".into()));
    // The keypad forgot the purged key's PIN.
    assert_eq!(
        s.present("room-102", "246802", T0 + HOUR).await.reason,
        "unknown_pin"
    );
    // The reservation is gone: its key establishes it anew, on other doors,
    // with no clean-up first.
    let now = T0 + 95 * DAY;
    let again = s
        .issue(guest("g1", &["room-203"], now, now + DAY, "stay-a"))
        .await
        .unwrap();
    assert_eq!(behaviours(&again), [("room-203".into(), Override)]);

    // What was purged stays purged across a restart; a second sweep finds
    // nothing more to do.
    let s = s.restart().await;
    assert_eq!(
        reason(&s.get(&revoked.key_id).await.unwrap_err()).1,
        "KEY_NOT_FOUND"
    );
    let report = s.running.as_ref().unwrap().sweep_now().await;
    assert_eq!((report.expired, report.purged_keys), (0, 0), "{report:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_key_given_a_new_window_is_live_again() {
    let s = TestServer::start().await;
    let key = s
        .issue(guest("g1", &["lobby"], T0, T0 + DAY, ""))
        .await
        .unwrap();
    s.clock.set(T0 + 2 * DAY);
    assert_eq!(s.running.as_ref().unwrap().sweep_now().await.expired, 1);
    assert!(in_force(&s).await.is_empty());
    let extended = s
        .update_window(&key.key_id, T0 + 2 * DAY, T0 + 4 * DAY)
        .await
        .unwrap();
    assert_ne!(extended.state(), pb::KeyState::Expired);
    assert_eq!(in_force(&s).await, std::slice::from_ref(&key.key_id));
    // And it expires again at its new end.
    s.clock.set(T0 + 5 * DAY);
    assert_eq!(s.running.as_ref().unwrap().sweep_now().await.expired, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_records_are_purged_after_their_retention() {
    let s = TestServer::start().await;
    s.issue(guest("g1", &["lobby"], T0, T0 + 400 * DAY, ""))
        .await
        .unwrap();
    assert_eq!(audit_records(&s).await.len(), 1);
    s.clock.set(T0 + 200 * DAY);
    s.issue(guest("g2", &["lobby"], T0 + 200 * DAY, T0 + 400 * DAY, ""))
        .await
        .unwrap();
    // Past 365 days (the default) the first record goes, the second stays.
    s.clock.set(T0 + 366 * DAY);
    let report = s.running.as_ref().unwrap().sweep_now().await;
    assert_eq!(report.purged_audit, 1, "{report:?}");
    let left = audit_records(&s).await;
    assert_eq!(left.len(), 1);
    assert_eq!(
        left[0].time.as_ref().map(|t| t.seconds),
        Some(T0 + 200 * DAY)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_locks_block_list_keeps_only_its_capacity_dropping_the_oldest() {
    let s = TestServer::start_with(|c| {
        for p in &mut c.drivers.offline_lock.as_mut().unwrap().properties {
            p.blocked_cards_capacity = 2;
        }
    })
    .await;
    let key = s
        .issue(guest("g1", &["room-101"], T0, T0 + DAY, "stay-1"))
        .await
        .unwrap();
    let card_id = key.credentials[0].credential_id.clone();
    for ids in [vec![card_id.clone()], vec!["x-1".into(), "x-2".into()]] {
        s.sim
            .clone()
            .set_lock_flags(keysmith_api::sim::v1::SetLockFlagsRequest {
                property_id: PROPERTY.into(),
                entrance_id: "room-101".into(),
                block_card_ids: ids,
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let state = s.lock_state("room-101").await;
    assert_eq!(state.blocked_card_ids, ["x-1", "x-2"]);
    // The card blocked first fell off the list: it opens again.
    let r = s.present("room-101", &card(&key), T0 + HOUR).await;
    assert!(r.granted, "{r:?}");
}
