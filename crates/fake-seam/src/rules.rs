//! Validation of what a grant asks for, beyond its schema: every targeted
//! entrance must support every requested mode, and the reservation rules of
//! `seam-reservation-access-grants-guide.md`, checked in this order:
//!
//! 1. Rule 1 (400): a `reservation_key` needs at least one
//!    reservation-capable entrance among the targeted ones.
//! 2. Visionline-like systems (400): a card for a reservation-capable
//!    entrance of a system that needs reservations for guest cards needs a
//!    `reservation_key`. Non-capable entrances (common doors) ignore
//!    reservations, so they never trigger it.
//! 3. Rules 2 and 3 (409): the live grants of a reservation (not being
//!    deleted) fix its door set, the union of their reservation-capable
//!    entrances. A new grant's reservation-capable entrances must be that
//!    set or a subset of it (a joiner). A strict superset is "Reservation
//!    joiner entrance set conflict."; any other set (another room, or a
//!    partly different one) is "Reservation entrance change requires
//!    cleanup.". Non-capable entrances are left out of the comparison.
//! 4. Rule 4 (409): the new grant's time frame must overlap the time frame
//!    of every live grant of the reservation. Intervals are half-open
//!    (back-to-back stays do not overlap) and a missing `ends_at` is open.
//!    An update of a grant's times is held to the same rule.
//!
//! Seam documents a status and a title for each of these, no `type`. The
//! fake answers `message` = the guide's title exactly, with `type`
//! `invalid_input` for the 400s and `reservation_conflict` for the 409s;
//! clients should match on status and message, as the notes advise.
//! Grants being deleted no longer count, so a relocation (delete, then
//! create with other doors) works at once, as in the guide's scenario 3.

use std::collections::BTreeSet;

use jiff::Timestamp;

use crate::errors::ApiError;
use crate::model::{AccessMode, Grant};
use crate::state::Workspace;

/// Rule 1, 400.
pub const RESERVATION_KEY_NOT_SUPPORTED: &str = "reservation_key not supported.";
/// Visionline-like systems, 400.
pub const RESERVATION_KEY_REQUIRED_FOR_GUEST_CARDS: &str =
    "reservation_key required for guest cards.";
/// Rule 2, 409.
pub const RESERVATION_ENTRANCE_CHANGE_REQUIRES_CLEANUP: &str =
    "Reservation entrance change requires cleanup.";
/// Rule 3, 409.
pub const RESERVATION_JOINER_ENTRANCE_SET_CONFLICT: &str =
    "Reservation joiner entrance set conflict.";
/// Rule 4, 409.
pub const RESERVATION_TIME_FRAMES_MUST_OVERLAP: &str = "Reservation time frames must overlap.";
/// The `type` of the 409 reservation errors (Seam documents none).
pub const RESERVATION_CONFLICT_TYPE: &str = "reservation_conflict";

fn conflict(message: &str) -> ApiError {
    ApiError::new(409, RESERVATION_CONFLICT_TYPE, message)
}

/// A grant's validity; `ends_at: None` never ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Window {
    pub starts_at: Timestamp,
    pub ends_at: Option<Timestamp>,
}

impl Window {
    pub fn of(grant: &Grant) -> Self {
        Window {
            starts_at: grant.starts_at,
            ends_at: grant.ends_at,
        }
    }

    pub fn overlaps(&self, other: &Window) -> bool {
        let starts_before_other_ends = other.ends_at.is_none_or(|end| self.starts_at < end);
        let other_starts_before_end = self.ends_at.is_none_or(|end| other.starts_at < end);
        starts_before_other_ends && other_starts_before_end
    }
}

/// Every targeted entrance supports every requested mode, else 400.
pub(crate) fn check_modes(
    ws: &Workspace,
    entrance_ids: &[String],
    modes: &[AccessMode],
) -> Result<(), ApiError> {
    for mode in modes.iter().collect::<BTreeSet<_>>() {
        let unsupported: Vec<&str> = entrance_ids
            .iter()
            .filter_map(|id| ws.entrances.get(id))
            .filter(|e| !e.caps.supports(*mode))
            .map(|e| e.id.as_str())
            .collect();
        if !unsupported.is_empty() {
            return Err(ApiError::invalid_input(format!(
                "Requested access method mode '{}' is not supported by entrance(s): {}",
                mode.as_str(),
                unsupported.join(", ")
            )));
        }
    }
    Ok(())
}

