//! keysmith on PostgreSQL in tests: the configuration of a server on a
//! test's own database.
use keysmith_core::Secret;
use keysmith_server::{
    config::{PostgresConfig, StorageBackend},
    Config,
};
use keysmith_store_postgres::testing::TestDatabase;

/// The server's PostgreSQL configuration for `db`.
pub fn storage(db: &TestDatabase) -> PostgresConfig {
    PostgresConfig {
        url: Secret::new(db.url()),
        pool_size: 8,
        acquire_timeout_seconds: 30,
    }
}

/// Puts the server's state in `db`.
pub fn on_postgres(db: &TestDatabase) -> impl Fn(&mut Config) + Copy + '_ {
    move |c: &mut Config| {
        c.storage.backend = StorageBackend::Postgres;
        c.storage.postgres = Some(storage(db));
    }
}
