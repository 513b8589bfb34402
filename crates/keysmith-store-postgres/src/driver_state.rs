//! A driver's private key-value space: its rows of `driver_state`, each
//! value sealed. Each `apply` is its own transaction, committed before it
//! returns (the trait allows later; sooner is simpler and as safe).
//!
//! A section is one transaction holding a transaction-scoped advisory lock
//! on the section's name, so that it excludes every keysmith process on the
//! database; its reads are the transaction's (READ COMMITTED: under the
//! lock, whatever the last holder committed), its writes applied at commit.
//! This process's waiters for a section queue in memory first, as
//! transactions do (`transaction.rs`), not on pooled connections.
use std::sync::Arc;

use async_trait::async_trait;
use backon::Retryable;
use deadpool_postgres::{Object, Pool};
use keysmith_core::{
    locks::Locks,
    store::{section::Writes, Change, DriverState, StateSection, Wake},
    Result,
};
use keysmith_store::sealing::Sealer;
use tokio::sync::OwnedMutexGuard;

use crate::{
    blocking::wait,
    connection, db_error, records,
    signals::{self, Signals},
    statements,
    transaction::{backoff, hashed_lock_id, release_uncommitted},
    write::Failure,
};

pub(crate) struct PgDriverState {
    pub(crate) namespace: String,
    pub(crate) pool: Pool,
    pub(crate) sealer: Arc<Sealer>,
    pub(crate) sections: Arc<Locks>,
    /// This process's waiters for other processes' signals (`signals.rs`).
    pub(crate) signals: Arc<Signals>,
}

/// The first key after every key that starts with `prefix`; None when
/// there is none (the prefix is all 0xff bytes, or empty).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

const UPSERT: &str = "INSERT INTO driver_state (namespace, key, value) VALUES ($1, $2, $3) \
                      ON CONFLICT (namespace, key) DO UPDATE SET value = EXCLUDED.value";
const DELETE: &str = "DELETE FROM driver_state WHERE namespace = $1 AND key = $2";

/// Puts and deletes, in order (a later change of the same key wins), in a
/// savepoint `driver_state` made first: all of them one pipeline, one
/// round trip, their statements cached on the connection.
async fn apply(
    client: &Object,
    namespace: &String,
    changes: &[Change],
) -> std::result::Result<(), tokio_postgres::Error> {
    let upsert = statements::prepared(client, UPSERT).await?;
    let delete = statements::prepared(client, DELETE).await?;
    let mut requests = Vec::with_capacity(changes.len() + 1);
    requests.push(statements::simple(client, "SAVEPOINT driver_state"));
    for (k, v) in changes {
        requests.push(match v {
            Some(v) => statements::request(client, &upsert, [namespace, k, v]),
            None => statements::request(client, &delete, [namespace, k]),
        });
    }
    statements::pipeline(requests).await.map(drop)
}

impl PgDriverState {
    /// The values of `changes` sealed, each bound to where it lives.
    fn seal(&self, changes: Vec<Change>) -> Result<Vec<Change>> {
        changes
            .into_iter()
            .map(|(k, v)| {
                let v = v
                    .map(|v| {
                        self.sealer
                            .seal(&records::driver_state(&self.namespace, &k), &v)
                    })
                    .transpose()?;
                Ok((k, v))
            })
            .collect()
    }

    async fn read(&self, client: &Object, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let row = statements::query_opt(
            client,
            "SELECT value FROM driver_state WHERE namespace = $1 AND key = $2",
            &[&self.namespace, &key],
        )
        .await
        .map_err(db_error)?;
        row.map(|r| {
            let sealed: Vec<u8> = r.get(0);
            self.sealer
                .open(&records::driver_state(&self.namespace, key), &sealed)
        })
        .transpose()
    }

    async fn scan(&self, client: &Object, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let end = prefix_end(prefix);
        let rows = match &end {
            Some(end) => {
                statements::query(
                    client,
                    "SELECT key, value FROM driver_state WHERE namespace = $1 \
                     AND key >= $2 AND key < $3 ORDER BY key",
                    &[&self.namespace, &prefix, end],
                )
                .await
            }
            None => {
                statements::query(
                    client,
                    "SELECT key, value FROM driver_state WHERE namespace = $1 \
                     AND key >= $2 ORDER BY key",
                    &[&self.namespace, &prefix],
                )
                .await
            }
        }
        .map_err(db_error)?;
        rows.into_iter()
            .map(|r| {
                let key: Vec<u8> = r.get(0);
                let sealed: Vec<u8> = r.get(1);
                let value = self
                    .sealer
                    .open(&records::driver_state(&self.namespace, &key), &sealed)?;
                Ok((key, value))
            })
            .collect()
    }

