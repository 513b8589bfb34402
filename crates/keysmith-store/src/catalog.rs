//! The live keys of the most recently listed properties, in memory, in the
//! order a listing walks them.
//!
//! Listing a property's live keys is the hottest read keysmith serves. From
//! sled, every page iterated the tree and decoded every record again, which
//! was most of what a page cost (BENCHMARKS.md). Here a page is a range of a
//! map of shared, decoded keys.
//!
//! The committer keeps the catalog in step with the tree: it applies each
//! batch's key changes here right after the engine has the batch and before anyone
//! is told the batch is durable, in the order of the batches. So whoever was
//! answered sees their change here, as a tree read would show it.
//!
//! Memory is bounded by a budget of bytes (an estimate per key, see
//! [`ListedKey::approx_bytes`]). Properties are held whole, the most recently
//! listed ones: a property that is not held is listed from the engine, and a
//! loader thread brings it in while the least recently listed properties make
//! room. A property larger than the whole budget is never held. Nothing is
//! loaded when the store opens: the loader fills the catalog in the
//! background, so the store opens at once whatever its size.
//!
//! A load reads the tree while writes go on. Changes to a property being
//! loaded are kept aside and replayed onto what the load read: each change
//! is a whole new version of a key (or its removal), so replaying one the
//! load already saw changes nothing.
use std::{
    collections::{BTreeMap, HashMap, HashSet},
    ops::Bound,
    sync::{
        atomic::{AtomicU64, Ordering},
        mpsc, Arc,
    },
    thread,
};

use keysmith_core::{AccessKey, ListedKey, Result};
use parking_lot::RwLock;

use crate::{
    codec::{parts, path, push_part},
    handle::TreeHandle,
    kv,
    layout::LIVE_KEY,
    sealing::Sealer,
    store_error, stored_key,
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

    fn property_id(&self) -> &str {
        match self {
            Change::Put(listed) => &listed.property_id,
            Change::Remove { property_id, .. } => property_id,
        }
    }
}

/// What the catalog holds, for logs and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CatalogStats {
    pub properties: usize,
    pub keys: usize,
    pub bytes: usize,
    pub evictions: u64,
    /// How many times a load read a property whole and found it larger
    /// than the budget (each is a full read from disk).
    pub too_big_reads: u64,
}

pub struct Catalog {
    budget: usize,
    inner: Arc<RwLock<Inner>>,
    /// Work for the loader thread; none when the budget is 0.
    load: Option<mpsc::Sender<Job>>,
    /// Listings of a property's live keys served from here, and those that
    /// read the tree (`metrics` facade handles, registered once).
    hits: metrics::Counter,
    misses: metrics::Counter,
}

/// What the loader thread is asked to do, in order.
enum Job {
    /// Bring a property in, making room.
    Load(String),
    /// Say when every job before this one is done.
    Settle(mpsc::Sender<()>),
}

/// One property held whole.
struct Held {
    /// Its live keys by their key id as the tree orders it (the
    /// length-prefixed part), so that a page here is the page the engine gives.
    keys: BTreeMap<Vec<u8>, Arc<ListedKey>>,
    bytes: usize,
    /// When it was last listed, in the catalog's ticks.
    used: AtomicU64,
}

#[derive(Default)]
struct Inner {
    held: HashMap<String, Held>,
    /// Properties being loaded, with the changes made to them meanwhile.
    loading: HashMap<String, Vec<Change>>,
    /// Properties a load found larger than the whole budget.
    too_big: HashSet<String>,
    too_big_reads: u64,
    bytes: usize,
    evictions: u64,
    ticks: AtomicU64,
    /// Increases at every reset: a load begun before one is discarded.
    generation: u64,
}

/// The counter of listings with this outcome.
fn listings(outcome: &'static str) -> metrics::Counter {
    metrics::counter!("keysmith_listing_cache_lookups_total", "outcome" => outcome)
}

fn order_key(key_id: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(key_id.len() + 2);
    push_part(&mut out, key_id.as_bytes());
    out
}

