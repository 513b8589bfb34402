//! The plan's decisions, one situation each, with no 3RPMS and no server:
//! what 3RPMS says and what keysmith remembers in, the plan out.
use keysmith_core::Secret;

use super::*;
use crate::config::{PublishedKeyType, RoomMapping};

/// The hotel's date in every test; the round runs at noon (UTC), after
/// check-out (11:00) and before check-in (15:00).
fn day(n: i64) -> Date {
    Date::constant(2030, 3, 17)
        .checked_add(jiff::Span::new().days(n))
        .unwrap()
}

fn at(date: Date, hour: i8) -> Timestamp {
    let instant = date
        .at(hour, 0, 0, 0)
        .to_zoned(jiff::tz::TimeZone::UTC)
        .unwrap()
        .timestamp();
    Timestamp::from_micros(instant.as_microsecond())
}

fn now() -> Timestamp {
    at(day(0), 12)
}

/// From check-in on arrival to check-out on departure.
fn window(arrival: i64, departure: i64) -> Window {
    Window {
        starts_at: at(day(arrival), 15),
        ends_at: at(day(departure), 11),
    }
}

fn config() -> HotelConfig {
    HotelConfig {
        property_id: "hotel".into(),
        api_key: Secret::new("api_test".into()),
        key_type: PublishedKeyType::Pin,
        time_zone: "UTC".into(),
        check_in: "15:00".into(),
        check_out: "11:00".into(),
        sync_days: 7,
        nightly_at: "03:00".into(),
        cancelled_reservation_statuses: None,
        rooms: vec![
            RoomMapping {
                room_setup_id: "rs-101".into(),
                entrances: vec!["room-101".into()],
                spaces: vec![],
            },
            RoomMapping {
                room_setup_id: "rs-102".into(),
                entrances: vec![],
                spaces: vec!["room-102".into()],
            },
        ],
    }
}

fn stay(id: &str, room: &str, arrival: i64, departure: i64, key: Option<&str>) -> RoomStay {
    RoomStay {
        id: id.into(),
        room_setup_id: room.into(),
        arrival: day(arrival),
        departure: day(departure),
        key_id: key.map(str::to_owned),
        reservation_id: Some("res-1".into()),
        reservation_cancelled: false,
    }
}

fn record(
    stay_id: &str,
    room: &str,
    arrival: i64,
    departure: i64,
    key_id: &str,
    rpms_key_id: Option<&str>,
) -> StayRecord {
    StayRecord {
        stay_id: stay_id.into(),
        room_setup_id: room.into(),
        arrival: day(arrival),
        departure: day(departure),
        key_id: key_id.into(),
        rpms_key_id: rpms_key_id.map(str::to_owned),
        published_digest: Some([7; 32]),
    }
}

/// keysmith's memory of these records, their keys with the windows
/// their records give and not revoked.
fn remembering(records: &[StayRecord]) -> Remembered {
    Remembered {
        records: records
            .iter()
            .map(|r| (r.stay_id.clone(), r.clone()))
            .collect(),
        generations: BTreeMap::new(),
        keys: records
            .iter()
            .map(|r| {
                let window = Calendar::of(&config())
                    .unwrap()
                    .window(r.arrival, r.departure)
                    .unwrap();
                let facts = KeyFacts {
                    window,
                    revoked: false,
                };
                (r.key_id.clone(), facts)
            })
            .collect(),
    }
}

fn reading(stays: Vec<RoomStay>) -> Reading {
    Reading {
        stays,
        missing: Vec::new(),
        cancellation_unseen: false,
    }
}

fn plan_for(read: &Reading, known: &Remembered) -> Plan {
    plan(
        read,
        known,
        now(),
        &config(),
        &Calendar::of(&config()).unwrap(),
    )
    .unwrap()
}

fn removal(stay_id: &str, key_id: &str) -> Assignment {
    Assignment {
        room_stay_id: stay_id.into(),
        key_id: key_id.into(),
    }
}

