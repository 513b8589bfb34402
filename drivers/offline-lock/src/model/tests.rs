//! Cases 1 to 19 of `offline-lock-semantics.md`, plus codec and sequence unit tests.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

const SECRET: &[u8] = b"keysmith-test-secret-0123456789abcdef";
const PROP: &str = "HOTEL-1";
const HOUR: UnixSeconds = 3600;
const DAY: UnixSeconds = 24 * HOUR;
/// Midnight starting day 0 (2024-01-01T00:00:00Z).
const T0: UnixSeconds = 1_704_067_200;

fn at(day: i64, hour: i64, minute: i64) -> UnixSeconds {
    T0 + day * DAY + hour * HOUR + minute * 60
}

fn codec() -> CredentialCodec {
    CredentialCodec::new(SECRET)
}

/// Seal then open, so the codec path is exercised by the scenarios too.
fn through_codec(p: CredentialPayload) -> CredentialPayload {
    let c = codec();
    let opened = c
        .open(&c.seal(&p))
        .expect("a freshly sealed credential opens");
    assert_eq!(opened, p);
    opened
}

fn room(lock_id: &str) -> LockConfig {
    LockConfig {
        property_code: PROP.into(),
        lock_id: lock_id.into(),
        reservation_capable: true,
        look_ahead: 15,
        audit_capacity: 500,
        blocked_cards_capacity: 256,
        invalid_credentials_advance: false,
    }
}

/// A lock whose current guest is the stay carrying `seq` (adopted at `new_key_at`).
fn state_with(seq: Sequence, new_key_at: UnixSeconds) -> LockState {
    LockState {
        guest_sequence: seq,
        last_new_key_at: Some(new_key_at),
        ..LockState::default()
    }
}

fn guest(
    card_id: &str,
    copy: u16,
    locks: &[(&str, Option<Sequence>)],
    starts_at: UnixSeconds,
    ends_at: UnixSeconds,
    new_key_time: UnixSeconds,
) -> CredentialPayload {
    through_codec(CredentialPayload {
        property_code: PROP.into(),
        card_id: card_id.into(),
        copy,
        role: CredentialRole::Guest,
        locks: locks
            .iter()
            .map(|(id, seq)| LockGrant {
                lock_id: (*id).into(),
                sequence: *seq,
            })
            .collect(),
        starts_at,
        ends_at,
        new_key_time,
        deadbolt_override: false,
    })
}

fn staff(
    card_id: &str,
    level: &str,
    locks: &[(&str, Option<Sequence>)],
    starts_at: UnixSeconds,
    ends_at: UnixSeconds,
) -> CredentialPayload {
    let mut p = guest(card_id, 1, locks, starts_at, ends_at, starts_at);
    p.role = CredentialRole::Staff {
        level: level.into(),
    };
    through_codec(p)
}

fn show(
    state: &mut LockState,
    cfg: &LockConfig,
    c: &CredentialPayload,
    t: UnixSeconds,
) -> Decision {
    state.present(cfg, Presented::Credential(c), t)
}

#[track_caller]
fn assert_open(d: Decision, reason: Reason) {
    assert!(d.granted, "expected open ({reason:?}), got {d:?}");
    assert_eq!(d.reason, reason);
    assert_eq!(d.overrode, reason == Reason::Overridden, "{d:?}");
}

#[track_caller]
fn assert_rejected(d: Decision, reason: Reason) {
    assert!(!d.granted, "expected rejection ({reason:?}), got {d:?}");
    assert_eq!(d.reason, reason);
    assert!(!d.overrode, "{d:?}");
}

fn overrides_logged(state: &LockState) -> usize {
    state.audit.iter().filter(|r| r.overrode).count()
}

fn reasons(state: &LockState) -> Vec<Reason> {
    state.audit.iter().map(|r| r.reason).collect()
}

/// Checks that the last audit record matches the decision and the credential.
#[track_caller]
fn assert_last_audit(state: &LockState, d: Decision, card_id: &str, sequence: Option<Sequence>) {
    let last = state.audit.back().expect("an audit record");
    assert_eq!(
        last,
        &AuditRecord {
            lock_time: d.lock_time,
            card_id: card_id.into(),
            granted: d.granted,
            reason: d.reason,
            overrode: d.overrode,
            sequence,
        }
    );
}

// A's stay: day 0 15:00 to day 3 11:00, sequence 1 (current at the lock).
fn guest_a() -> CredentialPayload {
    guest(
        "A-1",
        1,
        &[("101", Some(1))],
        at(0, 15, 0),
        at(3, 11, 0),
        at(0, 14, 0),
    )
}

// B's stay: day 3 15:00 to day 5 11:00, sequence 2, encoded on day 1 (issued early).
fn guest_b() -> CredentialPayload {
    guest(
        "B-1",
        1,
        &[("101", Some(2))],
        at(3, 15, 0),
        at(5, 11, 0),
        at(1, 9, 0),
    )
}

// ---------------------------------------------------------------------------------------
// Cases from the notes
// ---------------------------------------------------------------------------------------

#[test]
fn case_01_new_guest_issued_not_yet_used_old_guest_still_opens() {
    let cfg = room("101");
    let mut s = state_with(1, at(0, 14, 0));
    let a = guest_a();
    let _b = guest_b(); // issued (encoded) but never presented
    let d = show(&mut s, &cfg, &a, at(1, 12, 0));
    assert_open(d, Reason::Joined);
    assert_last_audit(&s, d, "A-1", Some(1));
    assert_eq!(s.guest_sequence, 1);
    assert_eq!(s.last_new_key_at, Some(at(0, 14, 0)));
    assert_eq!(s.audit.len(), 1);
    assert_eq!(overrides_logged(&s), 0);
}

#[test]
fn case_02_new_guest_used_once_old_guest_superseded() {
    let cfg = room("101");
    let mut s = state_with(1, at(0, 14, 0));
    let a = guest_a();
    let b = guest(
        "B-1",
        1,
        &[("101", Some(2))],
        at(1, 9, 0),
        at(5, 11, 0),
        at(1, 9, 0),
    );
    assert_open(show(&mut s, &cfg, &a, at(1, 8, 0)), Reason::Joined);
    let d = show(&mut s, &cfg, &b, at(1, 10, 0));
    assert_open(d, Reason::Overridden);
    assert_last_audit(&s, d, "B-1", Some(2));
    assert_eq!(s.guest_sequence, 2);
    assert_eq!(s.last_new_key_at, Some(at(1, 9, 0)));
    // A still inside its own window, but superseded.
    let d = show(&mut s, &cfg, &a, at(1, 11, 0));
    assert_rejected(d, Reason::Superseded);
    assert_last_audit(&s, d, "A-1", Some(1));
    assert_eq!(s.guest_sequence, 2);
    assert_eq!(
        reasons(&s),
        [Reason::Joined, Reason::Overridden, Reason::Superseded]
    );
    assert_eq!(overrides_logged(&s), 1);
}

