//! Encryption at rest, as the server runs it: the key-encryption keys read
//! from the configuration (or, in development, made on first start), and
//! `keysmith.v1.EncryptionService`, which rotates them online.
use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::Context as _;
use keysmith_api::v1::{self as pb, encryption_service_server::EncryptionService};
use keysmith_core::{reasons, Error};
use keysmith_store::{
    sealing::{KeyEncryptionKey, KeyRing},
    EncryptionStatus,
};
use tonic::{Request, Response, Status};

use crate::{
    auth::caller,
    config::{EncryptionConfig, StorageConfig},
    convert::status as fail,
    storage::Storage,
};

/// The key-encryption keys the configuration gives: the current one (made,
/// with a loud warning, when `generate_if_missing` and it does not exist)
/// and the previous ones.
pub fn key_ring(storage: &StorageConfig) -> anyhow::Result<KeyRing> {
    let e = &storage.encryption;
    check_outside(&storage.data_dir, e.key_file.as_deref(), &e.key_id)?;
    let current = match (&e.key_file, &e.key_env) {
        (Some(file), None) if e.generate_if_missing && !file.exists() => generate(e, file)?,
        _ => load(&e.key_id, e.key_file.as_deref(), e.key_env.as_deref())?,
    };
    let mut previous = Vec::with_capacity(e.previous.len());
    for p in &e.previous {
        check_outside(&storage.data_dir, p.key_file.as_deref(), &p.key_id)?;
        previous.push(load(
            &p.key_id,
            p.key_file.as_deref(),
            p.key_env.as_deref(),
        )?);
    }
    Ok(KeyRing { current, previous })
}

/// Reads a key from exactly one of a file and an environment variable.
pub fn load(id: &str, file: Option<&Path>, env: Option<&str>) -> anyhow::Result<KeyEncryptionKey> {
    match (file, env) {
        (Some(file), None) => Ok(KeyEncryptionKey::from_file(id, file).map_err(|e| {
            anyhow::anyhow!(
                "{} (the key-encryption key {id:?}: without it keysmith cannot read its store)",
                e.message()
            )
        })?),
        (None, Some(var)) => {
            let text = std::env::var(var).with_context(|| {
                format!("the key-encryption key {id:?} is to be read from ${var}, which is not set")
            })?;
            Ok(KeyEncryptionKey::from_text(id, &text)
                .map_err(|e| anyhow::anyhow!("{}", e.message()))?)
        }
        _ => anyhow::bail!(
            "invalid configuration: the key-encryption key {id:?} needs exactly one of key_file \
             and key_env"
        ),
    }
}

/// Makes a new random key in a new file, readable by its owner only
/// (`keysmith encryption generate-key`).
pub fn write_new_key(id: &str, file: &Path) -> anyhow::Result<()> {
    KeyEncryptionKey::generate(id)
        .write_new_file(file)
        .map_err(|e| anyhow::anyhow!("{}", e.message()))
}

/// The development key, made on first start: said loudly, on stderr too.
fn generate(e: &EncryptionConfig, file: &Path) -> anyhow::Result<KeyEncryptionKey> {
    let key = KeyEncryptionKey::generate(&e.key_id);
    key.write_new_file(file)
        .map_err(|err| anyhow::anyhow!("{}", err.message()))?;
    let warning = format!(
        "made a new key-encryption key {:?} in {} (storage.encryption.generate_if_missing): \
         every record keysmith stores is sealed with keys it wraps. Keep that file, apart from \
         the data directory and its backups: without it the data cannot be read. For anything \
         real, make a key with `keysmith encryption generate-key` and turn generate_if_missing off",
        e.key_id,
        file.display()
    );
    eprintln!("\n  {warning}\n");
    tracing::warn!("{warning}");
    Ok(key)
}

