//! keysmith on PostgreSQL in tests: the configuration of a server on a
//! test's own database.
use keysmith_core::Secret;
use keysmith_server::{
    config::{PostgresConfig, StorageBackend},
    Config,
};
use keysmith_store_postgres::testing::TestDatabase;

/// Puts `config`'s state in `db`.
pub fn store_in(config: &mut Config, db: &TestDatabase) {
    config.storage.backend = StorageBackend::Postgres;
    config.storage.postgres = Some(PostgresConfig {
        url: Secret::new(db.url()),
        pool_size: 8,
        acquire_timeout_seconds: 30,
        lease_seconds: 10,
    });
}

/// Puts the server's state in `db`, as an edit of its configuration.
pub fn on_postgres(db: &TestDatabase) -> impl Fn(&mut Config) + Copy + '_ {
    move |c: &mut Config| store_in(c, db)
}
