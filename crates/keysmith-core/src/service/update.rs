//! UpdateKey: a key's new window, at every driver of the key or at none
//! (a driver that already changed it is put back when another fails).
use crate::{
    driver::UpdateArgs,
    error::Result,
    key::{warnings, AccessKey, KeyState, Warning},
    request::UpdateKeyRequest,
    reservation::{self, Member},
    store::StoredAnswer,
};

use super::{
    dedup_warnings,
    driver_calls::DriverOperation,
    drivers_of,
    envelope::{Begun, Envelope},
    fanout::Done,
    key_revoked, replace_credentials, AccessService,
};

impl AccessService {
    /// Gives a key a new window, at every driver of the key or at none.
    ///
    /// Checks the request's content ([`UpdateKeyRequest::validate`]); NotFound
    /// `KEY_NOT_FOUND`; FailedPrecondition `KEY_REVOKED` for a key revoked or
    /// being revoked; `INVALID_TIME_WINDOW` for a window that has ended;
    /// `RESERVATION_TIME_FRAMES_MUST_OVERLAP` when the new window misses
    /// another key of the key's reservation (ended and revoked ones included);
    /// and, before any driver is asked, `DRIVER_NOT_CONFIGURED` or
    /// `OPERATION_NOT_SUPPORTED` unless every driver of the key can update.
    ///
    /// The drivers change it in entrance order. When one fails, or the commit
    /// does, those that changed it get the old window back (best effort),
    /// nothing is stored, and the error is answered as it is. Offline
    /// credentials carrying the window leave the key `ENCODING_REQUIRED`, with
    /// an `ENCODING_REQUIRED` warning: re-encode them with
    /// [`AccessService::encode_key`]. A driver that reissues asynchronously
    /// leaves it `ISSUING`.
    ///
    /// Idempotent by request_id: a retry gets the first answer.
    pub async fn update_key(&self, req: UpdateKeyRequest) -> Result<AccessKey> {
        let envelope = Envelope::of(&req)?;
        let first = self.require_key(&req.property_id, &req.key_id)?;
        let envelope = envelope
            .locking_reservation(first.reservation_key())
            .locking_key(&req.key_id);
        let mut m = match self.begin(envelope).await? {
            Begun::Replayed(answer) => return answer.into_key(),
            Begun::Fresh(m) => m,
        };
        let old = m.require_key(&req.key_id).await?;
        if matches!(old.stored_state, KeyState::Revoked | KeyState::Revoking) {
            return Err(key_revoked(&old));
        }
        crate::request::check_window_at(&req.window, m.now)?;
        // Rule 4 against every other member, ended and revoked ones included.
        let mut reservation = None;
        if let Some(held) = &old.reservation {
            if let Some(mut r) = m.reservation(&held.key).await? {
                if r.holds(held) {
                    reservation::check_overlap(&r, Some(&old.key_id), &req.window)?;
                    r.members
                        .entry(old.key_id.clone())
                        .or_insert(Member::new(req.window))
                        .window = req.window;
                    reservation = Some(r);
                }
            }
        }
        let drivers = drivers_of(&old);
        for name in &drivers {
            let driver = self.router.driver(name)?;
            self.require(driver.as_ref(), |c| c.update, "update")?;
        }

        let new_window = req.window;
        let out = self
            .fan_out(
                &old,
                &drivers,
                DriverOperation::Update,
                |driver, slice| async move {
                    driver
                        .update(UpdateArgs {
                            key: slice,
                            new_window,
                        })
                        .await
                },
            )
            .await;
        let updated_at = out.done_drivers();
        if let Some(stopped) = out.stopped {
            self.restore_window(&old, &updated_at).await;
            return Err(stopped.error);
        }
        let mut key = old.clone();
        let mut encoding_required = false;
        let mut reissuing = false;
        for Done { driver, reply } in out.done {
            // An online platform reissues the credentials for the new
            // window asynchronously (Seam revokes and reissues every access
            // method): issuing again until a refresh sees them issued.
            let refreshes = self
                .router
                .find_driver(&driver)
                .is_some_and(|d| d.info().capability.refresh);
            reissuing |= refreshes && !reply.encoding_required;
            encoding_required |= reply.encoding_required;
            replace_credentials(&mut key, &driver, reply.credentials);
            key.warnings.extend(reply.warnings);
        }
        key.window = req.window;
        key.updated_at = m.now;
        // A new window brings an expired key back into the live set.
        if key.stored_state == KeyState::Expired {
            key.stored_state = KeyState::Active;
        }
        if reissuing && !encoding_required {
            key.stored_state = KeyState::Issuing;
        }
        if encoding_required {
            key.stored_state = KeyState::EncodingRequired;
            if !key
                .warnings
                .iter()
                .any(|w| w.code == warnings::ENCODING_REQUIRED)
            {
                key.warnings.push(Warning::new(
                    warnings::ENCODING_REQUIRED,
                    "the offline credentials still carry the old window: re-encode them \
                     (EncodeKey); the old card keeps its old expiry",
                ));
            }
        }
        dedup_warnings(&mut key.warnings);
        m.put_key(key.clone(), Some(old.clone()));
        if let Some(r) = reservation {
            m.put_reservation(r);
        }
        if let Err(error) = m.commit(&StoredAnswer::key(&key), None).await {
            self.restore_window(&old, &updated_at).await;
            return Err(error);
        }
        Ok(key)
    }

    /// Puts `old`'s window back at the drivers that already took the new one.
    async fn restore_window(&self, old: &AccessKey, drivers: &[String]) {
        self.compensate(
            old,
            drivers,
            "a window change",
            DriverOperation::Update,
            |driver, slice| {
                let new_window = slice.window;
                async move {
                    driver
                        .update(UpdateArgs {
                            key: slice,
                            new_window,
                        })
                        .await
                        .map(drop)
                }
            },
        )
        .await;
    }
}
