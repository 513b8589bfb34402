//! What is measured by reading the store rather than counted as it
//! happens: live keys by property, driver and state (a key's state also
//! changes with the clock, as its window passes), the data directory's
//! size, and what the listing cache holds. Read at a scrape once the last
//! reading is `metrics.sample_interval_seconds` old, so that scraping often
//! costs nothing more.
use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use crate::storage::Storage;
use keysmith_core::AccessService;
use parking_lot::Mutex;

/// Labels of one `keysmith_keys` series: property, driver, state.
type KeyLabels = (String, String, &'static str);

pub struct Sampler {
    store: Arc<Storage>,
    service: Arc<AccessService>,
    every: Duration,
    state: Mutex<State>,
    size: metrics::Gauge,
    cache_bytes: metrics::Gauge,
    cache_properties: metrics::Gauge,
    cache_keys: metrics::Gauge,
    cache_evictions: metrics::Counter,
}

#[derive(Default)]
struct State {
    last: Option<Instant>,
    /// Every series set so far, so that one whose keys all left its state
    /// reads 0 rather than its last count.
    keys: BTreeMap<KeyLabels, metrics::Gauge>,
}

impl Sampler {
    pub fn new(store: Arc<Storage>, service: Arc<AccessService>, every: Duration) -> Self {
        Self {
            store,
            service,
            every,
            state: Mutex::default(),
            size: metrics::gauge!("keysmith_store_size_bytes"),
            cache_bytes: metrics::gauge!("keysmith_listing_cache_bytes"),
            cache_properties: metrics::gauge!("keysmith_listing_cache_properties"),
            cache_keys: metrics::gauge!("keysmith_listing_cache_keys"),
            cache_evictions: metrics::counter!("keysmith_listing_cache_evictions_total"),
        }
    }

    /// Reads the store again unless the last reading is recent. Blocking:
    /// it walks the data directory and every property's live keys.
    pub fn sample_if_stale(&self) {
        let mut state = self.state.lock();
        if state.last.is_some_and(|at| at.elapsed() < self.every) {
            return;
        }
        // A database's size and a listing cache are the embedded store's alone.
        if let Some(size) = self.store.size_on_disk() {
            self.size.set(size as f64);
        }
        if let Some(cache) = self.store.listing_cache() {
            self.cache_bytes.set(cache.bytes as f64);
            self.cache_properties.set(cache.properties as f64);
            self.cache_keys.set(cache.keys as f64);
            self.cache_evictions.absolute(cache.evictions);
        }
        self.keys_by_state(&mut state);
        state.last = Some(Instant::now());
    }

    fn keys_by_state(&self, state: &mut State) {
        let now = self.service.now();
        let mut counts: BTreeMap<KeyLabels, u64> = BTreeMap::new();
        for property in self.service.router().properties_where(|_| true) {
            let keys = match self.store.live_keys(&property) {
                Ok(keys) => keys,
                Err(error) => {
                    tracing::warn!(%property, %error, "metrics: cannot read a property's keys");
                    continue;
                }
            };
            for key in keys {
                let key_state = key.state(now).as_str();
                for driver in key.drivers() {
                    *counts
                        .entry((property.clone(), driver.to_owned(), key_state))
                        .or_default() += 1;
                }
            }
        }
        for gauge in state.keys.values() {
            gauge.set(0.0);
        }
        for (labels, count) in counts {
            let gauge = state.keys.entry(labels).or_insert_with_key(|(p, d, s)| {
                metrics::gauge!(
                    "keysmith_keys",
                    "property" => p.clone(),
                    "driver" => d.clone(),
                    "state" => *s,
                )
            });
            gauge.set(count as f64);
        }
    }
}
