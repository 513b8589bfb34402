//! What a new key may be, checked before any driver is asked: the
//! capabilities of its entrances' drivers, and its place in its reservation
//! (the Seam guide's rules, judged from the reservation's stored members).
use std::{collections::BTreeSet, sync::Arc};

use crate::{
    error::{reasons, Error, Result},
    key::{Behaviour, Role},
    request::IssueRequest,
    reservation::{self, Admission, Member, Reservation},
    router::RoutedEntrance,
};

use super::{envelope::Mutation, AccessService};

/// Where a new key stands in its reservation: the behaviour at its
/// reservation-capable entrances (the others are standard access), and the
/// reservation to store.
pub(super) struct Placement {
    capable: BTreeSet<String>,
    behaviour: Behaviour,
    pub reservation: Option<Reservation>,
}

impl Placement {
    fn standard() -> Self {
        Self {
            capable: BTreeSet::new(),
            behaviour: Behaviour::Standard,
            reservation: None,
        }
    }

    pub fn behaviour_of(&self, entrance_id: &str) -> Behaviour {
        if self.capable.contains(entrance_id) {
            self.behaviour
        } else {
            Behaviour::Standard
        }
    }
}

impl AccessService {
    /// Every entrance takes every requested mode, and every driver does
    /// what the request needs (issue, staff keys, a caller's PIN).
    pub(super) fn check_capabilities(
        &self,
        req: &IssueRequest,
        entrances: &[Arc<RoutedEntrance>],
    ) -> Result<()> {
        for entrance in entrances {
            for mode in &req.modes {
                if !entrance.spec.capability.accepts(*mode) {
                    return Err(Error::invalid_field(
                        reasons::CREDENTIAL_MODE_NOT_SUPPORTED,
                        "modes",
                        format!(
                            "entrance {:?} does not accept {} credentials",
                            entrance.spec.entrance_id,
                            mode.as_str()
                        ),
                    )
                    .with_context("entrance_id", entrance.spec.entrance_id.clone())
                    .with_context("mode", mode.as_str()));
                }
            }
        }
        let mut drivers: Vec<&str> = entrances.iter().map(|e| e.driver.as_str()).collect();
        drivers.dedup();
        for name in drivers {
            let driver = self.router.driver(name)?;
            self.require(driver.as_ref(), |c| c.issue, "issue")?;
            let capability = driver.info().capability;
            if req.role == Role::Staff && !capability.staff {
                return Err(Error::invalid_field(
                    reasons::STAFF_NOT_SUPPORTED,
                    "role",
                    format!("driver {name:?} cannot issue staff keys"),
                ));
            }
            if req.pin.is_some() && !capability.caller_pin {
                return Err(Error::invalid_field(
                    reasons::PIN_NOT_SUPPORTED,
                    "pin",
                    format!("driver {name:?} does not accept a PIN chosen by the caller"),
                ));
            }
        }
        Ok(())
    }

    /// Applies rule 1 and "required", then 2 to 4 through the stored
    /// reservation: its members, not the clock, decide whether a key
    /// establishes it (and overrides) or joins it.
    pub(super) async fn place_in_reservation(
        &self,
        m: &mut Mutation<'_>,
        req: &IssueRequest,
        key_id: &str,
        entrances: &[Arc<RoutedEntrance>],
    ) -> Result<Placement> {
        let capable: BTreeSet<String> = entrances
            .iter()
            .filter(|e| e.spec.capability.can_belong_to_reservation)
            .map(|e| e.spec.entrance_id.clone())
            .collect();
        let Some(rk) = &req.reservation_key else {
            if req.role == Role::Guest {
                for e in entrances {
                    if e.spec.capability.requires_reservation_for_guests
                        || (e.spec.capability.can_belong_to_reservation
                            && self.router.driver(&e.driver)?.info().capability.offline)
                    {
                        return Err(reservation_key_required(e));
                    }
                }
            }
            return Ok(Placement::standard());
        };
        if req.role == Role::Staff {
            return Err(Error::invalid_field(
                reasons::RESERVATION_KEY_NOT_ALLOWED_FOR_STAFF,
                "reservation_key",
                "staff keys never take part in reservations: omit reservation_key",
            ));
        }
        if capable.is_empty() {
            return Err(Error::invalid_field(
                reasons::RESERVATION_KEY_NOT_SUPPORTED,
                "reservation_key",
                "no targeted entrance supports reservations: remove reservation_key or \
                 include a reservation-capable entrance",
            ));
        }
        for e in entrances
            .iter()
            .filter(|e| capable.contains(&e.spec.entrance_id))
        {
            let driver = self.router.driver(&e.driver)?;
            self.require(driver.as_ref(), |c| c.reservations, "reservations")?;
        }
        let mut r = m
            .reservation(rk)
            .await?
            .unwrap_or_else(|| Reservation::new(&req.property_id, rk));
        let behaviour = match reservation::admit(&r, &capable, &req.window)? {
            Admission::Establish => {
                r.establish(capable.clone());
                Behaviour::Override
            }
            Admission::Join => Behaviour::Join,
        };
        r.members.insert(key_id.to_owned(), Member::new(req.window));
        Ok(Placement {
            capable,
            behaviour,
            reservation: Some(r),
        })
    }
}

/// A guest key without a reservation_key at a door that needs one: one that
/// says so, or a reservation-capable door of an offline (override-based)
/// driver, where a standard key would neither override the previous guest
/// nor be overridden, so the previous guest's card would keep opening.
/// Online drivers revoke at the door; Seam enforces its own rule.
fn reservation_key_required(entrance: &RoutedEntrance) -> Error {
    let id = &entrance.spec.entrance_id;
    Error::invalid_field(
        reasons::RESERVATION_KEY_REQUIRED,
        "reservation_key",
        format!(
            "entrance {id:?} overrides the previous guest by reservation: guest keys there \
             need a reservation_key (one per stay, shared by its co-guests)"
        ),
    )
    .with_context("entrance_id", id.clone())
}
