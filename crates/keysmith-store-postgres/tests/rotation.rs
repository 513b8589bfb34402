//! A data key rotation on PostgreSQL, at the store's level: two stores on
//! one database, the rotation made on one, and what the database itself
//! guarantees once it is done. (The same through the real server, with
//! two keysmith processes, is in keysmith's tests/encryption.rs.) Runs
//! when `KEYSMITH_TEST_POSTGRES_URL` names a server; skipped otherwise.
mod common;

use std::{sync::Arc, time::Duration};

use keysmith_core::store::Store;
use keysmith_store::sealing::{KeyEncryptionKey, KeyRing};
use keysmith_store_postgres::{testing::TestDatabase, PgStore};

async fn open(db: &TestDatabase) -> PgStore {
    common::open_with(
        db.url(),
        KeyRing::new(KeyEncryptionKey::insecure_for_tests()),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_data_key_is_learned_and_the_old_one_refused_once_deleted() {
    let Some(db) = TestDatabase::create(
        "keysmith-store-postgres tests/rotation.rs",
        "cargo test -p keysmith-store-postgres --test rotation",
    )
    .await
    else {
        return;
    };
    let a = Arc::new(open(&db).await);
    a.start_resealing(Duration::from_secs(10));
    let b = open(&db).await;
    let state_b = b.driver_state("test").unwrap();
    state_b
        .apply(vec![(
            b"before".to_vec(),
            Some(b"sealed with the first key".to_vec()),
        )])
        .unwrap();
    let old = a.sealer().current();

    let new = a.rotate_data_key().await.unwrap();
    assert_ne!(new, old);
    a.resealed().await;
    let status = a.encryption_status();
    assert_eq!((status.data_keys, status.resealing), (vec![new], false));

    // B reads what A sealed again with a key B did not hold at its start,
    // and seals with it from then on.
    assert_eq!(
        state_b.get(b"before").unwrap().as_deref(),
        Some(&b"sealed with the first key"[..])
    );
    assert_eq!(b.sealer().current(), new);
    state_b
        .apply(vec![(
            b"after".to_vec(),
            Some(b"sealed with the new key".to_vec()),
        )])
        .unwrap();

    let sql = db.client().await;
    let headers: Vec<Vec<u8>> = sql
        .query(
            "SELECT substring(value from 1 for 5) FROM driver_state ORDER BY key",
            &[],
        )
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.get(0))
        .collect();
    let sealed_with = |id: u32| [&[2u8][..], &id.to_be_bytes()].concat();
    assert_eq!(headers, [sealed_with(new), sealed_with(new)]);

    // The database refuses a value that names the old key: a keysmith that
    // never learned of the rotation cannot store what nobody could open.
    let stale = [sealed_with(old), vec![0; 24 + 16]].concat();
    let err = sql
        .execute(
            "INSERT INTO driver_state (namespace, key, value) VALUES ('test', 'stale', $1)",
            &[&stale],
        )
        .await
        .unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("KS001"), "{err}");
    a.close();
    b.close();
}

/// A rotation whose resealing did not run (its keysmith stopped right after
/// the new key was stored) goes on at the next start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_stopped_by_a_restart_goes_on_at_the_next_start() {
    let Some(db) = TestDatabase::create(
        "keysmith-store-postgres tests/rotation.rs",
        "cargo test -p keysmith-store-postgres --test rotation",
    )
    .await
    else {
        return;
    };
    // Without start_resealing: this store stores the new key, and stops.
    let stopped = open(&db).await;
    let state = stopped.driver_state("test").unwrap();
    state
        .apply(vec![(
            b"k".to_vec(),
            Some(b"sealed with the first key".to_vec()),
        )])
        .unwrap();
    let old = stopped.sealer().current();
    let new = stopped.rotate_data_key().await.unwrap();
    assert!(stopped.encryption_status().resealing);
    stopped.close();
    drop((state, stopped));

    let next = Arc::new(open(&db).await);
    assert!(next.encryption_status().resealing, "under way at the start");
    assert_eq!(next.sealer().data_keys(), [old, new]);
    next.start_resealing(Duration::from_secs(10));
    next.resealed().await;
    assert_eq!(next.sealer().data_keys(), [new]);
    let header: Vec<u8> = db
        .client()
        .await
        .query_one(
            "SELECT substring(value from 1 for 5) FROM driver_state",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(header, [&[2u8][..], &new.to_be_bytes()].concat());
    assert_eq!(
        next.driver_state("test")
            .unwrap()
            .get(b"k")
            .unwrap()
            .as_deref(),
        Some(&b"sealed with the first key"[..])
    );
    next.close();
}
