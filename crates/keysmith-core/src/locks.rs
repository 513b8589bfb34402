//! Striped locks that serialise the requests touching one reservation or
//! one request_id, while unrelated requests run in parallel.
use std::{
    hash::{DefaultHasher, Hash, Hasher},
    sync::Arc,
};

use tokio::sync::{Mutex, OwnedMutexGuard};

/// A fixed set of async mutexes ("stripes") that names hash onto. Requests
/// with the same name always wait for each other; requests with different
/// names usually do not, and when two names share a stripe they merely wait
/// for each other needlessly. Held by
/// [`LockedTransaction`](crate::store::LockedTransaction)s.
pub struct Locks {
    stripes: Vec<Arc<Mutex<()>>>,
}

impl Locks {
    /// `stripes` mutexes, at least one. More stripes make needless waits
    /// rarer; the default is 1024.
    pub fn new(stripes: usize) -> Self {
        Self {
            stripes: (0..stripes.max(1)).map(|_| Arc::default()).collect(),
        }
    }

    /// Locks the stripes of every name, always in ascending stripe order so
    /// that two requests can never wait on each other.
    pub async fn acquire<H: Hash>(&self, names: &[H]) -> Vec<OwnedMutexGuard<()>> {
        let mut indexes: Vec<usize> = names
            .iter()
            .map(|name| {
                let mut hasher = DefaultHasher::new();
                name.hash(&mut hasher);
                (hasher.finish() % self.stripes.len() as u64) as usize
            })
            .collect();
        indexes.sort_unstable();
        indexes.dedup();
        let mut guards = Vec::with_capacity(indexes.len());
        for i in indexes {
            guards.push(self.stripes[i].clone().lock_owned().await);
        }
        guards
    }
}

impl Default for Locks {
    fn default() -> Self {
        Self::new(1024)
    }
}