#[test]
fn case_03_joiner_issued_before_first_use_either_first_use_overrides() {
    let cfg = room("101");
    let b = guest_b();
    let j = guest(
        "B-2",
        2,
        &[("101", Some(2))],
        at(3, 15, 0),
        at(5, 11, 0),
        at(1, 9, 5),
    );
    let a = guest_a();
    let t = at(3, 15, 30);

    // B first, then the joiner.
    let mut s = state_with(1, at(0, 14, 0));
    assert_open(show(&mut s, &cfg, &b, t), Reason::Overridden);
    assert_open(show(&mut s, &cfg, &j, t + 60), Reason::Joined);
    assert_open(show(&mut s, &cfg, &b, t + 120), Reason::Joined);
    assert_eq!(s.guest_sequence, 2);
    assert_eq!(s.last_new_key_at, Some(b.new_key_time));
    assert_eq!(overrides_logged(&s), 1);
    assert_eq!(s.audit.len(), 3);

    // Joiner first, then B.
    let mut s = state_with(1, at(0, 14, 0));
    assert_open(show(&mut s, &cfg, &j, t), Reason::Overridden);
    assert_eq!(s.last_new_key_at, Some(j.new_key_time));
    assert_open(show(&mut s, &cfg, &b, t + 60), Reason::Joined);
    assert_rejected(show(&mut s, &cfg, &a, t + 90), Reason::Expired);
    assert_eq!(s.guest_sequence, 2);
    assert_eq!(overrides_logged(&s), 1);
    assert_eq!(
        reasons(&s),
        [Reason::Overridden, Reason::Joined, Reason::Expired]
    );
    assert_eq!(s.audit[0].card_id, "B-2");
}

#[test]
fn case_04_joiner_issued_after_override_opens_without_state_change() {
    let cfg = room("101");
    let mut s = state_with(1, at(0, 14, 0));
    let b = guest_b();
    assert_open(show(&mut s, &cfg, &b, at(3, 15, 10)), Reason::Overridden);
    let before = s.clone();
    // Joiner encoded on day 4 for the same stay (same value).
    let j = guest(
        "B-2",
        2,
        &[("101", Some(2))],
        at(4, 8, 0),
        at(5, 11, 0),
        at(4, 8, 0),
    );
    let d = show(&mut s, &cfg, &j, at(4, 9, 0));
    assert_open(d, Reason::Joined);
    assert_last_audit(&s, d, "B-2", Some(2));
    assert_eq!(s.guest_sequence, before.guest_sequence);
    assert_eq!(s.last_new_key_at, before.last_new_key_at);
    assert_eq!(s.staff_sequences, before.staff_sequences);
    assert_eq!(s.audit.len(), before.audit.len() + 1);
    assert_eq!(overrides_logged(&s), 1);
}

#[test]
fn case_05_late_joiner_for_old_stay_after_override_rejected() {
    let cfg = room("101");
    let mut s = state_with(1, at(0, 14, 0));
    // B's stay overlaps A's end here: B starts day 2.
    let b = guest(
        "B-1",
        1,
        &[("101", Some(2))],
        at(2, 9, 0),
        at(5, 11, 0),
        at(2, 9, 0),
    );
    assert_open(show(&mut s, &cfg, &b, at(2, 10, 0)), Reason::Overridden);
    // A late joiner for A's stay (still inside A's window), encoded after the override.
    let late = guest(
        "A-2",
        2,
        &[("101", Some(1))],
        at(0, 15, 0),
        at(3, 11, 0),
        at(2, 11, 0),
    );
    let before = s.clone();
    let d = show(&mut s, &cfg, &late, at(2, 12, 0));
    assert_rejected(d, Reason::Superseded);
    assert_last_audit(&s, d, "A-2", Some(1));
    assert_eq!(s.guest_sequence, 2);
    assert_eq!(s.last_new_key_at, before.last_new_key_at);
    assert_eq!(overrides_logged(&s), 1);
    assert_eq!(reasons(&s), [Reason::Overridden, Reason::Superseded]);
}

#[test]
fn case_06_several_new_keys_one_within_window_cancels_earlier_beyond_rejected() {
    let cfg = room("101"); // look-ahead 15
    let mut s = state_with(1, at(0, 14, 0));
    let k = |seq: Sequence| {
        guest(
            &format!("K-{seq}"),
            1,
            &[("101", Some(seq))],
            at(1, 0, 0),
            at(6, 0, 0),
            at(1, 0, seq.into()),
        )
    };
    let (k2, k3, k4, k5, k17) = (k(2), k(3), k(4), k(5), k(17));
    let t = at(2, 12, 0);

    // 17 is 16 ahead of 1: beyond the window.
    assert_rejected(show(&mut s, &cfg, &k17, t), Reason::OutOfWindow);
    assert_eq!(s.guest_sequence, 1);
    assert_eq!(s.last_new_key_at, Some(at(0, 14, 0)));

    // 4 is within: opens and adopts.
    assert_open(show(&mut s, &cfg, &k4, t + 1), Reason::Overridden);
    assert_eq!(s.guest_sequence, 4);
    assert_eq!(s.last_new_key_at, Some(k4.new_key_time));
    // Every earlier one is cancelled.
    assert_rejected(show(&mut s, &cfg, &k2, t + 2), Reason::Superseded);
    assert_rejected(show(&mut s, &cfg, &k3, t + 3), Reason::Superseded);
    assert_eq!(s.guest_sequence, 4);
    // A later one still within the window overrides in turn.
    assert_open(show(&mut s, &cfg, &k5, t + 4), Reason::Overridden);
    assert_rejected(show(&mut s, &cfg, &k4, t + 5), Reason::Superseded);
    assert_eq!(s.guest_sequence, 5);

    assert_eq!(
        reasons(&s),
        [
            Reason::OutOfWindow,
            Reason::Overridden,
            Reason::Superseded,
            Reason::Superseded,
            Reason::Overridden,
            Reason::Superseded,
        ]
    );
    assert_eq!(overrides_logged(&s), 2);
    let seqs: Vec<_> = s.audit.iter().map(|r| r.sequence).collect();
    assert_eq!(
        seqs,
        [Some(17), Some(4), Some(2), Some(3), Some(5), Some(4)]
    );
}

#[test]
fn case_07_lost_card_works_until_replacement_used() {
    let cfg = room("101");
    let mut s = state_with(1, at(0, 14, 0));
    let lost = guest_a();
    // Replacement for the same stay, new value, new card id.
    let repl = guest(
        "A-R",
        1,
        &[("101", Some(2))],
        at(0, 15, 0),
        at(3, 11, 0),
        at(1, 20, 0),
    );
    assert_open(show(&mut s, &cfg, &lost, at(1, 21, 0)), Reason::Joined);
    assert_eq!(s.guest_sequence, 1);
    assert_open(show(&mut s, &cfg, &repl, at(1, 22, 0)), Reason::Overridden);
    assert_eq!(s.guest_sequence, 2);
    assert_eq!(s.last_new_key_at, Some(at(1, 20, 0)));
    let d = show(&mut s, &cfg, &lost, at(1, 23, 0));
    assert_rejected(d, Reason::Superseded);
    assert_last_audit(&s, d, "A-1", Some(1));
    assert_open(show(&mut s, &cfg, &repl, at(2, 8, 0)), Reason::Joined);
    assert_eq!(overrides_logged(&s), 1);
    assert_eq!(s.audit.len(), 4);
}

