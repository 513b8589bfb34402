//! The live keys of each property, in memory, in the order a listing walks
//! them.
//!
//! Listing a property's live keys is the hottest read keysmith serves. From
//! sled, every page iterated the tree and decoded every record again, which
//! was most of what a page cost (BENCHMARKS.md). Here a page is a range of a
//! map of shared, decoded keys.
//!
//! The committer keeps the catalog in step with the tree: it applies each
//! batch's key changes here right after sled has the batch and before anyone
//! is told the batch is durable, in the order of the batches. So whoever was
//! answered sees their change here, as a tree read would show it.
//!
//! Memory is bounded by a budget of keys. Properties are loaded when the
//! store opens, as long as they fit; a property that does not fit, or
//! outgrows the budget later, is left out until the next start, and its
//! listings read sled as before.
use std::{
    collections::{BTreeMap, HashMap, HashSet},
    ops::Bound,
    sync::Arc,
};

use keysmith_core::{AccessKey, ListedKey, Result};
use parking_lot::RwLock;

use crate::{
    codec::{decode, parts, push_part},
    layout::LIVE_KEY,
    store_error,
};

/// One change to a property's live keys.
#[derive(Debug)]
pub enum Change {
    /// A live key's new version.
    Put(Arc<ListedKey>),
    /// The key is no longer live (revoked, or expired and swept).
    Remove { property_id: String, key_id: String },
}

impl Change {
    /// What storing this version of a key changes.
    pub fn of(key: AccessKey) -> Self {
        if key.is_ended() {
            Change::Remove {
                property_id: key.property_id,
                key_id: key.key_id,
            }
        } else {
            Change::Put(ListedKey::new(key))
        }
    }
}

pub struct Catalog {
    budget: usize,
    inner: RwLock<Inner>,
}

#[derive(Default)]
struct Inner {
    /// A property's live keys by their key id as the tree orders it (the
    /// length-prefixed part), so that a page here is the page sled gives.
    properties: HashMap<String, BTreeMap<Vec<u8>, Arc<ListedKey>>>,
    /// Properties that did not fit: their listings read the tree.
    left_out: HashSet<String>,
    total: usize,
}

fn order_key(key_id: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(key_id.len() + 2);
    push_part(&mut out, key_id.as_bytes());
    out
}

impl Catalog {
    /// Loads the live keys of the tree, property by property, while they
    /// fit in `budget` keys. A budget of 0 turns the catalog off.
    pub fn load(tree: &sled::Tree, budget: usize) -> Result<Self> {
        let mut inner = Inner::default();
        for entry in tree.scan_prefix([LIVE_KEY]) {
            let (path, record) = entry.map_err(store_error)?;
            let [property, _key_id] = parts(&path[1..])[..] else {
                continue;
            };
            let property = String::from_utf8_lossy(property);
            if inner.left_out.contains(property.as_ref()) {
                continue;
            }
            let key: AccessKey = decode(&record)?;
            inner.put(ListedKey::new(key), budget);
        }
        tracing::info!(
            keys = inner.total,
            properties = inner.properties.len(),
            "listing cache loaded"
        );
        Ok(Self {
            budget,
            inner: RwLock::new(inner),
        })
    }

    /// Applies the key changes of a batch the tree now has.
    pub fn apply(&self, changes: impl IntoIterator<Item = Change>) {
        let mut changes = changes.into_iter().peekable();
        if changes.peek().is_none() {
            // Most cycles under a read load carry only audit records:
            // listings need not wait for a lock they do not need.
            return;
        }
        let mut inner = self.inner.write();
        for change in changes {
            match change {
                Change::Put(listed) => inner.put(listed, self.budget),
                Change::Remove {
                    property_id,
                    key_id,
                } => inner.remove(&property_id, &key_id),
            }
        }
    }

    /// Up to `limit` live keys of a property after `after`, in key id
    /// order; `None` when the property is left out.
    pub fn page(
        &self,
        property_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Option<Vec<Arc<ListedKey>>> {
        let inner = self.inner.read();
        let Some(keys) = inner.properties.get(property_id) else {
            return (!inner.left_out.contains(property_id)).then(Vec::new);
        };
        let start = match after {
            Some(after) => Bound::Excluded(order_key(after)),
            None => Bound::Unbounded,
        };
        Some(
            keys.range((start, Bound::Unbounded))
                .take(limit)
                .map(|(_, listed)| listed.clone())
                .collect(),
        )
    }

    /// A live key, if the catalog holds it.
    pub fn get(&self, property_id: &str, key_id: &str) -> Option<Arc<ListedKey>> {
        let inner = self.inner.read();
        inner
            .properties
            .get(property_id)?
            .get(&order_key(key_id))
            .cloned()
    }
}

impl Inner {
    fn put(&mut self, listed: Arc<ListedKey>, budget: usize) {
        let property = listed.property_id.as_str();
        if self.left_out.contains(property) {
            return;
        }
        let keys = match self.properties.get_mut(property) {
            Some(keys) => keys,
            None => self.properties.entry(property.to_owned()).or_default(),
        };
        if keys
            .insert(order_key(&listed.key_id), listed.clone())
            .is_none()
        {
            self.total += 1;
        }
        if self.total > budget {
            self.leave_out(property.to_owned(), budget);
        }
    }

    fn remove(&mut self, property_id: &str, key_id: &str) {
        let Some(keys) = self.properties.get_mut(property_id) else {
            return;
        };
        if keys.remove(&order_key(key_id)).is_some() {
            self.total -= 1;
        }
        if keys.is_empty() {
            // A property without live keys needs no entry: "not here and not
            // left out" already says it has none.
            self.properties.remove(property_id);
        }
    }

    /// The property that grew past the budget goes: the others keep their
    /// place, and memory stays bounded.
    fn leave_out(&mut self, property: String, budget: usize) {
        if let Some(keys) = self.properties.remove(&property) {
            self.total -= keys.len();
            if budget > 0 {
                tracing::warn!(
                    property,
                    keys = keys.len(),
                    budget,
                    "a property outgrew the listing cache: its keys are listed from \
                     disk until the next start (storage.listing_cache_keys)"
                );
            }
        }
        self.left_out.insert(property);
    }
}
