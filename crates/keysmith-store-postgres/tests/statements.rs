//! The store's statements are prepared once per connection and kept
//! (`src/statements.rs`): what the server does underneath them must not
//! break the store. A session the server ended takes its statements with
//! it, and the connection that replaces it prepares its own; a schema
//! change that alters what a cached statement answers makes PostgreSQL
//! refuse it ("cached plan must not change result type") until the store
//! prepares it again. Runs when `KEYSMITH_TEST_POSTGRES_URL` names a
//! server.
use std::time::Duration;

use keysmith_core::{
    store::{KeyIndex, LockName, Store},
    ErrorKind,
};
use keysmith_store::suite::{key, scan, test_keys, write};
use keysmith_store_postgres::{testing::TestDatabase, PgOptions, PgStore};

const POOL: usize = 4;

async fn database(what: &str) -> Option<TestDatabase> {
    TestDatabase::create(
        &format!("keysmith-store-postgres: tests/statements.rs, {what}"),
        "cargo test -p keysmith-store-postgres --test statements",
    )
    .await
}

async fn open(database: &TestDatabase) -> PgStore {
    PgStore::open(PgOptions {
        url: database.url(),
        pool_size: POOL,
        acquire_timeout: Duration::from_secs(30),
        keys: test_keys(),
        watch_buffer: 16,
    })
    .await
    .expect("the store opens")
}

/// Holds as many transactions open at once as the store allows, each
/// reading in it, so that every connection of the pool has the reads'
/// statements cached; then commits them.
async fn cache_on_every_connection(store: &PgStore) {
    let mut open = Vec::new();
    for i in 0..POOL - 1 {
        let mut tx = store
            .begin(vec![LockName::Key {
                property_id: "hotel".into(),
                key_id: format!("lock-{i}"),
            }])
            .await
            .unwrap();
        assert!(tx.key("hotel", "k1").await.unwrap().is_some());
        assert_eq!(tx.keys_of_reservation("hotel", "s1").await.unwrap(), ["k1"]);
        open.push(tx);
    }
    for tx in open {
        tx.commit().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_statements_do_not_outlive_a_session_the_server_ended() {
    let Some(database) = database("ended sessions").await else {
        return;
    };
    let store = open(&database).await;
    write(&store, key("k1", "g1", Some("s1")), None).await;
    cache_on_every_connection(&store).await;
    assert_eq!(scan(&store, KeyIndex::Property, false, None), ["k1"]);

    // Every session of the store ended by the server, each waited for
    // until its process is gone (as a database restart ends them).
    let ended = database
        .client()
        .await
        .query(
            "SELECT pg_terminate_backend(pid, 30000) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    assert!(ended.len() >= 2, "the pool's sessions were ended");

    // A connection whose end the store has not yet noticed may fail one
    // call (UNAVAILABLE, as before statements were cached) and is then
    // dropped: at most one failure per pooled connection. The pool hands
    // out its idle connections in turn, so as many answers in a row as
    // it holds have been on each of them.
    let (mut failures, mut in_a_row) = (0, 0);
    while in_a_row < POOL {
        match store.key("hotel", "k1") {
            Ok(found) => {
                assert!(found.is_some());
                in_a_row += 1;
            }
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
                failures += 1;
                in_a_row = 0;
                assert!(failures <= POOL, "the store did not recover: {e}");
            }
        }
    }
    // Then every statement works again, on every connection: reads, a
    // transaction's reads and writes, and listings.
    cache_on_every_connection(&store).await;
    write(&store, key("k2", "g2", Some("s2")), None).await;
    assert_eq!(scan(&store, KeyIndex::Property, false, None), ["k1", "k2"]);
    assert_eq!(
        scan(&store, KeyIndex::Holder("g2".into()), false, None),
        ["k2"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_change_that_alters_a_cached_statements_answer_is_prepared_again() {
    let Some(database) = database("schema change").await else {
        return;
    };
    let store = open(&database).await;
    write(&store, key("k1", "g1", Some("s1")), None).await;
    cache_on_every_connection(&store).await;
    assert_eq!(scan(&store, KeyIndex::Property, false, None), ["k1"]);

    // `key_id` answered as varchar instead of text: the cached listing
    // (and reservation) statements now answer another type.
    database
        .client()
        .await
        .batch_execute("ALTER TABLE keys ALTER COLUMN key_id TYPE varchar(200) COLLATE \"C\"")
        .await
        .unwrap();

    // A listing outside a transaction is prepared again and answers.
    assert_eq!(scan(&store, KeyIndex::Property, false, None), ["k1"]);
    // Every connection's statements were forgotten with it: a
    // transaction's reads answer too, on every connection.
    cache_on_every_connection(&store).await;
    write(&store, key("k2", "g2", Some("s2")), None).await;
    assert_eq!(scan(&store, KeyIndex::Property, false, None), ["k1", "k2"]);
}