#[test]
fn case_08_back_to_back_stays() {
    let cfg = room("101");
    let mut s = state_with(1, at(0, 14, 0));
    let a = guest_a(); // to day 3 11:00
    let b = guest_b(); // from day 3 15:00
    assert_open(show(&mut s, &cfg, &a, at(3, 10, 59)), Reason::Joined);
    assert_rejected(show(&mut s, &cfg, &a, at(3, 11, 0)), Reason::Expired);
    assert_rejected(show(&mut s, &cfg, &b, at(3, 11, 0)), Reason::NotYetValid);
    assert_rejected(show(&mut s, &cfg, &a, at(3, 14, 59)), Reason::Expired);
    assert_rejected(show(&mut s, &cfg, &b, at(3, 14, 59)), Reason::NotYetValid);
    assert_eq!(s.guest_sequence, 1, "rejected cards change nothing");
    assert_eq!(s.last_new_key_at, Some(at(0, 14, 0)));
    let d = show(&mut s, &cfg, &b, at(3, 15, 0));
    assert_open(d, Reason::Overridden);
    assert_eq!(d.lock_time, at(3, 15, 0));
    assert_eq!(s.guest_sequence, 2);
    assert_rejected(show(&mut s, &cfg, &a, at(3, 15, 1)), Reason::Expired);
    assert_eq!(overrides_logged(&s), 1);
    assert_eq!(s.audit.len(), 7);
    assert_eq!(s.audit[5].card_id, "B-1");
    assert!(s.audit[5].overrode);
}

#[test]
fn case_09_expired_or_not_yet_valid_newer_card_per_option() {
    let a = guest_a();
    // Not yet valid, newer value (within look-ahead).
    let b = guest_b(); // from day 3 15:00, value 2
                       // Expired, newer value.
    let old_new = guest(
        "X-1",
        1,
        &[("101", Some(3))],
        at(0, 0, 0),
        at(1, 0, 0),
        at(0, 0, 0),
    );
    // Not yet valid, newer value beyond the look-ahead.
    let far = guest(
        "F-1",
        1,
        &[("101", Some(40))],
        at(9, 0, 0),
        at(10, 0, 0),
        at(8, 0, 0),
    );
    let t = at(2, 12, 0);

    // Default: only an otherwise valid credential updates the lock.
    let cfg = room("101");
    let mut s = state_with(1, at(0, 14, 0));
    let before = s.clone();
    assert_rejected(show(&mut s, &cfg, &b, t), Reason::NotYetValid);
    assert_rejected(show(&mut s, &cfg, &old_new, t + 1), Reason::Expired);
    assert_eq!(s.guest_sequence, before.guest_sequence);
    assert_eq!(s.last_new_key_at, before.last_new_key_at);
    assert_open(show(&mut s, &cfg, &a, t + 2), Reason::Joined);
    assert_eq!(overrides_logged(&s), 0);
    assert_eq!(s.audit.len(), 3);

    // Option on: still rejected, but the lock advances.
    let cfg = LockConfig {
        invalid_credentials_advance: true,
        ..room("101")
    };
    let mut s = state_with(1, at(0, 14, 0));
    let d = show(&mut s, &cfg, &b, t);
    assert!(!d.granted);
    assert_eq!(d.reason, Reason::NotYetValid);
    assert!(d.overrode, "the advance is logged as a guest code change");
    assert_last_audit(&s, d, "B-1", Some(2));
    assert_eq!(s.guest_sequence, 2);
    assert_eq!(s.last_new_key_at, Some(b.new_key_time));
    // A is now superseded even though nobody got in.
    assert_rejected(show(&mut s, &cfg, &a, t + 1), Reason::Superseded);
    // An expired card with a newer value advances too.
    let d = show(&mut s, &cfg, &old_new, t + 2);
    assert_eq!(
        (d.granted, d.reason, d.overrode),
        (false, Reason::Expired, true)
    );
    assert_eq!(s.guest_sequence, 3);
    // Beyond the look-ahead: no change even with the option.
    assert_rejected(show(&mut s, &cfg, &far, t + 3), Reason::NotYetValid);
    assert_eq!(s.guest_sequence, 3);
    // An older window-invalid card changes nothing.
    assert_rejected(show(&mut s, &cfg, &b, t + 4), Reason::NotYetValid);
    assert_eq!(s.guest_sequence, 3);
    assert_eq!(overrides_logged(&s), 2);
    assert_eq!(s.audit.len(), 5);
}

#[test]
fn case_10_clock_skew() {
    let cfg = room("101");
    let a = guest_a();
    let b = guest_b();

    // Lock two hours behind: at real 15:30 on day 3 it believes it is 13:30.
    let mut s = state_with(1, at(0, 14, 0));
    s.clock_skew_seconds = -2 * HOUR;
    assert_eq!(s.lock_time(at(3, 15, 30)), at(3, 13, 30));
    let d = show(&mut s, &cfg, &b, at(3, 15, 30));
    assert_rejected(d, Reason::NotYetValid);
    assert_eq!(d.lock_time, at(3, 13, 30));
    assert_eq!(s.audit.back().unwrap().lock_time, at(3, 13, 30));
    assert_eq!(s.guest_sequence, 1);
    // A still opens by the lock's clock although it expired in real time.
    assert_open(show(&mut s, &cfg, &a, at(3, 12, 30)), Reason::Joined);
    // B opens once the lock's clock reaches 15:00 (real 17:00).
    let d = show(&mut s, &cfg, &b, at(3, 17, 0));
    assert_open(d, Reason::Overridden);
    assert_eq!(d.lock_time, at(3, 15, 0));
    assert_eq!(s.guest_sequence, 2);

    // Lock two hours ahead: A expires at real 09:00 on day 3.
    let mut s = state_with(1, at(0, 14, 0));
    s.clock_skew_seconds = 2 * HOUR;
    assert_open(show(&mut s, &cfg, &a, at(3, 8, 59)), Reason::Joined);
    let d = show(&mut s, &cfg, &a, at(3, 9, 0));
    assert_rejected(d, Reason::Expired);
    assert_eq!(d.lock_time, at(3, 11, 0));
    assert_eq!(s.guest_sequence, 1);
    assert_eq!(overrides_logged(&s), 0);
    assert_eq!(s.audit.len(), 2);
}

#[test]
fn case_11_deadbolt_rejects_and_blocks_override() {
    let cfg = room("101");
    let mut s = state_with(1, at(0, 14, 0));
    s.deadbolt_engaged = true;
    let a = guest_a();
    let b = guest(
        "B-1",
        1,
        &[("101", Some(2))],
        at(1, 0, 0),
        at(5, 11, 0),
        at(1, 0, 0),
    );
    let t = at(2, 12, 0);

    assert_rejected(show(&mut s, &cfg, &a, t), Reason::Deadbolt);
    let d = show(&mut s, &cfg, &b, t + 1);
    assert_rejected(d, Reason::Deadbolt);
    assert_last_audit(&s, d, "B-1", Some(2));
    assert_eq!(s.guest_sequence, 1, "no override behind a deadbolt");
    assert_eq!(s.last_new_key_at, Some(at(0, 14, 0)));

    // A credential with the override bit passes (and a newer one then overrides).
    let mut b_vip = b.clone();
    b_vip.card_id = "B-VIP".into();
    b_vip.deadbolt_override = true;
    let b_vip = through_codec(b_vip);
    assert_open(show(&mut s, &cfg, &b_vip, t + 2), Reason::Overridden);
    assert_eq!(s.guest_sequence, 2);

    // Staff without the bit: rejected; staff with it: opens.
    let hk = staff(
        "S-HK",
        "housekeeping",
        &[("101", Some(1))],
        at(2, 8, 0),
        at(2, 16, 0),
    );
    assert_rejected(show(&mut s, &cfg, &hk, t + 3), Reason::Deadbolt);
    assert!(
        s.staff_sequences.is_empty(),
        "a rejected staff key stores nothing"
    );
    let mut emergency = staff(
        "S-EM",
        "emergency",
        &[("101", Some(1))],
        at(2, 0, 0),
        at(3, 0, 0),
    );
    emergency.deadbolt_override = true;
    assert_open(show(&mut s, &cfg, &emergency, t + 4), Reason::Granted);

    // Deadbolt released: B opens normally.
    s.deadbolt_engaged = false;
    assert_open(show(&mut s, &cfg, &b, t + 5), Reason::Joined);
    assert_eq!(overrides_logged(&s), 1);
    assert_eq!(
        reasons(&s),
        [
            Reason::Deadbolt,
            Reason::Deadbolt,
            Reason::Overridden,
            Reason::Deadbolt,
            Reason::Granted,
            Reason::Joined,
        ]
    );
}

