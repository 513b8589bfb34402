//! A reservation is the history of its keys, not the clock: keys whose
//! window has ended still belong to their reservation, so a late card for an
//! ended stay joins it (and never overrides the next guest), the rules are
//! judged against every key the reservation has had, and Revoke by
//! reservation_key clears all of them. Each case is checked at the door.
mod common;

use common::*;
use keysmith_api::v1 as pb;
use pb::ReservationBehaviour::{Join, Override, Standard};
use tonic::Code;

fn warning_codes(key: &pb::AccessKey) -> Vec<String> {
    key.warnings.iter().map(|w| w.code.clone()).collect()
}

fn live_keys_of(listed: &pb::ListKeysResponse) -> Vec<String> {
    listed
        .keys
        .iter()
        .filter(|k| k.state() != pb::KeyState::Revoked)
        .map(|k| k.key_id.clone())
        .collect()
}

async fn keys_of_reservation(s: &TestServer, rk: &str) -> pb::ListKeysResponse {
    s.list(pb::ListKeysRequest {
        property_id: PROPERTY.into(),
        reservation_key: rk.into(),
        include_revoked: true,
        ..Default::default()
    })
    .await
    .unwrap()
}

/// Defect 1: stay A ended, the next guest B has used the room; one more
/// card under A's reservation_key joins A's stay. It carries A's value, so
/// the lock refuses it as superseded, and B keeps getting in.
#[tokio::test(flavor = "multi_thread")]
async fn a_late_card_for_an_ended_stay_never_overrides_the_next_guest() {
    let s = TestServer::start().await;
    let a_end = T0 + 2 * DAY;
    let a = s
        .issue(guest("guest-a", &["room-101"], T0, a_end, "stay-a"))
        .await
        .unwrap();
    assert!(s.present("room-101", &card(&a), T0 + HOUR).await.overrode);

    // A has checked out; B checks in and uses the room.
    s.clock.set(a_end + HOUR);
    let b_start = a_end + 4 * HOUR;
    let b = s
        .issue(guest(
            "guest-b",
            &["room-101"],
            b_start,
            b_start + 2 * DAY,
            "stay-b",
        ))
        .await
        .unwrap();
    let r = s.present("room-101", &card(&b), b_start + HOUR).await;
    assert!(r.granted && r.overrode, "{r:?}");

    // The desk makes one more card for stay A (to fetch the luggage).
    let late = s
        .issue(guest(
            "guest-a",
            &["room-101"],
            a_end - HOUR,
            b_start + 2 * HOUR,
            "stay-a",
        ))
        .await
        .unwrap();
    assert_eq!(behaviours(&late), [("room-101".into(), Join)]);
    let warned = late
        .warnings
        .iter()
        .find(|w| w.code == "RESERVATION_SUPERSEDED")
        .unwrap_or_else(|| panic!("no RESERVATION_SUPERSEDED warning in {:?}", late.warnings));
    assert!(warned.message.contains("room-101"), "{}", warned.message);

    // At the door: the late card is refused, B still gets in, nothing overrode.
    let r = s.present("room-101", &card(&late), b_start + 90 * 60).await;
    assert!(!r.granted && !r.overrode, "{r:?}");
    assert_eq!(r.reason, "superseded");
    let r = s.present("room-101", &card(&b), b_start + 100 * 60).await;
    assert!(r.granted && !r.overrode, "{r:?}");
}

