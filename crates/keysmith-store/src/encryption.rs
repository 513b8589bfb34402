//! Encryption at rest, as the store runs it: where it stands, the online
//! rotations of the data key and of the key-encryption key, and the
//! background work that seals every record again.
use std::sync::Arc;

use keysmith_core::{error::reasons, Error, Result};

use crate::{
    committer::Committer,
    committer_error,
    handle::TreeHandle,
    journal::Journal,
    kv, layout, rewrite,
    sealing::{self, KeyEncryptionKey, KeyRing, Sealer},
    store_error, EmbeddedStore,
};

/// Where the store's encryption stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncryptionStatus {
    /// The key-encryption key that wraps the data keys.
    pub key_encryption_key_id: String,
    /// The data key that seals new records.
    pub current_data_key: u32,
    /// Every data key the store holds (older ones until no record uses them).
    pub data_keys: Vec<u32>,
    /// Whether records are still being sealed again with the current key.
    pub resealing: bool,
}

impl EmbeddedStore {
    /// Where the store's encryption stands.
    pub fn encryption_status(&self) -> EncryptionStatus {
        EncryptionStatus {
            key_encryption_key_id: self.sealer.key_encryption_key_id(),
            current_data_key: self.sealer.current(),
            data_keys: self.sealer.data_keys(),
            resealing: *self.resealing.borrow(),
        }
    }

    /// Wraps every data key with `new`, which then is the key-encryption
    /// key: the records need not change. Online; durable on return. The
    /// configuration must give `new` from the next start on.
    pub async fn rotate_key_encryption_key(&self, new: KeyEncryptionKey) -> Result<()> {
        let writes = self
            .sealer
            .rewrap_all(&new)?
            .into_iter()
            .map(|(k, v)| (k, Some(v)))
            // The data keys wrapped with the old key stay in the engine's files
            // until the next start rewrites them.
            .chain([(rewrite::wanted_marker(), Some(vec![1u8]))])
            .collect();
        self.committer
            .commit(writes, Vec::new())
            .await
            .map_err(committer_error)?;
        self.sealer.use_key_encryption_key(new);
        tracing::info!("every data key is wrapped with the new key-encryption key");
        Ok(())
    }

    /// Makes a new data key the one that seals new records, then seals every
    /// record again with it in the background, a few hundred at a time
    /// through the committer, and forgets the old keys once no record uses
    /// them. Returns the new key's id; [`EmbeddedStore::resealed`] waits for
    /// the background work.
    pub async fn rotate_data_key(&self) -> Result<u32> {
        if self.resealing.send_replace(true) {
            return Err(Error::failed_precondition(
                reasons::ROTATION_IN_PROGRESS,
                "a data key rotation is under way: wait until its records are sealed again",
            ));
        }
        let (id, key, writes) = self.sealer.new_data_key()?;
        let writes = writes.into_iter().map(|(k, v)| (k, Some(v))).collect();
        if let Err(error) = self.committer.commit(writes, Vec::new()).await {
            self.resealing.send_replace(false);
            return Err(committer_error(error));
        }
        self.sealer.use_data_key(id, key);
        self.start_resealing()?;
        Ok(id)
    }

    /// Seals every record again with the current data key, in the
    /// background; `resealing` must be set.
    pub(crate) fn start_resealing(&self) -> Result<()> {
        let resealer = Resealer {
            tree: self.tree.clone(),
            committer: self.committer.clone(),
            sealer: self.sealer.clone(),
            journal: self.journal.clone(),
            resealing: self.resealing.clone(),
        };
        std::thread::Builder::new()
            .name("keysmith-reseal".into())
            .spawn(move || resealer.run())
            .map(drop)
            .map_err(|e| {
                self.resealing.send_replace(false);
                Error::internal(format!("cannot start resealing: {e}"))
            })
    }

    /// Waits until no data key rotation is sealing records again.
    pub async fn resealed(&self) {
        let mut watch = self.resealing.subscribe();
        let _ = watch.wait_for(|busy| !busy).await;
    }
}

/// Seals every record again with the current data key, then forgets the
/// data keys no record uses any more.
struct Resealer {
    tree: Arc<TreeHandle>,
    committer: Arc<Committer>,
    sealer: Arc<Sealer>,
    journal: Arc<Journal>,
    resealing: tokio::sync::watch::Sender<bool>,
}

