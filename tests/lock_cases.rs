//! The offline-lock cases of the lock notes, end to end: keys issued through
//! the AccessService, presented at the simulated doors through the
//! LockSimulatorService. (The model's own tests cover all 19 cases one by one.)
mod common;

use common::*;
use keysmith_api::{sim::v1 as sim, v1 as pb};

async fn flags(s: &TestServer, entrance: &str, edit: impl FnOnce(&mut sim::SetLockFlagsRequest)) {
    let mut req = sim::SetLockFlagsRequest {
        property_id: PROPERTY.into(),
        entrance_id: entrance.into(),
        ..Default::default()
    };
    edit(&mut req);
    s.sim.clone().set_lock_flags(req).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn cases_1_to_5_override_and_join() {
    let s = TestServer::start().await;
    let a = s
        .issue(guest("a", &["room-101"], T0, T0 + 10 * DAY, "stay-a"))
        .await
        .unwrap();
    assert!(s.present("room-101", &card(&a), T0 + HOUR).await.overrode);
    // 1: B issued, not yet used: A still opens.
    let b = s
        .issue(guest("b", &["room-101"], T0 + DAY, T0 + 10 * DAY, "stay-b"))
        .await
        .unwrap();
    assert!(
        s.present("room-101", &card(&a), T0 + DAY + HOUR)
            .await
            .granted
    );
    // 3: a joiner of B issued before B's first use: its first use overrides.
    let b2 = s
        .issue(guest(
            "b2",
            &["room-101"],
            T0 + DAY,
            T0 + 10 * DAY,
            "stay-b",
        ))
        .await
        .unwrap();
    let r = s.present("room-101", &card(&b2), T0 + DAY + 2 * HOUR).await;
    assert!(r.granted && r.overrode, "{r:?}");
    // 2: A is superseded afterwards.
    assert_eq!(
        s.present("room-101", &card(&a), T0 + DAY + 3 * HOUR)
            .await
            .reason,
        "superseded"
    );
    let r = s.present("room-101", &card(&b), T0 + DAY + 4 * HOUR).await;
    assert!(r.granted && !r.overrode);
    // 4: a joiner issued after the override opens with no state change.
    let b3 = s
        .issue(guest(
            "b3",
            &["room-101"],
            T0 + DAY,
            T0 + 10 * DAY,
            "stay-b",
        ))
        .await
        .unwrap();
    let r = s.present("room-101", &card(&b3), T0 + DAY + 5 * HOUR).await;
    assert!(r.granted && !r.overrode);
    // 5: a late joiner for A's old stay is rejected.
    let a2 = s
        .issue(guest("a2", &["room-101"], T0, T0 + 10 * DAY, "stay-a"))
        .await
        .unwrap();
    assert_eq!(
        s.present("room-101", &card(&a2), T0 + DAY + 6 * HOUR)
            .await
            .reason,
        "superseded"
    );
    // 17: one override per new stay in the audit trail.
    let audit = s
        .sim
        .clone()
        .list_audit_events(sim::ListAuditEventsRequest {
            property_id: PROPERTY.into(),
            entrance_id: "room-101".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    assert_eq!(audit.iter().filter(|e| e.overrode).count(), 2);
    assert_eq!(audit.len(), 7);
}

#[tokio::test(flavor = "multi_thread")]
async fn case_10_clock_skew_is_judged_by_the_lock() {
    let s = TestServer::start().await;
    let k = s
        .issue(guest("a", &["room-102"], T0 + DAY, T0 + 2 * DAY, "stay-a"))
        .await
        .unwrap();
    s.sim
        .clone()
        .set_clock_skew(sim::SetClockSkewRequest {
            property_id: PROPERTY.into(),
            entrance_id: "room-102".into(),
            skew_seconds: -2 * HOUR,
        })
        .await
        .unwrap();
    // Real time is past the start, the lock's clock is not.
    assert_eq!(
        s.present("room-102", &card(&k), T0 + DAY + HOUR)
            .await
            .reason,
        "not_yet_valid"
    );
    assert!(
        s.present("room-102", &card(&k), T0 + DAY + 3 * HOUR)
            .await
            .granted
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cases_11_13_14_deadbolt_inhibit_and_blocked_cards() {
    let s = TestServer::start().await;
    let a = s
        .issue(guest("a", &["room-201"], T0, T0 + 5 * DAY, "stay-a"))
        .await
        .unwrap();
    let a2 = s
        .issue(guest("a2", &["room-201"], T0, T0 + 5 * DAY, "stay-a"))
        .await
        .unwrap();
    assert!(s.present("room-201", &card(&a), T0 + HOUR).await.granted);
    // 14: blocking one card id leaves the co-guest's copy working.
    let blocked_id = a.credentials[0].credential_id.clone();
    flags(&s, "room-201", |f| {
        f.block_card_ids = vec![blocked_id.clone()]
    })
    .await;
    assert_eq!(
        s.present("room-201", &card(&a), T0 + 2 * HOUR).await.reason,
        "card_blocked"
    );
    assert!(
        s.present("room-201", &card(&a2), T0 + 2 * HOUR)
            .await
            .granted
    );
    // 11: the deadbolt stops a guest, and a new stay's key neither opens nor overrides.
    let b = s
        .issue(guest("b", &["room-201"], T0, T0 + 5 * DAY, "stay-b"))
        .await
        .unwrap();
    flags(&s, "room-201", |f| f.deadbolt_engaged = Some(true)).await;
    assert_eq!(
        s.present("room-201", &card(&b), T0 + 3 * HOUR).await.reason,
        "deadbolt"
    );
    assert_eq!(s.lock_state("room-201").await.guest_sequence, 1);
    flags(&s, "room-201", |f| f.deadbolt_engaged = Some(false)).await;
    // 13: guest-cancel rejects the current guests until a newer guest key is used.
    flags(&s, "room-201", |f| f.guest_cancelled = Some(true)).await;
    assert_eq!(
        s.present("room-201", &card(&a2), T0 + 4 * HOUR)
            .await
            .reason,
        "guest_cancelled"
    );
    let r = s.present("room-201", &card(&b), T0 + 5 * HOUR).await;
    assert!(r.granted && r.overrode, "{r:?}");
    assert!(!s.lock_state("room-201").await.guest_cancelled);
}

#[tokio::test(flavor = "multi_thread")]
async fn case_15_wrong_room_wrong_property_and_forgeries_change_nothing() {
    let s = TestServer::start().await;
    let a = s
        .issue(guest("a", &["room-101"], T0, T0 + DAY, "stay-a"))
        .await
        .unwrap();
    assert_eq!(
        s.present("room-102", &card(&a), T0 + HOUR).await.reason,
        "wrong_room"
    );
    let mut forged = card(&a);
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    assert_eq!(
        s.present("room-101", &forged, T0 + HOUR).await.reason,
        "invalid"
    );
    assert_eq!(
        s.present("room-101", "not a card", T0 + HOUR).await.reason,
        "invalid"
    );
    let state = s.lock_state("room-102").await;
    assert_eq!((state.guest_sequence, state.audit_events), (0, 1));
    assert_eq!(s.lock_state("room-101").await.guest_sequence, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn revoking_an_offline_key_warns_that_the_card_still_opens() {
    let s = TestServer::start().await;
    let a = s
        .issue(guest("a", &["room-101", "lobby"], T0, T0 + DAY, "stay-a"))
        .await
        .unwrap();
    let revoked = s.revoke_key(&a.key_id).await.unwrap();
    assert_eq!(revoked.keys[0].state(), pb::KeyState::Revoked);
    let warning = revoked
        .warnings
        .iter()
        .find(|w| w.code == "OFFLINE_CREDENTIAL_STILL_VALID")
        .expect("a warning");
    assert!(warning.message.contains("room-101") && warning.message.contains("lobby"));
    assert!(
        !warning.message.contains(&card(&a)),
        "no card data in messages"
    );
    // Not pretending: the physical card still opens.
    assert!(s.present("room-101", &card(&a), T0 + HOUR).await.granted);
    // The key shows the warning when read back.
    let read = s.get(&a.key_id).await.unwrap();
    assert!(read
        .warnings
        .iter()
        .any(|w| w.code == "OFFLINE_CREDENTIAL_STILL_VALID"));
}