fn issue(stay: RoomStay, generation: u32, publication: Publication) -> StayPlan {
    let (entrance_ids, space_ids) = match stay.room_setup_id.as_str() {
        "rs-101" => (vec!["room-101".to_owned()], vec![]),
        _ => (vec![], vec!["room-102".to_owned()]),
    };
    let window = Window {
        starts_at: at(stay.arrival, 15),
        ends_at: at(stay.departure, 11),
    };
    StayPlan {
        stay_id: stay.id.clone(),
        take_off_first: None,
        action: StayAction::Issue {
            key: KeyToIssue {
                stay,
                generation,
                window,
                entrance_ids,
                space_ids,
            },
            publication,
        },
    }
}

fn keep(record: StayRecord, publication: Publication) -> StayPlan {
    StayPlan {
        stay_id: record.stay_id.clone(),
        take_off_first: None,
        action: StayAction::Keep {
            record,
            publication,
        },
    }
}

#[test]
fn a_new_stay_gets_a_key_published_on_it() {
    let arriving = stay("s1", "rs-101", 1, 3, None);

    let plan = plan_for(&reading(vec![arriving.clone()]), &Remembered::default());

    assert_eq!(
        plan,
        Plan {
            stays: vec![issue(arriving, 0, Publication::Create { replacing: None })],
            ..Plan::default()
        }
    );
}

#[test]
fn a_deleted_stay_ends_its_record_and_revokes_its_key() {
    let known = remembering(&[record("s1", "rs-101", 1, 3, "k1", Some("rk1"))]);
    let read = Reading {
        stays: Vec::new(),
        missing: vec!["s1".into()],
        cancellation_unseen: false,
    };

    let plan = plan_for(&read, &known);

    assert_eq!(
        plan,
        Plan {
            // The stay is gone, and its assignment with it.
            ended: vec![record("s1", "rs-101", 1, 3, "k1", Some("rk1"))],
            revocations: vec!["k1".into()],
            deletions: vec!["rk1".into()],
            ..Plan::default()
        }
    );
}

#[test]
fn a_stay_no_longer_returned_may_be_cancelled_where_no_status_shows_it() {
    let known = remembering(&[record("s1", "rs-101", 1, 3, "k1", Some("rk1"))]);
    let read = Reading {
        stays: Vec::new(),
        missing: vec!["s1".into()],
        cancellation_unseen: true,
    };

    let plan = plan_for(&read, &known);

    assert_eq!(
        plan,
        Plan {
            // Cancelled (the stay still holds the key) or deleted (3RPMS
            // refuses the removal, as expected): taken off either way.
            removals: vec![removal("s1", "rk1")],
            gone: vec!["s1".into()],
            ended: vec![record("s1", "rs-101", 1, 3, "k1", Some("rk1"))],
            revocations: vec!["k1".into()],
            deletions: vec!["rk1".into()],
            ..Plan::default()
        }
    );
}

#[test]
fn a_cancelled_stay_loses_its_key_in_keysmith_and_in_3rpms() {
    let known = remembering(&[record("s1", "rs-101", 1, 3, "k1", Some("rk1"))]);
    let mut cancelled = stay("s1", "rs-101", 1, 3, Some("rk1"));
    cancelled.reservation_cancelled = true;

    let plan = plan_for(&reading(vec![cancelled]), &known);

    assert_eq!(
        plan,
        Plan {
            removals: vec![removal("s1", "rk1")],
            ended: vec![record("s1", "rs-101", 1, 3, "k1", Some("rk1"))],
            revocations: vec!["k1".into()],
            deletions: vec!["rk1".into()],
            ..Plan::default()
        }
    );
}

#[test]
fn a_moved_departure_moves_the_keys_window() {
    let known = remembering(&[record("s1", "rs-101", 1, 3, "k1", Some("rk1"))]);

    let plan = plan_for(
        &reading(vec![stay("s1", "rs-101", 1, 5, Some("rk1"))]),
        &known,
    );

    assert_eq!(
        plan,
        Plan {
            stays: vec![keep(
                record("s1", "rs-101", 1, 5, "k1", Some("rk1")),
                Publication::Held
            )],
            window_updates: vec![WindowUpdate {
                key_id: "k1".into(),
                window: window(1, 5),
            }],
            // A PIN re-encoded for the new window is published again.
            credential_checks: vec!["s1".into()],
            ..Plan::default()
        }
    );
}

