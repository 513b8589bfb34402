//! The store the configuration chooses (`storage.backend`), and what the
//! server asks of it beyond the `Store` trait: health of writes, encryption
//! status and rotations, what the metrics read, the shutdown.
use std::{sync::Arc, time::Duration};

use anyhow::Context as _;
use keysmith_core::{store::Store, ListedKey, Result};
use keysmith_store::{
    catalog::CatalogStats,
    sealing::{KeyEncryptionKey, KeyRing},
    EmbeddedStore, EncryptionStatus, StoreOptions,
};
use keysmith_store_postgres::{PgOptions, PgStore};

use crate::config::{Config, StorageBackend};

pub enum Storage {
    /// The embedded store (fjall) in `storage.data_dir`.
    Embedded(Arc<EmbeddedStore>),
    /// A PostgreSQL database.
    Postgres(Arc<PgStore>),
}

impl Storage {
    /// Opens the configured store, its data keys unwrapped with `keys`.
    pub async fn open(config: &Config, keys: KeyRing) -> anyhow::Result<Self> {
        let storage = &config.storage;
        match storage.backend {
            StorageBackend::Embedded => Ok(Self::Embedded(Arc::new(EmbeddedStore::open_with(
                &storage.data_dir,
                StoreOptions {
                    memory_budget_bytes: storage.memory_budget_mb.saturating_mul(1024 * 1024),
                    keys,
                    watch_buffer: config.server.watch_buffer,
                },
            )?))),
            StorageBackend::Postgres => {
                let pg = storage
                    .postgres
                    .as_ref()
                    .context("storage.backend = \"postgres\" needs [storage.postgres]")?;
                let store = PgStore::open(PgOptions {
                    url: pg.url.expose().clone(),
                    pool_size: pg.pool_size,
                    acquire_timeout: Duration::from_secs(pg.acquire_timeout_seconds),
                    keys,
                    watch_buffer: config.server.watch_buffer,
                })
                .await?;
                let store = Arc::new(store);
                // A data key rotation under way (made here, on another
                // replica, or stopped by a restart) is sealed again on the
                // replica holding its lease, as the sweeper's work is.
                store.start_resealing(Duration::from_secs(storage.lease_seconds()));
                Ok(Self::Postgres(store))
            }
        }
    }

    /// The store behind its trait.
    pub fn store(&self) -> Arc<dyn Store> {
        match self {
            Self::Embedded(s) => s.clone(),
            Self::Postgres(s) => s.clone(),
        }
    }

    /// Whether writes can be made now. the embedded store reports its write errors and
    /// recovery; a PostgreSQL store reports each failure on its call.
    pub fn writable(&self) -> tokio::sync::watch::Receiver<bool> {
        match self {
            Self::Embedded(s) => s.writable(),
            Self::Postgres(_) => tokio::sync::watch::channel(true).1,
        }
    }

    /// Resolves once no data key rotation is sealing records again.
    pub async fn resealed(&self) {
        match self {
            Self::Embedded(s) => s.resealed().await,
            Self::Postgres(s) => s.resealed().await,
        }
    }

    /// Writes what is queued and stops (embedded), or closes the connections.
    pub fn close(&self) {
        match self {
            Self::Embedded(s) => s.close(),
            Self::Postgres(s) => s.close(),
        }
    }

    pub fn encryption_status(&self) -> EncryptionStatus {
        match self {
            Self::Embedded(s) => s.encryption_status(),
            Self::Postgres(s) => s.encryption_status(),
        }
    }

    pub async fn rotate_key_encryption_key(&self, key: KeyEncryptionKey) -> Result<()> {
        match self {
            Self::Embedded(s) => s.rotate_key_encryption_key(key).await,
            Self::Postgres(s) => s.rotate_key_encryption_key(key).await,
        }
    }

    pub async fn rotate_data_key(&self) -> Result<u32> {
        match self {
            Self::Embedded(s) => s.rotate_data_key().await,
            Self::Postgres(s) => s.rotate_data_key().await,
        }
    }

    /// The data directory's size (embedded); None for a database.
    pub fn size_on_disk(&self) -> Option<u64> {
        match self {
            Self::Embedded(s) => Some(s.size_on_disk()),
            Self::Postgres(_) => None,
        }
    }

    /// What the listing cache holds (embedded); None without one.
    pub fn listing_cache(&self) -> Option<CatalogStats> {
        match self {
            Self::Embedded(s) => Some(s.listing_cache()),
            Self::Postgres(_) => None,
        }
    }

    /// Every live key of a property, for the metrics.
    pub fn live_keys(&self, property_id: &str) -> Result<Vec<Arc<ListedKey>>> {
        match self {
            Self::Embedded(s) => s.live_keys(property_id),
            Self::Postgres(s) => {
                let mut keys = Vec::new();
                loop {
                    let after = keys.last().map(|k: &Arc<ListedKey>| k.key_id.clone());
                    let page = s.scan_keys(&keysmith_core::store::KeyScan {
                        property_id,
                        index: keysmith_core::store::KeyIndex::Property,
                        live_only: true,
                        after: after.as_deref(),
                        limit: 1024,
                    })?;
                    if page.is_empty() {
                        return Ok(keys);
                    }
                    keys.extend(page);
                }
            }
        }
    }
}
