//! Issue: a new key, placed in its reservation, provisioned at every driver
//! of its entrances, or at none.
use std::collections::BTreeMap;

use crate::{
    driver::{IssueArgs, IssuedState, RevokeArgs},
    error::Result,
    key::{AccessKey, KeyEntrance, KeyState},
    request::IssueRequest,
    reservation::Reservation,
    store::StoredAnswer,
};

use super::{
    driver_calls::DriverOperation,
    drivers_of,
    envelope::{Begun, Envelope},
    fanout::Done,
    AccessService,
};

impl AccessService {
    /// Issues a new key at every driver of its entrances, or at none.
    ///
    /// Before any driver is asked it checks, in order:
    /// - the request's content ([`IssueRequest::validate`]), and a window that
    ///   has not ended (`INVALID_TIME_WINDOW`);
    /// - the entrances and spaces (`PROPERTY_NOT_FOUND`, `ENTRANCE_NOT_FOUND`,
    ///   `SPACE_NOT_FOUND`);
    /// - the capabilities: every entrance takes every mode
    ///   (`CREDENTIAL_MODE_NOT_SUPPORTED`), and every driver issues
    ///   (`OPERATION_NOT_SUPPORTED`), issues staff keys for a staff key
    ///   (`STAFF_NOT_SUPPORTED`) and takes a caller's PIN when one is given
    ///   (`PIN_NOT_SUPPORTED`);
    /// - the key's place in its reservation: `RESERVATION_KEY_REQUIRED`,
    ///   `RESERVATION_KEY_NOT_ALLOWED_FOR_STAFF`,
    ///   `RESERVATION_KEY_NOT_SUPPORTED`, `OPERATION_NOT_SUPPORTED` unless
    ///   the drivers of its reservation-capable entrances apply reservations,
    ///   then the Seam guide's rules 2 to 4 against every key admitted since
    ///   the reservation was last cleared, ended and revoked ones included
    ///   (`RESERVATION_ENTRANCE_CHANGE_REQUIRES_CLEANUP`,
    ///   `RESERVATION_JOINER_ENTRANCE_SET_CONFLICT`,
    ///   `RESERVATION_TIME_FRAMES_MUST_OVERLAP`). The first key of a
    ///   reservation overrides at its reservation-capable entrances, later ones
    ///   join.
    ///
    /// Then each driver issues its part, in entrance order. When one fails, or
    /// the commit does, the parts already issued are revoked again (best
    /// effort), nothing is stored, and the error is answered as it is. The key
    /// answered is `ISSUING` when a driver issues asynchronously, else
    /// `ACTIVE`.
    ///
    /// Idempotent by request_id: a retry gets the first answer, the same key
    /// with the same credentials.
    pub async fn issue(&self, req: IssueRequest) -> Result<AccessKey> {
        let envelope = Envelope::of(&req)?.locking_reservation(req.reservation_key.as_deref());
        let mut m = match self.begin(envelope).await? {
            Begun::Replayed(answer) => return answer.into_key(),
            Begun::Fresh(m) => m,
        };
        crate::request::check_window_at(&req.window, m.now)?;
        let entrances = self
            .router
            .resolve(&req.property_id, &req.entrance_ids, &req.space_ids)?;
        self.check_capabilities(&req, &entrances)?;

        let key_id = ulid::Ulid::new().to_string();
        let placement = self
            .place_in_reservation(&mut m, &req, &key_id, &entrances)
            .await?;
        let mut key = AccessKey {
            key_id,
            property_id: req.property_id.clone(),
            holder: req.holder.clone(),
            entrances: entrances
                .iter()
                .map(|e| KeyEntrance {
                    entrance_id: e.spec.entrance_id.clone(),
                    driver: e.driver.clone(),
                    behaviour: placement.behaviour_of(&e.spec.entrance_id),
                })
                .collect(),
            window: req.window,
            reservation: placement.reservation.as_ref().map(Reservation::reference),
            role: req.role,
            modes: req.modes.clone(),
            credentials: Vec::new(),
            stored_state: KeyState::Active,
            warnings: Vec::new(),
            created_at: m.now,
            updated_at: m.now,
            revoked_at: None,
            driver_refs: BTreeMap::new(),
        };

        let drivers = drivers_of(&key);
        let out = self
            .fan_out(&key, &drivers, DriverOperation::Issue, |driver, slice| {
                let args = IssueArgs {
                    key_id: slice.key_id,
                    property_id: slice.property_id,
                    holder: slice.holder,
                    role: slice.role,
                    window: slice.window,
                    reservation: slice.reservation,
                    entrances: slice.entrances,
                    modes: req.modes.clone(),
                    pin: req.pin.clone(),
                };
                async move { driver.issue(args).await }
            })
            .await;
        let issued_at = out.done_drivers();
        for Done { driver, reply } in out.done {
            if reply.state == IssuedState::Issuing {
                key.stored_state = KeyState::Issuing;
            }
            if let Some(r) = reply.driver_ref {
                key.driver_refs.insert(driver.clone(), r);
            }
            key.credentials
                .extend(reply.credentials.into_iter().map(|mut c| {
                    c.driver = driver.clone();
                    c
                }));
            key.warnings.extend(reply.warnings);
        }
        if let Some(stopped) = out.stopped {
            self.withdraw(&key, &issued_at).await;
            return Err(stopped.error);
        }

        m.put_key(key.clone(), None);
        if let Some(r) = placement.reservation {
            m.put_reservation(r);
        }
        if let Err(error) = m
            .commit(&StoredAnswer::key(&key), req.reservation_key.as_deref())
            .await
        {
            self.withdraw(&key, &issued_at).await;
            return Err(error);
        }
        Ok(key)
    }

    /// Undoes a key that could not be issued as a whole at the drivers that
    /// did issue their part.
    async fn withdraw(&self, key: &AccessKey, drivers: &[String]) {
        self.compensate(
            key,
            drivers,
            "an issue",
            DriverOperation::Revoke,
            |driver, slice| async move { driver.revoke(RevokeArgs { key: slice }).await.map(drop) },
        )
        .await;
    }
}
