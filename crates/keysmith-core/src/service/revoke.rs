//! Revoke: one key, or every key of a reservation (clearing it). A
//! revocation cannot be undone at a driver, so when one driver fails the
//! others' revocations stand: the key is stored REVOKING, with a warning
//! naming the driver, and a retry of the request completes it.
use std::collections::BTreeSet;

use crate::{
    driver::RevokeArgs,
    error::{bounded, quoted, reasons, Error, Result},
    key::{warnings, AccessKey, KeyState, Warning},
    request::{RevokeRequest, RevokeTarget},
    reservation::Reservation,
    store::StoredAnswer,
    time::Timestamp,
};

use super::{
    add_warnings, dedup_warnings,
    driver_calls::DriverOperation,
    driver_pending, drivers_of,
    envelope::{Begun, Envelope, Mutation},
    AccessService, Revocation,
};

/// One key after its revocation was attempted at its drivers.
struct Attempt {
    key: AccessKey,
    /// What the drivers said, for the answer.
    warnings: Vec<Warning>,
    /// The first driver that failed, if one did.
    failure: Option<Error>,
}

impl AccessService {
    /// Revokes one key, or every key of a reservation and clears it, so that
    /// the next key of that reservation_key starts a new stay.
    ///
    /// Checks the request's content ([`RevokeRequest::validate`]); NotFound
    /// `KEY_NOT_FOUND` for an unknown key, `PROPERTY_NOT_FOUND` or
    /// `RESERVATION_NOT_FOUND` for an unknown reservation; and, with nothing
    /// done, FailedPrecondition `OPERATION_NOT_SUPPORTED` unless every
    /// still-configured driver of every key can revoke. A key already revoked
    /// is answered as it is.
    ///
    /// Each key is revoked at its drivers in entrance order. A driver no longer
    /// configured cannot be told: the key is revoked in keysmith only, with a
    /// `DRIVER_NOT_CONFIGURED` warning. A revocation cannot be undone, so when
    /// a driver fails the others' revocations stand: the key is stored
    /// `REVOKING` with a `REVOKE_INCOMPLETE` warning naming the driver, the
    /// reservation is not cleared, what was done is committed and audited with
    /// the failure, and the driver's error is answered. A retry of the request
    /// (the same request_id) completes it. Observers
    /// ([`AccessService::observe`]) are told of each key newly revoked once
    /// that is durable.
    ///
    /// Idempotent by request_id: the retry of a completed revocation gets its
    /// first answer. Revoking a revoked key again succeeds and changes nothing.
    pub async fn revoke(&self, req: RevokeRequest) -> Result<Revocation> {
        let envelope = Envelope::of(&req)?;
        let reservation_key = match &req.target {
            RevokeTarget::Reservation(rk) => Some(rk.clone()),
            RevokeTarget::Key(key_id) => self
                .require_key(&req.property_id, key_id)?
                .reservation_key()
                .map(str::to_owned),
        };
        let mut envelope = envelope.locking_reservation(reservation_key.as_deref());
        if let RevokeTarget::Key(key_id) = &req.target {
            envelope = envelope.locking_key(key_id);
        }
        let mut m = match self.begin(envelope).await? {
            Begun::Replayed(answer) => return answer.into_revocation(),
            Begun::Fresh(m) => m,
        };
        let mut reservation = match &reservation_key {
            Some(rk) => m.reservation(rk).await?,
            None => None,
        };
        let targets = match &req.target {
            RevokeTarget::Key(key_id) => vec![m.require_key(key_id).await?],
            RevokeTarget::Reservation(rk) => {
                self.router.require_property(&req.property_id)?;
                let r = reservation.as_ref().ok_or_else(|| {
                    Error::not_found(
                        reasons::RESERVATION_NOT_FOUND,
                        format!(
                            "property {} has no reservation {}",
                            quoted(&req.property_id),
                            quoted(rk)
                        ),
                    )
                    .with_context("reservation_key", bounded(rk))
                })?;
                keys_clearing(&mut m, r).await?
            }
        };
        for key in &targets {
            self.check_revocable(key)?;
        }

        let mut answer = Vec::with_capacity(targets.len());
        let mut all_warnings = Vec::new();
        let mut newly_revoked = Vec::new();
        let mut failure = None;
        for old in targets {
            if old.is_revoked() {
                answer.push(old);
                continue;
            }
            let attempt = self.revoke_at_drivers(&old, m.now).await;
            if attempt.key.is_revoked() {
                // A key revoked on its own stays a member: its card still
                // carries the reservation's value.
                if let Some(member) = reservation
                    .as_mut()
                    .filter(|r| old.reservation.as_ref().is_some_and(|k| r.holds(k)))
                    .and_then(|r| r.members.get_mut(&old.key_id))
                {
                    member.revoked = true;
                }
                newly_revoked.push(attempt.key.clone());
            }
            all_warnings.extend(attempt.warnings);
            failure = failure.or(attempt.failure);
            m.put_key(attempt.key.clone(), Some(old));
            answer.push(attempt.key);
        }

        if let Some(failure) = failure {
            // Not cleared: the keys not yet revoked everywhere are still
            // members, which the retry revokes.
            if let Some(r) = reservation {
                m.put_reservation(r);
            }
            m.commit_progress(&answer, &failure).await?;
            self.tell_observers(&newly_revoked).await;
            return Err(failure);
        }
        if let Some(mut r) = reservation {
            if matches!(req.target, RevokeTarget::Reservation(_)) {
                // Cleared: the next key of this reservation_key starts a new stay.
                r.clear();
            }
            m.put_reservation(r);
        }
        dedup_warnings(&mut all_warnings);
        let revocation = Revocation {
            keys: answer,
            warnings: all_warnings,
        };
        let audited_reservation = match &req.target {
            RevokeTarget::Reservation(rk) => Some(rk.as_str()),
            RevokeTarget::Key(_) => None,
        };
        m.commit(&StoredAnswer::revocation(&revocation), audited_reservation)
            .await?;
        self.tell_observers(&newly_revoked).await;
        Ok(revocation)
    }

