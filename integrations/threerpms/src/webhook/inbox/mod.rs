//! The durable inbox of one property: every event accepted once, kept until
//! the worker has acted on it.
//!
//! 3RPMS delivers at least once and retries anything that was not answered
//! with a 2xx, so the receiver may answer 2xx only once the event is on disk,
//! and must answer a retry of an event it already holds with a 2xx without
//! queueing it again. Both halves live here: a dedup marker per event id and
//! a queue entry per accepted event, written together in one atomic batch.
//!
//! Layout, in the driver's key space (see `keys` for the property segment):
//! - `wh/{property}\0seen/{event id}` -> received at, unix seconds, i64 big-endian
//! - `wh/{property}\0queue/{seq}` -> the event and its failed attempts, JSON;
//!   `seq` a big-endian u64 so that the store's key order is arrival order.
//! - `wh/{property}\0parked/{item id}` -> an event set aside (`dead_letter.rs`).
//! - `wh/{property}\0next/` -> the next sequence number, u64 big-endian.
//!
//! Several keysmith replicas on one store may each receive deliveries for
//! the same property: each change that reads, numbers and writes the queue
//! (accepting, counting a failure, parking, retrying a parked event) is
//! made in the inbox's [`DriverState::section`], which excludes every
//! replica, and takes its number from the stored counter, so that two
//! replicas never give two events one number (the second would overwrite
//! the first: an event answered 2xx and lost).
//!
//! The worker that drains the queue runs on the replica holding the hotel's
//! lease, which need not be the one that queued an entry: a replica that
//! queues one wakes its own worker and signals the others through the
//! store ([`DriverState::signal`], topic `inbox/{property}`); the holder's
//! worker wakes when it hears it, rather than at its next round.
//!
//! Queue entries are JSON rather than postcard so that a field added to
//! [`WebhookEvent`] later can still read entries written before an upgrade.
use std::{future::Future, sync::Arc, time::Duration};

use keysmith_core::{
    store::{DriverState, StateSection},
    Error, Result,
};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::{event::WebhookEvent, keys};

/// A queued event: what 3RPMS (or keysmith itself) said, and how often
/// acting on it failed so far.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Queued {
    /// Its place in the queue.
    #[serde(skip)]
    pub seq: u64,
    #[serde(flatten)]
    pub event: WebhookEvent,
    /// Failed attempts; entries written before attempts were kept read 0.
    #[serde(default)]
    pub attempts: u32,
    /// Why the last attempt failed.
    #[serde(default)]
    pub last_failure: Option<String>,
}

/// How long dedup markers are worth keeping: well beyond the days for which
/// 3RPMS retries a delivery. See [`Inbox::forget_older_than`].
pub const DEDUP_RETENTION: Duration = Duration::from_secs(14 * 24 * 3600);

/// What [`Inbox::accept`] did with an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accepted {
    /// Queued for the worker.
    New,
    /// Already seen (a retry or a duplicate delivery); nothing changed.
    Duplicate,
}

pub struct Inbox {
    pub(super) state: Arc<dyn DriverState>,
    property_id: String,
    seen: Vec<u8>,
    queue: Vec<u8>,
    /// Where parked events are kept (`dead_letter.rs`).
    pub(super) parked: Vec<u8>,
    /// Where the next sequence number is stored.
    next: Vec<u8>,
    /// The lowest number this process may give next: past every entry
    /// queued when the inbox opened (a store written before the counter was
    /// kept has none) and every number it gave since. Read and set inside
    /// the inbox's section only.
    pub(super) next_seq: Mutex<u64>,
    /// Wakes this process's worker: on an entry queued here, or signalled
    /// by another process on the store.
    pub(super) notify: Arc<Notify>,
    /// The topic of this inbox's signals between processes.
    topic: String,
    /// Events queued and not yet completed or parked, for [`Inbox::idle`].
    pub(super) outstanding: tokio::sync::watch::Sender<usize>,
}

impl std::fmt::Debug for Inbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbox")
            .field("property_id", &self.property_id)
            .finish_non_exhaustive()
    }
}

