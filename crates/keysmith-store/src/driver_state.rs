//! A driver's private key-value space: a namespace of the main tree.
use std::{collections::BTreeMap, sync::Arc};

use async_trait::async_trait;
use keysmith_core::{store::DriverState, Result};

use crate::{
    committer::{Committer, Overlaid},
    committer_error,
    handle::TreeHandle,
    store_error,
};

/// A driver's keys, under its namespace in the main tree.
pub(crate) struct SledDriverState {
    pub(crate) namespace: Vec<u8>,
    pub(crate) tree: Arc<TreeHandle>,
    pub(crate) committer: Arc<Committer>,
}

impl SledDriverState {
    fn full(&self, key: &[u8]) -> Vec<u8> {
        [self.namespace.as_slice(), key].concat()
    }
}

#[async_trait]
impl DriverState for SledDriverState {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let key = self.full(key);
        match self.committer.overlaid(&key) {
            Overlaid::Queued(value) => Ok(value),
            Overlaid::NotQueued => Ok(self
                .tree
                .get()?
                .get(key)
                .map_err(store_error)?
                .map(|v| v.to_vec())),
        }
    }

    fn apply(&self, changes: Vec<(Vec<u8>, Option<Vec<u8>>)>) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let ops = changes
            .into_iter()
            .map(|(k, v)| (self.full(&k), v))
            .collect();
        self.committer
            .enqueue(ops, Vec::new(), true)
            .map_err(committer_error)
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let prefix = self.full(prefix);
        let queued = self.committer.overlay_range(&prefix);
        let mut found = BTreeMap::new();
        for entry in self.tree.get()?.scan_prefix(&prefix) {
            let (k, v) = entry.map_err(store_error)?;
            found.insert(k.to_vec(), v.to_vec());
        }
        for (k, v) in queued {
            match v {
                Some(v) => found.insert(k, v),
                None => found.remove(&k),
            };
        }
        let strip = self.namespace.len();
        Ok(found
            .into_iter()
            .map(|(k, v)| (k[strip..].to_vec(), v))
            .collect())
    }

    async fn sync(&self) -> Result<()> {
        self.committer.sync().await.map_err(committer_error)
    }
}
