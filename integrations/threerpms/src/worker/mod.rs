//! The background work of one hotel: the initial poll when keysmith starts,
//! the nightly sync of the coming days, and the events queued in the inbox
//! (webhooks, keysmith's own revocations, room stays to try again), which
//! `drain.rs` works through without letting one bad event stop the rest.
//! A failure of the whole hotel (3RPMS unreachable or blocking) waits
//! before the next try (as long as the block, when one is suspected), never
//! a tight loop.
//!
//! Replicas sharing a database work for a hotel one at a time: the worker
//! syncs and drains only while this replica holds the hotel's lease
//! ([`lease_name`]), checked before each sync and each group of events.
use std::{sync::Arc, time::Duration};

use jiff::civil::Time;
use keysmith_core::lease::Lease;
use rand::Rng;
use tokio::{sync::watch, time::Instant};

use crate::{
    failure::StayFailure,
    sync::{HotelSync, SyncReport},
    webhook::{Inbox, WebhookEvent},
};

mod drain;

/// Wait before retrying after an error that gives no retry time.
const RETRY: Duration = Duration::from_secs(30);

/// Failures after which an event failing with a validation or schema error
/// is parked (at most `dead_letter_after_attempts`): it is tried again once
/// or twice, with back-off, in case the error was not what it seemed.
pub const PERMANENT_FAILURE_ATTEMPTS: u32 = 3;

/// The longest wait between two tries of one event.
const LONGEST_BACKOFF: Duration = Duration::from_secs(3600);

/// The inbox event kind of a room stay whose step failed in a round: its
/// handling re-reads and reconciles the stay, with back-off, until it
/// succeeds or is parked.
pub const RETRY_STAY: &str = "keysmith.retry_stay";

/// How failed events are tried again.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// The wait after the first failure; it doubles with each one after.
    pub first_wait: Duration,
    /// Failures after which an event is parked.
    pub park_after: u32,
}

impl RetryPolicy {
    /// The wait after an event's `attempts`-th failure.
    fn wait(&self, attempts: u32) -> Duration {
        let doublings = attempts.saturating_sub(1).min(20);
        self.first_wait
            .saturating_mul(1 << doublings)
            .min(LONGEST_BACKOFF)
    }

    /// Failures after which an event failing this way is parked.
    fn limit(&self, permanent: bool) -> u32 {
        let limit = if permanent {
            PERMANENT_FAILURE_ATTEMPTS.min(self.park_after)
        } else {
            self.park_after
        };
        limit.max(1)
    }
}

/// The lease under which one replica works for the hotel of `property_id`.
pub fn lease_name(property_id: &str) -> String {
    format!("3rpms/{property_id}")
}

pub struct Worker {
    hotel: Arc<HotelSync>,
    inbox: Arc<Inbox>,
    /// The hotel's lease: nothing is synced or drained without it.
    lease: Lease,
    initial_sync: bool,
    retry: RetryPolicy,
    /// When each event that failed may be tried again, by queue number.
    /// In memory: after a restart every queued event is due at once (its
    /// failed attempts, kept with it, still count).
    backoff: parking_lot::Mutex<std::collections::HashMap<u64, Instant>>,
}

impl Worker {
    pub fn new(
        hotel: Arc<HotelSync>,
        inbox: Arc<Inbox>,
        lease: Lease,
        initial_sync: bool,
        retry: RetryPolicy,
    ) -> Self {
        Self {
            hotel,
            inbox,
            lease,
            initial_sync,
            retry,
            backoff: Default::default(),
        }
    }