/// A key kept in the data directory would go wherever the data goes (a
/// backup, a copied disk): refused.
fn check_outside(data_dir: &Path, key_file: Option<&Path>, id: &str) -> anyhow::Result<()> {
    let Some(file) = key_file else {
        return Ok(());
    };
    let absolute = |p: &Path| -> PathBuf {
        let p = if p.is_absolute() {
            p.to_path_buf()
        } else {
            std::env::current_dir().unwrap_or_default().join(p)
        };
        // Resolved where possible, so that `a/../data/key` is seen for what it is.
        p.canonicalize()
            .or_else(|_| {
                let parent = p.parent().map(Path::to_path_buf).unwrap_or_default();
                parent
                    .canonicalize()
                    .map(|dir| dir.join(p.file_name().unwrap_or_default()))
            })
            .unwrap_or(p)
    };
    if absolute(file).starts_with(absolute(data_dir)) {
        anyhow::bail!(
            "invalid configuration: the key-encryption key {id:?} ({}) is inside the data \
             directory {}: a copy of the data would carry its key. Keep it elsewhere",
            file.display(),
            data_dir.display()
        );
    }
    Ok(())
}

pub struct EncryptionRpcService {
    store: Arc<Storage>,
}

impl EncryptionRpcService {
    pub fn new(store: Arc<Storage>) -> Self {
        Self { store }
    }
}

fn status(s: EncryptionStatus) -> pb::GetEncryptionStatusResponse {
    let EncryptionStatus {
        key_encryption_key_id,
        current_data_key,
        data_keys,
        resealing,
    } = s;
    pb::GetEncryptionStatusResponse {
        key_encryption_key_id,
        current_data_key,
        data_keys,
        resealing,
    }
}

/// Keys protect every property at once: only a token for every property may
/// turn them.
fn every_property<T>(request: &Request<T>) -> Result<(), Status> {
    let caller = caller(request)?;
    if caller.acts_on_every_property() {
        Ok(())
    } else {
        Err(fail(Error::new(
            keysmith_core::ErrorKind::PermissionDenied,
            reasons::SCOPE_MISSING,
            "the encryption keys protect every property: this needs a token for every \
             property (properties = [\"*\"]) with keysmith.admin",
        )))
    }
}

#[tonic::async_trait]
impl EncryptionService for EncryptionRpcService {
    async fn get_encryption_status(
        &self,
        request: Request<pb::GetEncryptionStatusRequest>,
    ) -> Result<Response<pb::GetEncryptionStatusResponse>, Status> {
        every_property(&request)?;
        let pb::GetEncryptionStatusRequest {} = request.into_inner();
        Ok(Response::new(status(self.store.encryption_status())))
    }

    async fn rotate_key_encryption_key(
        &self,
        request: Request<pb::RotateKeyEncryptionKeyRequest>,
    ) -> Result<Response<pb::RotateKeyEncryptionKeyResponse>, Status> {
        every_property(&request)?;
        let pb::RotateKeyEncryptionKeyRequest {
            key_id,
            key_file,
            key_env,
        } = request.into_inner();
        let file = (!key_file.is_empty()).then(|| PathBuf::from(&key_file));
        let env = (!key_env.is_empty()).then_some(key_env.as_str());
        let key = load(&key_id, file.as_deref(), env).map_err(|e| {
            fail(
                Error::invalid_field(
                    reasons::KEY_ENCRYPTION_KEY_INVALID,
                    if env.is_some() { "key_env" } else { "key_file" },
                    e.to_string(),
                )
                .with_context("key_id", key_id.clone()),
            )
        })?;
        self.store
            .rotate_key_encryption_key(key)
            .await
            .map_err(fail)?;
        tracing::warn!(
            key_id,
            "the data keys are wrapped with a new key-encryption key: set \
             storage.encryption.key_id and key_file (or key_env) to it before the next start"
        );
        Ok(Response::new(pb::RotateKeyEncryptionKeyResponse {
            status: Some(status(self.store.encryption_status())),
        }))
    }

    async fn rotate_data_key(
        &self,
        request: Request<pb::RotateDataKeyRequest>,
    ) -> Result<Response<pb::RotateDataKeyResponse>, Status> {
        every_property(&request)?;
        let pb::RotateDataKeyRequest {} = request.into_inner();
        self.store.rotate_data_key().await.map_err(fail)?;
        Ok(Response::new(pb::RotateDataKeyResponse {
            status: Some(status(self.store.encryption_status())),
        }))
    }
}