impl Catalog {
    /// A catalog of at most `budget` bytes over `tree`, whose loader starts
    /// bringing in the tree's properties at once, in the background, as
    /// many as fit. A budget of 0 turns the catalog off.
    pub(crate) fn open(tree: Arc<TreeHandle>, sealer: Arc<Sealer>, budget: usize) -> Result<Self> {
        let inner = Arc::new(RwLock::new(Inner::default()));
        if budget == 0 {
            return Ok(Self {
                budget,
                inner,
                load: None,
                hits: listings("hit"),
                misses: listings("miss"),
            });
        }
        let (tx, rx) = mpsc::channel::<Job>();
        let first = properties(&tree.get()?)?;
        let loader = Loader {
            tree,
            sealer,
            inner: inner.clone(),
            budget,
        };
        thread::Builder::new()
            .name("keysmith-catalog".into())
            .spawn(move || loader.run(first, rx))
            .map_err(|e| keysmith_core::Error::internal(format!("catalog loader: {e}")))?;
        Ok(Self {
            budget,
            inner,
            load: Some(tx),
            hits: listings("hit"),
            misses: listings("miss"),
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
            inner.apply(change, self.budget);
        }
    }

    /// Up to `limit` live keys of a property after `after`, in key id
    /// order; `None` when the property is not held (the caller reads the
    /// tree, and the loader is asked to bring the property in).
    pub fn page(
        &self,
        property_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Option<Vec<Arc<ListedKey>>> {
        {
            let inner = self.inner.read();
            if let Some(held) = inner.held.get(property_id) {
                self.hits.increment(1);
                held.used.store(inner.tick(), Ordering::Relaxed);
                let start = match after {
                    Some(after) => Bound::Excluded(order_key(after)),
                    None => Bound::Unbounded,
                };
                return Some(
                    held.keys
                        .range((start, Bound::Unbounded))
                        .take(limit)
                        .map(|(_, listed)| listed.clone())
                        .collect(),
                );
            }
            self.misses.increment(1);
            if inner.loading.contains_key(property_id) || inner.too_big.contains(property_id) {
                return None;
            }
        }
        if let Some(load) = &self.load {
            let _ = load.send(Job::Load(property_id.to_owned()));
        }
        None
    }

    /// Every live key of a property, if the catalog holds it, without
    /// counting as a listing (for sampling what the store holds).
    pub fn snapshot(&self, property_id: &str) -> Option<Vec<Arc<ListedKey>>> {
        let inner = self.inner.read();
        Some(
            inner
                .held
                .get(property_id)?
                .keys
                .values()
                .cloned()
                .collect(),
        )
    }

    /// A live key, if the catalog holds its property.
    pub fn get(&self, property_id: &str, key_id: &str) -> Option<Arc<ListedKey>> {
        let inner = self.inner.read();
        inner
            .held
            .get(property_id)?
            .keys
            .get(&order_key(key_id))
            .cloned()
    }

    pub fn stats(&self) -> CatalogStats {
        let inner = self.inner.read();
        CatalogStats {
            properties: inner.held.len(),
            keys: inner.held.values().map(|h| h.keys.len()).sum(),
            bytes: inner.bytes,
            evictions: inner.evictions,
            too_big_reads: inner.too_big_reads,
        }
    }

    /// Forgets everything held: after a write error, what the catalog was
    /// given may not be what the reopened store has. Listings read the
    /// store until the loader has brought properties in again.
    pub fn reset(&self) {
        let mut inner = self.inner.write();
        inner.held.clear();
        inner.too_big.clear();
        inner.bytes = 0;
        inner.generation += 1;
        for buffer in inner.loading.values_mut() {
            buffer.clear();
        }
    }

    /// Whether the property is held now.
    pub fn holds(&self, property_id: &str) -> bool {
        self.inner.read().held.contains_key(property_id)
    }

    /// Asks the loader to load a property, as a listing that missed does.
    #[cfg(test)]
    pub(crate) fn ask_to_load(&self, property_id: &str) {
        if let Some(load) = &self.load {
            let _ = load.send(Job::Load(property_id.to_owned()));
        }
    }

    /// Waits until the loader has done everything asked of it before the
    /// call, the first filling included.
    pub fn settle(&self) {
        if let Some(load) = &self.load {
            let (done, wait) = mpsc::channel();
            if load.send(Job::Settle(done)).is_ok() {
                let _ = wait.recv();
            }
        }
    }
}

impl Inner {
    fn tick(&self) -> u64 {
        self.ticks.fetch_add(1, Ordering::Relaxed)
    }

    fn apply(&mut self, change: Change, budget: usize) {
        let property = change.property_id().to_owned();
        if let Some(buffer) = self.loading.get_mut(&property) {
            buffer.push(change);
            return;
        }
        let Some(held) = self.held.get_mut(&property) else {
            return;
        };
        let before = held.bytes;
        held.apply(change);
        let after = held.bytes;
        self.bytes = self.bytes + after - before;
        if held.keys.is_empty() {
            // A property without live keys needs no entry: "not held" lists
            // the tree, which has none either.
            self.bytes -= after;
            self.held.remove(&property);
        }
        self.make_room(budget, Some(&property));
    }

    /// Evicts the least recently listed properties until the catalog is
    /// within `budget`, sparing `keep` unless it alone is over it.
    fn make_room(&mut self, budget: usize, keep: Option<&str>) {
        while self.bytes > budget {
            let victim = self
                .held
                .iter()
                .filter(|(p, _)| Some(p.as_str()) != keep)
                .min_by_key(|(_, h)| h.used.load(Ordering::Relaxed))
                .map(|(p, _)| p.clone())
                .or_else(|| keep.map(str::to_owned));
            let Some(victim) = victim else { break };
            if let Some(held) = self.held.remove(&victim) {
                self.bytes -= held.bytes;
                self.evictions += 1;
                tracing::debug!(
                    property = %victim,
                    keys = held.keys.len(),
                    "listing cache: evicted the least recently listed property"
                );
            }
        }
    }
}

impl Held {
    fn apply(&mut self, change: Change) {
        match change {
            Change::Put(listed) => {
                self.bytes += listed.approx_bytes();
                if let Some(old) = self.keys.insert(order_key(&listed.key_id), listed) {
                    self.bytes -= old.approx_bytes();
                }
            }
            Change::Remove { key_id, .. } => {
                if let Some(old) = self.keys.remove(&order_key(&key_id)) {
                    self.bytes -= old.approx_bytes();
                }
            }
        }
    }
}

/// Brings properties into the catalog, one at a time.
struct Loader {
    tree: Arc<TreeHandle>,
    sealer: Arc<Sealer>,
    inner: Arc<RwLock<Inner>>,
    budget: usize,
}

impl Loader {
    /// Loads `first` (the tree's properties at open) while they fit, then
    /// whatever listings ask for, until the catalog is dropped.
    fn run(self, first: Vec<String>, asked: mpsc::Receiver<Job>) {
        let mut loaded = 0usize;
        for property in first {
            if self.inner.read().bytes >= self.budget {
                break;
            }
            if self.load(&property, false) {
                loaded += 1;
            }
        }
        let held = self.inner.read().held.len();
        tracing::info!(
            properties = loaded,
            held,
            "listing cache filled in the background"
        );
        while let Ok(job) = asked.recv() {
            match job {
                Job::Load(property) => {
                    self.load(&property, true);
                }
                Job::Settle(done) => {
                    let _ = done.send(());
                }
            }
        }
    }

    /// Loads one property whole; with `evict`, the least recently listed
    /// properties make room, else it is loaded only if it fits as is.
    fn load(&self, property: &str, evict: bool) -> bool {
        let generation = {
            let mut inner = self.inner.write();
            // A listing asks only for a property not known too big, but
            // several can ask before the first load finds it so.
            if inner.held.contains_key(property)
                || inner.loading.contains_key(property)
                || inner.too_big.contains(property)
            {
                return false;
            }
            inner.loading.insert(property.to_owned(), Vec::new());
            inner.generation
        };
        let read = self.read(property);
        let mut inner = self.inner.write();
        let changes = inner.loading.remove(property).unwrap_or_default();
        if inner.generation != generation {
            // The store was reopened meanwhile: what was read may be gone.
            return false;
        }
        let mut held = match read {
            Ok(Some(held)) => held,
            Ok(None) => {
                inner.too_big.insert(property.to_owned());
                inner.too_big_reads += 1;
                tracing::warn!(
                    property,
                    budget_bytes = self.budget,
                    "a property is larger than the listing cache's whole budget: it is listed \
                     from disk (storage.memory_budget_mb)"
                );
                return false;
            }
            Err(error) => {
                tracing::warn!(property, %error, "listing cache: could not load a property");
                return false;
            }
        };
        for change in changes {
            held.apply(change);
        }
        if held.keys.is_empty() {
            return false;
        }
        if !evict && inner.bytes + held.bytes > self.budget {
            return false;
        }
        held.used.store(inner.tick(), Ordering::Relaxed);
        inner.bytes += held.bytes;
        inner.held.insert(property.to_owned(), held);
        inner.make_room(self.budget, Some(property));
        true
    }

    /// A property's live keys as the tree has them now; None when they do
    /// not fit in the whole budget.
    fn read(&self, property: &str) -> Result<Option<Held>> {
        let mut held = Held {
            keys: BTreeMap::new(),
            bytes: 0,
            used: AtomicU64::new(0),
        };
        let prefix = path(LIVE_KEY, &[property.as_bytes()]);
        for entry in self.tree.get()?.scan_prefix(&prefix) {
            let (k, record) = entry.map_err(store_error)?;
            let key = stored_key::open_key(&self.sealer, &k, &record)?;
            held.apply(Change::Put(ListedKey::new(key)));
            if held.bytes > self.budget {
                return Ok(None);
            }
        }
        Ok(Some(held))
    }
}

/// Every property with live keys, in tree order, read by seeking from one
/// property to the next rather than walking every key.
fn properties(tree: &kv::Tree) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut from = vec![LIVE_KEY];
    while let Some(entry) = tree.range(from.clone()..).next() {
        let (k, _) = entry.map_err(store_error)?;
        if k.first() != Some(&LIVE_KEY) {
            break;
        }
        let Some(property) = parts(&k[1..]).first().map(|p| p.to_vec()) else {
            break;
        };
        from = path(LIVE_KEY, &[&property]);
        from.push(0xff);
        out.push(String::from_utf8_lossy(&property).into_owned());
    }
    Ok(out)
}
