//! What the fake has been asked, for tests that check a client's request
//! budget (e.g. "one HTTP request for the whole batch").

use std::collections::BTreeMap;

/// A copy of the counters at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestCounts {
    /// Every HTTP request received, whatever its method, path or fate.
    pub http_requests: u64,
    /// GraphQL operations run or attempted: one per batch entry.
    pub graphql_operations: u64,
    /// Operations that were mutations.
    pub mutations: u64,
    /// Root fields requested, by field name (not alias), e.g. "room_stays".
    pub root_fields: BTreeMap<String, u64>,
    /// Requests that got no answer because of the rate limit: the one that
    /// exceeded it plus every request during the block.
    pub rate_limited: u64,
    /// Connections accepted during a block and held without an answer.
    pub blocked_connections: u64,
    /// Blocks started.
    pub blocks: u64,
    /// HTTP requests whose mutations were rolled back.
    pub rollbacks: u64,
    /// Operations refused because a test asked the fake to
    /// (`Fake3rpms::refuse_operations`).
    pub refused: u64,
}

impl RequestCounts {
    /// How often a root field was requested.
    pub fn field(&self, name: &str) -> u64 {
        self.root_fields.get(name).copied().unwrap_or(0)
    }
}

#[derive(Default)]
pub(crate) struct Counters(parking_lot::Mutex<RequestCounts>);

impl Counters {
    pub fn update(&self, f: impl FnOnce(&mut RequestCounts)) {
        f(&mut self.0.lock());
    }

    pub fn snapshot(&self) -> RequestCounts {
        self.0.lock().clone()
    }

    pub fn reset(&self) {
        *self.0.lock() = RequestCounts::default();
    }
}
