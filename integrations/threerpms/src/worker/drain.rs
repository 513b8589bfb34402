//! Working through a hotel's inbox so that one bad event never stops the
//! hotel. Due events are handled together (one batched read for all the
//! stays they name); when that fails for a reason of its own (not 3RPMS
//! being unreachable, which stops the hotel for a while), the group is
//! halved until the failing event stands alone, and the others go through.
//! An event that failed, or whose room stay's step failed, is tried again
//! with back-off; one that keeps failing, or fails with a validation or
//! schema error, is parked in the dead-letter list with its reason
//! (`webhook/dead_letter.rs`) and the queue goes on.
use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};

use keysmith_core::Result;
use tokio::time::Instant;

use super::{hand_over, Worker, RETRY_STAY};
use crate::{
    failure::{self, Failure, StayFailure},
    observer::KEY_REVOKED,
    webhook::Queued,
};

/// Events handled in one go, at most.
const EVENTS_PER_ROUND: usize = 500;

/// What handling a group of events gave.
#[derive(Default)]
struct Outcome {
    /// Events that failed, by queue number: they named a room stay whose
    /// step failed.
    failed: BTreeMap<u64, Failure>,
    /// Failed stays no event of the group names (found through a
    /// reservation or a deleted key): each gets a retry of its own.
    unattributed: Vec<StayFailure>,
}

impl Worker {
    /// Handles every due event. Returns when the next event waiting for its
    /// back-off is due, if any; `Err` only for a failure of the whole hotel
    /// (the caller waits before trying again). Returns at once, before the
    /// next group, when the hotel's lease is lost.
    pub(super) async fn drain(&self) -> Result<Option<Instant>> {
        loop {
            if !self.lease.held() {
                return Ok(None);
            }
            let pending = self.inbox.pending()?;
            let now = Instant::now();
            let due: Vec<Queued> = {
                let mut backoff = self.backoff.lock();
                let queued: HashSet<u64> = pending.iter().map(|q| q.seq).collect();
                backoff.retain(|seq, _| queued.contains(seq));
                let due: Vec<Queued> = pending
                    .into_iter()
                    .filter(|q| backoff.get(&q.seq).is_none_or(|at| *at <= now))
                    .take(EVENTS_PER_ROUND)
                    .collect();
                if due.is_empty() {
                    return Ok(backoff.values().min().copied());
                }
                due
            };
            self.handle_isolating(due).await?;
        }
    }

    /// Handles a group, halving it around whatever fails on its own.
    async fn handle_isolating(&self, events: Vec<Queued>) -> Result<()> {
        let mut work = VecDeque::from([events]);
        while let Some(group) = work.pop_front() {
            match self.handle(&group).await {
                Ok(outcome) => {
                    let done: Vec<u64> = group
                        .iter()
                        .map(|q| q.seq)
                        .filter(|seq| !outcome.failed.contains_key(seq))
                        .collect();
                    self.inbox.complete(&done).await?;
                    for queued in &group {
                        if let Some(failure) = outcome.failed.get(&queued.seq) {
                            self.failed(queued, failure).await?;
                        }
                    }
                    hand_over(&self.hotel, &self.inbox, &outcome.unattributed).await;
                }
                Err(e) if failure::hotel_wide(&e) => return Err(e),
                Err(_) if group.len() > 1 => {
                    let (first, second) = group.split_at(group.len() / 2);
                    work.push_front(second.to_vec());
                    work.push_front(first.to_vec());
                }
                Err(e) => self.failed(&group[0], &Failure::of(&e)).await?,
            }
        }
        Ok(())
    }

    /// One more failed attempt: parked at the limit, else tried again after
    /// a back-off.
    async fn failed(&self, queued: &Queued, failure: &Failure) -> Result<()> {
        let property = self.hotel.property_id();
        let attempts = queued.attempts.saturating_add(1);
        if attempts >= self.retry.limit(failure.permanent) {
            let counted = Queued {
                attempts,
                ..queued.clone()
            };
            let (item, parked) = self
                .inbox
                .park(&counted, &failure.reason, self.hotel.now().unix_seconds())
                .await?;
            self.backoff.lock().remove(&queued.seq);
            tracing::warn!(
                property,
                item_id = item.item_id,
                kind = %item.event.kind,
                object_id = %item.event.object_id,
                attempts,
                reason = %failure.reason,
                parked,
                "3RPMS event parked after failing; the hotel's other events go on"
            );
        } else {
            self.inbox.record_failure(queued, &failure.reason).await?;
            let wait = self.retry.wait(attempts);
            self.backoff
                .lock()
                .insert(queued.seq, Instant::now() + wait);
            tracing::info!(
                property,
                kind = %queued.event.kind,
                object_id = %queued.event.object_id,
                attempts,
                reason = %failure.reason,
                ?wait,
                "3RPMS event failed; tried again after a back-off"
            );
        }
        Ok(())
    }

    /// Acts on a group of events: room stay events and retries re-read the
    /// stays by id in one batched query, reservation events the
    /// reservations' stays, key deletions republish, keysmith's revocations
    /// replace the key of the stays that held it.
    async fn handle(&self, group: &[Queued]) -> Result<Outcome> {
        // The stays each event is about, for blaming a failed stay's events.
        let mut naming: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        let mut stays: BTreeSet<String> = BTreeSet::new();
        let mut reservations: BTreeSet<String> = BTreeSet::new();
        let mut deleted_keys: BTreeSet<String> = BTreeSet::new();
        let records = self.hotel.records()?;
        for queued in group {
            let event = &queued.event;
            let id = event.object_id.clone();
            let named: Vec<String> = match event.kind.as_str() {
                "room_stay.created" | "room_stay.updated" | "room_stay.deleted" | RETRY_STAY => {
                    vec![id]
                }
                "reservation.created" | "reservation.updated" => {
                    reservations.insert(id);
                    Vec::new()
                }
                "room_access_key.deleted" => {
                    deleted_keys.insert(id);
                    Vec::new()
                }
                // Names a keysmith key: the stays that hold it.
                KEY_REVOKED => records
                    .iter()
                    .filter(|(_, r)| r.key_id == id)
                    .map(|(stay_id, _)| stay_id.clone())
                    .collect(),
                // Other events are of no concern to keys; they are acknowledged.
                other => {
                    tracing::debug!(event = other, "3RPMS event ignored");
                    Vec::new()
                }
            };
            for stay in named {
                naming.entry(stay.clone()).or_default().push(queued.seq);
                stays.insert(stay);
            }
        }

        let mut failures: Vec<StayFailure> = Vec::new();
        if !reservations.is_empty() {
            let ids: Vec<String> = reservations.into_iter().collect();
            let report = self.hotel.sync_reservations(&ids).await?;
            tracing::debug!(reservations = ?ids, ?report, "3RPMS reservations re-read");
            failures.extend(report.failed);
        }
        if !stays.is_empty() {
            let ids: Vec<String> = stays.into_iter().collect();
            let report = self.hotel.sync_stays(&ids).await?;
            tracing::debug!(stays = ?ids, ?report, "3RPMS room stays re-read");
            failures.extend(report.failed);
        }
        for key in &deleted_keys {
            let report = self.hotel.key_deleted(key).await?;
            failures.extend(report.failed);
        }

        let mut outcome = Outcome::default();
        for failed in failures {
            match naming.get(&failed.stay_id) {
                Some(seqs) => {
                    for seq in seqs {
                        outcome
                            .failed
                            .entry(*seq)
                            .or_insert_with(|| failed.failure.clone());
                    }
                }
                None => outcome.unattributed.push(failed),
            }
        }
        Ok(outcome)
    }
}
