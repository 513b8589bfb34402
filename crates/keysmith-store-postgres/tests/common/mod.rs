//! What this crate's tests share: a store opened as a keysmith replica
//! opens it, small.
#![allow(dead_code)]
use std::time::Duration;

use keysmith_store::{sealing::KeyRing, suite::test_keys};
use keysmith_store_postgres::{testing::TestDatabase, PgOptions, PgStore};

/// A store on `url` with the suite's keys: a pool of four, as each test's
/// replicas need no more.
pub async fn open_url(url: String) -> PgStore {
    open_with(url, test_keys()).await
}

/// A store on the test's database with the suite's keys.
pub async fn open(db: &TestDatabase) -> PgStore {
    open_url(db.url()).await
}

/// A store on `url` under the key-encryption keys of `keys`.
pub async fn open_with(url: String, keys: KeyRing) -> PgStore {
    PgStore::open(PgOptions {
        url,
        pool_size: 4,
        acquire_timeout: Duration::from_secs(30),
        keys,
        watch_buffer: 1024,
    })
    .await
    .expect("the store opens")
}