#[test]
fn case_12_staff_key_during_guest_stay() {
    let cfg = room("101");
    let mut s = state_with(1, at(0, 14, 0));
    let a = guest_a();
    // Housekeeping shift 08:00-16:00 on day 1, level code 7.
    let hk = staff(
        "S-1",
        "housekeeping",
        &[("101", Some(7)), ("102", Some(7))],
        at(1, 8, 0),
        at(1, 16, 0),
    );
    let before_guest = (s.guest_sequence, s.last_new_key_at);

    assert_rejected(show(&mut s, &cfg, &hk, at(1, 7, 59)), Reason::NotYetValid);
    assert!(s.staff_sequences.is_empty());
    let d = show(&mut s, &cfg, &hk, at(1, 10, 0));
    assert_open(d, Reason::Granted);
    assert_last_audit(&s, d, "S-1", Some(7));
    assert_eq!(s.staff_sequences.get("housekeeping"), Some(&7));
    assert_eq!((s.guest_sequence, s.last_new_key_at), before_guest);
    assert_rejected(show(&mut s, &cfg, &hk, at(1, 16, 0)), Reason::Expired);

    // The guest key still works afterwards.
    assert_open(show(&mut s, &cfg, &a, at(1, 17, 0)), Reason::Joined);

    // A newer housekeeping code cancels the older one; other levels are independent.
    let hk2 = staff(
        "S-2",
        "housekeeping",
        &[("101", Some(8))],
        at(1, 8, 0),
        at(1, 20, 0),
    );
    let old_hk = staff(
        "S-3",
        "housekeeping",
        &[("101", Some(7))],
        at(1, 8, 0),
        at(1, 20, 0),
    );
    let maint = staff(
        "M-1",
        "maintenance",
        &[("101", Some(2))],
        at(1, 8, 0),
        at(1, 20, 0),
    );
    assert_open(show(&mut s, &cfg, &hk2, at(1, 18, 0)), Reason::Granted);
    assert_eq!(s.staff_sequences.get("housekeeping"), Some(&8));
    assert_rejected(
        show(&mut s, &cfg, &old_hk, at(1, 18, 1)),
        Reason::StaffSuperseded,
    );
    assert_open(show(&mut s, &cfg, &maint, at(1, 18, 2)), Reason::Granted);
    assert_eq!(s.staff_sequences.get("maintenance"), Some(&2));
    // A staff code beyond the look-ahead is rejected and not adopted.
    let far = staff(
        "S-4",
        "housekeeping",
        &[("101", Some(8 + 16))],
        at(1, 8, 0),
        at(1, 20, 0),
    );
    assert_rejected(show(&mut s, &cfg, &far, at(1, 18, 3)), Reason::OutOfWindow);
    assert_eq!(s.staff_sequences.get("housekeeping"), Some(&8));
    // A staff key not listing this lock.
    let other = staff(
        "S-5",
        "housekeeping",
        &[("102", Some(8))],
        at(1, 8, 0),
        at(1, 20, 0),
    );
    assert_rejected(show(&mut s, &cfg, &other, at(1, 18, 4)), Reason::WrongRoom);

    assert_eq!((s.guest_sequence, s.last_new_key_at), before_guest);
    assert_open(show(&mut s, &cfg, &a, at(1, 19, 0)), Reason::Joined);
    assert_eq!(overrides_logged(&s), 0);
    assert_eq!(s.audit.len(), 10);
}

#[test]
fn case_13_guest_cancel_until_newer_guest_key_used() {
    let cfg = room("101");
    let mut s = state_with(1, at(0, 14, 0));
    s.guest_cancelled = true;
    let a = guest_a();
    let a2 = guest(
        "A-2",
        2,
        &[("101", Some(1))],
        at(0, 15, 0),
        at(3, 11, 0),
        at(0, 14, 5),
    );
    let older = guest(
        "Z-1",
        1,
        &[("101", Some(0))],
        at(0, 0, 0),
        at(9, 0, 0),
        at(0, 0, 0),
    );
    let beyond = guest(
        "F-1",
        1,
        &[("101", Some(30))],
        at(1, 0, 0),
        at(5, 0, 0),
        at(1, 0, 0),
    );
    let c = guest(
        "C-1",
        1,
        &[("101", Some(2))],
        at(1, 0, 0),
        at(5, 0, 0),
        at(1, 12, 0),
    );
    let t = at(1, 13, 0);

    assert_rejected(show(&mut s, &cfg, &a, t), Reason::GuestCancelled);
    assert_rejected(show(&mut s, &cfg, &a2, t + 1), Reason::GuestCancelled);
    assert_rejected(show(&mut s, &cfg, &older, t + 2), Reason::GuestCancelled);
    assert_rejected(show(&mut s, &cfg, &beyond, t + 3), Reason::GuestCancelled);
    assert!(s.guest_cancelled);
    assert_eq!(s.guest_sequence, 1);

    // Staff are not affected by guest-cancel.
    let hk = staff(
        "S-1",
        "housekeeping",
        &[("101", Some(1))],
        at(1, 8, 0),
        at(1, 16, 0),
    );
    assert_open(show(&mut s, &cfg, &hk, t + 4), Reason::Granted);
    assert!(s.guest_cancelled);

    // A strictly newer guest key within the look-ahead opens, adopts and clears the flag.
    let d = show(&mut s, &cfg, &c, t + 5);
    assert_open(d, Reason::Overridden);
    assert!(!s.guest_cancelled);
    assert_eq!(s.guest_sequence, 2);
    assert_eq!(s.last_new_key_at, Some(at(1, 12, 0)));
    // Afterwards the old keys are merely superseded.
    assert_rejected(show(&mut s, &cfg, &a, t + 6), Reason::Superseded);
    assert_open(show(&mut s, &cfg, &c, t + 7), Reason::Joined);
    assert_eq!(overrides_logged(&s), 1);
    assert_eq!(s.audit.len(), 8);
}

#[test]
fn case_14_blocking_one_card_id_only_that_card_fails() {
    let cfg = room("101");
    let mut s = state_with(1, at(0, 14, 0));
    let a1 = guest_a();
    let a2 = guest(
        "A-2",
        2,
        &[("101", Some(1))],
        at(0, 15, 0),
        at(3, 11, 0),
        at(0, 14, 0),
    );
    s.block_card("A-1", 256);
    let t = at(1, 12, 0);
    let d = show(&mut s, &cfg, &a1, t);
    assert_rejected(d, Reason::CardBlocked);
    assert_last_audit(&s, d, "A-1", Some(1));
    assert_open(show(&mut s, &cfg, &a2, t + 1), Reason::Joined);
    // A blocked card with a newer value neither opens nor overrides.
    let mut a1_new = a1.clone();
    a1_new.locks[0].sequence = Some(2);
    assert_rejected(show(&mut s, &cfg, &a1_new, t + 2), Reason::CardBlocked);
    assert_eq!(s.guest_sequence, 1);
    assert_open(show(&mut s, &cfg, &a2, t + 3), Reason::Joined);
    assert_eq!(overrides_logged(&s), 0);
    assert_eq!(
        reasons(&s),
        [
            Reason::CardBlocked,
            Reason::Joined,
            Reason::CardBlocked,
            Reason::Joined
        ]
    );
}

