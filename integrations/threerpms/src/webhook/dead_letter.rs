//! The dead-letter list of one property: events whose handling failed
//! permanently (a validation or schema error, or the same failure again and
//! again), set aside with why so that the hotel's queue goes on. An operator
//! lists them and, once the cause is fixed, queues one again
//! (keysmith.v1.PmsService ListParkedItems, RetryParkedItem).
//!
//! Stored beside the queue (`wh/{property}\0parked/{item id}`, JSON), and
//! moved between the two in one atomic write each way, so an event is
//! always either queued or parked, never both or neither, across restarts.
use keysmith_core::{reasons, store::StateSection, Error, Result};
use serde::{Deserialize, Serialize};

use super::{
    event::WebhookEvent,
    inbox::{encode, Inbox, Queued},
    keys,
};

/// One parked event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParkedItem {
    /// Unique among the property's parked items, growing.
    pub item_id: u64,
    pub event: WebhookEvent,
    /// Attempts made before it was parked.
    pub attempts: u32,
    /// Why the last attempt failed.
    pub reason: String,
    /// Unix seconds.
    pub parked_at: i64,
}

/// The reason of an unknown item id.
pub const PARKED_ITEM_NOT_FOUND: &str = "PARKED_ITEM_NOT_FOUND";

impl Inbox {
    /// Moves a queued event to the dead-letter list, durably, and returns
    /// the parked item and how many the property now has parked.
    pub async fn park(
        &self,
        queued: &Queued,
        reason: &str,
        now_unix: i64,
    ) -> Result<(ParkedItem, usize)> {
        let (item, count) = {
            let mut section = self.section()?;
            let parked = self.parked_items_in(section.as_ref())?;
            let item = ParkedItem {
                item_id: parked.iter().map(|p| p.item_id + 1).max().unwrap_or(1),
                event: queued.event.clone(),
                attempts: queued.attempts,
                reason: reason.to_owned(),
                parked_at: now_unix,
            };
            let value = serde_json::to_vec(&item)
                .map_err(|e| Error::internal(format!("cannot encode a parked event: {e}")))?;
            section.apply(vec![
                (self.queue_key(queued.seq), None),
                (self.parked_key(item.item_id), Some(value)),
            ]);
            section.commit()?;
            (item, parked.len() + 1)
        };
        self.state.sync().await?;
        self.outstanding.send_modify(|n| *n = n.saturating_sub(1));
        Ok((item, count))
    }

    /// The parked events, oldest first. One that cannot be decoded is
    /// logged and left out.
    pub fn parked_items(&self) -> Result<Vec<ParkedItem>> {
        self.decode_parked(self.state.scan_prefix(&self.parked)?)
    }

    /// The parked events as `section` reads them.
    fn parked_items_in(&self, section: &dyn StateSection) -> Result<Vec<ParkedItem>> {
        self.decode_parked(section.scan_prefix(&self.parked)?)
    }

    fn decode_parked(&self, entries: Vec<(Vec<u8>, Vec<u8>)>) -> Result<Vec<ParkedItem>> {
        let mut items = Vec::new();
        for (key, value) in entries {
            match serde_json::from_slice::<ParkedItem>(&value) {
                Ok(item) => items.push(item),
                Err(error) => tracing::error!(
                    property_id = %self.property_id(),
                    key = %String::from_utf8_lossy(&key),
                    %error,
                    "a parked 3RPMS event cannot be decoded; left out"
                ),
            }
        }
        items.sort_by_key(|p| p.item_id);
        Ok(items)
    }

    /// Takes an item off the list and queues its event again, with no
    /// failed attempts, behind what is queued; returns it.
    pub async fn retry_parked(&self, item_id: u64) -> Result<ParkedItem> {
        let item = {
            let mut section = self.section()?;
            let item = self
                .parked_items_in(section.as_ref())?
                .into_iter()
                .find(|p| p.item_id == item_id)
                .ok_or_else(|| {
                    Error::not_found(
                        PARKED_ITEM_NOT_FOUND,
                        format!(
                            "property {:?} has no parked item {item_id}",
                            self.property_id()
                        ),
                    )
                    .with_context("item_id", item_id.to_string())
                })?;
            let seq = self.number(section.as_mut())?;
            let value = encode(&Queued {
                seq,
                event: item.event.clone(),
                attempts: 0,
                last_failure: None,
            })?;
            section.apply(vec![
                (self.parked_key(item_id), None),
                (self.queue_key(seq), Some(value)),
            ]);
            self.commit_numbered(section, seq)?;
            item
        };
        self.state.sync().await?;
        self.queued().await;
        Ok(item)
    }

