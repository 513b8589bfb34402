//! The reservation rules of the Seam guide, enforced by the core for every
//! driver alike.
//!
//! A reservation is the history of the keys admitted to it, not the clock:
//! a key whose window has ended, or that was revoked on its own, is still a
//! member, and the rules are judged against every member. Only a clear
//! (Revoke by reservation_key) or retention empties it. So a late card for
//! an ended stay joins that stay (and carries its value to the lock) instead
//! of overriding whoever came next. Nothing here reads a clock.
use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::{
    error::{reasons, Error, Result},
    key::ReservationRef,
    time::Window,
};

/// A reservation of a property: its reservation-capable door set, fixed once
/// established, and the keys that belong to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    /// The property it belongs to.
    pub property_id: String,
    /// The caller's reservation_key: one per stay, shared by its co-guests.
    pub reservation_key: String,
    /// Increases each time the reservation is established anew after it was
    /// cleared, so that drivers tell the new stay from the old one.
    pub epoch: u64,
    /// The reservation-capable entrances of the key that established it: a
    /// joiner must use the same or a subset of them (rules 2 and 3). Empty
    /// while cleared.
    pub door_set: BTreeSet<String>,
    /// Every key admitted since the reservation was established, ended and
    /// revoked ones included, by key id.
    pub members: BTreeMap<String, Member>,
}

/// One key of a reservation, as the rules see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The key's window, kept up to date by UpdateKey: rule 4 is judged
    /// against it, however long ago it ended.
    pub window: Window,
    /// Revoked on its own. It still counts for the rules: its credential
    /// still carries the reservation's value, and only a clear of the whole
    /// reservation starts a new stay.
    pub revoked: bool,
}

impl Member {
    /// A member not revoked, with `window`.
    pub fn new(window: Window) -> Self {
        Self {
            window,
            revoked: false,
        }
    }
}

impl Reservation {
    /// A reservation never established: no members, no doors, epoch 0. Its
    /// first key establishes it as epoch 1.
    pub fn new(property_id: &str, reservation_key: &str) -> Self {
        Self {
            property_id: property_id.to_owned(),
            reservation_key: reservation_key.to_owned(),
            epoch: 0,
            door_set: BTreeSet::new(),
            members: BTreeMap::new(),
        }
    }

    /// What a key of this incarnation carries, and its drivers see: the
    /// reservation_key and the epoch.
    pub fn reference(&self) -> ReservationRef {
        ReservationRef {
            key: self.reservation_key.clone(),
            epoch: self.epoch,
        }
    }

    /// Whether a key has been admitted since it was last established: then
    /// a new key joins it, however long ago its keys ended.
    pub fn is_established(&self) -> bool {
        !self.members.is_empty()
    }

    /// Whether `key` belongs to this incarnation of the reservation.
    pub fn holds(&self, key: &ReservationRef) -> bool {
        key.key == self.reservation_key && key.epoch == self.epoch
    }

    /// The keys whose revocation clears the reservation: every member not
    /// yet revoked.
    pub fn unrevoked_members(&self) -> impl Iterator<Item = &str> {
        self.members
            .iter()
            .filter(|(_, m)| !m.revoked)
            .map(|(id, _)| id.as_str())
    }

    /// Establishes the reservation anew on `door_set`, as a new incarnation.
    pub fn establish(&mut self, door_set: BTreeSet<String>) {
        self.epoch += 1;
        self.door_set = door_set;
        self.members.clear();
    }

    /// Forgets every member and the door set: the next key establishes the
    /// reservation anew (relocation, Revoke by reservation_key).
    pub fn clear(&mut self) {
        self.members.clear();
        self.door_set.clear();
    }
}

/// What a new key does in a reservation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// The first key: it establishes the door set and overrides.
    Establish,
    /// A joiner of the established reservation.
    Join,
}

/// Decides whether a guest key with `capable` doors and `window` may enter
/// `reservation` (rules 2, 3 and 4 of the guide). Rule 1 and "required" are
/// checked by the caller, which knows the entrances.
pub fn admit(
    reservation: &Reservation,
    capable: &BTreeSet<String>,
    window: &Window,
) -> Result<Admission> {
    if !reservation.is_established() {
        return Ok(Admission::Establish);
    }
    let established = &reservation.door_set;
    if !capable.is_subset(established) {
        let error = if capable.is_superset(established) {
            Error::failed_precondition(
                reasons::RESERVATION_JOINER_ENTRANCE_SET_CONFLICT,
                "Joiner keys must use the same or a subset of the reservation-capable doors; \
                 to add doors, revoke the reservation's keys and issue them anew",
            )
        } else {
            Error::failed_precondition(
                reasons::RESERVATION_ENTRANCE_CHANGE_REQUIRES_CLEANUP,
                "To change the doors of this reservation, revoke its keys first \
                 (Revoke with reservation_key), then issue anew",
            )
        };
        return Err(error
            .with_context("reservation_key", reservation.reservation_key.clone())
            .with_context("established_doors", join(established))
            .with_context("requested_doors", join(capable)));
    }
    check_overlap(reservation, None, window)?;
    Ok(Admission::Join)
}

