//! What clients asked, per route, for tests that check a client's request
//! budget ("one lookup by access_grant_key before retrying, no second
//! create"). Control routes under `/_fake/` are not counted.

use std::collections::BTreeMap;

/// A copy of the counters at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RequestCounts {
    /// Every API request received, whatever its fate.
    pub total: u64,
    /// Requests by path, e.g. `/access_grants/create`.
    pub by_route: BTreeMap<String, u64>,
    /// Requests by path that a fault answered, delayed, dropped or withheld.
    pub faulted: BTreeMap<String, u64>,
}

impl RequestCounts {
    /// Requests to `route` (with or without its leading slash).
    pub fn route(&self, route: &str) -> u64 {
        self.by_route.get(&normalise(route)).copied().unwrap_or(0)
    }

    /// Requests to `route` that met a fault.
    pub fn faulted(&self, route: &str) -> u64 {
        self.faulted.get(&normalise(route)).copied().unwrap_or(0)
    }
}

fn normalise(route: &str) -> String {
    format!("/{}", route.trim_start_matches('/'))
}

#[derive(Default)]
pub(crate) struct Counters(parking_lot::Mutex<RequestCounts>);

impl Counters {
    pub fn request(&self, route: &str) {
        let mut c = self.0.lock();
        c.total += 1;
        *c.by_route.entry(normalise(route)).or_default() += 1;
    }

    pub fn fault(&self, route: &str) {
        *self.0.lock().faulted.entry(normalise(route)).or_default() += 1;
    }

    pub fn snapshot(&self) -> RequestCounts {
        self.0.lock().clone()
    }

    pub fn reset(&self) {
        *self.0.lock() = RequestCounts::default();
    }
}