#[test]
fn a_moved_arrival_moves_the_keys_window() {
    let known = remembering(&[record("s1", "rs-101", 2, 4, "k1", Some("rk1"))]);

    let plan = plan_for(
        &reading(vec![stay("s1", "rs-101", 0, 4, Some("rk1"))]),
        &known,
    );

    assert_eq!(
        plan.window_updates,
        [WindowUpdate {
            key_id: "k1".into(),
            window: window(0, 4),
        }]
    );
    assert_eq!(
        plan.stays,
        [keep(
            record("s1", "rs-101", 0, 4, "k1", Some("rk1")),
            Publication::Held
        )]
    );
    assert!(plan.revocations.is_empty() && plan.ended.is_empty());
}

#[test]
fn a_stay_moved_to_another_room_gets_a_new_key_of_the_next_generation() {
    let mut known = remembering(&[record("s1", "rs-101", 1, 3, "k1", Some("rk1"))]);
    // The stay's key was ended twice before (cancelled, re-activated).
    known.generations.insert("s1".into(), 2);
    let moved = stay("s1", "rs-102", 1, 3, Some("rk1"));

    let plan = plan_for(&reading(vec![moved.clone()]), &known);

    let mut without_key = moved;
    without_key.key_id = None;
    assert_eq!(
        plan,
        Plan {
            removals: vec![removal("s1", "rk1")],
            ended: vec![record("s1", "rs-101", 1, 3, "k1", Some("rk1"))],
            stays: vec![issue(
                without_key,
                3,
                Publication::Create { replacing: None }
            )],
            revocations: vec!["k1".into()],
            deletions: vec!["rk1".into()],
            ..Plan::default()
        }
    );
}

#[test]
fn a_key_revoked_through_keysmith_is_replaced() {
    let mut known = remembering(&[record("s1", "rs-101", 1, 3, "k1", Some("rk1"))]);
    known.keys.get_mut("k1").unwrap().revoked = true;
    let holding = stay("s1", "rs-101", 1, 3, Some("rk1"));

    let plan = plan_for(&reading(vec![holding.clone()]), &known);

    let mut without_key = holding;
    without_key.key_id = None;
    assert_eq!(plan.removals, [removal("s1", "rk1")]);
    assert_eq!(
        plan.stays,
        [issue(
            without_key,
            1,
            Publication::Create { replacing: None }
        )]
    );
    // Revoked again: a revoked key is answered as it is, a REVOKING one
    // completed.
    assert_eq!(plan.revocations, ["k1"]);
    assert_eq!(plan.deletions, ["rk1"]);
}

#[test]
fn stays_that_departed_get_nothing() {
    let read = reading(vec![
        stay("left-yesterday", "rs-101", -3, -1, None),
        stay("left-last-week", "rs-102", -9, -7, None),
    ]);

    assert_eq!(plan_for(&read, &Remembered::default()), Plan::default());
}

#[test]
fn a_stay_departing_today_after_check_out_gets_no_key() {
    let read = reading(vec![stay("leaving", "rs-101", -2, 0, None)]);

    assert_eq!(plan_for(&read, &Remembered::default()), Plan::default());
}

/// The key's holder left: whatever the key's window said, it goes now, in
/// keysmith and in 3RPMS, not at the next nightly sync.
fn departed_now(plan: Plan) {
    assert_eq!(
        plan,
        Plan {
            removals: vec![removal("s1", "rk1")],
            ended: vec![record("s1", "rs-101", -1, 3, "k1", Some("rk1"))],
            revocations: vec!["k1".into()],
            deletions: vec!["rk1".into()],
            ..Plan::default()
        }
    );
}

#[test]
fn a_departure_moved_to_this_mornings_check_out_revokes_the_key_at_once() {
    let known = remembering(&[record("s1", "rs-101", -1, 3, "k1", Some("rk1"))]);

    departed_now(plan_for(
        &reading(vec![stay("s1", "rs-101", -1, 0, Some("rk1"))]),
        &known,
    ));
}

#[test]
fn a_departure_moved_to_one_minute_ago_revokes_the_key_at_once() {
    // Check-out at 11:59, the round at noon.
    let config = HotelConfig {
        check_out: "11:59".into(),
        ..config()
    };
    let calendar = Calendar::of(&config).unwrap();
    let mut known = remembering(&[record("s1", "rs-101", -1, 3, "k1", Some("rk1"))]);
    known.keys.get_mut("k1").unwrap().window = calendar.window(day(-1), day(3)).unwrap();

    let plan = plan(
        &reading(vec![stay("s1", "rs-101", -1, 0, Some("rk1"))]),
        &known,
        now(),
        &config,
        &calendar,
    )
    .unwrap();

    departed_now(plan);
}

