//! A driver's private key-value space: a namespace of the main tree.
use std::{collections::BTreeMap, sync::Arc};

use async_trait::async_trait;
use keysmith_core::{
    store::{
        section::{LocalSection, LocalSections},
        Change, DriverState, StateSection,
    },
    Result,
};

use crate::{
    committer::{Committer, Overlaid},
    committer_error,
    handle::TreeHandle,
    sealing::{Sealer, SEALED},
    store_error,
};

/// A driver's keys, under its namespace in the main tree.
pub(crate) struct EmbeddedDriverState {
    pub(crate) namespace: Vec<u8>,
    pub(crate) tree: Arc<TreeHandle>,
    pub(crate) sealer: Arc<Sealer>,
    pub(crate) committer: Arc<Committer>,
    /// The store's open sections: one process opens the embedded store, so a
    /// section excludes within it alone.
    pub(crate) sections: Arc<LocalSections>,
}

impl EmbeddedDriverState {
    fn full(&self, key: &[u8]) -> Vec<u8> {
        [self.namespace.as_slice(), key].concat()
    }

    /// A driver's value as it gave it: sealed values are opened (the
    /// sealing adds a header; the driver's own bytes are inside).
    fn open(&self, key: &[u8], value: &[u8]) -> Result<Vec<u8>> {
        match value.first() {
            Some(&SEALED) => self.sealer.open(key, value),
            // Written before sealing existed, as the driver gave it.
            _ => Ok(value.to_vec()),
        }
    }
}

#[async_trait]
impl DriverState for EmbeddedDriverState {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let key = self.full(key);
        let sealed = match self.committer.overlaid(&key) {
            Overlaid::Queued(value) => value,
            Overlaid::NotQueued => self
                .tree
                .get()?
                .get(&key)
                .map_err(store_error)?
                .map(|v| v.to_vec()),
        };
        sealed.map(|v| self.open(&key, &v)).transpose()
    }

    fn apply(&self, changes: Vec<Change>) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let ops = changes
            .into_iter()
            .map(|(k, v)| {
                let k = self.full(&k);
                let v = v.map(|v| self.sealer.seal(&k, &v)).transpose()?;
                Ok((k, v))
            })
            .collect::<Result<Vec<_>>>()?;
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
        found
            .into_iter()
            .map(|(k, v)| Ok((k[strip..].to_vec(), self.open(&k, &v)?)))
            .collect()
    }

    async fn sync(&self) -> Result<()> {
        self.committer.sync().await.map_err(committer_error)
    }

    fn sections(&self, names: &[Vec<u8>]) -> Result<Box<dyn StateSection + '_>> {
        // Named within the driver's namespace: drivers never wait on each other.
        let names = names.iter().map(|name| self.full(name)).collect();
        Ok(Box::new(LocalSection::open(self, &self.sections, names)))
    }
}
