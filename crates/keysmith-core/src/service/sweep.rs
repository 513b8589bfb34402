//! The data lifecycle: keys leave the live set when their window ends, and
//! the store once they have been ended for longer than the retention, with
//! their index entries and, when a reservation has no key left, the
//! reservation itself. Audit records and request_ids have retentions of
//! their own. The sweeper works in small batches, each one transaction
//! holding only the locks of its own keys, so writes never wait long.
use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use crate::{
    driver::ForgetArgs,
    error::{Error, Result},
    key::{AccessKey, KeyState},
    reservation::Reservation,
    store::{Due, LockName},
    time::Timestamp,
};

use super::{
    drivers_of,
    envelope::{Begun, Envelope, Method},
    slice_for, AccessService,
};

/// How long what has ended is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// Ended keys (revoked, or expired) are purged this long after they ended.
    pub keys: Duration,
    /// Audit records are purged this long after they were written.
    pub audit: Duration,
    /// A request_id is remembered this long (AIP-155).
    pub request_ids: Duration,
    /// The change log WatchKeys resumes from keeps each change this long.
    pub changes: Duration,
}

/// What one sweep did, for the logs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Keys moved out of the live set because their window ended.
    pub expired: usize,
    /// Ended keys deleted past their retention.
    pub purged_keys: usize,
    /// Reservations deleted because none of their keys is left.
    pub purged_reservations: usize,
    /// Audit records deleted past their retention.
    pub purged_audit: usize,
    /// request_ids forgotten past their retention.
    pub forgotten_request_ids: usize,
    /// Change log records deleted past their retention.
    pub purged_changes: usize,
    /// Bytes the store's files shrank by when it gave back the space of
    /// what was deleted (`Store::reclaim_space`).
    pub reclaimed_bytes: u64,
}

impl SweepReport {
    /// Whether the sweep changed anything.
    pub fn is_empty(&self) -> bool {
        *self == SweepReport::default()
    }
}

impl AccessService {
    /// Sweeps once: expires what has ended, purges what is past its
    /// retention, `batch` keys (or audit records) per transaction. Each
    /// batch starts only while `held()` (this replica holds the sweeper's
    /// lease); once it is not, the sweep stops with what it did, and the
    /// holder's next sweep goes on from there.
    pub async fn sweep(
        &self,
        retention: &Retention,
        batch: usize,
        held: &(dyn Fn() -> bool + Send + Sync),
    ) -> Result<SweepReport> {
        let batch = batch.max(1);
        let now = self.clock.now();
        let mut report = SweepReport::default();

        let mut after: Option<Due> = None;
        loop {
            if !held() {
                return Ok(report);
            }
            // A window ends at its end: a key whose end is `now` is due.
            let due_by = Timestamp::from_micros(now.as_micros().saturating_add(1));
            let due = self.store.ended_live_keys(due_by, after.as_ref(), batch)?;
            let Some(last) = due.last().cloned() else {
                break;
            };
            report.expired += self.expire(&due, now).await?;
            after = Some(last);
        }

        let keys_before = before(now, retention.keys);
        let mut after: Option<Due> = None;
        loop {
            if !held() {
                return Ok(report);
            }
            let due = self
                .store
                .purgeable_keys(keys_before, after.as_ref(), batch)?;
            let Some(last) = due.last().cloned() else {
                break;
            };
            let (keys, reservations) = self.purge(&due, keys_before).await?;
            report.purged_keys += keys;
            report.purged_reservations += reservations;
            after = Some(last);
        }

        let audit_before = before(now, retention.audit);
        loop {
            if !held() {
                return Ok(report);
            }
            let purged = self.store.purge_audit(audit_before, batch).await?;
            report.purged_audit += purged;
            if purged < batch {
                break;
            }
        }
        let changes_before = before(now, retention.changes);
        loop {
            if !held() {
                return Ok(report);
            }
            let purged = self.store.purge_changes(changes_before, batch).await?;
            report.purged_changes += purged;
            if purged < batch {
                break;
            }
        }
        if !held() {
            return Ok(report);
        }
        report.forgotten_request_ids = self
            .store
            .expire_idempotency(before(now, retention.request_ids))
            .await?;
        if !held() {
            return Ok(report);
        }
        report.reclaimed_bytes = self.store.reclaim_space().await?;
        Ok(report)
    }