impl Resealer {
    /// Records per reseal job: small, so that requests never wait long.
    const CHUNK: usize = 512;

    fn run(self) {
        let runtime = match tokio::runtime::Builder::new_current_thread().build() {
            Ok(runtime) => runtime,
            Err(error) => {
                tracing::error!(%error, "resealing could not start");
                self.resealing.send_replace(false);
                return;
            }
        };
        match runtime.block_on(self.reseal()) {
            Ok(resealed) => tracing::info!(
                records = resealed,
                "every record is sealed with the current data key; older data keys are gone"
            ),
            Err(error) => tracing::error!(
                %error,
                "resealing stopped; it goes on at the next start"
            ),
        }
        self.resealing.send_replace(false);
    }

    /// Passes over the tree until one finds no record sealed with an old
    /// key (a record written with one while the rotation began is caught by
    /// the next pass), then deletes the old keys.
    async fn reseal(&self) -> Result<usize> {
        let mut resealed = 0;
        loop {
            let current = self.sealer.current();
            let mut found = 0;
            let mut from = vec![0u8];
            loop {
                let tree = self.tree.get()?;
                let mut chunk = Vec::with_capacity(Self::CHUNK);
                let mut last = None;
                for entry in tree.range(from.clone()..).take(Self::CHUNK * 8) {
                    let (k, v) = entry.map_err(store_error)?;
                    last = Some(k.to_vec());
                    // The store's own facts (its wrapped data keys) are not
                    // sealed records.
                    if k.first() == Some(&layout::META) {
                        continue;
                    }
                    if Sealer::key_of(&v).is_some_and(|id| id != current) {
                        chunk.push(k.to_vec());
                        if chunk.len() == Self::CHUNK {
                            break;
                        }
                    }
                }
                let Some(mut next) = last else { break };
                found += chunk.len();
                if !chunk.is_empty() {
                    self.committer
                        .reseal(chunk)
                        .await
                        .map_err(committer_error)?;
                }
                next.push(0);
                from = next;
            }
            resealed += found;
            if found == 0 {
                break;
            }
        }
        // The audit journal's frames, in place: a frame the committer
        // appends meanwhile is sealed with the current key already.
        resealed += self.journal.reseal(&self.sealer)?;
        let current = self.sealer.current();
        let old: Vec<u32> = self
            .sealer
            .data_keys()
            .into_iter()
            .filter(|id| *id != current)
            .collect();
        if !old.is_empty() {
            let deletes = old
                .iter()
                .map(|id| (sealing::data_key_path(*id), None))
                // Records sealed with the old keys stay in the engine's files
                // until the next start rewrites them.
                .chain([(rewrite::wanted_marker(), Some(vec![1u8]))])
                .collect();
            self.committer
                .commit(deletes, Vec::new())
                .await
                .map_err(committer_error)?;
            for id in old {
                self.sealer.forget_data_key(id);
            }
        }
        Ok(resealed)
    }
}

/// Unwraps the store's data keys (making the first one for a new store),
/// and stores what that changed: a data key rewrapped with the current key,
/// or the first data key.
pub(crate) fn open_sealer(db: &kv::Db, tree: &kv::Tree, keys: KeyRing) -> Result<Arc<Sealer>> {
    let opened = Sealer::open_store(tree, keys)?;
    let writes: Vec<_> = opened
        .created
        .iter()
        .chain(&opened.rewrapped)
        .cloned()
        .collect();
    if !writes.is_empty() {
        let mut batch = kv::Batch::default();
        for (k, v) in writes {
            batch.insert(k, v);
        }
        if !opened.rewrapped.is_empty() {
            // The data keys wrapped with the retired key stay in the engine's
            // files until they are rewritten.
            batch.insert(rewrite::wanted_marker(), [1u8]);
        }
        tree.apply_batch(batch).map_err(store_error)?;
        db.flush().map_err(store_error)?;
    }
    if !opened.rewrapped.is_empty() {
        tracing::info!(
            data_keys = opened.rewrapped.len(),
            "data keys wrapped with a previous key-encryption key are now wrapped with the \
             current one"
        );
    }
    Ok(opened.sealer)
}