    /// Every configured driver of the key can revoke: else nothing is done.
    fn check_revocable(&self, key: &AccessKey) -> Result<()> {
        if key.is_revoked() {
            return Ok(());
        }
        for name in key.drivers() {
            if let Some(driver) = self.router.find_driver(name) {
                self.require(driver.as_ref(), |c| c.revoke, "revoke")?;
            }
        }
        Ok(())
    }

    /// Revokes `old` at each of its drivers. A driver that is no longer
    /// configured cannot be told: the key is revoked in keysmith with a
    /// warning naming it.
    async fn revoke_at_drivers(&self, old: &AccessKey, now: Timestamp) -> Attempt {
        let (configured, missing): (Vec<String>, Vec<String>) = drivers_of(old)
            .into_iter()
            .partition(|name| self.router.find_driver(name).is_some());
        let out = self
            .fan_out(
                old,
                &configured,
                DriverOperation::Revoke,
                |driver, slice| async move { driver.revoke(RevokeArgs { key: slice }).await },
            )
            .await;
        let mut said: Vec<Warning> = out
            .done
            .into_iter()
            .flat_map(|d| d.reply.warnings)
            .collect();
        said.extend(missing.iter().map(|name| {
            Warning::new(
                warnings::DRIVER_NOT_CONFIGURED,
                format!(
                    "driver {name:?} is not configured any more: the key is revoked in keysmith \
                     only; its credentials at that driver's doors were not withdrawn"
                ),
            )
        }));
        let mut key = old.clone();
        key.updated_at = now;
        key.warnings
            .retain(|w| w.code != warnings::REVOKE_INCOMPLETE);
        let failure = match out.stopped {
            Some(stopped) => {
                key.stored_state = KeyState::Revoking;
                key.warnings.push(driver_pending(
                    warnings::REVOKE_INCOMPLETE,
                    &stopped.driver,
                    &stopped.error,
                    "withdraw the key, whose credentials there may still open",
                ));
                Some(stopped.error)
            }
            None => {
                key.stored_state = KeyState::Revoked;
                key.revoked_at = Some(now);
                None
            }
        };
        add_warnings(&mut key.warnings, said.iter().cloned());
        Attempt {
            key,
            warnings: said,
            failure,
        }
    }

    /// Tells the observers (a PMS integration) of keys now revoked.
    async fn tell_observers(&self, keys: &[AccessKey]) {
        let observers = self.observers.read().clone();
        for key in keys {
            for observer in &observers {
                if let Err(error) = observer.revoked(key).await {
                    tracing::error!(key_id = %key.key_id, %error, "a key observer failed");
                }
            }
        }
    }
}

/// The keys Revoke by reservation_key revokes: every member not yet
/// revoked, and any key the reservation index still lists as live under
/// this reservation_key, so that nothing of the stay is left behind.
async fn keys_clearing(m: &mut Mutation<'_>, r: &Reservation) -> Result<Vec<AccessKey>> {
    let mut ids: BTreeSet<String> = r.unrevoked_members().map(str::to_owned).collect();
    let property_id = m.property_id().to_owned();
    ids.extend(
        m.tx.live_keys_of_reservation(&property_id, &r.reservation_key)
            .await?,
    );
    let mut keys = Vec::with_capacity(ids.len());
    for key_id in ids {
        keys.extend(m.tx.key(&property_id, &key_id).await?);
    }
    Ok(keys)
}