    /// Runs until `stop` turns true. The initial sync waits for the
    /// hotel's lease: a replica that takes the lease over syncs the window
    /// again before it drains.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let property = self.hotel.property_id().to_owned();
        if self.until_leased(&mut stop).await {
            return;
        }
        if self.initial_sync {
            loop {
                match self.hotel.sync_window().await {
                    Ok(report) => {
                        self.after_sync(&report).await;
                        tracing::info!(%property, ?report, "3RPMS initial sync done");
                        break;
                    }
                    Err(error) => {
                        tracing::warn!(%property, %error, "3RPMS initial sync failed");
                        if wait(&mut stop, error.retry_after().unwrap_or(RETRY)).await {
                            return;
                        }
                    }
                }
            }
        }
        loop {
            if self.until_leased(&mut stop).await {
                return;
            }
            // Events left queued by a stop are handled before anything new.
            let next_due = match self.drain().await {
                Ok(next_due) => next_due,
                Err(error) => {
                    tracing::warn!(%property, %error, "3RPMS events not processed yet");
                    if wait(&mut stop, error.retry_after().unwrap_or(RETRY)).await {
                        return;
                    }
                    continue;
                }
            };
            let nightly = self.until_nightly();
            let mut lease = self.lease.clone();
            tokio::select! {
                _ = stop.changed() => return,
                // Lost: the loop waits until it is taken again.
                _ = lease.lost() => {}
                _ = tokio::time::sleep(nightly) => {
                    self.forget_old_events().await;
                    match self.hotel.sync_window().await {
                        Ok(report) => {
                            self.after_sync(&report).await;
                            tracing::info!(%property, ?report, "3RPMS nightly sync done");
                        }
                        Err(error) => {
                            tracing::warn!(%property, %error, "3RPMS nightly sync failed");
                            if wait(&mut stop, error.retry_after().unwrap_or(RETRY)).await {
                                return;
                            }
                        }
                    }
                }
                _ = self.inbox.notified() => {}
                _ = until(next_due) => {}
            }
        }
    }

    /// Waits until this replica holds the hotel's lease; true when asked
    /// to stop meanwhile.
    async fn until_leased(&self, stop: &mut watch::Receiver<bool>) -> bool {
        if self.lease.held() {
            return false;
        }
        tracing::debug!(
            property = self.hotel.property_id(),
            "another replica works for this hotel: waiting for its lease"
        );
        let mut lease = self.lease.clone();
        tokio::select! {
            _ = stop.changed() => true,
            _ = lease.taken() => false,
        }
    }

    /// The stays whose step failed are tried again through the inbox (with
    /// back-off, parked if they keep failing); the count of parked items
    /// goes to the log.
    async fn after_sync(&self, report: &SyncReport) {
        hand_over(&self.hotel, &self.inbox, &report.failed).await;
        if let Ok(parked) = self.inbox.parked_items() {
            if !parked.is_empty() {
                tracing::warn!(
                    property = self.hotel.property_id(),
                    parked = parked.len(),
                    "3RPMS items parked: see ListParkedItems"
                );
            }
        }
    }

    /// 3RPMS retries a delivery for days; markers older than that go.
    async fn forget_old_events(&self) {
        let cutoff = self.hotel.now().unix_seconds()
            - i64::try_from(crate::webhook::inbox::DEDUP_RETENTION.as_secs()).unwrap_or(i64::MAX);
        if let Err(error) = self.inbox.forget_older_than(cutoff).await {
            tracing::warn!(property = self.hotel.property_id(), %error, "pruning webhook markers failed");
        }
    }

    fn until_nightly(&self) -> Duration {
        let at: Time = self
            .hotel
            .config()
            .nightly_at
            .parse()
            .unwrap_or(Time::constant(3, 0, 0, 0));
        self.hotel.until_local_time(at)
    }
}

/// Queues a retry of each failed stay in the inbox, unless one is queued or
/// parked already. A failure to queue is logged: the next round finds the
/// stay again.
pub(crate) async fn hand_over(hotel: &HotelSync, inbox: &Inbox, failures: &[StayFailure]) {
    for StayFailure { stay_id, failure } in failures {
        let event = WebhookEvent {
            // Unique: a retry raised again later must not look like this
            // one's duplicate.
            id: format!(
                "keysmith:retry-stay:{stay_id}:{:016x}",
                rand::rng().random::<u64>()
            ),
            kind: RETRY_STAY.to_owned(),
            created_at: hotel.now().unix_seconds(),
            endpoint_id: String::new(),
            object_id: stay_id.clone(),
            updated_fields: None,
        };
        if let Err(error) = inbox.raise(event).await {
            tracing::warn!(
                property = hotel.property_id(),
                stay_id,
                reason = %failure.reason,
                %error,
                "cannot queue a retry of a failed room stay; the next round finds it again"
            );
        }
    }
}

/// Waits, or returns true when asked to stop meanwhile.
async fn wait(stop: &mut watch::Receiver<bool>, how_long: Duration) -> bool {
    tokio::select! {
        _ = stop.changed() => true,
        _ = tokio::time::sleep(how_long) => false,
    }
}

/// Resolves at `at`, or never.
async fn until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_an_hour_and_permanent_failures_park_sooner() {
        let policy = RetryPolicy {
            first_wait: Duration::from_secs(30),
            park_after: 8,
        };
        assert_eq!(policy.wait(1), Duration::from_secs(30));
        assert_eq!(policy.wait(2), Duration::from_secs(60));
        assert_eq!(policy.wait(4), Duration::from_secs(240));
        assert_eq!(policy.wait(30), LONGEST_BACKOFF);
        assert_eq!(policy.limit(false), 8);
        assert_eq!(policy.limit(true), PERMANENT_FAILURE_ATTEMPTS);
        let impatient = RetryPolicy {
            park_after: 1,
            ..policy
        };
        assert_eq!(impatient.limit(true), 1);
    }
}
