//! Publishing committed changes to the feed in each property's sequence.
//!
//! Sequence numbers are given inside the transactions, by the property's
//! head row, which each one holds until it commits: so the numbers are
//! committed in order. But two commits return to their callers in no
//! particular order, so a change is held here until every earlier number
//! of its property has been published.
//!
//! Changes come from this process's commits (at once) and from the
//! database, read by the listener (`listen`) when another process
//! commits, or at a catch-up: the same change may come twice, and the
//! later one is dropped.
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use keysmith_core::changes::{ChangeFeed, KeyChange};
use parking_lot::Mutex;

pub(crate) struct Publisher {
    feed: Arc<ChangeFeed>,
    /// Per property: changes committed, held for an earlier one.
    held: Mutex<HashMap<String, BTreeMap<u64, KeyChange>>>,
}

impl Publisher {
    pub(crate) fn new(feed: Arc<ChangeFeed>) -> Self {
        Self {
            feed,
            held: Mutex::new(HashMap::new()),
        }
    }

    /// The property's last published sequence number.
    pub(crate) fn head(&self, property_id: &str) -> u64 {
        self.feed.head(property_id)
    }

    /// Moves the property's feed on to `head` without the changes up to
    /// it, which the change log no longer holds (purged while the listener
    /// was away): the property's watchers are ended
    /// ([`ChangeFeed::skip_to`]), and a change held for one of them is
    /// dropped or, past it, published by the next [`Publisher::committed`].
    pub(crate) fn skip_to(&self, property_id: &str, head: u64) {
        // Under the publishers' lock, so that no publish of this property
        // runs meanwhile.
        let mut held = self.held.lock();
        if let Some(waiting) = held.get_mut(property_id) {
            waiting.retain(|sequence, _| *sequence > head);
            if waiting.is_empty() {
                held.remove(property_id);
            }
        }
        self.feed.skip_to(property_id, head);
    }

    /// Takes changes that are committed (durable), and publishes every
    /// change that now follows its property's head.
    pub(crate) fn committed(&self, changes: Vec<KeyChange>) {
        if changes.is_empty() {
            return;
        }
        // One publisher at a time, so that the feed sees each property's
        // changes in order.
        let mut held = self.held.lock();
        let mut touched = Vec::new();
        for change in changes {
            if !touched.contains(&change.property_id) {
                touched.push(change.property_id.clone());
            }
            held.entry(change.property_id.clone())
                .or_default()
                .insert(change.sequence, change);
        }
        let mut ready = Vec::new();
        for property in touched {
            let Some(waiting) = held.get_mut(&property) else {
                continue;
            };
            let mut next = self.feed.head(&property) + 1;
            while let Some(entry) = waiting.first_entry() {
                if *entry.key() > next {
                    break;
                }
                let change = entry.remove();
                // One at or below the head was published already.
                if change.sequence == next {
                    ready.push(change);
                    next += 1;
                }
            }
            if waiting.is_empty() {
                held.remove(&property);
            }
        }
        self.feed.publish(ready);
    }
}