/// Defect 2: a key that ended, then was extended after a co-guest joined,
/// is still a member; Revoke by reservation_key clears it with the rest, in
/// one answer, before the reservation is established on other doors.
#[tokio::test(flavor = "multi_thread")]
async fn revoke_by_reservation_clears_a_key_extended_after_it_ended() {
    let s = TestServer::start().await;
    let first = s
        .issue(guest("g1", &["room-101"], T0, T0 + DAY, "stay-1"))
        .await
        .unwrap();
    s.clock.set(T0 + DAY + HOUR);
    let co_guest = s
        .issue(guest(
            "g2",
            &["room-101"],
            T0 + DAY - 2 * HOUR,
            T0 + 3 * DAY,
            "stay-1",
        ))
        .await
        .unwrap();
    assert_eq!(behaviours(&co_guest), [("room-101".into(), Join)]);
    let extended = s
        .update_window(&first.key_id, T0, T0 + 3 * DAY)
        .await
        .unwrap();
    assert_eq!(extended.state(), pb::KeyState::EncodingRequired);

    let revoked = s.revoke_reservation("stay-1").await.unwrap();
    let mut ids: Vec<String> = revoked.keys.iter().map(|k| k.key_id.clone()).collect();
    ids.sort();
    let mut want = vec![first.key_id.clone(), co_guest.key_id.clone()];
    want.sort();
    assert_eq!(ids, want, "every member is revoked, the extended one too");
    assert!(revoked
        .keys
        .iter()
        .all(|k| k.state() == pb::KeyState::Revoked));
    assert_eq!(
        s.get(&first.key_id).await.unwrap().state(),
        pb::KeyState::Revoked
    );
    assert!(live_keys_of(&keys_of_reservation(&s, "stay-1").await).is_empty());

    // Cleared: the reservation starts anew on another room, and only there.
    let moved = s
        .issue(guest(
            "g1",
            &["room-203"],
            T0 + DAY + 2 * HOUR,
            T0 + 3 * DAY,
            "stay-1",
        ))
        .await
        .unwrap();
    assert_eq!(behaviours(&moved), [("room-203".into(), Override)]);
    let r = s
        .present("room-203", &card(&moved), T0 + DAY + 3 * HOUR)
        .await;
    assert!(r.granted && r.overrode, "{r:?}");
    assert_eq!(
        s.present("room-203", &card(&co_guest), T0 + DAY + 4 * HOUR)
            .await
            .reason,
        "wrong_room"
    );
    // The old room is not the reservation's any more: a new stay there
    // overrides, and the revoked co-guest's card is superseded.
    let next = s
        .issue(guest(
            "g3",
            &["room-101"],
            T0 + DAY + 2 * HOUR,
            T0 + 4 * DAY,
            "stay-9",
        ))
        .await
        .unwrap();
    assert!(
        s.present("room-101", &card(&next), T0 + DAY + 5 * HOUR)
            .await
            .overrode
    );
    assert_eq!(
        s.present("room-101", &card(&co_guest), T0 + DAY + 6 * HOUR)
            .await
            .reason,
        "superseded"
    );
}

/// Defect 3: rule 4 holds against keys that have ended, for Issue and for
/// UpdateKey; the refused request changes nothing at the door.
#[tokio::test(flavor = "multi_thread")]
async fn time_frames_must_overlap_ended_keys_too() {
    let s = TestServer::start().await;
    let a = s
        .issue(guest("g1", &["room-101"], T0, T0 + DAY, "stay-1"))
        .await
        .unwrap();
    let co = s
        .issue(guest(
            "g2",
            &["room-101"],
            T0 + 12 * HOUR,
            T0 + DAY,
            "stay-1",
        ))
        .await
        .unwrap();
    assert!(
        s.present("room-101", &card(&a), T0 + 13 * HOUR)
            .await
            .overrode
    );

    // Three seconds after the stay's keys ended: a non-overlapping key with
    // the same reservation_key is another stay, refused.
    s.clock.set(T0 + DAY + 3);
    let err = s
        .issue(guest(
            "g1",
            &["room-101"],
            T0 + DAY + 3,
            T0 + 2 * DAY,
            "stay-1",
        ))
        .await
        .unwrap_err();
    assert_eq!(
        reason(&err),
        (
            Code::FailedPrecondition,
            "RESERVATION_TIME_FRAMES_MUST_OVERLAP".into()
        )
    );

    // Moving an ended key to a window that overlaps no other key: refused.
    let err = s
        .update_window(&a.key_id, T0 + 3 * DAY, T0 + 4 * DAY)
        .await
        .unwrap_err();
    assert_eq!(
        reason(&err),
        (
            Code::FailedPrecondition,
            "RESERVATION_TIME_FRAMES_MUST_OVERLAP".into()
        )
    );
    let unchanged = s.get(&a.key_id).await.unwrap();
    assert_eq!(unchanged.ends_at, Some(ts(T0 + DAY)));
    assert_eq!(unchanged.state(), pb::KeyState::Expired);

    // At the door, nobody new: the stay's cards have expired and nothing overrode.
    for key in [&a, &co] {
        let r = s.present("room-101", &card(key), T0 + 3 * DAY + HOUR).await;
        assert_eq!(r.reason, "expired", "{r:?}");
    }
    assert_eq!(s.lock_state("room-101").await.guest_sequence, 1);
}

