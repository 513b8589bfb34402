//! The leases of the PostgreSQL store (`src/lease.rs`), against a real
//! server when `KEYSMITH_TEST_POSTGRES_URL` names one: one holder at a
//! time, renewal by the holder only, expiry by the database's clock, and a
//! release that frees the lease at once. Time is moved by moving the row's
//! expiry back on the database's clock, never by sleeping.
mod common;

use std::{sync::Arc, time::Duration};

use common::open;
use keysmith_core::{lease::Leases, store::Store};
use keysmith_store_postgres::testing::TestDatabase;

const TTL: Duration = Duration::from_secs(30);

/// The lease's holder and how long it has still to run, by the database.
async fn row(database: &TestDatabase, name: &str) -> Option<(String, f64)> {
    database
        .client()
        .await
        .query_opt(
            "SELECT holder, extract(epoch FROM expires_at - now())::float8 \
             FROM leases WHERE name = $1",
            &[&name],
        )
        .await
        .unwrap()
        .map(|r| (r.get(0), r.get(1)))
}

/// Moves the lease's expiry into the past, as the passing of its time to
/// live on the database's clock would.
async fn expire(database: &TestDatabase, name: &str) {
    database
        .client()
        .await
        .execute(
            "UPDATE leases SET expires_at = now() - interval '1 second' WHERE name = $1",
            &[&name],
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_has_one_holder_until_it_expires_or_is_released() {
    let Some(database) = TestDatabase::create(
        "keysmith-store-postgres: tests/leases.rs",
        "cargo test -p keysmith-store-postgres --test leases",
    )
    .await
    else {
        return;
    };
    let store = open(&database).await;
    let leases: Arc<dyn Leases> = store.leases();

    assert!(
        leases.hold("sweeper", "a", TTL).await.unwrap(),
        "free: taken"
    );
    let (holder, left) = row(&database, "sweeper").await.unwrap();
    assert_eq!(holder, "a");
    assert!(left > 25.0 && left <= 30.0, "{left} s left of 30");
    assert!(
        !leases.hold("sweeper", "b", TTL).await.unwrap(),
        "held by a: refused to b"
    );
    assert_eq!(row(&database, "sweeper").await.unwrap().0, "a");
    assert!(
        leases.hold("other", "b", TTL).await.unwrap(),
        "leases are independent"
    );

    // The holder renews, also once its time has run out (no one took it).
    expire(&database, "sweeper").await;
    assert!(leases.hold("sweeper", "a", TTL).await.unwrap());
    let (holder, left) = row(&database, "sweeper").await.unwrap();
    assert_eq!(holder, "a");
    assert!(left > 25.0, "renewed for the whole time to live: {left}");

    // Past its expiry anyone may take it, and the former holder is refused.
    expire(&database, "sweeper").await;
    assert!(leases.hold("sweeper", "b", TTL).await.unwrap());
    assert_eq!(row(&database, "sweeper").await.unwrap().0, "b");
    assert!(!leases.hold("sweeper", "a", TTL).await.unwrap());

    // Released by someone else: nothing happens; by its holder: free.
    leases.release("sweeper", "a").await.unwrap();
    assert_eq!(row(&database, "sweeper").await.unwrap().0, "b");
    leases.release("sweeper", "b").await.unwrap();
    assert_eq!(row(&database, "sweeper").await, None);
    assert!(leases.hold("sweeper", "a", TTL).await.unwrap());
    store.close();
}

/// Many askers at once, from two stores (two replicas): exactly one holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn askers_at_once_get_one_holder() {
    let Some(database) = TestDatabase::create(
        "keysmith-store-postgres: tests/leases.rs",
        "cargo test -p keysmith-store-postgres --test leases",
    )
    .await
    else {
        return;
    };
    let (one, two) = (open(&database).await, open(&database).await);
    let asks = (0..16).map(|i| {
        let leases = if i % 2 == 0 {
            one.leases()
        } else {
            two.leases()
        };
        tokio::spawn(async move { leases.hold("follower", &format!("r{i}"), TTL).await })
    });
    let mut granted = Vec::new();
    for (i, ask) in asks.enumerate() {
        if ask.await.unwrap().unwrap() {
            granted.push(format!("r{i}"));
        }
    }
    assert_eq!(granted.len(), 1, "{granted:?}");
    assert_eq!(row(&database, "follower").await.unwrap().0, granted[0]);
    one.close();
    two.close();
}