impl Inbox {
    /// Opens the inbox of `property_id`, continuing the numbering after the
    /// stored counter and the highest entry still queued. Numbers are
    /// unique and grow with arrival, across restarts and replicas.
    pub fn new(state: Arc<dyn DriverState>, property_id: &str) -> Result<Self> {
        let prefix = keys::property_prefix(property_id)?;
        let seen = keys::section(&prefix, "seen");
        let queue = keys::section(&prefix, "queue");
        let parked = keys::section(&prefix, "parked");
        let next = keys::section(&prefix, "next");
        let queued: Vec<u64> = state
            .scan_prefix(&queue)?
            .iter()
            .filter_map(|(key, _)| seq_of(&queue, key))
            .collect();
        let highest = queued.iter().copied().max();
        let next_seq = match highest {
            Some(highest) => highest.checked_add(1).ok_or_else(exhausted)?,
            None => 0,
        };
        let notify = Arc::new(Notify::new());
        let topic = format!("inbox/{property_id}");
        // Weak: the store keeps the wake for its lifetime, and must not
        // keep the inbox's worker side alive.
        let woken = Arc::downgrade(&notify);
        state.on_signal(
            &topic,
            Arc::new(move || {
                if let Some(notify) = woken.upgrade() {
                    notify.notify_one();
                }
            }),
        );
        if highest.is_some() {
            // Entries left from before a restart wake the worker's first
            // wait, as if they had just arrived.
            notify.notify_one();
        }
        Ok(Self {
            state,
            property_id: property_id.to_owned(),
            seen,
            queue,
            parked,
            next,
            next_seq: Mutex::new(next_seq),
            notify,
            topic,
            outstanding: tokio::sync::watch::Sender::new(queued.len()),
        })
    }

    pub fn property_id(&self) -> &str {
        &self.property_id
    }

    /// Records the event unless its id was seen before, and returns once the
    /// outcome is durable: only then may the delivery be answered with a 2xx.
    pub async fn accept(&self, event: WebhookEvent) -> Result<Accepted> {
        self.accept_at(event, jiff::Timestamp::now().as_second())
            .await
    }

    pub(crate) async fn accept_at(&self, event: WebhookEvent, now_unix: i64) -> Result<Accepted> {
        event.validate()?;
        let value = encode(&Queued {
            seq: 0,
            event: event.clone(),
            attempts: 0,
            last_failure: None,
        })?;
        let seen_key = keys::entry(&self.seen, event.id.as_bytes());

        let outcome = {
            let mut section = self.section()?;
            if section.get(&seen_key)?.is_some() {
                Accepted::Duplicate
            } else {
                let seq = self.number(section.as_mut())?;
                section.apply(vec![
                    (seen_key, Some(now_unix.to_be_bytes().to_vec())),
                    (self.queue_key(seq), Some(value)),
                ]);
                self.commit_numbered(section, seq)?;
                Accepted::New
            }
        };

        // A duplicate waits for the disk too: the marker that made it one may
        // come from a concurrent delivery whose write is not durable yet, and
        // answering 2xx before it is would lose the event in a crash.
        self.state.sync().await?;
        if outcome == Accepted::New {
            self.queued().await;
        }
        Ok(outcome)
    }

    /// An entry was queued (durably): wakes this process's worker and
    /// signals the other processes on the store, whichever of them holds
    /// the hotel's lease. A signal that fails is logged: the holder finds
    /// the entry at its next round.
    pub(super) async fn queued(&self) {
        self.outstanding.send_modify(|n| *n += 1);
        self.notify.notify_one();
        if let Err(error) = self.state.signal(&self.topic).await {
            tracing::warn!(
                property_id = %self.property_id,
                %error,
                "cannot wake the other keysmith replicas for a queued 3RPMS event; \
                 the one working for the hotel finds it at its next round"
            );
        }
    }

