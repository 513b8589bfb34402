//! The schema, versioned: each migration is a file in `migrations/`, applied
//! in order at start, all in one transaction under an advisory lock (so
//! that replicas starting together apply each one once), and recorded in
//! `schema_migrations`. A database whose schema is newer than this build
//! knows is refused rather than misread.
use keysmith_core::{Error, ErrorKind, Result};
use tokio_postgres::Client;

use crate::{db_error, SCHEMA_LOCK};

/// Every migration this build knows, in order: (version, SQL).
const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("../migrations/0001_initial.sql")),
    (2, include_str!("../migrations/0002_leases.sql")),
    (3, include_str!("../migrations/0003_rate_budgets.sql")),
    (4, include_str!("../migrations/0004_data_key_rotation.sql")),
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i32 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// Brings the database's schema to [`SCHEMA_VERSION`]; returns the
/// versions applied now.
pub(crate) async fn migrate(client: &mut Client) -> Result<Vec<i32>> {
    let tx = client.transaction().await.map_err(db_error)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
        .await
        .map_err(db_error)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version integer PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await
    .map_err(db_error)?;
    let current: i32 = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM schema_migrations",
            &[],
        )
        .await
        .map_err(db_error)?
        .get(0);
    if current > SCHEMA_VERSION {
        return Err(Error::new(
            ErrorKind::FailedPrecondition,
            keysmith_core::reasons::STORE_UNAVAILABLE,
            format!(
                "the database's schema is version {current}, written by a newer keysmith; this \
                 build knows versions up to {SCHEMA_VERSION} and will not misread it"
            ),
        ));
    }
    let mut applied = Vec::new();
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        tx.batch_execute(sql).await.map_err(db_error)?;
        tx.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[version],
        )
        .await
        .map_err(db_error)?;
        applied.push(*version);
    }
    tx.commit().await.map_err(db_error)?;
    Ok(applied)
}
