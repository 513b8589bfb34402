//! Two keysmith replicas on one PostgreSQL database (issue 20): background
//! work that changes the store (here the sweeper, seen through its reports
//! and the keys' states) runs on the replica that holds its lease, and only
//! there; when that replica stops, or is cut off from the database without
//! releasing anything, the other takes the work over within the lease's
//! time to live. Runs when `KEYSMITH_TEST_POSTGRES_URL` names a server;
//! without it the tests say they were skipped and pass.
mod common;

use std::{path::Path, time::Duration};

use common::*;
use keysmith_core::{follower::FOLLOWER_LEASE, sweeper::SWEEPER_LEASE, Secret};
use keysmith_server::config::{PostgresConfig, StorageBackend};
use keysmith_store_postgres::testing::{Relay, TestDatabase};

/// Short, so that a takeover is quick; renewed every second.
const LEASE_SECONDS: u64 = 3;

/// Time enough for a takeover (the time to live and one more renewal) on
/// a loaded machine.
const TAKEOVER: Duration = Duration::from_secs(30);

/// A replica's configuration: on the database at `url`, with the
/// key-encryption key in `kek` (the first replica up makes it) that every
/// replica of a database shares.
fn replica(url: String, kek: &Path) -> impl FnOnce(&mut keysmith_server::Config) {
    let kek = kek.to_path_buf();
    move |c| {
        c.storage.encryption.key_file = Some(kek);
        c.storage.backend = StorageBackend::Postgres;
        c.storage.postgres = Some(PostgresConfig {
            url: Secret::new(url),
            pool_size: 4,
            acquire_timeout_seconds: 5,
            lease_seconds: LEASE_SECONDS,
        });
    }
}

async fn database(test: &str) -> Option<TestDatabase> {
    TestDatabase::create(
        &format!("tests/leases.rs {test}"),
        "cargo test --test leases",
    )
    .await
}

fn running(s: &TestServer) -> &keysmith_server::Running {
    s.running.as_ref().expect("running")
}

/// Issues a key through `s` that ends a day after `start`, and moves both
/// replicas' clocks two days on, past its end.
async fn key_ending(s: &TestServer, both: [&TestServer; 2], start: i64, holder: &str) {
    s.issue(guest(
        holder,
        &["room-101"],
        start,
        start + DAY,
        &format!("stay-{holder}"),
    ))
    .await
    .unwrap();
    for r in both {
        r.clock.set(start + 2 * DAY);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_work_runs_on_one_replica_and_moves_when_it_stops() {
    let Some(db) = database("background_work_runs_on_one_replica").await else {
        return;
    };
    let keys = tempfile::tempdir().unwrap();
    let kek = keys.path().join("kek");
    let mut a = TestServer::start_with(replica(db.url(), &kek)).await;
    let b = TestServer::start_with(replica(db.url(), &kek)).await;
    let mut held = running(&a).leases_held();
    held.sort();
    assert_eq!(
        held,
        [FOLLOWER_LEASE, SWEEPER_LEASE],
        "the first replica up"
    );
    assert!(running(&b).leases_held().is_empty(), "the second waits");

    // The replica without the sweeper's lease does not sweep: the ended
    // key is still in the stored live set when the holder sweeps, which
    // moves it out (had the other swept, the holder would find nothing).
    key_ending(&a, [&a, &b], T0, "ada").await;
    assert_eq!(running(&b).sweep_now().await.expired, 0);
    assert_eq!(running(&a).sweep_now().await.expired, 1);
    assert_eq!(running(&a).sweep_now().await.expired, 0, "moved out once");

    // The holder stops (releasing its leases): the other takes them over.
    a.running.take().unwrap().stop().await.unwrap();
    tokio::time::timeout(TAKEOVER, running(&b).lease_taken(SWEEPER_LEASE))
        .await
        .expect("the sweeper's lease moves to the replica left");
    key_ending(&b, [&b, &b], T0 + 2 * DAY, "bob").await;
    assert_eq!(running(&b).sweep_now().await.expired, 1);
    tokio::time::timeout(TAKEOVER, running(&b).lease_taken(FOLLOWER_LEASE))
        .await
        .expect("and the key follower's");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_cut_off_from_the_database_loses_its_leases_to_the_other() {
    let Some(db) = database("a_replica_cut_off").await else {
        return;
    };
    let keys = tempfile::tempdir().unwrap();
    let kek = keys.path().join("kek");
    let url = db.url();
    let relay = Relay::to(&url).await;
    let a = TestServer::start_with(replica(relay.url(&url), &kek)).await;
    let b = TestServer::start_with(replica(db.url(), &kek)).await;
    assert!(running(&a)
        .leases_held()
        .contains(&SWEEPER_LEASE.to_owned()));
    assert!(running(&b).leases_held().is_empty());

    // Cut off without a release: the holder stops its work at its next
    // failed renewal, the other takes the lease once it has expired on
    // the database's clock.
    relay.cut();
    tokio::time::timeout(TAKEOVER, running(&a).lease_lost(SWEEPER_LEASE))
        .await
        .expect("the replica cut off stops working");
    tokio::time::timeout(TAKEOVER, running(&b).lease_taken(SWEEPER_LEASE))
        .await
        .expect("the other takes the sweeper's lease over");
    key_ending(&b, [&a, &b], T0, "ada").await;
    assert_eq!(running(&b).sweep_now().await.expired, 1);
    assert_eq!(
        running(&a).sweep_now().await.expired,
        0,
        "the replica cut off sweeps nothing"
    );
}