    /// Applies sealed `changes` in the transaction open on `client`, inside
    /// a savepoint: a deadlock or serialization failure among the rows
    /// rolls back to it and they are applied again, with back-off.
    async fn apply_in_transaction(&self, client: &Object, sealed: &[Change]) -> Result<()> {
        let namespace = &self.namespace;
        let attempt = || async move {
            match apply(client, namespace, sealed).await {
                Ok(()) => Ok(()),
                Err(e) => {
                    let _ = client
                        .batch_execute("ROLLBACK TO SAVEPOINT driver_state")
                        .await;
                    Err(Failure::from(e))
                }
            }
        };
        attempt
            .retry(backoff())
            .when(Failure::retryable)
            .await
            .map_err(Failure::into_error)
    }
}

#[async_trait]
impl DriverState for PgDriverState {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        wait(async {
            let client = connection(&self.pool).await?;
            self.read(&client, key).await
        })
    }

    fn apply(&self, changes: Vec<Change>) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let sealed = self.seal(changes)?;
        wait(async {
            let client = connection(&self.pool).await?;
            client.batch_execute("BEGIN").await.map_err(db_error)?;
            match self.apply_in_transaction(&client, &sealed).await {
                Ok(()) => client.batch_execute("COMMIT").await.map_err(db_error),
                Err(e) => {
                    release_uncommitted(client);
                    Err(e)
                }
            }
        })
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        wait(async {
            let client = connection(&self.pool).await?;
            self.scan(&client, prefix).await
        })
    }

    async fn sync(&self) -> Result<()> {
        // Every apply was committed before it returned.
        Ok(())
    }

    async fn signal(&self, topic: &str) -> Result<()> {
        signals::send(&self.pool, &self.namespace, topic).await
    }

    fn on_signal(&self, topic: &str, wake: Wake) {
        self.signals.register(&self.namespace, topic, wake);
    }

    fn sections(&self, names: &[Vec<u8>]) -> Result<Box<dyn StateSection + '_>> {
        // One order in every process (the ids'), as transactions take
        // theirs: two sections whose names overlap never deadlock.
        let mut ids: Vec<i64> = names
            .iter()
            .map(|name| hashed_lock_id(b"driver section", &[self.namespace.as_bytes(), name]))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        wait(async {
            let local = self.sections.acquire(&ids).await;
            let section = PgSection {
                state: self,
                client: Some(connection(&self.pool).await?),
                _local: local,
                writes: Writes::default(),
            };
            // The transaction, its locks and the savepoint a read that met
            // a stale cached statement goes back to (`statements.rs`), in
            // one round trip: the ids are integers, no caller's text.
            let mut begin = String::from("BEGIN ISOLATION LEVEL READ COMMITTED;");
            for id in &ids {
                begin.push_str(&format!(" SELECT pg_advisory_xact_lock({id});"));
            }
            begin.push(' ');
            begin.push_str(statements::READS_SAVEPOINT);
            section
                .client()
                .batch_execute(&begin)
                .await
                .map_err(db_error)?;
            Ok(Box::new(section) as Box<dyn StateSection + '_>)
        })
    }
}

/// An open section: its transaction, holding the section's advisory lock.
struct PgSection<'a> {
    state: &'a PgDriverState,
    /// The connection, its transaction open; taken once committed.
    client: Option<Object>,
    _local: Vec<OwnedMutexGuard<()>>,
    writes: Writes,
}

impl PgSection<'_> {
    fn client(&self) -> &Object {
        self.client.as_ref().expect("open until committed")
    }
}

impl StateSection for PgSection<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.writes
            .get(key, || wait(self.state.read(self.client(), key)))
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let committed = wait(self.state.scan(self.client(), prefix))?;
        Ok(self.writes.scan(prefix, committed))
    }

    fn apply(&mut self, changes: Vec<Change>) {
        self.writes.record(changes);
    }

    fn commit(mut self: Box<Self>) -> Result<()> {
        let sealed = self
            .state
            .seal(std::mem::take(&mut self.writes).into_changes())?;
        wait(async {
            if !sealed.is_empty() {
                self.state
                    .apply_in_transaction(self.client(), &sealed)
                    .await?;
            }
            self.client()
                .batch_execute("COMMIT")
                .await
                .map_err(db_error)
        })?;
        // Committed: the connection goes back to the pool as it is.
        self.client.take();
        Ok(())
    }
}

impl Drop for PgSection<'_> {
    fn drop(&mut self) {
        // Left without a commit (or a failed one): its writes are undone
        // and its lock let go.
        if let Some(client) = self.client.take() {
            release_uncommitted(client);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn a_prefix_ends_before_the_first_key_it_does_not_start() {
        assert_eq!(prefix_end(b"a/"), Some(b"a0".to_vec()));
        assert_eq!(prefix_end(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
        assert_eq!(prefix_end(b""), None);
    }
}
