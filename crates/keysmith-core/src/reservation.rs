//! The reservation rules of the Seam guide, enforced by the core for every
//! driver alike.
use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::{
    error::{reasons, Error, Result},
    key::ReservationRef,
    time::{Timestamp, Window},
};

/// A reservation of a property: its reservation-capable door set, fixed once
/// established, and the keys that belong to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    pub property_id: String,
    pub reservation_key: String,
    /// Increases each time the reservation is established anew after it was
    /// cleared, so that drivers tell the new stay from the old one.
    pub epoch: u64,
    pub door_set: BTreeSet<String>,
    /// Key id to its window, for keys not revoked.
    pub members: BTreeMap<String, Window>,
}

impl Reservation {
    pub fn new(property_id: &str, reservation_key: &str) -> Self {
        Self {
            property_id: property_id.to_owned(),
            reservation_key: reservation_key.to_owned(),
            epoch: 0,
            door_set: BTreeSet::new(),
            members: BTreeMap::new(),
        }
    }

    pub fn reference(&self) -> ReservationRef {
        ReservationRef {
            key: self.reservation_key.clone(),
            epoch: self.epoch,
        }
    }

    /// Members whose window has not ended: only they hold the reservation.
    fn live_members(&self, now: Timestamp) -> impl Iterator<Item = &Window> {
        self.members.values().filter(move |w| !w.has_ended(now))
    }

    pub fn is_live(&self, now: Timestamp) -> bool {
        self.live_members(now).next().is_some()
    }
}

/// What a new key does in a reservation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// The first key: it establishes the door set and overrides.
    Establish,
    /// A joiner of the live reservation.
    Join,
}

/// Decides whether a guest key with `capable` doors and `window` may enter
/// `reservation` (rules 2, 3 and 4 of the guide). Rule 1 and "required" are
/// checked by the caller, which knows the entrances.
pub fn admit(
    reservation: &Reservation,
    capable: &BTreeSet<String>,
    window: &Window,
    now: Timestamp,
) -> Result<Admission> {
    if !reservation.is_live(now) {
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
    check_overlap(reservation, None, window, now)?;
    Ok(Admission::Join)
}

/// Rule 4 for a member whose window changes (or a new member): its window
/// must overlap every other live member's.
pub fn check_overlap(
    reservation: &Reservation,
    except_key: Option<&str>,
    window: &Window,
    now: Timestamp,
) -> Result<()> {
    let clash = reservation
        .members
        .iter()
        .filter(|(key_id, w)| Some(key_id.as_str()) != except_key && !w.has_ended(now))
        .find(|(_, w)| !w.overlaps(window));
    match clash {
        None => Ok(()),
        Some((key_id, _)) => Err(Error::failed_precondition(
            reasons::RESERVATION_TIME_FRAMES_MUST_OVERLAP,
            "Keys of the same reservation must have overlapping time windows; \
             use another reservation_key for a separate stay",
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
        r.door_set = doors(door_set);
        r.members.insert("k1".into(), member);
        r
    }

    const NOW: Timestamp = Timestamp::from_micros(0);

    #[test]
    fn an_empty_reservation_is_established() {
        let r = Reservation::new("hotel", "stay-1");
        let got = admit(&r, &doors(&["101"]), &window(10, 14), NOW).unwrap();
        assert_eq!(got, Admission::Establish);
    }

    #[test]
    fn same_or_subset_doors_with_overlap_join() {
        let r = stay(&["101", "102"], window(10, 14));
        assert_eq!(
            admit(&r, &doors(&["101", "102"]), &window(11, 14), NOW).unwrap(),
            Admission::Join
        );
        assert_eq!(
            admit(&r, &doors(&["101"]), &window(10, 12), NOW).unwrap(),
            Admission::Join
        );
    }

    #[test]
    fn superset_joiner_conflicts() {
        let r = stay(&["101"], window(10, 14));
        let err = admit(&r, &doors(&["101", "102"]), &window(10, 14), NOW).unwrap_err();
        assert_eq!(
            err.reason(),
            reasons::RESERVATION_JOINER_ENTRANCE_SET_CONFLICT
        );
    }

    #[test]
    fn different_doors_require_cleanup() {
        let r = stay(&["101"], window(10, 14));
        let err = admit(&r, &doors(&["203"]), &window(10, 14), NOW).unwrap_err();
        assert_eq!(
            err.reason(),
            reasons::RESERVATION_ENTRANCE_CHANGE_REQUIRES_CLEANUP
        );
        let r = stay(&["101", "102"], window(10, 14));
        let err = admit(&r, &doors(&["102", "103"]), &window(10, 14), NOW).unwrap_err();
        assert_eq!(
            err.reason(),
            reasons::RESERVATION_ENTRANCE_CHANGE_REQUIRES_CLEANUP
        );
    }

    #[test]
    fn non_overlapping_joiner_is_refused() {
        let r = stay(&["101"], window(10, 14));
        let err = admit(&r, &doors(&["101"]), &window(15, 18), NOW).unwrap_err();
        assert_eq!(err.reason(), reasons::RESERVATION_TIME_FRAMES_MUST_OVERLAP);
        // Touching at check-out is not an overlap: the window is half-open.
        let err = admit(&r, &doors(&["101"]), &window(14, 18), NOW).unwrap_err();
        assert_eq!(err.reason(), reasons::RESERVATION_TIME_FRAMES_MUST_OVERLAP);
    }

    #[test]
    fn a_reservation_whose_keys_all_ended_is_established_anew() {
        let r = stay(&["101"], window(10, 14));
        let later = Timestamp::from_unix_seconds(20 * DAY);
        let got = admit(&r, &doors(&["203"]), &window(20, 22), later).unwrap();
        assert_eq!(got, Admission::Establish);
    }

    #[test]
    fn overlap_is_checked_against_every_live_member_but_the_one_changing() {
        let mut r = stay(&["101"], window(10, 14));
        r.members.insert("k2".into(), window(12, 16));
        assert!(check_overlap(&r, Some("k1"), &window(15, 17), NOW).is_ok());
        let err = check_overlap(&r, None, &window(15, 17), NOW).unwrap_err();
        assert_eq!(err.reason(), reasons::RESERVATION_TIME_FRAMES_MUST_OVERLAP);
    }
}
