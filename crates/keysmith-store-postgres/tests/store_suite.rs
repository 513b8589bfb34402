//! The store suite (keysmith-store's `suite`) on PostgreSQL, when
//! `KEYSMITH_TEST_POSTGRES_URL` names a server to test against: each case
//! makes a fresh database of its own there and drops it at the end. Without
//! the variable every case passes at once, and the run says so plainly.
use std::{sync::Once, time::Duration};

use keysmith_store::{sealing::KeyRing, suite::Harness};
use keysmith_store_postgres::{
    testing::{TestDatabase, URL_VARIABLE},
    PgOptions, PgStore,
};

/// A database made for one case, dropped when the harness is.
struct PgHarness {
    database: TestDatabase,
}

impl PgHarness {
    /// A fresh database, or None (said once) when no server is named.
    async fn from_env() -> Option<Self> {
        if std::env::var_os(URL_VARIABLE).is_none() {
            static SAID: Once = Once::new();
            let mut said = false;
            SAID.call_once(|| said = true);
            if !said {
                return None;
            }
        }
        let database = TestDatabase::create(
            "keysmith-store-postgres: the PostgreSQL store suite",
            "cargo test -p keysmith-store-postgres",
        )
        .await?;
        Some(Self { database })
    }

    fn url(&self) -> String {
        self.database.url()
    }
}

impl Harness for PgHarness {
    type Store = PgStore;

    async fn open_with(&self, keys: KeyRing) -> keysmith_core::Result<PgStore> {
        PgStore::open(PgOptions {
            url: self.url(),
            pool_size: 8,
            acquire_timeout: Duration::from_secs(30),
            keys,
            watch_buffer: 1024,
        })
        .await
    }

    fn close(&self, store: &PgStore) {
        store.close();
    }

    async fn stored_values_hold(&self, _store: &PgStore, needle: &[u8]) -> bool {
        let client = self.database.client().await;
        let mut found = false;
        for (table, column) in [
            ("keys", "record"),
            ("reservations", "record"),
            ("idempotency", "record"),
            ("audit", "record"),
            ("changes", "record"),
            ("driver_state", "value"),
            ("data_keys", "wrapped"),
            ("keysmith_meta", "value"),
        ] {
            let n: i64 = client
                .query_one(
                    &format!("SELECT count(*) FROM {table} WHERE position($1 in {column}) > 0"),
                    &[&needle],
                )
                .await
                .unwrap()
                .get(0);
            found |= n > 0;
        }
        found
    }

    async fn entries_of_key(&self, _store: &PgStore, property_id: &str, key_id: &str) -> usize {
        let client = self.database.client().await;
        let n: i64 = client
            .query_one(
                "SELECT (SELECT count(*) FROM keys WHERE property_id = $1 AND key_id = $2) \
                 + (SELECT count(*) FROM key_entrances WHERE property_id = $1 AND key_id = $2)",
                &[&property_id, &key_id],
            )
            .await
            .unwrap()
            .get(0);
        n as usize
    }
}

keysmith_store::store_suite!(PgHarness::from_env());

/// A database whose schema is newer than this build is refused, not
/// misread; the migrations run once, however often the store opens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_newer_than_the_build_is_refused() {
    let Some(harness) = PgHarness::from_env().await else {
        return;
    };
    let store = harness
        .open_with(keysmith_store::suite::test_keys())
        .await
        .unwrap();
    store.close();
    drop(store);
    let client = harness.database.client().await;
    let versions: i64 = client
        .query_one("SELECT count(*) FROM schema_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(versions, i64::from(keysmith_store_postgres::SCHEMA_VERSION));
    client
        .execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[&(keysmith_store_postgres::SCHEMA_VERSION + 1)],
        )
        .await
        .unwrap();
    let error = harness
        .open_with(keysmith_store::suite::test_keys())
        .await
        .expect_err("refused");
    assert!(
        error.message().contains("newer keysmith"),
        "{}",
        error.message()
    );
}

/// The advisory locks hold across processes: a transaction of a second
/// store on the same database (a second keysmith) waits for the first one's
/// lock, then reads what it committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_on_one_database_wait_for_each_others_locks() {
    use keysmith_core::store::{LockName, Store};
    let Some(harness) = PgHarness::from_env().await else {
        return;
    };
    let keys = keysmith_store::suite::test_keys;
    let (a, b) = (
        harness.open_with(keys()).await.unwrap(),
        std::sync::Arc::new(harness.open_with(keys()).await.unwrap()),
    );
    let lock = || LockName::Reservation {
        property_id: "hotel".into(),
        reservation_key: "s1".into(),
    };
    let mut first = a.begin(vec![lock()]).await.unwrap();
    first
        .writes()
        .keys
        .push((keysmith_store::suite::key("k1", "g1", Some("s1")), None));
    let (began_tx, began) = tokio::sync::oneshot::channel();
    let second = tokio::spawn({
        let b = b.clone();
        async move {
            let _ = began_tx.send(());
            let mut tx = b.begin(vec![lock()]).await.unwrap();
            let seen = tx.keys_of_reservation("hotel", "s1").await.unwrap();
            tx.commit().await.unwrap();
            seen
        }
    });
    began.await.unwrap();
    first.commit().await.unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(30), second)
        .await
        .expect("the second store's transaction began")
        .unwrap();
    assert_eq!(seen, ["k1"], "it began only after the first committed");
}
