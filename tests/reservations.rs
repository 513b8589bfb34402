//! The Seam guide's reservation rules and scenarios, end to end over gRPC
//! against the simulated offline lock.
mod common;

use common::*;
use keysmith_api::v1 as pb;
use pb::ReservationBehaviour::{Join, Override, Standard};
use tonic::Code;

#[tokio::test(flavor = "multi_thread")]
async fn back_to_back_reservations_override_on_first_use() {
    let s = TestServer::start().await;
    let a = s
        .issue(guest("guest-1", &["room-101"], T0, T0 + 4 * DAY, "stay-1"))
        .await
        .unwrap();
    let b_start = T0 + 4 * DAY + 4 * HOUR;
    let b = s
        .issue(guest(
            "guest-2",
            &["room-101"],
            b_start,
            b_start + 2 * DAY,
            "stay-2",
        ))
        .await
        .unwrap();
    assert_eq!(behaviours(&a), [("room-101".into(), Override)]);
    assert_eq!(behaviours(&b), [("room-101".into(), Override)]);

    // A opens up to check-out; nobody in between; B from check-in, overriding A.
    let r = s.present("room-101", &card(&a), T0 + 4 * DAY - 60).await;
    assert!(r.granted, "{r:?}");
    let between = T0 + 4 * DAY + HOUR;
    assert_eq!(
        s.present("room-101", &card(&a), between).await.reason,
        "expired"
    );
    assert_eq!(
        s.present("room-101", &card(&b), between).await.reason,
        "not_yet_valid"
    );
    let r = s.present("room-101", &card(&b), b_start).await;
    assert!(r.granted && r.overrode, "{r:?}");
    assert_eq!(
        s.present("room-101", &card(&a), b_start + 60).await.reason,
        "expired",
        "A has checked out: its window is judged before its superseded sequence"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn several_guests_on_one_reservation_join() {
    let s = TestServer::start().await;
    let g1 = s
        .issue(guest("g1", &["room-102"], T0, T0 + 3 * DAY, "stay-7"))
        .await
        .unwrap();
    let g2 = s
        .issue(guest("g2", &["room-102"], T0, T0 + 3 * DAY, "stay-7"))
        .await
        .unwrap();
    assert_eq!(behaviours(&g2), [("room-102".into(), Join)]);
    let first = s.present("room-102", &card(&g1), T0 + HOUR).await;
    assert!(first.granted && first.overrode);
    // The joiner opens without changing the lock, and so does g1 afterwards.
    let joined = s.present("room-102", &card(&g2), T0 + 2 * HOUR).await;
    assert!(joined.granted && !joined.overrode, "{joined:?}");
    assert!(
        s.present("room-102", &card(&g1), T0 + 3 * HOUR)
            .await
            .granted
    );
    let listed = s
        .list(pb::ListKeysRequest {
            property_id: PROPERTY.into(),
            reservation_key: "stay-7".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.keys.len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn relocation_clears_the_reservation_then_issues_anew() {
    let s = TestServer::start().await;
    let old = s
        .issue(guest("guest-1", &["room-201"], T0, T0 + 4 * DAY, "stay-1"))
        .await
        .unwrap();
    // Changing doors while the reservation holds is refused, and changes nothing.
    let err = s
        .issue(guest("guest-1", &["room-203"], T0, T0 + 4 * DAY, "stay-1"))
        .await
        .unwrap_err();
    assert_eq!(
        reason(&err),
        (
            Code::FailedPrecondition,
            "RESERVATION_ENTRANCE_CHANGE_REQUIRES_CLEANUP".into()
        )
    );
    assert_eq!(
        s.get(&old.key_id).await.unwrap().state(),
        pb::KeyState::Active
    );

    let revoked = s.revoke_reservation("stay-1").await.unwrap();
    assert_eq!(revoked.keys.len(), 1);
    assert_eq!(revoked.keys[0].state(), pb::KeyState::Revoked);
    assert!(revoked.keys[0].revoked_at.is_some());
    assert!(revoked
        .warnings
        .iter()
        .any(|w| w.code == "OFFLINE_CREDENTIAL_STILL_VALID"));

    let new = s
        .issue(guest(
            "guest-1",
            &["room-203"],
            T0 + 30 * 60,
            T0 + 4 * DAY,
            "stay-1",
        ))
        .await
        .unwrap();
    assert_eq!(behaviours(&new), [("room-203".into(), Override)]);
    // The old room keeps accepting the old card until overridden or expired.
    assert!(s.present("room-201", &card(&old), T0 + DAY).await.granted);
    assert!(s.present("room-203", &card(&new), T0 + DAY).await.granted);
}

#[tokio::test(flavor = "multi_thread")]
async fn changing_the_window_requires_re_encoding_as_a_joiner() {
    let s = TestServer::start().await;
    let g1 = s
        .issue(guest("g1", &["room-101"], T0, T0 + 4 * DAY, "stay-3"))
        .await
        .unwrap();
    let g2 = s
        .issue(guest("g2", &["room-101"], T0, T0 + 4 * DAY, "stay-3"))
        .await
        .unwrap();
    assert!(s.present("room-101", &card(&g2), T0 + HOUR).await.granted);

    let updated = s
        .client
        .clone()
        .update_key(pb::UpdateKeyRequest {
            property_id: PROPERTY.into(),
            request_id: "upd-1".into(),
            key_id: g1.key_id.clone(),
            starts_at: Some(ts(T0)),
            ends_at: Some(ts(T0 + 6 * DAY)),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.state(), pb::KeyState::EncodingRequired);
    assert!(updated
        .warnings
        .iter()
        .any(|w| w.code == "ENCODING_REQUIRED"));
    assert!(updated.credentials.iter().all(|c| c.encoding_required));
    assert_eq!(
        s.get(&g1.key_id).await.unwrap().state(),
        pb::KeyState::EncodingRequired
    );
    // The card in the guest's hand still carries the old end.
    assert_eq!(
        s.present("room-101", &card(&g1), T0 + 5 * DAY).await.reason,
        "expired"
    );

    let encoded = s
        .client
        .clone()
        .encode_key(pb::EncodeKeyRequest {
            property_id: PROPERTY.into(),
            request_id: String::new(),
            key_id: g1.key_id.clone(),
            encoder_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(encoded.state(), pb::KeyState::Active);
    assert!(encoded
        .warnings
        .iter()
        .all(|w| w.code != "ENCODING_REQUIRED"));
    assert_ne!(card(&encoded), card(&g1));
    // The re-encoded card joins: it opens without cancelling the co-guest.
    let r = s.present("room-101", &card(&encoded), T0 + 2 * DAY).await;
    assert!(r.granted && !r.overrode, "{r:?}");
    assert!(
        s.present("room-101", &card(&g2), T0 + 2 * DAY + 60)
            .await
            .granted
    );
    assert!(
        s.present("room-101", &card(&encoded), T0 + 5 * DAY)
            .await
            .granted
    );

    // Re-encoding again is refused: nothing to do.
    let err = s
        .client
        .clone()
        .encode_key(pb::EncodeKeyRequest {
            property_id: PROPERTY.into(),
            key_id: g1.key_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        reason(&err),
        (Code::FailedPrecondition, "ENCODING_NOT_REQUIRED".into())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_window_change_must_still_overlap_the_co_guests() {
    let s = TestServer::start().await;
    let _g1 = s
        .issue(guest("g1", &["room-101"], T0, T0 + 2 * DAY, "stay-9"))
        .await
        .unwrap();
    let g2 = s
        .issue(guest("g2", &["room-101"], T0, T0 + 2 * DAY, "stay-9"))
        .await
        .unwrap();
    let err = s
        .update_window(&g2.key_id, T0 + 3 * DAY, T0 + 4 * DAY)
        .await
        .unwrap_err();
    assert_eq!(
        reason(&err),
        (
            Code::FailedPrecondition,
            "RESERVATION_TIME_FRAMES_MUST_OVERLAP".into()
        )
    );
    assert_eq!(
        s.get(&g2.key_id).await.unwrap().ends_at,
        Some(ts(T0 + 2 * DAY))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn mixed_grants_apply_reservation_behaviour_per_entrance() {
    let s = TestServer::start().await;
    let key = s
        .issue(guest(
            "guest-1",
            &["room-101", "gym", "lobby"],
            T0,
            T0 + 4 * DAY,
            "stay-1",
        ))
        .await
        .unwrap();
    assert_eq!(
        behaviours(&key),
        [
            ("room-101".into(), Override),
            ("gym".into(), Standard),
            ("lobby".into(), Standard)
        ]
    );
    let applied: Vec<bool> = key
        .entrances
        .iter()
        .map(|e| e.reservation_applied)
        .collect();
    assert_eq!(applied, [true, false, false]);
    // The gym is outside the subset check: a joiner may add or drop it freely.
    let joiner = s
        .issue(guest(
            "guest-2",
            &["room-101", "pool"],
            T0,
            T0 + DAY,
            "stay-1",
        ))
        .await
        .unwrap();
    assert_eq!(
        behaviours(&joiner),
        [("room-101".into(), Join), ("pool".into(), Standard)]
    );
    // Common doors open and never override.
    let r = s.present("lobby", &card(&key), T0 + HOUR).await;
    assert!(r.granted && !r.overrode);
    assert_eq!(s.lock_state("lobby").await.guest_sequence, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn each_rule_has_its_error_and_changes_nothing() {
    let s = TestServer::start().await;
    let base = s
        .issue(guest("g1", &["room-101"], T0, T0 + 4 * DAY, "stay-1"))
        .await
        .unwrap();
    let cases: Vec<(pb::IssueRequest, Code, &str)> = vec![
        (
            guest("g1", &["gym", "pool"], T0, T0 + DAY, "stay-x"),
            Code::InvalidArgument,
            "RESERVATION_KEY_NOT_SUPPORTED",
        ),
        (
            guest("g1", &["room-401"], T0, T0 + DAY, ""),
            Code::InvalidArgument,
            "RESERVATION_KEY_REQUIRED",
        ),
        (
            guest("g3", &["room-101", "room-102"], T0, T0 + DAY, "stay-1"),
            Code::FailedPrecondition,
            "RESERVATION_JOINER_ENTRANCE_SET_CONFLICT",
        ),
        (
            guest("g3", &["room-102"], T0, T0 + DAY, "stay-1"),
            Code::FailedPrecondition,
            "RESERVATION_ENTRANCE_CHANGE_REQUIRES_CLEANUP",
        ),
        (
            guest("g3", &["room-101"], T0 + 5 * DAY, T0 + 8 * DAY, "stay-1"),
            Code::FailedPrecondition,
            "RESERVATION_TIME_FRAMES_MUST_OVERLAP",
        ),
    ];
    for (req, code, want) in cases {
        let err = s.issue(req.clone()).await.unwrap_err();
        assert_eq!(reason(&err), (code, want.to_string()), "{req:?}");
    }
    let all = s
        .list(pb::ListKeysRequest {
            property_id: PROPERTY.into(),
            include_revoked: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.keys.len(), 1, "only the first key exists");
    assert_eq!(all.keys[0].key_id, base.key_id);
    // A guest with a reservation_key is fine on the entrance that requires one.
    s.issue(guest("g4", &["room-401"], T0, T0 + DAY, "stay-401"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn staff_keys_never_take_part_in_reservations() {
    let s = TestServer::start().await;
    let guest_key = s
        .issue(guest("g1", &["room-101"], T0, T0 + 4 * DAY, "stay-1"))
        .await
        .unwrap();
    let mut staff = guest(
        "housekeeper-1",
        &["room-101", "room-102", "room-401"],
        T0,
        T0 + 8 * HOUR,
        "",
    );
    staff.role = pb::Role::Staff as i32;
    let staff_key = s.issue(staff.clone()).await.unwrap();
    assert!(staff_key.entrances.iter().all(|e| !e.reservation_applied));
    assert!(
        s.present("room-101", &card(&guest_key), T0 + HOUR)
            .await
            .granted
    );
    let r = s
        .present("room-101", &card(&staff_key), T0 + 2 * HOUR)
        .await;
    assert!(r.granted && !r.overrode, "{r:?}");
    // The guest still gets in after the staff visit; staff is outside the shift later.
    assert!(
        s.present("room-101", &card(&guest_key), T0 + 3 * HOUR)
            .await
            .granted
    );
    assert_eq!(
        s.present("room-101", &card(&staff_key), T0 + 9 * HOUR)
            .await
            .reason,
        "expired"
    );

    staff.reservation_key = "stay-1".into();
    let err = s.issue(staff).await.unwrap_err();
    assert_eq!(
        reason(&err),
        (
            Code::InvalidArgument,
            "RESERVATION_KEY_NOT_ALLOWED_FOR_STAFF".into()
        )
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn spaces_expand_to_their_entrances() {
    let s = TestServer::start().await;
    let mut req = guest("g1", &[], T0, T0 + DAY, "suite-stay");
    req.space_ids = vec!["suite-301".into(), "common".into()];
    let key = s.issue(req).await.unwrap();
    let ids: Vec<&str> = key
        .entrances
        .iter()
        .map(|e| e.entrance_id.as_str())
        .collect();
    assert_eq!(
        ids,
        [
            "suite-301-main",
            "suite-301-bedroom",
            "lobby",
            "gym",
            "pool"
        ]
    );
    // A joiner may take a subset of the suite.
    let joiner = s
        .issue(guest(
            "g2",
            &["suite-301-bedroom"],
            T0,
            T0 + DAY,
            "suite-stay",
        ))
        .await
        .unwrap();
    assert_eq!(behaviours(&joiner), [("suite-301-bedroom".into(), Join)]);
}

/// A reservation whose keys have all expired is still established: its
/// reservation_key is reused for other doors only after Revoke by
/// reservation_key clears it (the guide: non-overlapping stays use another
/// reservation_key).
#[tokio::test(flavor = "multi_thread")]
async fn an_expired_reservation_is_established_anew_only_after_a_clear() {
    let s = TestServer::start().await;
    let old = s
        .issue(guest("g1", &["room-101"], T0, T0 + DAY, "stay-reused"))
        .await
        .unwrap();
    s.clock.set(T0 + 2 * DAY);
    assert_eq!(
        s.get(&old.key_id).await.unwrap().state(),
        pb::KeyState::Expired
    );
    let again = guest(
        "g1",
        &["room-102"],
        T0 + 2 * DAY,
        T0 + 3 * DAY,
        "stay-reused",
    );
    let err = s.issue(again.clone()).await.unwrap_err();
    assert_eq!(
        reason(&err),
        (
            Code::FailedPrecondition,
            "RESERVATION_ENTRANCE_CHANGE_REQUIRES_CLEANUP".into()
        )
    );
    let cleared = s.revoke_reservation("stay-reused").await.unwrap();
    assert_eq!(cleared.keys.len(), 1);
    assert_eq!(cleared.keys[0].key_id, old.key_id);
    let new = s.issue(again).await.unwrap();
    assert_eq!(behaviours(&new), [("room-102".into(), Override)]);
}