#[test]
fn case_15_wrong_room_wrong_property_no_state_change() {
    let cfg = room("101");
    let mut s = state_with(1, at(0, 14, 0));
    let t = at(1, 12, 0);
    let other_room = guest(
        "R-1",
        1,
        &[("102", Some(2))],
        at(1, 0, 0),
        at(5, 0, 0),
        at(1, 0, 0),
    );
    let mut other_prop = guest(
        "P-1",
        1,
        &[("101", Some(2))],
        at(1, 0, 0),
        at(5, 0, 0),
        at(1, 0, 0),
    );
    other_prop.property_code = "OTHER-HOTEL".into();
    let other_prop = through_codec(other_prop);
    let before = s.clone();

    let d = show(&mut s, &cfg, &other_room, t);
    assert_rejected(d, Reason::WrongRoom);
    assert_last_audit(&s, d, "R-1", None);
    let d = show(&mut s, &cfg, &other_prop, t + 1);
    assert_rejected(d, Reason::WrongProperty);
    assert_last_audit(&s, d, "P-1", Some(2));
    // Unreadable inputs: a tampered card and an unknown PIN.
    let c = codec();
    let mut sealed = c.seal(&guest_b());
    sealed.push('A');
    assert_eq!(c.open(&sealed), Err(CredentialError::Invalid));
    let d = s.present(&cfg, Presented::Unreadable(Reason::Invalid), t + 2);
    assert_rejected(d, Reason::Invalid);
    assert_last_audit(&s, d, "", None);
    let d = s.present(&cfg, Presented::Unreadable(Reason::UnknownPin), t + 3);
    assert_rejected(d, Reason::UnknownPin);
    // A success reason cannot be smuggled through an unreadable presentation.
    let d = s.present(&cfg, Presented::Unreadable(Reason::Granted), t + 4);
    assert_rejected(d, Reason::Invalid);

    let mut after = s.clone();
    after.audit = before.audit.clone();
    assert_eq!(after, before, "only the audit trail changed");
    assert_eq!(
        reasons(&s),
        [
            Reason::WrongRoom,
            Reason::WrongProperty,
            Reason::Invalid,
            Reason::UnknownPin,
            Reason::Invalid,
        ]
    );
    assert_eq!(overrides_logged(&s), 0);
}

#[test]
fn case_16_room_move_old_room_keeps_accepting_until_overridden_or_expired() {
    let cfg101 = room("101");
    let cfg102 = room("102");
    let mut s101 = state_with(1, at(0, 14, 0));
    let mut s102 = state_with(5, at(0, 9, 0));
    let a = guest_a(); // 101, value 1, to day 3 11:00
                       // A moves to 102 on day 1: new credential for 102 only.
    let moved = guest(
        "A-M",
        1,
        &[("102", Some(6))],
        at(1, 10, 0),
        at(3, 11, 0),
        at(1, 10, 0),
    );

    assert_open(
        show(&mut s102, &cfg102, &moved, at(1, 11, 0)),
        Reason::Overridden,
    );
    assert_eq!(s102.guest_sequence, 6);
    assert_rejected(
        show(&mut s101, &cfg101, &moved, at(1, 11, 5)),
        Reason::WrongRoom,
    );
    assert_rejected(
        show(&mut s102, &cfg102, &a, at(1, 11, 6)),
        Reason::WrongRoom,
    );
    // The old room still opens with the old credential.
    assert_open(show(&mut s101, &cfg101, &a, at(1, 12, 0)), Reason::Joined);
    assert_eq!(s101.guest_sequence, 1);

    // ...until expiry,
    let mut s_exp = s101.clone();
    assert_rejected(show(&mut s_exp, &cfg101, &a, at(3, 11, 0)), Reason::Expired);
    assert_eq!(s_exp.guest_sequence, 1);

    // ...or until a new guest overrides 101.
    let c = guest(
        "C-1",
        1,
        &[("101", Some(2))],
        at(1, 14, 0),
        at(4, 11, 0),
        at(1, 14, 0),
    );
    assert_open(
        show(&mut s101, &cfg101, &c, at(1, 15, 0)),
        Reason::Overridden,
    );
    assert_rejected(
        show(&mut s101, &cfg101, &a, at(1, 15, 1)),
        Reason::Superseded,
    );
    assert_eq!(s101.guest_sequence, 2);
    assert_eq!(overrides_logged(&s101), 1);
    assert_eq!(s101.audit.len(), 4);
    assert_eq!(overrides_logged(&s102), 1);
    assert_eq!(s102.audit.len(), 2);
}

#[test]
fn case_17_same_credential_repeatedly_is_idempotent() {
    let cfg = room("101");
    let mut s = state_with(1, at(0, 14, 0));
    let b = guest_b();
    let first = show(&mut s, &cfg, &b, at(3, 15, 0));
    assert_open(first, Reason::Overridden);
    let after_first = (s.guest_sequence, s.last_new_key_at);
    for i in 1..5 {
        let d = show(&mut s, &cfg, &b, at(3, 15, 0) + i * 600);
        assert_open(d, Reason::Joined);
        assert_eq!((s.guest_sequence, s.last_new_key_at), after_first);
    }
    assert_eq!(s.guest_sequence, 2);
    assert_eq!(s.audit.len(), 5);
    assert_eq!(overrides_logged(&s), 1);
    assert!(s.audit[0].overrode);
    assert!(s.audit.iter().all(|r| r.granted && r.card_id == "B-1"));
}

#[test]
fn case_18_sequence_counter_wraps_at_16_bits() {
    let cfg = room("101"); // look-ahead 15
    let mut s = state_with(65534, at(0, 0, 0));
    let key = |seq: Sequence| {
        guest(
            &format!("W-{seq}"),
            1,
            &[("101", Some(seq))],
            at(0, 0, 0),
            at(9, 0, 0),
            at(0, 0, 0),
        )
    };
    let t = at(1, 0, 0);
    assert_open(show(&mut s, &cfg, &key(65535), t), Reason::Overridden);
    assert_eq!(s.guest_sequence, 65535);
    let d = show(&mut s, &cfg, &key(0), t + 1);
    assert_open(d, Reason::Overridden);
    assert_last_audit(&s, d, "W-0", Some(0));
    assert_eq!(s.guest_sequence, 0);
    assert_rejected(show(&mut s, &cfg, &key(65535), t + 2), Reason::Superseded);
    assert_rejected(show(&mut s, &cfg, &key(65530), t + 3), Reason::Superseded);
    // 15 is 15 ahead of 0: within; 31 then is 16 ahead of 15: beyond.
    assert_open(show(&mut s, &cfg, &key(15), t + 4), Reason::Overridden);
    assert_rejected(show(&mut s, &cfg, &key(31), t + 5), Reason::OutOfWindow);
    assert_eq!(s.guest_sequence, 15);

    // Look-ahead across the wrap.
    let mut s = state_with(65530, at(0, 0, 0));
    assert_rejected(show(&mut s, &cfg, &key(10), t), Reason::OutOfWindow); // 16 ahead
    assert_eq!(s.guest_sequence, 65530);
    assert_open(show(&mut s, &cfg, &key(9), t + 1), Reason::Overridden); // 15 ahead
    assert_eq!(s.guest_sequence, 9);
    assert_rejected(show(&mut s, &cfg, &key(65535), t + 2), Reason::Superseded);
    assert_eq!(overrides_logged(&s), 1);
    assert_eq!(s.audit.len(), 3);
}

