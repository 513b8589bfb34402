//! One mutation as one database transaction, READ COMMITTED, holding a
//! transaction-scoped advisory lock for each of its [`LockName`]s.
//!
//! Why not SERIALIZABLE: the core reads, calls drivers and only then writes,
//! and it cannot run a request's reads again (a driver may have been asked
//! to issue a card meanwhile). A serialization failure found at commit
//! could only fail the request. The lock names are exactly what the core
//! needs held (one request_id, one reservation, one key), as the embedded
//! store holds them in memory: taken here in the database, they hold across
//! every keysmith process on the database. Reads inside the transaction
//! see what is committed, which under these locks is what the sled store
//! shows too.
//!
//! Locks are taken in one order (in-process stripes, then advisory locks
//! by ascending id), so that two transactions never wait on each other's
//! locks. Writes are buffered and applied at commit, inside a savepoint: a
//! deadlock (40P01) or serialization failure (40001) among the rows rolls
//! back to it and the writes are applied again, with back-off, still under
//! the same locks. `commit` returns once PostgreSQL has committed.
use async_trait::async_trait;
use backon::{ExponentialBuilder, Retryable};
use deadpool_postgres::Object;
use keysmith_core::{
    reservation::Reservation,
    store::{IdempotencyRecord, LockName, Transaction, WriteSet},
    AccessKey, Result, Timestamp,
};
use sha2::{Digest, Sha256};
use tokio::sync::OwnedMutexGuard;

use crate::{
    db_error, statements,
    write::{apply, Failure},
    PgStore,
};

pub(crate) struct PgTransaction<'a> {
    store: &'a PgStore,
    /// The connection, with its transaction open; taken by commit.
    client: Option<Object>,
    _guards: Vec<OwnedMutexGuard<()>>,
    /// Held while the transaction is open (see `PgStore::transactions`).
    _turn: tokio::sync::OwnedSemaphorePermit,
    writes: WriteSet,
}

impl<'a> PgTransaction<'a> {
    pub(crate) async fn begin(store: &'a PgStore, locks: &[LockName]) -> Result<Self> {
        // The process's own waiters queue in memory, not on connections.
        let guards = store.locks.acquire(locks).await;
        let turn = store.transaction_turn().await?;
        let client = store.connection().await?;
        // BEGIN and the advisory locks as one simple query, one round trip:
        // PostgreSQL runs its statements in order, so the locks are still
        // taken one by one in ascending order, inside the transaction. Then
        // the savepoint a read goes back to after a stale statement
        // (`statements.rs`).
        let mut ids: Vec<i64> = locks.iter().map(advisory_id).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut begin = String::from("BEGIN ISOLATION LEVEL READ COMMITTED");
        for id in ids {
            // An integer: nothing of a caller's text is in the query.
            begin.push_str(&format!("; SELECT pg_advisory_xact_lock({id})"));
        }
        begin.push_str("; ");
        begin.push_str(statements::READS_SAVEPOINT);
        if let Err(e) = client.batch_execute(&begin).await {
            release_uncommitted(client);
            return Err(db_error(e));
        }
        Ok(Self {
            store,
            client: Some(client),
            _guards: guards,
            _turn: turn,
            writes: WriteSet::default(),
        })
    }

    fn client(&self) -> &Object {
        self.client.as_ref().expect("open until committed")
    }
}

/// The advisory lock id of a lock name: the first 8 bytes of a SHA-256 of
/// its parts, so that every keysmith build and replica agrees. Two names
/// that share an id merely wait for each other.
pub(crate) fn advisory_id(name: &LockName) -> i64 {
    let (tag, parts): (&[u8], [&str; 2]) = match name {
        LockName::Request {
            property_id,
            request_id,
        } => (b"request", [property_id, request_id]),
        LockName::Reservation {
            property_id,
            reservation_key,
        } => (b"reservation", [property_id, reservation_key]),
        LockName::Key {
            property_id,
            key_id,
        } => (b"key", [property_id, key_id]),
    };
    hashed_lock_id(tag, &parts.map(str::as_bytes))
}

