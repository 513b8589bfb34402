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
//! Seam documents a status, a title and (except for the Visionline rule) a
//! message for each of these, no `type`. Which text the answer's `message`
//! carries is not documented: the fake answers the guide's message by
//! default and its title with [`ReservationErrorText::Title`]
//! (`FakeSeamConfig::reservation_error_text`); the Visionline rule, which
//! has a title only, always answers it. `type` is `invalid_input` for the
//! 400s and `reservation_conflict` for the 409s (also undocumented); clients
//! should recognise every documented text.
//! Grants being deleted no longer count, so a relocation (delete, then
//! create with other doors) works at once, as in the guide's scenario 3.

use std::collections::BTreeSet;

use jiff::Timestamp;

use crate::errors::ApiError;
use crate::model::{AccessMode, Grant};
use crate::state::Workspace;

/// Rule 1, 400: the guide's title.
pub const RESERVATION_KEY_NOT_SUPPORTED: &str = "reservation_key not supported.";
/// Rule 1: the guide's message.
pub const RESERVATION_KEY_NOT_SUPPORTED_MESSAGE: &str = "No targeted entrances support reservation behavior. Remove reservation_key or include at least one reservation-capable entrance.";
/// Visionline-like systems, 400: the guide's title (it gives no message).
pub const RESERVATION_KEY_REQUIRED_FOR_GUEST_CARDS: &str =
    "reservation_key required for guest cards.";
/// Rule 2, 409: the guide's title.
pub const RESERVATION_ENTRANCE_CHANGE_REQUIRES_CLEANUP: &str =
    "Reservation entrance change requires cleanup.";
/// Rule 2: the guide's message.
pub const RESERVATION_ENTRANCE_CHANGE_REQUIRES_CLEANUP_MESSAGE: &str =
    "To change the doors for this reservation, delete the existing access grants first.";
/// Rule 3, 409: the guide's title.
pub const RESERVATION_JOINER_ENTRANCE_SET_CONFLICT: &str =
    "Reservation joiner entrance set conflict.";
/// Rule 3: the guide's message.
pub const RESERVATION_JOINER_ENTRANCE_SET_CONFLICT_MESSAGE: &str =
    "Joiner access grants must use the same or a subset of the reservation-capable doors.";
/// Rule 4, 409: the guide's title.
pub const RESERVATION_TIME_FRAMES_MUST_OVERLAP: &str = "Reservation time frames must overlap.";
/// Rule 4: the guide's message.
pub const RESERVATION_TIME_FRAMES_MUST_OVERLAP_MESSAGE: &str =
    "Access grants in the same reservation must have overlapping time frames.";
/// The `type` of the 409 reservation errors (Seam documents none).
pub const RESERVATION_CONFLICT_TYPE: &str = "reservation_conflict";

/// Which of the guide's texts a reservation refusal's `message` carries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReservationErrorText {
    /// The guide's message ("To change the doors for this reservation, ...").
    #[default]
    Message,
    /// The guide's title ("Reservation entrance change requires cleanup.").
    Title,
}

impl ReservationErrorText {
    fn pick(self, title: &'static str, message: &'static str) -> &'static str {
        match self {
            ReservationErrorText::Message => message,
            ReservationErrorText::Title => title,
        }
    }
}

fn conflict(text: ReservationErrorText, title: &'static str, message: &'static str) -> ApiError {
    ApiError::new(409, RESERVATION_CONFLICT_TYPE, text.pick(title, message))
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
    pub text: ReservationErrorText,
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
        return Err(ApiError::invalid_input(new.text.pick(
            RESERVATION_KEY_NOT_SUPPORTED,
            RESERVATION_KEY_NOT_SUPPORTED_MESSAGE,
        )));
    }
    let live: Vec<&Grant> = live_grants(ws, key, None).collect();
    if !live.is_empty() {
        let established: BTreeSet<&str> = live
            .iter()
            .flat_map(|g| g.reservation_entrance_ids.iter().map(String::as_str))
            .collect();
        let wanted: BTreeSet<&str> = capable.iter().map(String::as_str).collect();
        if !wanted.is_subset(&established) {
            return Err(if wanted.is_superset(&established) {
                conflict(
                    new.text,
                    RESERVATION_JOINER_ENTRANCE_SET_CONFLICT,
                    RESERVATION_JOINER_ENTRANCE_SET_CONFLICT_MESSAGE,
                )
            } else {
                conflict(
                    new.text,
                    RESERVATION_ENTRANCE_CHANGE_REQUIRES_CLEANUP,
                    RESERVATION_ENTRANCE_CHANGE_REQUIRES_CLEANUP_MESSAGE,
                )
            });
        }
        if live.iter().any(|g| !Window::of(g).overlaps(&new.window)) {
            return Err(conflict(
                new.text,
                RESERVATION_TIME_FRAMES_MUST_OVERLAP,
                RESERVATION_TIME_FRAMES_MUST_OVERLAP_MESSAGE,
            ));
        }
    }
    Ok(capable)
}

/// Rule 4 for new times of an existing grant.
pub(crate) fn check_new_window(
    ws: &Workspace,
    grant: &Grant,
    window: &Window,
    text: ReservationErrorText,
) -> Result<(), ApiError> {
    let Some(key) = grant.reservation_key.as_deref() else {
        return Ok(());
    };
    if live_grants(ws, key, Some(&grant.id)).any(|g| !Window::of(g).overlaps(window)) {
        return Err(conflict(
            text,
            RESERVATION_TIME_FRAMES_MUST_OVERLAP,
            RESERVATION_TIME_FRAMES_MUST_OVERLAP_MESSAGE,
        ));
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