#[test]
fn case_19_audit_buffer_overflow_drops_oldest() {
    let cfg = LockConfig {
        audit_capacity: 3,
        ..room("101")
    };
    let mut s = state_with(1, at(0, 14, 0));
    let a = guest_a();
    let b = guest(
        "B-1",
        1,
        &[("101", Some(2))],
        at(1, 0, 0),
        at(5, 0, 0),
        at(1, 0, 0),
    );
    let t = at(1, 12, 0);
    assert_open(show(&mut s, &cfg, &a, t), Reason::Joined);
    assert_open(show(&mut s, &cfg, &b, t + 1), Reason::Overridden);
    assert_rejected(show(&mut s, &cfg, &a, t + 2), Reason::Superseded);
    assert_eq!(s.audit.len(), 3);
    assert_open(show(&mut s, &cfg, &b, t + 3), Reason::Joined);
    s.present(&cfg, Presented::Unreadable(Reason::Invalid), t + 4);
    assert_eq!(s.audit.len(), 3);
    let times: Vec<_> = s.audit.iter().map(|r| r.lock_time).collect();
    assert_eq!(times, [t + 2, t + 3, t + 4]);
    assert_eq!(
        reasons(&s),
        [Reason::Superseded, Reason::Joined, Reason::Invalid]
    );
    // The override has been pushed out of the buffer; the state still holds it.
    assert_eq!(overrides_logged(&s), 0);
    assert_eq!(s.guest_sequence, 2);

    // Onity capacity: 500.
    let cfg = LockConfig {
        audit_capacity: 500,
        ..room("101")
    };
    let mut s = LockState::default();
    for i in 0..600 {
        s.present(&cfg, Presented::Unreadable(Reason::UnknownPin), T0 + i);
    }
    assert_eq!(s.audit.len(), 500);
    assert_eq!(s.audit.front().unwrap().lock_time, T0 + 100);
    assert_eq!(s.audit.back().unwrap().lock_time, T0 + 599);
}

// ---------------------------------------------------------------------------------------
// Further lock behaviour
// ---------------------------------------------------------------------------------------

#[test]
fn common_door_checks_lock_and_window_only() {
    let lobby = LockConfig::common_door(PROP, "lobby");
    assert!(!lobby.reservation_capable);
    let mut s = LockState::default();
    let a = guest(
        "A-1",
        1,
        &[("101", Some(1)), ("lobby", None)],
        at(0, 15, 0),
        at(3, 11, 0),
        at(0, 14, 0),
    );
    // Even a sequence on a common-door grant is ignored.
    let b = guest(
        "B-1",
        1,
        &[("101", Some(2)), ("lobby", Some(900))],
        at(1, 0, 0),
        at(5, 0, 0),
        at(1, 0, 0),
    );
    let c = guest(
        "C-1",
        1,
        &[("101", Some(3))],
        at(1, 0, 0),
        at(5, 0, 0),
        at(1, 0, 0),
    );
    assert_open(show(&mut s, &lobby, &a, at(1, 12, 0)), Reason::Granted);
    assert_open(show(&mut s, &lobby, &b, at(1, 12, 1)), Reason::Granted);
    assert_open(show(&mut s, &lobby, &a, at(1, 12, 2)), Reason::Granted);
    assert_rejected(show(&mut s, &lobby, &c, at(1, 12, 3)), Reason::WrongRoom);
    assert_rejected(show(&mut s, &lobby, &a, at(3, 11, 0)), Reason::Expired);
    assert_eq!(s.guest_sequence, 0);
    assert_eq!(s.last_new_key_at, None);
    s.deadbolt_engaged = true;
    assert_rejected(show(&mut s, &lobby, &b, at(1, 13, 0)), Reason::Deadbolt);
    assert_eq!(overrides_logged(&s), 0);
    assert_eq!(s.audit.len(), 6);

    // A grant without a sequence on a room lock is treated the same way.
    let cfg = room("101");
    let mut s = state_with(4, at(0, 0, 0));
    let plain = guest(
        "N-1",
        1,
        &[("101", None)],
        at(1, 0, 0),
        at(5, 0, 0),
        at(1, 0, 0),
    );
    assert_open(show(&mut s, &cfg, &plain, at(1, 12, 0)), Reason::Granted);
    assert_eq!(s.guest_sequence, 4);
}

#[test]
fn multi_room_credential_overrides_room_by_room() {
    let (c101, c102) = (room("101"), room("102"));
    let mut s101 = state_with(1, at(0, 0, 0));
    let mut s102 = state_with(8, at(0, 0, 0));
    let old102 = guest(
        "O-1",
        1,
        &[("102", Some(8))],
        at(0, 0, 0),
        at(9, 0, 0),
        at(0, 0, 0),
    );
    let suite = guest(
        "S-1",
        1,
        &[("101", Some(2)), ("102", Some(9))],
        at(1, 0, 0),
        at(5, 0, 0),
        at(1, 0, 0),
    );
    assert_open(
        show(&mut s101, &c101, &suite, at(1, 12, 0)),
        Reason::Overridden,
    );
    assert_eq!(s101.guest_sequence, 2);
    // 102 has not seen the suite key yet: its previous guest still gets in.
    assert_open(
        show(&mut s102, &c102, &old102, at(1, 12, 1)),
        Reason::Joined,
    );
    assert_open(
        show(&mut s102, &c102, &suite, at(1, 12, 2)),
        Reason::Overridden,
    );
    assert_rejected(
        show(&mut s102, &c102, &old102, at(1, 12, 3)),
        Reason::Superseded,
    );
    assert_eq!(s102.guest_sequence, 9);
    assert_eq!(s102.audit[1].sequence, Some(9));
}

#[test]
fn blocked_lock_admits_only_staff() {
    let cfg = room("101");
    let mut s = state_with(1, at(0, 0, 0));
    s.blocked = true;
    let a = guest_a();
    let b = guest_b();
    let hk = staff(
        "S-1",
        "housekeeping",
        &[("101", None)],
        at(1, 0, 0),
        at(2, 0, 0),
    );
    assert_rejected(show(&mut s, &cfg, &a, at(1, 12, 0)), Reason::Blocked);
    assert_rejected(show(&mut s, &cfg, &b, at(3, 16, 0)), Reason::Blocked);
    assert_eq!(s.guest_sequence, 1);
    assert_open(show(&mut s, &cfg, &hk, at(1, 12, 1)), Reason::Granted);
    // A blocked staff card id is still refused.
    s.block_card("S-1", 256);
    assert_rejected(show(&mut s, &cfg, &hk, at(1, 12, 2)), Reason::CardBlocked);
    // Wrong property comes before blocked.
    let mut foreign = a.clone();
    foreign.property_code = "ELSEWHERE".into();
    assert_rejected(
        show(&mut s, &cfg, &foreign, at(1, 12, 3)),
        Reason::WrongProperty,
    );
    assert_eq!(s.audit.len(), 5);
}

