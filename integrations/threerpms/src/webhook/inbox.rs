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
//!
//! Queue entries are JSON rather than postcard so that a field added to
//! [`WebhookEvent`] later can still read entries written before an upgrade.
use std::{future::Future, sync::Arc, time::Duration};

use keysmith_core::{store::DriverState, Error, Result};
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
    /// The next sequence number. The lock also spans the dedup check and the
    /// write, so two concurrent deliveries of one event cannot both queue it
    /// and two events never get the same number; parking and retrying a
    /// parked event take it too.
    pub(super) next_seq: Mutex<u64>,
    pub(super) notify: Notify,
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
    /// highest entry still queued. Numbers are unique among queued entries
    /// and grow with arrival; once the queue has been drained, a restart may
    /// reuse numbers of entries completed before it.
    pub fn new(state: Arc<dyn DriverState>, property_id: &str) -> Result<Self> {
        let prefix = keys::property_prefix(property_id)?;
        let seen = keys::section(&prefix, "seen");
        let queue = keys::section(&prefix, "queue");
        let parked = keys::section(&prefix, "parked");
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
        let notify = Notify::new();
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
            next_seq: Mutex::new(next_seq),
            notify,
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
            let mut next_seq = self.next_seq.lock();
            if self.state.get(&seen_key)?.is_some() {
                Accepted::Duplicate
            } else {
                let seq = *next_seq;
                let following = seq.checked_add(1).ok_or_else(exhausted)?;
                self.state.apply(vec![
                    (seen_key, Some(now_unix.to_be_bytes().to_vec())),
                    (self.queue_key(seq), Some(value)),
                ])?;
                // Only after the write: a failed one leaves the number free.
                *next_seq = following;
                Accepted::New
            }
        };

        // A duplicate waits for the disk too: the marker that made it one may
        // come from a concurrent delivery whose write is not durable yet, and
        // answering 2xx before it is would lose the event in a crash.
        self.state.sync().await?;
        if outcome == Accepted::New {
            self.outstanding.send_modify(|n| *n += 1);
            self.notify.notify_one();
        }
        Ok(outcome)
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
            let _numbering = self.next_seq.lock();
            // Completed or parked meanwhile: nothing to count.
            if self.state.get(&key)?.is_none() {
                return Ok(attempts);
            }
            self.state.apply(vec![(key, Some(value))])?;
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
mod tests {
    use std::{collections::BTreeSet, path::Path};

    use keysmith_core::{store::Store, ErrorKind};
    use keysmith_store::SledStore;

    use super::*;

    fn open(dir: &Path) -> (SledStore, Arc<dyn DriverState>) {
        let store = SledStore::open(dir).unwrap();
        let state = store.driver_state("3rpms").unwrap();
        (store, state)
    }

    fn event(id: &str) -> WebhookEvent {
        WebhookEvent {
            id: id.to_owned(),
            kind: "room_stay.updated".into(),
            created_at: 1_767_225_600,
            endpoint_id: "we_1".into(),
            object_id: format!("rs_{id}"),
            updated_fields: None,
        }
    }

    fn ids(inbox: &Inbox) -> Vec<String> {
        inbox
            .pending()
            .unwrap()
            .into_iter()
            .map(|q| q.event.id)
            .collect()
    }

