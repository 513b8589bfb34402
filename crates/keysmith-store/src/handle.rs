//! The open tree, shared by the readers and the committer, which replaces
//! it when it reopens the store after a write error (the engine refuses every
//! write after one, until it is opened again).
use parking_lot::RwLock;

use keysmith_core::{error::reasons, Error, Result};

use crate::kv;

pub(crate) struct TreeHandle(RwLock<Option<kv::Tree>>);

impl TreeHandle {
    pub fn new(tree: kv::Tree) -> Self {
        Self(RwLock::new(Some(tree)))
    }

    /// The tree, or STORE_UNAVAILABLE while the store is being reopened.
    pub fn get(&self) -> Result<kv::Tree> {
        self.0.read().clone().ok_or_else(|| {
            Error::unavailable(
                reasons::STORE_UNAVAILABLE,
                "the store is being reopened after a write error",
            )
            .set_temporary()
        })
    }

    /// Lets go of the tree, so that the store's files can be opened again.
    pub fn release(&self) {
        self.0.write().take();
    }

    pub fn install(&self, tree: kv::Tree) {
        *self.0.write() = Some(tree);
    }
}
