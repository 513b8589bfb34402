//! Where a driver keeps what it must remember (an encoder's counters, the
//! grants it created): a private key-value space in keysmith's store, so
//! that the driver's state and keysmith's keys share one durability.
use async_trait::async_trait;

use crate::error::Result;

/// A driver's private key-value space in the store.
#[async_trait]
pub trait DriverState: Send + Sync + 'static {
    /// The value under `key`, as this state's reads see it (including
    /// changes applied and not yet durable).
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Applies every put (Some) and delete (None) atomically, in order with
    /// every other change to the store. This state's reads see them at
    /// once; they are durable once [`DriverState::sync`] (or any later
    /// commit of keysmith's own changes) returns.
    fn apply(&self, changes: Vec<(Vec<u8>, Option<Vec<u8>>)>) -> Result<()>;
    /// Every entry whose key starts with `prefix`, in key order.
    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>>;
    /// Waits until everything applied before the call is on disk.
    async fn sync(&self) -> Result<()>;
}
