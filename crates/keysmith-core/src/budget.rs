//! Rate budgets shared across replicas: a vendor that limits the requests
//! of a client (3RPMS: 200 a minute per client IP, answering an excess by
//! blocking connections for twenty minutes) must see the requests of every
//! keysmith process on the store spend one budget, not one budget each.
//!
//! The store hands them out ([`Store::rate_budgets`](crate::store::Store::rate_budgets)):
//! a store that one process owns has none to share (the caller's limiter
//! in memory is the whole budget); a database shared by replicas keeps
//! each budget in a row that one statement spends, by the database's clock.
use std::time::Duration;

use async_trait::async_trait;

use crate::error::Result;

/// Budgets of requests a minute, shared by every process on the store.
///
/// The contract: however many processes call [`RateBudgets::take`] on one
/// `name` with one `per_minute`, no more than `per_minute` are granted in
/// any minute, counted by one clock (the store's).
#[async_trait]
pub trait RateBudgets: Send + Sync + 'static {
    /// Takes one request of the budget `name`, of `per_minute` a minute:
    /// `None` when taken, or how long until one may be (then ask again).
    async fn take(&self, name: &str, per_minute: u32) -> Result<Option<Duration>>;
}