/// Defect 4: a guest key without a reservation_key on a room that can
/// belong to a reservation is refused, so no guest credential leaves the
/// previous guest's card working. Common doors and staff keys are as before.
#[tokio::test(flavor = "multi_thread")]
async fn a_guest_key_on_a_reservation_capable_room_needs_a_reservation_key() {
    let s = TestServer::start().await;
    let previous = s
        .issue(guest("g1", &["room-102"], T0, T0 + DAY, "stay-1"))
        .await
        .unwrap();
    assert!(
        s.present("room-102", &card(&previous), T0 + HOUR)
            .await
            .overrode
    );

    let err = s
        .issue(guest(
            "g2",
            &["room-102", "lobby"],
            T0 + HOUR,
            T0 + 2 * DAY,
            "",
        ))
        .await
        .unwrap_err();
    assert_eq!(
        reason(&err),
        (Code::InvalidArgument, "RESERVATION_KEY_REQUIRED".into())
    );
    assert_eq!(violations(&err), ["reservation_key"]);
    let all = s
        .list(pb::ListKeysRequest {
            property_id: PROPERTY.into(),
            include_revoked: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.keys.len(), 1, "the refused key was not stored");

    // Common doors take guest keys without a reservation: standard access.
    let lobby = s
        .issue(guest("g2", &["lobby"], T0 + HOUR, T0 + 2 * DAY, ""))
        .await
        .unwrap();
    assert_eq!(behaviours(&lobby), [("lobby".into(), Standard)]);
    // Staff keys stay outside reservations.
    let mut staff = guest("cleaner", &["room-102"], T0, T0 + DAY, "");
    staff.role = pb::Role::Staff as i32;
    let staff = s.issue(staff).await.unwrap();
    assert_eq!(behaviours(&staff), [("room-102".into(), Standard)]);

    // At the door: the previous guest still gets in; the staff card opens
    // without touching the guest state.
    let r = s.present("room-102", &card(&staff), T0 + 2 * HOUR).await;
    assert!(r.granted && !r.overrode, "{r:?}");
    assert!(
        s.present("room-102", &card(&previous), T0 + 3 * HOUR)
            .await
            .granted
    );
    assert!(
        s.present("lobby", &card(&lobby), T0 + 3 * HOUR)
            .await
            .granted
    );
}

/// A joiner issued after the reservation's last key ended, before any
/// newer reservation: it joins and opens, overriding nothing, with no warning.
#[tokio::test(flavor = "multi_thread")]
async fn a_late_joiner_before_any_override_opens_and_changes_nothing() {
    let s = TestServer::start().await;
    let a = s
        .issue(guest("g1", &["room-201"], T0, T0 + DAY, "stay-1"))
        .await
        .unwrap();
    assert!(s.present("room-201", &card(&a), T0 + HOUR).await.overrode);
    s.clock.set(T0 + DAY + HOUR);
    let late = s
        .issue(guest(
            "g1",
            &["room-201"],
            T0 + DAY - HOUR,
            T0 + DAY + 3 * HOUR,
            "stay-1",
        ))
        .await
        .unwrap();
    assert_eq!(behaviours(&late), [("room-201".into(), Join)]);
    assert!(
        !warning_codes(&late).contains(&"RESERVATION_SUPERSEDED".to_string()),
        "{:?}",
        late.warnings
    );
    let r = s
        .present("room-201", &card(&late), T0 + DAY + 2 * HOUR)
        .await;
    assert!(r.granted && !r.overrode, "{r:?}");
    assert_eq!(s.lock_state("room-201").await.guest_sequence, 1);
}

/// The same after a newer reservation overrode one of the stay's two rooms:
/// the late card is refused at that room only, and the warning names it.
#[tokio::test(flavor = "multi_thread")]
async fn a_late_joiner_after_an_override_at_one_of_two_rooms() {
    let s = TestServer::start().await;
    let a = s
        .issue(guest(
            "g1",
            &["room-101", "room-102"],
            T0,
            T0 + DAY,
            "family",
        ))
        .await
        .unwrap();
    assert!(s.present("room-101", &card(&a), T0 + HOUR).await.overrode);
    assert!(s.present("room-102", &card(&a), T0 + HOUR).await.overrode);
    s.clock.set(T0 + DAY + HOUR);
    let b = s
        .issue(guest(
            "g9",
            &["room-101"],
            T0 + DAY + 2 * HOUR,
            T0 + 3 * DAY,
            "next",
        ))
        .await
        .unwrap();
    assert!(
        s.present("room-101", &card(&b), T0 + DAY + 3 * HOUR)
            .await
            .overrode
    );

    let late = s
        .issue(guest(
            "g1",
            &["room-101", "room-102"],
            T0 + DAY - HOUR,
            T0 + DAY + 6 * HOUR,
            "family",
        ))
        .await
        .unwrap();
    assert_eq!(
        behaviours(&late),
        [("room-101".into(), Join), ("room-102".into(), Join)]
    );
    let warned = late
        .warnings
        .iter()
        .find(|w| w.code == "RESERVATION_SUPERSEDED")
        .unwrap_or_else(|| panic!("no RESERVATION_SUPERSEDED warning in {:?}", late.warnings));
    assert!(warned.message.contains("room-101"), "{}", warned.message);
    assert!(!warned.message.contains("room-102"), "{}", warned.message);

    assert_eq!(
        s.present("room-101", &card(&late), T0 + DAY + 4 * HOUR)
            .await
            .reason,
        "superseded"
    );
    let r = s
        .present("room-102", &card(&late), T0 + DAY + 4 * HOUR)
        .await;
    assert!(r.granted && !r.overrode, "{r:?}");
    assert!(
        s.present("room-101", &card(&b), T0 + DAY + 5 * HOUR)
            .await
            .granted
    );
}

/// Revoking single keys does not clear the reservation: its door set and
/// its keys' time frames still hold; only Revoke by reservation_key clears.
#[tokio::test(flavor = "multi_thread")]
async fn revoking_single_keys_does_not_clear_the_reservation() {
    let s = TestServer::start().await;
    let only = s
        .issue(guest("g1", &["room-201"], T0, T0 + 2 * DAY, "stay-5"))
        .await
        .unwrap();
    s.revoke_key(&only.key_id).await.unwrap();
    let err = s
        .issue(guest("g1", &["room-203"], T0, T0 + 2 * DAY, "stay-5"))
        .await
        .unwrap_err();
    assert_eq!(
        reason(&err),
        (
            Code::FailedPrecondition,
            "RESERVATION_ENTRANCE_CHANGE_REQUIRES_CLEANUP".into()
        )
    );
    // A replacement card on the same doors joins: it carries the stay's
    // value, so it opens without cancelling anything.
    let replacement = s
        .issue(guest("g1", &["room-201"], T0, T0 + 2 * DAY, "stay-5"))
        .await
        .unwrap();
    assert_eq!(behaviours(&replacement), [("room-201".into(), Join)]);
    let r = s.present("room-201", &card(&replacement), T0 + HOUR).await;
    assert!(
        r.granted && r.overrode,
        "the stay's first use at the lock: {r:?}"
    );
    assert!(
        s.present("room-201", &card(&only), T0 + 2 * HOUR)
            .await
            .granted
    );

    let cleared = s.revoke_reservation("stay-5").await.unwrap();
    assert_eq!(cleared.keys.len(), 1, "only the live key is revoked now");
    assert_eq!(cleared.keys[0].key_id, replacement.key_id);
    let moved = s
        .issue(guest("g1", &["room-203"], T0, T0 + 2 * DAY, "stay-5"))
        .await
        .unwrap();
    assert_eq!(behaviours(&moved), [("room-203".into(), Override)]);
}

/// Membership survives a restart: it is stored, not rebuilt from the clock.
#[tokio::test(flavor = "multi_thread")]
async fn membership_is_stored_history_across_a_restart() {
    let s = TestServer::start().await;
    s.issue(guest("g1", &["room-101"], T0, T0 + DAY, "stay-r"))
        .await
        .unwrap();
    s.clock.set(T0 + 5 * DAY);
    let s = s.restart().await;
    let err = s
        .issue(guest(
            "g1",
            &["room-102"],
            T0 + 5 * DAY,
            T0 + 6 * DAY,
            "stay-r",
        ))
        .await
        .unwrap_err();
    assert_eq!(
        reason(&err).1,
        "RESERVATION_ENTRANCE_CHANGE_REQUIRES_CLEANUP"
    );
}

fn pin_key_request(holder: &str, start: i64, end: i64, rk: &str, pin: &str) -> pb::IssueRequest {
    let mut r = guest(holder, &["room-101"], start, end, rk);
    r.modes = vec![pb::CredentialMode::Pin as i32];
    r.pin = pin.into();
    r
}

/// Who a PIN typed at a keypad stands for is decided by the stored windows,
/// not by the encoder's wall clock: two keys share a PIN only when their
/// windows never overlap, and re-encoding a key for a window that now
/// overlaps another holder of its PIN gives it a new PIN instead of taking
/// the other guest's over. (The windows lie before the machine's real
/// clock, where the encoder used to forget "ended" PINs.)
#[tokio::test(flavor = "multi_thread")]
async fn a_pin_stands_for_one_key_at_a_time_whatever_the_wall_clock() {
    const PAST: i64 = 1_600_000_000; // 2020, before any machine running this
    let s = TestServer::start().await;
    s.clock.set(PAST);
    let first = s
        .issue(pin_key_request("g1", PAST, PAST + DAY, "stay-p1", "246810"))
        .await
        .unwrap();
    // Overlapping windows: the PIN is in use.
    let err = s
        .issue(pin_key_request(
            "g2",
            PAST + HOUR,
            PAST + 2 * DAY,
            "stay-p2",
            "246810",
        ))
        .await
        .unwrap_err();
    assert_eq!(reason(&err), (Code::AlreadyExists, "PIN_IN_USE".into()));
    // After the first window: the same PIN may stand for the next guest.
    let second = s
        .issue(pin_key_request(
            "g2",
            PAST + 2 * DAY,
            PAST + 3 * DAY,
            "stay-p2",
            "246810",
        ))
        .await
        .unwrap();
    let r = s.present("room-101", "246810", PAST + 2 * DAY + HOUR).await;
    assert!(r.granted && r.overrode, "the second guest's PIN: {r:?}");

    // The first key is extended over the second's stay and re-encoded.
    s.update_window(&first.key_id, PAST, PAST + 3 * DAY)
        .await
        .unwrap();
    let encoded = s
        .client
        .clone()
        .encode_key(pb::EncodeKeyRequest {
            property_id: PROPERTY.into(),
            key_id: first.key_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        warning_codes(&encoded).contains(&"PIN_CHANGED".to_string()),
        "{:?}",
        encoded.warnings
    );
    let new_pin = pin(&encoded);
    assert_ne!(new_pin, "246810");

    // At the door: the second guest's PIN is still theirs; the first guest's
    // new PIN opens as the first guest (superseded by the newer stay).
    let r = s
        .present("room-101", "246810", PAST + 2 * DAY + 2 * HOUR)
        .await;
    assert!(r.granted, "the second guest keeps their PIN: {r:?}");
    let r = s
        .present("room-101", &new_pin, PAST + 2 * DAY + 3 * HOUR)
        .await;
    assert_eq!(r.reason, "superseded", "{r:?}");
    assert_eq!(pin(&second), "246810");
}