#[test]
fn zero_audit_capacity_keeps_nothing() {
    let cfg = LockConfig {
        audit_capacity: 0,
        ..room("101")
    };
    let mut s = state_with(1, at(0, 0, 0));
    let d = show(&mut s, &cfg, &guest_a(), at(1, 0, 0));
    assert_open(d, Reason::Joined);
    assert!(s.audit.is_empty());
}

#[test]
fn reason_names_are_snake_case() {
    let all = [
        (Reason::Granted, "granted"),
        (Reason::Joined, "joined"),
        (Reason::Overridden, "overridden"),
        (Reason::Invalid, "invalid"),
        (Reason::WrongProperty, "wrong_property"),
        (Reason::Blocked, "blocked"),
        (Reason::GuestCancelled, "guest_cancelled"),
        (Reason::CardBlocked, "card_blocked"),
        (Reason::WrongRoom, "wrong_room"),
        (Reason::NotYetValid, "not_yet_valid"),
        (Reason::Expired, "expired"),
        (Reason::Superseded, "superseded"),
        (Reason::OutOfWindow, "out_of_window"),
        (Reason::Deadbolt, "deadbolt"),
        (Reason::StaffSuperseded, "staff_superseded"),
        (Reason::UnknownPin, "unknown_pin"),
    ];
    for (reason, name) in all {
        assert_eq!(reason.as_str(), name);
        assert_eq!(reason.to_string(), name);
    }
}

#[test]
fn lock_state_round_trips_through_postcard() {
    let cfg = room("101");
    let mut s = state_with(1, at(0, 0, 0));
    s.block_card("X", 256);
    show(&mut s, &cfg, &guest_b(), at(3, 16, 0));
    let bytes = postcard::to_stdvec(&s).unwrap();
    let back: LockState = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(back, s);
}

// ---------------------------------------------------------------------------------------
// sequence_ahead
// ---------------------------------------------------------------------------------------

#[test]
fn sequence_ahead_basic_and_wrap_around() {
    use SequenceOrder::*;
    assert_eq!(sequence_ahead(5, 5), Equal);
    assert_eq!(sequence_ahead(5, 6), Ahead(1));
    assert_eq!(sequence_ahead(6, 5), Behind);
    assert_eq!(sequence_ahead(65535, 0), Ahead(1));
    assert_eq!(sequence_ahead(65535, 14), Ahead(15));
    assert_eq!(sequence_ahead(0, 65535), Behind);
    assert_eq!(sequence_ahead(65530, 4), Ahead(10));
    assert_eq!(sequence_ahead(4, 65530), Behind);
    assert_eq!(sequence_ahead(0, 0x7FFF), Ahead(0x7FFF));
    assert_eq!(
        sequence_ahead(0, 0x8000),
        Behind,
        "half-way is ambiguous: never opens"
    );
    assert_eq!(sequence_ahead(0, 0x8001), Behind);
    assert_eq!(sequence_ahead(65535, 65535), Equal);
}

