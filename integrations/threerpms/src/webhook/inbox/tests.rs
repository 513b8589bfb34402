//! The inbox's guarantees: dedup across restarts, arrival order, numbering,
//! wake-ups, durable attempt counts, and no entry stalling the others.
use std::{collections::BTreeSet, path::Path};

use keysmith_core::{store::Store, ErrorKind};
use keysmith_store::EmbeddedStore;

use super::*;

fn open(dir: &Path) -> (EmbeddedStore, Arc<dyn DriverState>) {
    let store = EmbeddedStore::open_with_test_key(dir).unwrap();
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

/// Two replicas on one store each open the property's inbox; each numbers
/// what it accepts from the stored counter, so neither overwrites an event
/// the other accepted (and answered 2xx).
#[tokio::test]
async fn two_replicas_never_give_two_events_one_number() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, state) = open(dir.path());
    let one = Inbox::new(state.clone(), "hotel").unwrap();
    let other = Inbox::new(state, "hotel").unwrap();
    assert_eq!(one.accept(event("e1")).await.unwrap(), Accepted::New);
    assert_eq!(other.accept(event("e2")).await.unwrap(), Accepted::New);
    assert_eq!(
        other.accept(event("e1")).await.unwrap(),
        Accepted::Duplicate
    );
    assert_eq!(one.accept(event("e3")).await.unwrap(), Accepted::New);
    assert_eq!(
        ids(&one),
        ["e1", "e2", "e3"],
        "no accepted event overwritten"
    );
}
