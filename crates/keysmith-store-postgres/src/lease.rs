//! Leases in the `leases` table (migration 0002): one row per lease, taken
//! or renewed by one statement that decides by the database's clock alone,
//! so that replicas whose clocks disagree still agree on the holder.
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::Pool;
use keysmith_core::{lease::Leases, Result};

use crate::{connection, db_error, statements};

/// Takes the lease when it is free, held by the asker, or past its expiry;
/// answers a row only then. Under a concurrent attempt PostgreSQL's row
/// lock on the conflicting row makes one of two askers wait and then
/// re-check the WHERE against the winner's row: one holder at a time.
const HOLD: &str = "\
    INSERT INTO leases (name, holder, expires_at) \
    VALUES ($1, $2, now() + make_interval(secs => $3)) \
    ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
    WHERE leases.holder = excluded.holder OR leases.expires_at < now() \
    RETURNING holder";

/// Ends the lease now, when the asker holds it.
const RELEASE: &str = "DELETE FROM leases WHERE name = $1 AND holder = $2";

/// The leases of a PostgreSQL store.
pub(crate) struct PgLeases {
    pub(crate) pool: Pool,
}

#[async_trait]
impl Leases for PgLeases {
    async fn hold(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool> {
        let client = connection(&self.pool).await?;
        let taken = statements::query_opt(&client, HOLD, &[&name, &holder, &ttl.as_secs_f64()])
            .await
            .map_err(db_error)?;
        Ok(taken.is_some())
    }

    async fn release(&self, name: &str, holder: &str) -> Result<()> {
        let client = connection(&self.pool).await?;
        statements::query(&client, RELEASE, &[&name, &holder])
            .await
            .map_err(db_error)?;
        Ok(())
    }
}