    /// The queued events, oldest first.
    ///
    /// An entry that cannot be decoded is logged and left out rather than
    /// failing the call: one bad entry must not stall every event behind it.
    pub fn pending(&self) -> Result<Vec<Queued>> {
        let entries = self.state.scan_prefix(&self.queue)?;
        let mut out = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            let Some(seq) = seq_of(&self.queue, &key) else {
                continue;
            };
            match serde_json::from_slice::<Queued>(&value) {
                Ok(queued) => out.push(Queued { seq, ..queued }),
                Err(error) => tracing::error!(
                    property_id = %self.property_id,
                    seq,
                    %error,
                    "a queued 3RPMS webhook event cannot be decoded; skipped"
                ),
            }
        }
        Ok(out)
    }

    /// Records a failed attempt on a queued event, durably: the count
    /// survives a restart, so an event cannot escape parking by one.
    pub async fn record_failure(&self, queued: &Queued, failure: &str) -> Result<u32> {
        let attempts = queued.attempts.saturating_add(1);
        let value = encode(&Queued {
            attempts,
            last_failure: Some(failure.to_owned()),
            ..queued.clone()
        })?;
        let key = self.queue_key(queued.seq);
        {
            let mut section = self.section()?;
            // Completed or parked meanwhile: nothing to count.
            if section.get(&key)?.is_none() {
                return Ok(attempts);
            }
            section.apply(vec![(key, Some(value))]);
            section.commit()?;
        }
        self.state.sync().await?;
        Ok(attempts)
    }

    /// Queues an event keysmith raises itself (a revocation, a room stay to
    /// try again), unless one of the same kind for the same object is
    /// queued or parked already.
    pub async fn raise(&self, event: WebhookEvent) -> Result<Accepted> {
        let same = |e: &WebhookEvent| e.kind == event.kind && e.object_id == event.object_id;
        if self.pending()?.iter().any(|q| same(&q.event))
            || self.parked_items()?.iter().any(|p| same(&p.event))
        {
            return Ok(Accepted::Duplicate);
        }
        self.accept(event).await
    }

    /// Removes handled entries from the queue. Their dedup markers stay, so
    /// a late retry of a handled event is still recognised.
    pub async fn complete(&self, seqs: &[u64]) -> Result<()> {
        if seqs.is_empty() {
            return Ok(());
        }
        let changes = seqs
            .iter()
            .map(|&seq| (self.queue_key(seq), None))
            .collect();
        self.state.apply(changes)?;
        self.state.sync().await?;
        self.outstanding
            .send_modify(|n| *n = n.saturating_sub(seqs.len()));
        Ok(())
    }

    /// Resolves when every accepted event has been completed: for an
    /// operator's drain and for tests, which must not sleep to wait.
    pub async fn idle(&self) {
        let mut rx = self.outstanding.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
    }

    /// Drops the dedup markers of events received before `unix` and returns
    /// how many; meant to run now and then with now minus
    /// [`DEDUP_RETENTION`]. A retry of an event whose marker is gone is
    /// queued again, which costs a needless refresh and nothing worse.
    pub async fn forget_older_than(&self, unix: i64) -> Result<usize> {
        let stale: Vec<_> = self
            .state
            .scan_prefix(&self.seen)?
            .into_iter()
            .filter(|(_, value)| {
                // A marker without a readable time cannot be aged; it goes,
                // at worst costing one needless refresh of a room stay.
                <[u8; 8]>::try_from(value.as_slice())
                    .map_or(true, |raw| i64::from_be_bytes(raw) < unix)
            })
            .map(|(key, _)| (key, None))
            .collect();
        let count = stale.len();
        if count > 0 {
            self.state.apply(stale)?;
            self.state.sync().await?;
        }
        Ok(count)
    }

    /// Completes when an event was accepted since the last wake-up, or at
    /// once if one was accepted while nobody waited: a worker that drains
    /// [`Inbox::pending`] and then waits here misses nothing, and entries
    /// left from before a restart count as arrived when the inbox opens.
    /// Meant for a single worker per inbox.
    pub fn notified(&self) -> impl Future<Output = ()> + '_ {
        self.notify.notified()
    }

    pub(super) fn queue_key(&self, seq: u64) -> Vec<u8> {
        keys::entry(&self.queue, &seq.to_be_bytes())
    }

    /// The inbox's section: what reads and then writes the queue is done in
    /// it, excluding every other change of this inbox, in any replica.
    pub(super) fn section(&self) -> Result<Box<dyn StateSection + '_>> {
        self.state.section(&self.queue)
    }

    /// The number the next queued entry gets, in `section`: the stored
    /// counter's, unless this process knows of a higher one.
    pub(super) fn number(&self, section: &mut dyn StateSection) -> Result<u64> {
        let stored = match section.get(&self.next)? {
            Some(raw) => u64::from_be_bytes(
                raw.as_slice()
                    .try_into()
                    .map_err(|_| Error::internal("the webhook inbox's counter is damaged"))?,
            ),
            None => 0,
        };
        let seq = stored.max(*self.next_seq.lock());
        let following = seq.checked_add(1).ok_or_else(exhausted)?;
        section.apply(vec![(
            self.next.clone(),
            Some(following.to_be_bytes().to_vec()),
        )]);
        Ok(seq)
    }

    /// Commits `section`, which queued an entry numbered `seq`; only then is
    /// the number used (a failed commit leaves it free).
    pub(super) fn commit_numbered(
        &self,
        section: Box<dyn StateSection + '_>,
        seq: u64,
    ) -> Result<()> {
        section.commit()?;
        let mut next_seq = self.next_seq.lock();
        *next_seq = (*next_seq).max(seq + 1);
        Ok(())
    }
}

pub(super) fn encode(queued: &Queued) -> Result<Vec<u8>> {
    serde_json::to_vec(queued)
        .map_err(|e| Error::internal(format!("cannot encode a webhook event: {e}")))
}

fn seq_of(queue: &[u8], key: &[u8]) -> Option<u64> {
    let raw = key.strip_prefix(queue)?;
    Some(u64::from_be_bytes(raw.try_into().ok()?))
}

fn exhausted() -> Error {
    Error::internal("the webhook inbox has run out of sequence numbers")
}

#[cfg(test)]
mod tests;