    #[tokio::test]
    async fn a_duplicate_is_recognised_after_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (store, state) = open(dir.path());
            let inbox = Inbox::new(state, "hotel").unwrap();
            assert_eq!(inbox.accept(event("e1")).await.unwrap(), Accepted::New);
            assert_eq!(inbox.accept(event("e2")).await.unwrap(), Accepted::New);
            store.close();
        }
        let (_store, state) = open(dir.path());
        let inbox = Inbox::new(state, "hotel").unwrap();
        assert_eq!(
            inbox.accept(event("e1")).await.unwrap(),
            Accepted::Duplicate
        );
        assert_eq!(inbox.accept(event("e3")).await.unwrap(), Accepted::New);
        let pending = inbox.pending().unwrap();
        let seqs: Vec<u64> = pending.iter().map(|q| q.seq).collect();
        assert_eq!(seqs, [0, 1, 2], "numbering continues after the reopen");
        assert_eq!(ids(&inbox), ["e1", "e2", "e3"]);
        assert_eq!(pending[0].event, event("e1"));
    }

    #[tokio::test]
    async fn pending_is_in_arrival_order() {
        let dir = tempfile::tempdir().unwrap();
        let (_store, state) = open(dir.path());
        let inbox = Inbox::new(state, "hotel").unwrap();
        // Ids chosen so that their own order differs from arrival order, and
        // enough of them that sequence numbers cross a byte boundary.
        let arrivals: Vec<String> = (0..300).rev().map(|i| format!("e{i:03}")).collect();
        for id in &arrivals {
            inbox.accept(event(id)).await.unwrap();
        }
        assert_eq!(ids(&inbox), arrivals);
        let seqs: Vec<u64> = inbox.pending().unwrap().iter().map(|q| q.seq).collect();
        assert_eq!(seqs, (0..300).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn completed_entries_leave_the_queue_but_stay_known() {
        let dir = tempfile::tempdir().unwrap();
        let (_store, state) = open(dir.path());
        let inbox = Inbox::new(state, "hotel").unwrap();
        for id in ["a", "b", "c"] {
            inbox.accept(event(id)).await.unwrap();
        }
        let pending = inbox.pending().unwrap();
        inbox
            .complete(&[pending[0].seq, pending[2].seq])
            .await
            .unwrap();
        assert_eq!(ids(&inbox), ["b"]);
        assert_eq!(inbox.accept(event("a")).await.unwrap(), Accepted::Duplicate);
        assert_eq!(ids(&inbox), ["b"]);
        inbox.complete(&[]).await.unwrap();
        inbox.complete(&[pending[1].seq, 999]).await.unwrap();
        assert!(inbox.pending().unwrap().is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_accepts_all_land_with_distinct_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let (_store, state) = open(dir.path());
        let inbox = Arc::new(Inbox::new(state, "hotel").unwrap());
        let mut tasks = Vec::new();
        for i in 0..200 {
            let inbox = inbox.clone();
            tasks.push(tokio::spawn(async move {
                inbox.accept(event(&format!("e{i}"))).await.unwrap()
            }));
        }
        // Every delivery of one event racing the others: exactly one wins.
        for _ in 0..20 {
            let inbox = inbox.clone();
            tasks.push(tokio::spawn(async move {
                inbox.accept(event("same")).await.unwrap()
            }));
        }
        let mut new = 0;
        for task in tasks {
            if task.await.unwrap() == Accepted::New {
                new += 1;
            }
        }
        assert_eq!(new, 201);
        let pending = inbox.pending().unwrap();
        let seqs: Vec<u64> = pending.iter().map(|q| q.seq).collect();
        assert_eq!(
            seqs,
            (0..201).collect::<Vec<_>>(),
            "no number lost or reused"
        );
        let ids: BTreeSet<String> = pending.into_iter().map(|q| q.event.id).collect();
        assert_eq!(ids.len(), 201);
    }

    #[tokio::test]
    async fn old_markers_are_forgotten_and_recent_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (_store, state) = open(dir.path());
        let inbox = Inbox::new(state, "hotel").unwrap();
        inbox.accept_at(event("old"), 1_000).await.unwrap();
        inbox.accept_at(event("recent"), 2_000).await.unwrap();
        assert_eq!(inbox.forget_older_than(1_500).await.unwrap(), 1);
        assert_eq!(inbox.forget_older_than(1_500).await.unwrap(), 0);
        assert_eq!(
            inbox.accept_at(event("recent"), 3_000).await.unwrap(),
            Accepted::Duplicate
        );
        assert_eq!(
            inbox.accept_at(event("old"), 3_000).await.unwrap(),
            Accepted::New
        );
        // Forgetting touches markers only, never the queue.
        assert_eq!(ids(&inbox), ["old", "recent", "old"]);
    }

    #[tokio::test]
    async fn properties_sharing_a_tree_do_not_see_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let (_store, state) = open(dir.path());
        let a = Inbox::new(state.clone(), "a").unwrap();
        let nested = Inbox::new(state, "a/seen").unwrap();
        assert_eq!(a.accept(event("e1")).await.unwrap(), Accepted::New);
        assert_eq!(nested.accept(event("e1")).await.unwrap(), Accepted::New);
        assert_eq!(nested.accept(event("e2")).await.unwrap(), Accepted::New);
        assert_eq!(ids(&a), ["e1"]);
        assert_eq!(ids(&nested), ["e1", "e2"]);
        assert_eq!(a.forget_older_than(i64::MAX).await.unwrap(), 1);
        assert_eq!(
            nested.accept(event("e1")).await.unwrap(),
            Accepted::Duplicate
        );
    }

    #[tokio::test]
    async fn an_invalid_event_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (_store, state) = open(dir.path());
        let inbox = Inbox::new(state.clone(), "hotel").unwrap();
        let err = inbox.accept(event("")).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        assert!(state.scan_prefix(b"wh/").unwrap().is_empty());
    }

    #[test]
    fn an_unusable_property_id_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (_store, state) = open(dir.path());
        assert!(Inbox::new(state.clone(), "").is_err());
        assert!(Inbox::new(state, "a\0b").is_err());
    }

    #[tokio::test]
    async fn a_worker_is_woken_by_an_accept_made_before_it_waited() {
        let dir = tempfile::tempdir().unwrap();
        let (_store, state) = open(dir.path());
        let inbox = Inbox::new(state, "hotel").unwrap();
        inbox.accept(event("e1")).await.unwrap();
        // Fails the test rather than hanging it if the wake-up was lost.
        tokio::time::timeout(Duration::from_secs(30), inbox.notified())
            .await
            .expect("the accept before the wait is not lost");
    }

    #[tokio::test]
    async fn entries_left_from_before_a_restart_wake_the_worker() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (store, state) = open(dir.path());
            let inbox = Inbox::new(state, "hotel").unwrap();
            inbox.accept(event("e1")).await.unwrap();
            store.close();
        }
        let (_store, state) = open(dir.path());
        let empty = Inbox::new(state.clone(), "other").unwrap();
        let mut idle = std::pin::pin!(empty.notified());
        assert!(poll_once(idle.as_mut()).await.is_none());
        let inbox = Inbox::new(state, "hotel").unwrap();
        let mut waiting = std::pin::pin!(inbox.notified());
        assert!(poll_once(waiting.as_mut()).await.is_some());
    }

    #[tokio::test]
    async fn a_duplicate_wakes_nobody() {
        let dir = tempfile::tempdir().unwrap();
        let (_store, state) = open(dir.path());
        let inbox = Inbox::new(state, "hotel").unwrap();
        inbox.accept(event("e1")).await.unwrap();
        inbox.notified().await;
        inbox.accept(event("e1")).await.unwrap();
        let mut waiting = std::pin::pin!(inbox.notified());
        assert!(poll_once(waiting.as_mut()).await.is_none());
    }

    /// Polls once without waiting: Some if the future was ready.
    async fn poll_once<F: Future + Unpin>(future: F) -> Option<F::Output> {
        let mut future = future;
        std::future::poll_fn(|cx| {
            std::task::Poll::Ready(match std::pin::Pin::new(&mut future).poll(cx) {
                std::task::Poll::Ready(out) => Some(out),
                std::task::Poll::Pending => None,
            })
        })
        .await
    }

    #[tokio::test]
    async fn an_entry_written_before_attempts_were_kept_reads_as_never_failed() {
        let dir = tempfile::tempdir().unwrap();
        let (_store, state) = open(dir.path());
        let inbox = Inbox::new(state.clone(), "hotel").unwrap();
        let old = serde_json::to_vec(&event("e0")).unwrap();
        state.apply(vec![(inbox.queue_key(3), Some(old))]).unwrap();
        let pending = inbox.pending().unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!((pending[0].seq, pending[0].attempts), (3, 0));
        assert_eq!(pending[0].event, event("e0"));
    }

    #[tokio::test]
    async fn failed_attempts_are_counted_durably() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (store, state) = open(dir.path());
            let inbox = Inbox::new(state, "hotel").unwrap();
            inbox.accept(event("e1")).await.unwrap();
            let queued = inbox.pending().unwrap().remove(0);
            assert_eq!(inbox.record_failure(&queued, "first").await.unwrap(), 1);
            let queued = inbox.pending().unwrap().remove(0);
            assert_eq!(inbox.record_failure(&queued, "second").await.unwrap(), 2);
            store.close();
        }
        let (_store, state) = open(dir.path());
        let inbox = Inbox::new(state, "hotel").unwrap();
        let queued = inbox.pending().unwrap().remove(0);
        assert_eq!(queued.attempts, 2);
        assert_eq!(queued.last_failure.as_deref(), Some("second"));
    }

    #[tokio::test]
    async fn an_undecodable_entry_does_not_stall_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let (_store, state) = open(dir.path());
        let inbox = Inbox::new(state.clone(), "hotel").unwrap();
        inbox.accept(event("e1")).await.unwrap();
        state
            .apply(vec![(inbox.queue_key(7), Some(b"\xff garbage".to_vec()))])
            .unwrap();
        inbox.accept(event("e2")).await.unwrap();
        assert_eq!(ids(&inbox), ["e1", "e2"]);
        // The bad entry still counts for the numbering after a reopen.
        let reopened = Inbox::new(state, "hotel").unwrap();
        assert_eq!(*reopened.next_seq.lock(), 8);
    }
}