#[test]
fn a_departure_moved_earlier_but_still_ahead_shortens_the_key() {
    let known = remembering(&[record("s1", "rs-101", -1, 5, "k1", Some("rk1"))]);

    let plan = plan_for(
        &reading(vec![stay("s1", "rs-101", -1, 1, Some("rk1"))]),
        &known,
    );

    assert_eq!(
        plan.window_updates,
        [WindowUpdate {
            key_id: "k1".into(),
            window: window(-1, 1),
        }]
    );
    assert!(plan.revocations.is_empty() && plan.removals.is_empty());
}

#[test]
fn a_stay_beyond_the_horizon_gets_no_key_until_it_enters_it() {
    // The horizon is today and the 6 days after (sync_days = 7).
    let far = stay("far", "rs-101", 7, 9, None);
    let edge = stay("edge", "rs-101", 6, 9, None);

    let plan = plan_for(
        &reading(vec![far.clone(), edge.clone()]),
        &Remembered::default(),
    );

    assert_eq!(
        plan.stays,
        [issue(edge, 0, Publication::Create { replacing: None })]
    );
    assert_eq!(plan.skipped.len(), 1);
    assert_eq!(plan.skipped[0].0, "far");
    assert!(plan.skipped[0].1.contains("horizon"), "{:?}", plan.skipped);
}

#[test]
fn a_horizon_of_one_day_keys_today_only() {
    let config = HotelConfig {
        sync_days: 1,
        ..config()
    };
    let tomorrow = stay("tomorrow", "rs-101", 1, 3, None);

    let plan = plan(
        &reading(vec![tomorrow]),
        &Remembered::default(),
        now(),
        &config,
        &Calendar::of(&config).unwrap(),
    )
    .unwrap();

    assert!(plan.stays.is_empty(), "{plan:?}");
}

#[test]
fn a_stay_moved_beyond_the_horizon_loses_its_key() {
    let known = remembering(&[record("s1", "rs-101", 1, 3, "k1", Some("rk1"))]);

    let plan = plan_for(
        &reading(vec![stay("s1", "rs-101", 20, 22, Some("rk1"))]),
        &known,
    );

    assert_eq!(plan.removals, [removal("s1", "rk1")]);
    assert_eq!(plan.revocations, ["k1"]);
    assert_eq!(plan.deletions, ["rk1"]);
    assert!(plan.stays.is_empty());
}

#[test]
fn an_unchanged_stay_changes_nothing() {
    let known = remembering(&[record("s1", "rs-101", 1, 3, "k1", Some("rk1"))]);

    let plan = plan_for(
        &reading(vec![stay("s1", "rs-101", 1, 3, Some("rk1"))]),
        &known,
    );

    assert_eq!(
        plan,
        Plan {
            stays: vec![keep(
                record("s1", "rs-101", 1, 3, "k1", Some("rk1")),
                Publication::Held
            )],
            credential_checks: vec!["s1".into()],
            ..Plan::default()
        }
    );
}

#[test]
fn a_stay_split_from_another_shares_its_key_and_widens_its_window() {
    let known = remembering(&[record("s1", "rs-101", 1, 3, "k1", Some("rk1"))]);
    // 3RPMS copies the key onto the stay split off for the later nights.
    let split = stay("s2", "rs-101", 3, 5, Some("rk1"));

    let plan = plan_for(&reading(vec![split]), &known);

    assert_eq!(
        plan.stays,
        [keep(
            record("s2", "rs-101", 3, 5, "k1", Some("rk1")),
            Publication::Held
        )]
    );
    assert_eq!(
        plan.window_updates,
        [WindowUpdate {
            key_id: "k1".into(),
            window: window(1, 5),
        }]
    );
    assert!(plan.revocations.is_empty() && plan.deletions.is_empty());
}

#[test]
fn a_split_stay_in_another_room_loses_the_key_and_gets_its_own() {
    let known = remembering(&[record("s1", "rs-101", 1, 3, "k1", Some("rk1"))]);
    let split = stay("s2", "rs-102", 3, 5, Some("rk1"));

    let plan = plan_for(&reading(vec![split.clone()]), &known);

    let mut issued = issue(
        split,
        0,
        Publication::Create {
            replacing: Some("rk1".into()),
        },
    );
    issued.take_off_first = Some("rk1".into());
    assert_eq!(plan.stays, [issued]);
    assert!(plan.revocations.is_empty() && plan.deletions.is_empty());
}