#[test]
fn sequence_ahead_is_antisymmetric_away_from_half_way() {
    let mut rng = StdRng::seed_from_u64(18);
    for _ in 0..2000 {
        let a: u16 = rng.random();
        let b: u16 = rng.random();
        match (sequence_ahead(a, b), sequence_ahead(b, a)) {
            (SequenceOrder::Equal, other) => {
                assert_eq!(a, b);
                assert_eq!(other, SequenceOrder::Equal);
            }
            (SequenceOrder::Ahead(d), other) => {
                assert_eq!(a.wrapping_add(d), b);
                assert_eq!(other, SequenceOrder::Behind);
            }
            (SequenceOrder::Behind, SequenceOrder::Ahead(d)) => assert_eq!(b.wrapping_add(d), a),
            (SequenceOrder::Behind, other) => {
                assert_eq!(other, SequenceOrder::Behind);
                assert_eq!(b.wrapping_sub(a), 0x8000);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Codec
// ---------------------------------------------------------------------------------------

fn sample_payload() -> CredentialPayload {
    CredentialPayload {
        property_code: PROP.into(),
        card_id: "card-0042".into(),
        copy: 3,
        role: CredentialRole::Staff {
            level: "maintenance".into(),
        },
        locks: vec![
            LockGrant {
                lock_id: "101".into(),
                sequence: Some(65535),
            },
            LockGrant {
                lock_id: "lobby".into(),
                sequence: None,
            },
        ],
        starts_at: -5,
        ends_at: i64::MAX,
        new_key_time: T0,
        deadbolt_override: true,
    }
}

#[test]
fn codec_round_trip() {
    let c = codec();
    for p in [sample_payload(), guest_a(), guest_b()] {
        let sealed = c.seal(&p);
        assert!(sealed.starts_with("KSC1."));
        assert_eq!(sealed.matches('.').count(), 2);
        assert!(sealed
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.'));
        assert_eq!(c.open(&sealed), Ok(p.clone()));
        // Deterministic.
        assert_eq!(c.seal(&p), sealed);
        // A fresh codec with the same secret opens it too.
        assert_eq!(CredentialCodec::new(SECRET).open(&sealed), Ok(p));
    }
}

#[test]
fn codec_rejects_any_flipped_character() {
    let c = codec();
    let sealed = c.seal(&sample_payload());
    let replacements = ['A', 'B', 'a', '0', '-', '_', '.', '=', '+', '/', ' ', 'é'];
    let chars: Vec<char> = sealed.chars().collect();
    let mut tried = 0;
    for i in 0..chars.len() {
        for &r in &replacements {
            if r == chars[i] {
                continue;
            }
            let mut mutated = chars.clone();
            mutated[i] = r;
            let mutated: String = mutated.into_iter().collect();
            assert_eq!(
                c.open(&mutated),
                Err(CredentialError::Invalid),
                "index {i} -> {r:?}"
            );
            tried += 1;
        }
        // Deleting the character, or inserting one before it.
        let mut deleted = chars.clone();
        deleted.remove(i);
        let deleted: String = deleted.into_iter().collect();
        assert_eq!(
            c.open(&deleted),
            Err(CredentialError::Invalid),
            "delete {i}"
        );
        let mut inserted = chars.clone();
        inserted.insert(i, 'Q');
        let inserted: String = inserted.into_iter().collect();
        assert_eq!(
            c.open(&inserted),
            Err(CredentialError::Invalid),
            "insert {i}"
        );
    }
    assert!(tried > sealed.len() * 10);
    // Truncation and extension.
    for n in 0..sealed.len() {
        assert_eq!(c.open(&sealed[..n]), Err(CredentialError::Invalid));
    }
    assert_eq!(c.open(&format!("{sealed}A")), Err(CredentialError::Invalid));
    assert_eq!(c.open(&format!("{sealed}.")), Err(CredentialError::Invalid));
    assert_eq!(c.open(&format!(" {sealed}")), Err(CredentialError::Invalid));
    assert_eq!(
        c.open(&sealed.to_lowercase()),
        Err(CredentialError::Invalid)
    );
    assert_eq!(c.open(&sealed), Ok(sample_payload()));
}

#[test]
fn codec_rejects_wrong_secret() {
    let sealed = codec().seal(&sample_payload());
    for secret in [&b""[..], b"keysmith-test-secret-0123456789abcdeF", b"other"] {
        assert_eq!(
            CredentialCodec::new(secret).open(&sealed),
            Err(CredentialError::Invalid)
        );
    }
}

#[test]
fn codec_rejects_garbage() {
    let c = codec();
    let long = "A".repeat(100_000);
    let long_sealed = format!("KSC1.{long}.{}", "A".repeat(43));
    for g in [
        "",
        ".",
        "..",
        "KSC1.",
        "KSC1..",
        "KSC1...",
        "KSC2.AAAA.AAAA",
        "ksc1.AAAA.AAAA",
        "KSC1.AAAA",
        "KSC1.AAAA.",
        "KSC1..AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "KSC1.!!!!.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "KSC1.AAAA.AAAA.AAAA",
        "not a credential",
        "🔑🔑🔑",
        long.as_str(),
        long_sealed.as_str(),
    ] {
        assert_eq!(c.open(g), Err(CredentialError::Invalid), "{g:.40}");
    }
}

/// Authentic tags over payloads that are not valid postcard still give `Invalid`.
#[test]
fn codec_rejects_authenticated_but_malformed_payloads() {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    let c = codec();
    let forge = |payload_part: &str| {
        let signed = format!("KSC1.{payload_part}");
        let tag = URL_SAFE_NO_PAD.encode(c.tag(signed.as_bytes()));
        format!("{signed}.{tag}")
    };
    // Sanity: the helper reproduces seal().
    let good = postcard::to_stdvec(&sample_payload()).unwrap();
    assert_eq!(
        forge(&URL_SAFE_NO_PAD.encode(&good)),
        c.seal(&sample_payload())
    );

    let mut trailing = good.clone();
    trailing.push(0);
    let mut rng = StdRng::seed_from_u64(7);
    let mut cases: Vec<String> = vec![
        String::new(),
        URL_SAFE_NO_PAD.encode(&good[..good.len() - 1]),
        URL_SAFE_NO_PAD.encode(&trailing),
        URL_SAFE_NO_PAD.encode([0xFF; 16]),
        "A".into(),    // not valid base64 length
        "AB==".into(), // padding not allowed
        "A+/B".into(), // standard alphabet
    ];
    for _ in 0..200 {
        let len = rng.random_range(0..64);
        let bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        cases.push(URL_SAFE_NO_PAD.encode(&bytes));
    }
    for part in cases {
        let sealed = forge(&part);
        // Random bytes decode to a payload only by extreme luck; all must fail here.
        assert_eq!(c.open(&sealed), Err(CredentialError::Invalid), "{part}");
    }
}

#[test]
fn codec_never_panics_on_random_input() {
    let c = codec();
    let sealed = c.seal(&sample_payload());
    let alphabet: Vec<char> =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ \u{0}é🔑"
            .chars()
            .collect();
    let mut rng = StdRng::seed_from_u64(2024);
    for i in 0..600 {
        let len = rng.random_range(0..200);
        let body: String = (0..len)
            .map(|_| alphabet[rng.random_range(0..alphabet.len())])
            .collect();
        let input = match i % 3 {
            0 => body,
            1 => format!("KSC1.{body}"),
            _ => {
                // Mutate a few bytes of a genuine credential.
                let mut bytes = sealed.clone().into_bytes();
                for _ in 0..rng.random_range(1..4) {
                    let at = rng.random_range(0..bytes.len());
                    bytes[at] = rng.random_range(0x20..0x7F);
                }
                String::from_utf8(bytes).expect("ascii")
            }
        };
        let result = c.open(&input);
        if input != sealed {
            assert_eq!(result, Err(CredentialError::Invalid), "{input}");
        }
    }
}

#[test]
fn debug_output_leaks_no_secrets() {
    let c = codec();
    let dbg = format!("{c:?}");
    assert_eq!(dbg, "CredentialCodec { .. }");
    assert!(!dbg.contains("keysmith-test-secret"));

    let p = sample_payload();
    let sealed = c.seal(&p);
    let dbg = format!("{p:?}");
    for expected in [
        "card-0042",
        "copy: 3",
        "maintenance",
        "\"101\"",
        "\"lobby\"",
        "starts_at: -5",
    ] {
        assert!(dbg.contains(expected), "{dbg} lacks {expected}");
    }
    assert!(
        !dbg.contains("65535"),
        "sequence values are not printed: {dbg}"
    );
    assert!(!dbg.contains(&sealed[5..20]));
    assert!(!dbg.contains("KSC1"));
    assert_eq!(CredentialError::Invalid.to_string(), "invalid credential");
}

#[test]
fn the_block_list_keeps_the_most_recent_cards_within_its_capacity() {
    let mut s = LockState::default();
    for id in ["A", "B", "C"] {
        s.block_card(id, 2);
    }
    assert!(
        !s.is_card_blocked("A"),
        "the card blocked first was dropped"
    );
    assert!(s.is_card_blocked("B") && s.is_card_blocked("C"));
    s.block_card("C", 2);
    assert_eq!(
        s.blocked_card_ids.len(),
        2,
        "blocking twice changes nothing"
    );
    s.unblock_card("B");
    assert!(!s.is_card_blocked("B"));
}

/// The sealed format's properties over any payload and any text.
mod properties {
    use proptest::prelude::*;

    use super::*;

    prop_compose! {
        fn payload()(
            property_code in ".{0,12}",
            card_id in ".{0,16}",
            copy in any::<u16>(),
            staff in proptest::option::of(".{0,12}"),
            locks in prop::collection::vec((".{0,8}", proptest::option::of(any::<u16>())), 0..4),
            starts_at in any::<i64>(),
            ends_at in any::<i64>(),
            new_key_time in any::<i64>(),
            deadbolt_override in any::<bool>(),
        ) -> CredentialPayload {
            CredentialPayload {
                property_code,
                card_id,
                copy,
                role: match staff {
                    None => CredentialRole::Guest,
                    Some(level) => CredentialRole::Staff { level },
                },
                locks: locks
                    .into_iter()
                    .map(|(lock_id, sequence)| LockGrant { lock_id, sequence })
                    .collect(),
                starts_at,
                ends_at,
                new_key_time,
                deadbolt_override,
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// seal then open gives the payload back, with this key only.
        #[test]
        fn sealed_cards_open_to_what_was_sealed(p in payload(), other_key in prop::collection::vec(any::<u8>(), 0..48)) {
            let c = codec();
            let sealed = c.seal(&p);
            prop_assert_eq!(c.open(&sealed), Ok(p.clone()));
            if other_key != SECRET {
                prop_assert_eq!(CredentialCodec::new(&other_key).open(&sealed), Err(CredentialError::Invalid));
            }
        }

        /// Any one character of a sealed card changed, removed or added:
        /// refused, never a panic.
        #[test]
        fn tampered_cards_are_refused(p in payload(), at in any::<prop::sample::Index>(), with in any::<char>(), how in 0u8..3) {
            let c = codec();
            let sealed = c.seal(&p);
            let mut chars: Vec<char> = sealed.chars().collect();
            let i = at.index(chars.len());
            match how {
                0 if chars[i] != with => chars[i] = with,
                0 => return Ok(()),
                1 => {
                    chars.remove(i);
                }
                _ => chars.insert(i, with),
            }
            let tampered: String = chars.into_iter().collect();
            prop_assert_eq!(c.open(&tampered), Err(CredentialError::Invalid));
        }

        /// Any text at the reader: refused without a panic.
        #[test]
        fn any_text_is_refused(text in prop_oneof![".{0,200}", "KSC1\\.[A-Za-z0-9_-]{0,80}\\.[A-Za-z0-9_-]{43}"]) {
            prop_assert_eq!(codec().open(&text), Err(CredentialError::Invalid));
        }
    }
}
