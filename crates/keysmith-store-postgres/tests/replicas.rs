//! Two stores on one database, as two keysmith processes open it: each
//! one's change feed publishes the other's commits too, in one order with
//! the same numbers, and a change this one committed after another's is
//! not held back for good. Runs when `KEYSMITH_TEST_POSTGRES_URL` names a
//! server; without it the test says it was skipped and passes.
mod common;

use std::time::Duration;

use common::open;
use keysmith_core::{changes::Subscription, store::Store};
use keysmith_store::suite::{key, write};
use keysmith_store_postgres::testing::TestDatabase;

/// The next `n` changes of the subscription: (sequence, key id).
async fn taken(subscription: &mut Subscription, n: usize) -> Vec<(u64, String)> {
    let mut changes = Vec::new();
    while changes.len() < n {
        let published = tokio::time::timeout(Duration::from_secs(30), subscription.recv())
            .await
            .expect("published within 30 s")
            .expect("not overflowed");
        changes.extend(
            published
                .iter()
                .map(|c| (c.sequence, c.key.key().key_id.clone())),
        );
    }
    changes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_store_publishes_the_others_commits_in_one_order() {
    let Some(db) = TestDatabase::create(
        "keysmith-store-postgres: tests/replicas.rs",
        "cargo test -p keysmith-store-postgres --test replicas",
    )
    .await
    else {
        return;
    };
    let (a, b) = (open(&db).await, open(&db).await);
    let (_, mut on_a) = a.change_feed().subscribe("hotel");
    let (_, mut on_b) = b.change_feed().subscribe("hotel");

    // B's k2 is numbered after A's k1 whether or not B has heard of k1
    // yet: B holds it until k1 is published, which only A's commit tells.
    write(&a, key("k1", "ada", None), None).await;
    write(&b, key("k2", "bob", None), None).await;
    write(&a, key("k3", "cy", None), None).await;

    let expected: Vec<(u64, String)> = vec![(1, "k1".into()), (2, "k2".into()), (3, "k3".into())];
    assert_eq!(taken(&mut on_a, 3).await, expected);
    assert_eq!(taken(&mut on_b, 3).await, expected);
    assert_eq!(b.change_feed().head("hotel"), 3);
}
