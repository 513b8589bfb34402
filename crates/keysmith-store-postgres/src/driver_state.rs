//! A driver's private key-value space: its rows of `driver_state`, each
//! value sealed. Each `apply` is its own transaction, committed before it
//! returns (the trait allows later; sooner is simpler and as safe).
use std::sync::Arc;

use async_trait::async_trait;
use backon::Retryable;
use keysmith_core::{store::DriverState, Result};

use deadpool_postgres::Pool;
use keysmith_store::sealing::Sealer;

use crate::{blocking::wait, connection, records, transaction::backoff, write::Failure};

pub(crate) struct PgDriverState {
    pub(crate) namespace: String,
    pub(crate) pool: Pool,
    pub(crate) sealer: Arc<Sealer>,
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

/// Puts and deletes, in order (a later change of the same key wins).
async fn apply(
    client: &tokio_postgres::Client,
    namespace: &str,
    changes: &[(Vec<u8>, Option<Vec<u8>>)],
) -> std::result::Result<(), tokio_postgres::Error> {
    for (k, v) in changes {
        match v {
            Some(v) => {
                client
                    .execute(
                        "INSERT INTO driver_state (namespace, key, value) VALUES ($1, $2, $3) \
                         ON CONFLICT (namespace, key) DO UPDATE SET value = EXCLUDED.value",
                        &[&namespace, k, v],
                    )
                    .await?
            }
            None => {
                client
                    .execute(
                        "DELETE FROM driver_state WHERE namespace = $1 AND key = $2",
                        &[&namespace, k],
                    )
                    .await?
            }
        };
    }
    Ok(())
}

#[async_trait]
impl DriverState for PgDriverState {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        wait(async {
            let client = connection(&self.pool).await?;
            let row = client
                .query_opt(
                    "SELECT value FROM driver_state WHERE namespace = $1 AND key = $2",
                    &[&self.namespace, &key],
                )
                .await
                .map_err(crate::db_error)?;
            row.map(|r| {
                let sealed: Vec<u8> = r.get(0);
                self.sealer
                    .open(&records::driver_state(&self.namespace, key), &sealed)
            })
            .transpose()
        })
    }

    fn apply(&self, changes: Vec<(Vec<u8>, Option<Vec<u8>>)>) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let sealed = changes
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
            .collect::<Result<Vec<_>>>()?;
        wait(async {
            let client = connection(&self.pool).await?;
            let (client, sealed, namespace) = (&client, &sealed, &self.namespace);
            let attempt = move || async move {
                client.batch_execute("BEGIN").await?;
                match apply(client, namespace, sealed).await {
                    Ok(()) => client.batch_execute("COMMIT").await.map_err(Failure::from),
                    Err(e) => {
                        let _ = client.batch_execute("ROLLBACK").await;
                        Err(Failure::from(e))
                    }
                }
            };
            attempt
                .retry(backoff())
                .when(Failure::retryable)
                .await
                .map_err(Failure::into_error)
        })
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        wait(async {
            let client = connection(&self.pool).await?;
            let end = prefix_end(prefix);
            let rows = match &end {
                Some(end) => {
                    client
                        .query(
                            "SELECT key, value FROM driver_state WHERE namespace = $1 \
                             AND key >= $2 AND key < $3 ORDER BY key",
                            &[&self.namespace, &prefix, end],
                        )
                        .await
                }
                None => {
                    client
                        .query(
                            "SELECT key, value FROM driver_state WHERE namespace = $1 \
                             AND key >= $2 ORDER BY key",
                            &[&self.namespace, &prefix],
                        )
                        .await
                }
            }
            .map_err(crate::db_error)?;
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
        })
    }

    async fn sync(&self) -> Result<()> {
        // Every apply was committed before it returned.
        Ok(())
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