/// An advisory lock id for `tag` and `parts`: the first 8 bytes of a
/// SHA-256 of them, each part length-prefixed so that no two lists of parts
/// hash the same bytes.
pub(crate) fn hashed_lock_id(tag: &[u8], parts: &[&[u8]]) -> i64 {
    let mut hash = Sha256::new();
    hash.update(b"keysmith lock ");
    hash.update(tag);
    for part in parts {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part);
    }
    let digest = hash.finalize();
    i64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// How often, and how patiently, conflicting writes are tried again.
pub(crate) fn backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(std::time::Duration::from_millis(5))
        .with_max_delay(std::time::Duration::from_millis(500))
        .with_max_times(8)
        .with_jitter()
}

#[async_trait]
impl Transaction for PgTransaction<'_> {
    async fn key(&mut self, property_id: &str, key_id: &str) -> Result<Option<AccessKey>> {
        self.store
            .read_key(self.client(), property_id, key_id)
            .await
    }

    async fn reservation(
        &mut self,
        property_id: &str,
        reservation_key: &str,
    ) -> Result<Option<Reservation>> {
        self.store
            .read_reservation(self.client(), property_id, reservation_key)
            .await
    }

    async fn idempotency(
        &mut self,
        property_id: &str,
        request_id: &str,
    ) -> Result<Option<IdempotencyRecord>> {
        self.store
            .read_idempotency(self.client(), property_id, request_id)
            .await
    }

    async fn live_keys_of_reservation(
        &mut self,
        property_id: &str,
        reservation_key: &str,
    ) -> Result<Vec<String>> {
        self.store
            .reservation_key_ids(self.client(), property_id, reservation_key, true)
            .await
    }

    async fn keys_of_reservation(
        &mut self,
        property_id: &str,
        reservation_key: &str,
    ) -> Result<Vec<String>> {
        self.store
            .reservation_key_ids(self.client(), property_id, reservation_key, false)
            .await
    }

    fn audit_id(&self, at: Timestamp) -> String {
        self.store.audit_ids.next(at)
    }

    fn writes(&mut self) -> &mut WriteSet {
        &mut self.writes
    }

    async fn commit(mut self: Box<Self>) -> Result<()> {
        let client = self.client.take().expect("open until committed");
        let writes = std::mem::take(&mut self.writes);
        if writes.is_empty() {
            // Nothing to write: ending it lets go of the locks.
            return client.batch_execute("COMMIT").await.map_err(db_error);
        }
        let prepared = match self.store.prepare(writes) {
            Ok(p) => p,
            Err(e) => {
                let _ = client.batch_execute("ROLLBACK").await;
                return Err(e);
            }
        };
        let (client_ref, prepared, sealer) = (&client, &prepared, &*self.store.sealer);
        let attempt = move || async move {
            let savepoint = Some("SAVEPOINT keysmith_writes");
            match apply(client_ref, prepared, sealer, savepoint, None).await {
                Ok(changes) => Ok(changes),
                Err(failure) => {
                    let _ = client_ref
                        .batch_execute("ROLLBACK TO SAVEPOINT keysmith_writes")
                        .await;
                    Err(failure)
                }
            }
        };
        let changes = match attempt.retry(backoff()).when(Failure::retryable).await {
            Ok(changes) => changes,
            Err(failure) => {
                let _ = client.batch_execute("ROLLBACK").await;
                return Err(failure.into_error());
            }
        };
        client.batch_execute("COMMIT").await.map_err(db_error)?;
        self.store.publisher.committed(changes);
        Ok(())
    }
}

impl Drop for PgTransaction<'_> {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            release_uncommitted(client);
        }
    }
}

/// Rolls back the transaction open on `client`, dropped without a commit,
/// before the connection goes back to the pool (which lets go of its
/// advisory locks); a connection whose rollback fails is not reused.
pub(crate) fn release_uncommitted(client: Object) {
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        handle.spawn(async move {
            if client.batch_execute("ROLLBACK").await.is_err() {
                let _ = Object::take(client);
            }
        });
    } else {
        let _ = Object::take(client);
    }
}