    /// Moves the keys of `due` whose window has ended out of the live set,
    /// in one transaction. A key changed meanwhile (extended, revoked) is
    /// left as it is; a key still being revoked stays where a retry finds it.
    async fn expire(&self, due: &[Due], now: Timestamp) -> Result<usize> {
        let mut m = self.begin_sweeping(due).await?;
        let mut expired = 0;
        for d in due {
            let Some(key) = m.tx.key(&d.property_id, &d.key_id).await? else {
                continue;
            };
            // A key that failed to be issued ends with its window too; one
            // still being revoked stays where the retry finds it.
            let live = matches!(
                key.stored_state,
                KeyState::Issuing
                    | KeyState::Active
                    | KeyState::EncodingRequired
                    | KeyState::Failed
            );
            if !live || !key.window.has_ended(now) {
                continue;
            }
            let mut ended = key.clone();
            ended.stored_state = KeyState::Expired;
            m.put_key(ended, Some(key));
            expired += 1;
        }
        m.tx.commit().await?;
        Ok(expired)
    }

    /// Deletes the keys of `due` that ended before `cutoff`, with their
    /// place in their reservation; a reservation none of whose keys is left
    /// goes too. Each driver is then told to forget what it kept.
    async fn purge(&self, due: &[Due], cutoff: Timestamp) -> Result<(usize, usize)> {
        let mut m = self.begin_sweeping(due).await?;
        let mut purged: Vec<AccessKey> = Vec::new();
        let mut reservations: BTreeMap<(String, String), Option<Reservation>> = BTreeMap::new();
        for d in due {
            let Some(key) = m.tx.key(&d.property_id, &d.key_id).await? else {
                continue;
            };
            if key.ended_at().is_none_or(|ended| ended >= cutoff) {
                continue;
            }
            if let Some(held) = &key.reservation {
                let slot = (key.property_id.clone(), held.key.clone());
                if !reservations.contains_key(&slot) {
                    let r = m.tx.reservation(&slot.0, &slot.1).await?;
                    reservations.insert(slot.clone(), r);
                }
                if let Some(Some(r)) = reservations.get_mut(&slot) {
                    if r.holds(held) {
                        r.members.remove(&key.key_id);
                    }
                }
            }
            purged.push(key);
        }
        let purged_ids: BTreeSet<&str> = purged.iter().map(|k| k.key_id.as_str()).collect();
        let mut forgotten = BTreeSet::new();
        for ((property_id, rk), r) in reservations {
            let Some(r) = r else { continue };
            let left = m.tx.keys_of_reservation(&property_id, &rk).await?;
            if left.iter().all(|id| purged_ids.contains(id.as_str())) {
                m.tx.writes()
                    .purged_reservations
                    .push((property_id.clone(), rk.clone()));
                forgotten.insert((property_id, rk));
            } else {
                m.put_reservation(r);
            }
        }
        let counts = (purged.len(), forgotten.len());
        m.tx.writes().purged.extend(purged.iter().cloned());
        m.tx.commit().await?;
        for key in &purged {
            let reservation_forgotten = key
                .reservation
                .as_ref()
                .is_some_and(|r| forgotten.contains(&(key.property_id.clone(), r.key.clone())));
            self.tell_drivers_to_forget(key, reservation_forgotten)
                .await;
        }
        Ok(counts)
    }

    /// A transaction holding the locks of every key of `due` (and of their
    /// reservations), so that no request changes them meanwhile.
    async fn begin_sweeping(&self, due: &[Due]) -> Result<super::envelope::Mutation<'_>> {
        let property_id = due.first().map_or("", |d| d.property_id.as_str());
        let mut envelope = Envelope::internal(Method::Sweep, property_id);
        let mut names = BTreeSet::new();
        for d in due {
            names.insert(LockName::Key {
                property_id: d.property_id.clone(),
                key_id: d.key_id.clone(),
            });
            if let Some(rk) = self
                .store
                .key(&d.property_id, &d.key_id)?
                .and_then(|k| k.reservation_key().map(str::to_owned))
            {
                names.insert(LockName::Reservation {
                    property_id: d.property_id.clone(),
                    reservation_key: rk,
                });
            }
        }
        envelope = envelope.locking(names);
        match self.begin(envelope).await? {
            Begun::Fresh(m) => Ok(m),
            Begun::Replayed(_) => Err(Error::internal(
                "a sweep was answered from a request_id it does not have",
            )),
        }
    }

    async fn tell_drivers_to_forget(&self, key: &AccessKey, reservation_forgotten: bool) {
        for name in drivers_of(key) {
            let Some(driver) = self.router.find_driver(&name) else {
                continue;
            };
            let args = ForgetArgs {
                key: slice_for(key, &name),
                reservation_forgotten,
            };
            if let Err(error) = driver.forget(args).await {
                tracing::warn!(key_id = %key.key_id, driver = %name, %error, "a driver could not forget a purged key");
            }
        }
    }
}

/// `now` less `age`, saturating.
fn before(now: Timestamp, age: Duration) -> Timestamp {
    let micros = i64::try_from(age.as_micros()).unwrap_or(i64::MAX);
    Timestamp::from_micros(now.as_micros().saturating_sub(micros))
}