/// The reservation-capable ones of `entrance_ids`, in order.
pub(crate) fn reservation_entrances(ws: &Workspace, entrance_ids: &[String]) -> Vec<String> {
    entrance_ids
        .iter()
        .filter(|id| ws.entrances.get(*id).is_some_and(|e| e.caps.reservation))
        .cloned()
        .collect()
}

/// Live grants of a reservation, but `except`.
fn live_grants<'a>(
    ws: &'a Workspace,
    reservation_key: &'a str,
    except: Option<&'a str>,
) -> impl Iterator<Item = &'a Grant> + 'a {
    ws.grants.values().filter(move |g| {
        g.reservation_key.as_deref() == Some(reservation_key)
            && !g.deleting
            && Some(g.id.as_str()) != except
    })
}

/// What a new grant asks for, as far as the rules care.
pub(crate) struct NewGrant<'a> {
    pub reservation_key: Option<&'a str>,
    pub entrance_ids: &'a [String],
    pub modes: &'a [AccessMode],
    pub window: Window,
}

/// Checks a new grant; returns its reservation-capable entrances (empty
/// without a reservation_key).
pub(crate) fn check_new_grant(ws: &Workspace, new: &NewGrant) -> Result<Vec<String>, ApiError> {
    check_modes(ws, new.entrance_ids, new.modes)?;
    let capable = reservation_entrances(ws, new.entrance_ids);
    let Some(key) = new.reservation_key else {
        let guest_card_door = new.modes.contains(&AccessMode::Card)
            && capable.iter().any(|id| {
                ws.entrances
                    .get(id)
                    .and_then(|e| ws.systems.get(&e.acs_system_id))
                    .is_some_and(|s| s.requires_reservation_for_guest_cards)
            });
        if guest_card_door {
            return Err(ApiError::invalid_input(
                RESERVATION_KEY_REQUIRED_FOR_GUEST_CARDS,
            ));
        }
        return Ok(Vec::new());
    };
    if capable.is_empty() {
        return Err(ApiError::invalid_input(RESERVATION_KEY_NOT_SUPPORTED));
    }
    let live: Vec<&Grant> = live_grants(ws, key, None).collect();
    if !live.is_empty() {
        let established: BTreeSet<&str> = live
            .iter()
            .flat_map(|g| g.reservation_entrance_ids.iter().map(String::as_str))
            .collect();
        let wanted: BTreeSet<&str> = capable.iter().map(String::as_str).collect();
        if !wanted.is_subset(&established) {
            return Err(conflict(if wanted.is_superset(&established) {
                RESERVATION_JOINER_ENTRANCE_SET_CONFLICT
            } else {
                RESERVATION_ENTRANCE_CHANGE_REQUIRES_CLEANUP
            }));
        }
        if live.iter().any(|g| !Window::of(g).overlaps(&new.window)) {
            return Err(conflict(RESERVATION_TIME_FRAMES_MUST_OVERLAP));
        }
    }
    Ok(capable)
}

/// Rule 4 for new times of an existing grant.
pub(crate) fn check_new_window(
    ws: &Workspace,
    grant: &Grant,
    window: &Window,
) -> Result<(), ApiError> {
    let Some(key) = grant.reservation_key.as_deref() else {
        return Ok(());
    };
    if live_grants(ws, key, Some(&grant.id)).any(|g| !Window::of(g).overlaps(window)) {
        return Err(conflict(RESERVATION_TIME_FRAMES_MUST_OVERLAP));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn w(a: &str, b: Option<&str>) -> Window {
        Window {
            starts_at: ts(a),
            ends_at: b.map(ts),
        }
    }

    #[test]
    fn windows_overlap_half_open_and_open_ended() {
        let stay = w("2030-05-10T15:00:00Z", Some("2030-05-14T11:00:00Z"));
        assert!(stay.overlaps(&w("2030-05-11T11:00:00Z", Some("2030-05-14T11:00:00Z"))));
        assert!(!stay.overlaps(&w("2030-05-15T15:00:00Z", Some("2030-05-18T11:00:00Z"))));
        // Back to back: one ends when the other starts.
        assert!(!stay.overlaps(&w("2030-05-14T11:00:00Z", Some("2030-05-16T11:00:00Z"))));
        assert!(stay.overlaps(&w("2030-05-01T00:00:00Z", None)));
        assert!(!w("2030-06-01T00:00:00Z", None).overlaps(&stay));
    }
}