/// Rule 4 for a member whose window changes (or a new member): its window
/// must overlap every other member's, ended and revoked ones included.
pub fn check_overlap(
    reservation: &Reservation,
    except_key: Option<&str>,
    window: &Window,
) -> Result<()> {
    let clash = reservation
        .members
        .iter()
        .filter(|(key_id, _)| Some(key_id.as_str()) != except_key)
        .find(|(_, m)| !m.window.overlaps(window));
    match clash {
        None => Ok(()),
        Some((key_id, _)) => Err(Error::failed_precondition(
            reasons::RESERVATION_TIME_FRAMES_MUST_OVERLAP,
            "Keys of the same reservation must have overlapping time windows, ended keys \
             included; use another reservation_key for a separate stay",
        )
        .with_context("reservation_key", reservation.reservation_key.clone())
        .with_context("conflicting_key_id", key_id.clone())),
    }
}

fn join(set: &BTreeSet<String>) -> String {
    set.iter().cloned().collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Timestamp;

    const DAY: i64 = 86_400;

    fn window(start_day: i64, end_day: i64) -> Window {
        Window {
            starts_at: Timestamp::from_unix_seconds(start_day * DAY),
            ends_at: Timestamp::from_unix_seconds(end_day * DAY),
        }
    }

    fn doors(ids: &[&str]) -> BTreeSet<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    fn stay(door_set: &[&str], member: Window) -> Reservation {
        let mut r = Reservation::new("hotel", "stay-1");
        r.establish(doors(door_set));
        r.members.insert("k1".into(), Member::new(member));
        r
    }

    #[test]
    fn an_empty_reservation_is_established() {
        let r = Reservation::new("hotel", "stay-1");
        let got = admit(&r, &doors(&["101"]), &window(10, 14)).unwrap();
        assert_eq!(got, Admission::Establish);
    }

    #[test]
    fn same_or_subset_doors_with_overlap_join() {
        let r = stay(&["101", "102"], window(10, 14));
        assert_eq!(
            admit(&r, &doors(&["101", "102"]), &window(11, 14)).unwrap(),
            Admission::Join
        );
        assert_eq!(
            admit(&r, &doors(&["101"]), &window(10, 12)).unwrap(),
            Admission::Join
        );
    }

    #[test]
    fn superset_joiner_conflicts() {
        let r = stay(&["101"], window(10, 14));
        let err = admit(&r, &doors(&["101", "102"]), &window(10, 14)).unwrap_err();
        assert_eq!(
            err.reason(),
            reasons::RESERVATION_JOINER_ENTRANCE_SET_CONFLICT
        );
    }

    #[test]
    fn different_doors_require_cleanup() {
        let r = stay(&["101"], window(10, 14));
        let err = admit(&r, &doors(&["203"]), &window(10, 14)).unwrap_err();
        assert_eq!(
            err.reason(),
            reasons::RESERVATION_ENTRANCE_CHANGE_REQUIRES_CLEANUP
        );
        let r = stay(&["101", "102"], window(10, 14));
        let err = admit(&r, &doors(&["102", "103"]), &window(10, 14)).unwrap_err();
        assert_eq!(
            err.reason(),
            reasons::RESERVATION_ENTRANCE_CHANGE_REQUIRES_CLEANUP
        );
    }

    #[test]
    fn non_overlapping_joiner_is_refused() {
        let r = stay(&["101"], window(10, 14));
        let err = admit(&r, &doors(&["101"]), &window(15, 18)).unwrap_err();
        assert_eq!(err.reason(), reasons::RESERVATION_TIME_FRAMES_MUST_OVERLAP);
        // Touching at check-out is not an overlap: the window is half-open.
        let err = admit(&r, &doors(&["101"]), &window(14, 18)).unwrap_err();
        assert_eq!(err.reason(), reasons::RESERVATION_TIME_FRAMES_MUST_OVERLAP);
    }

    #[test]
    fn ended_and_revoked_members_still_hold_the_reservation() {
        // However long ago k1 ended, the reservation is still established:
        // other doors need a clear, and a new key must overlap k1.
        let mut r = stay(&["101"], window(10, 14));
        r.members.get_mut("k1").unwrap().revoked = true;
        let err = admit(&r, &doors(&["203"]), &window(20, 22)).unwrap_err();
        assert_eq!(
            err.reason(),
            reasons::RESERVATION_ENTRANCE_CHANGE_REQUIRES_CLEANUP
        );
        let err = admit(&r, &doors(&["101"]), &window(20, 22)).unwrap_err();
        assert_eq!(err.reason(), reasons::RESERVATION_TIME_FRAMES_MUST_OVERLAP);
        assert_eq!(
            admit(&r, &doors(&["101"]), &window(13, 22)).unwrap(),
            Admission::Join
        );
    }

    #[test]
    fn a_cleared_reservation_is_established_anew_as_a_new_incarnation() {
        let mut r = stay(&["101"], window(10, 14));
        let before = r.reference();
        r.clear();
        assert_eq!(
            admit(&r, &doors(&["203"]), &window(20, 22)).unwrap(),
            Admission::Establish
        );
        r.establish(doors(&["203"]));
        assert!(!r.holds(&before));
        assert!(r.holds(&r.reference()));
    }

    #[test]
    fn overlap_is_checked_against_every_member_but_the_one_changing() {
        let mut r = stay(&["101"], window(10, 14));
        r.members.insert("k2".into(), Member::new(window(12, 16)));
        assert!(check_overlap(&r, Some("k1"), &window(15, 17)).is_ok());
        let err = check_overlap(&r, None, &window(15, 17)).unwrap_err();
        assert_eq!(err.reason(), reasons::RESERVATION_TIME_FRAMES_MUST_OVERLAP);
    }
}