#[test]
fn another_integrations_key_is_left_on_the_stay() {
    let plan = plan_for(
        &reading(vec![stay("s1", "rs-101", 1, 3, Some("rk-theirs"))]),
        &Remembered::default(),
    );

    assert_eq!(
        plan.stays,
        [StayPlan {
            stay_id: "s1".into(),
            take_off_first: None,
            action: StayAction::Skip {
                why: "the stay holds room access key rk-theirs, which keysmith did not \
                      create; only its creator may remove it"
                    .into(),
            },
        }]
    );
}

#[test]
fn a_room_with_no_mapping_is_skipped_and_its_record_ended() {
    let known = remembering(&[record("s1", "rs-999", 1, 3, "k1", Some("rk1"))]);

    let plan = plan_for(
        &reading(vec![stay("s1", "rs-999", 1, 3, Some("rk1"))]),
        &known,
    );

    assert_eq!(
        plan.skipped,
        [(
            "s1".to_owned(),
            "room rs-999 has no entrance mapping".to_owned()
        )]
    );
    assert_eq!(plan.removals, [removal("s1", "rk1")]);
    assert_eq!(plan.revocations, ["k1"]);
    assert!(plan.stays.is_empty());
}

#[test]
fn a_3rpms_key_that_3rpms_deleted_is_published_again() {
    // key_deleted forgot the 3RPMS key on the record.
    let known = remembering(&[record("s1", "rs-101", 1, 3, "k1", None)]);

    let plan = plan_for(&reading(vec![stay("s1", "rs-101", 1, 3, None)]), &known);

    assert_eq!(
        plan,
        Plan {
            stays: vec![keep(
                record("s1", "rs-101", 1, 3, "k1", None),
                Publication::Create { replacing: None }
            )],
            ..Plan::default()
        }
    );
}

#[test]
fn a_stay_holding_a_key_keysmith_replaced_gets_the_current_one() {
    // Two stays shared rk1; s2 was republished as rk2 (re-encoded), and
    // 3RPMS still shows rk1 on it.
    let known = remembering(&[
        record("s1", "rs-101", 1, 3, "k1", Some("rk1")),
        record("s2", "rs-101", 3, 5, "k1", Some("rk2")),
    ]);

    let plan = plan_for(
        &reading(vec![stay("s2", "rs-101", 3, 5, Some("rk1"))]),
        &known,
    );

    assert_eq!(
        plan.stays,
        [keep(
            record("s2", "rs-101", 3, 5, "k1", Some("rk2")),
            Publication::Assign {
                key_id: "rk2".into(),
                replacing: Some("rk1".into()),
            }
        )]
    );
}

#[test]
fn only_the_keys_of_the_stays_read_and_of_their_3rpms_keys_are_consulted() {
    let records = remembering(&[
        record("s1", "rs-101", 1, 3, "k1", Some("rk1")),
        record("s2", "rs-101", 1, 3, "k2", Some("rk2")),
        record("s3", "rs-101", 1, 3, "k3", Some("rk3")),
    ])
    .records;
    let read = reading(vec![
        stay("s1", "rs-101", 1, 3, Some("rk1")),
        // A stay keysmith has no record of, holding s2's 3RPMS key.
        stay("s9", "rs-101", 1, 3, Some("rk2")),
    ]);

    assert_eq!(
        keys_consulted(&read, &records),
        BTreeSet::from(["k1".to_owned(), "k2".to_owned()])
    );
}

#[test]
fn a_key_not_looked_up_is_an_internal_error_not_a_guess() {
    let mut known = remembering(&[record("s1", "rs-101", 1, 3, "k1", Some("rk1"))]);
    known.keys.clear();

    let error = plan(
        &reading(vec![stay("s1", "rs-101", 1, 3, Some("rk1"))]),
        &known,
        now(),
        &config(),
        &Calendar::of(&config()).unwrap(),
    )
    .unwrap_err();

    assert_eq!(error.kind(), keysmith_core::ErrorKind::Internal);
}