    fn parked_key(&self, item_id: u64) -> Vec<u8> {
        keys::entry(&self.parked, &item_id.to_be_bytes())
    }
}

/// An item id as the API gives it: decimal.
pub fn parse_item_id(text: &str) -> Result<u64> {
    text.parse().map_err(|_| {
        Error::invalid_field(
            reasons::FIELD_INVALID,
            "item_id",
            "must be the item_id ListParkedItems gave",
        )
    })
}

#[cfg(test)]
mod tests {
    use std::{path::Path, sync::Arc};

    use keysmith_core::{
        store::{DriverState, Store},
        ErrorKind,
    };
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
            kind: "reservation.updated".into(),
            created_at: 1_767_225_600,
            endpoint_id: "we_1".into(),
            object_id: format!("r_{id}"),
            updated_fields: None,
        }
    }

    #[tokio::test]
    async fn a_parked_event_leaves_the_queue_survives_a_restart_and_comes_back_on_retry() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (store, state) = open(dir.path());
            let inbox = Inbox::new(state, "hotel").unwrap();
            inbox.accept(event("bad")).await.unwrap();
            inbox.accept(event("good")).await.unwrap();
            let bad = inbox.pending().unwrap().remove(0);
            let (item, count) = inbox
                .park(&bad, "THREERPMS_VALIDATION: refused", 42)
                .await
                .unwrap();
            assert_eq!((item.item_id, count), (1, 1));
            assert_eq!(
                inbox
                    .pending()
                    .unwrap()
                    .iter()
                    .map(|q| q.event.id.clone())
                    .collect::<Vec<_>>(),
                ["good"],
                "the queue goes on without it"
            );
            // Waiting for the queue counts the good event only.
            let mut idle = std::pin::pin!(inbox.idle());
            assert!(futures_poll(idle.as_mut()).is_none());
            store.close();
        }
        let (_store, state) = open(dir.path());
        let inbox = Inbox::new(state, "hotel").unwrap();
        let parked = inbox.parked_items().unwrap();
        assert_eq!(parked.len(), 1);
        assert_eq!(parked[0].event, event("bad"));
        assert_eq!(parked[0].reason, "THREERPMS_VALIDATION: refused");
        assert_eq!(parked[0].parked_at, 42);

        let retried = inbox.retry_parked(parked[0].item_id).await.unwrap();
        assert_eq!(retried.event, event("bad"));
        assert!(inbox.parked_items().unwrap().is_empty());
        let queued: Vec<_> = inbox.pending().unwrap();
        assert_eq!(
            queued
                .iter()
                .map(|q| q.event.id.clone())
                .collect::<Vec<_>>(),
            ["good", "bad"],
            "queued again behind the others"
        );
        assert_eq!(queued[1].attempts, 0);

        let unknown = inbox.retry_parked(99).await.unwrap_err();
        assert_eq!(unknown.kind(), ErrorKind::NotFound);
        assert_eq!(unknown.reason(), PARKED_ITEM_NOT_FOUND);
    }

    #[tokio::test]
    async fn item_ids_keep_growing_and_raising_skips_what_is_parked() {
        let dir = tempfile::tempdir().unwrap();
        let (_store, state) = open(dir.path());
        let inbox = Inbox::new(state, "hotel").unwrap();
        for id in ["a", "b"] {
            inbox.accept(event(id)).await.unwrap();
        }
        for queued in inbox.pending().unwrap() {
            inbox.park(&queued, "x", 0).await.unwrap();
        }
        let ids: Vec<u64> = inbox
            .parked_items()
            .unwrap()
            .iter()
            .map(|p| p.item_id)
            .collect();
        assert_eq!(ids, [1, 2]);
        let mut again = event("c");
        again.object_id = "r_a".into();
        assert_eq!(
            inbox.raise(again).await.unwrap(),
            super::super::Accepted::Duplicate,
            "the same object is parked already"
        );
    }

    #[test]
    fn item_ids_are_decimal() {
        assert_eq!(parse_item_id("17").unwrap(), 17);
        assert_eq!(
            parse_item_id("x").unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
    }

    fn futures_poll<F: std::future::Future + Unpin>(mut future: F) -> Option<F::Output> {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        match std::pin::Pin::new(&mut future).poll(&mut cx) {
            std::task::Poll::Ready(out) => Some(out),
            std::task::Poll::Pending => None,
        }
    }
}
