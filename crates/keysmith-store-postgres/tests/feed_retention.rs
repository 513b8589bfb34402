//! A store whose listener was away while another store on the database
//! committed changes and the change log was purged past them (retention
//! shorter than the time away): it cannot read what it missed, so it ends
//! the property's watchers (as a too-old resume token ends a watch: they
//! list and watch again) instead of leaving them waiting for good, and its
//! feed goes on from what the log still holds. Runs when
//! `KEYSMITH_TEST_POSTGRES_URL` names a server; without it the test says
//! it was skipped and passes.
mod common;

use std::time::Duration;

use common::open_url;

use keysmith_core::{
    changes::{Ended, Subscription},
    store::Store,
    Timestamp,
};
use keysmith_store::suite::{key, write};
use keysmith_store_postgres::testing::{Relay, TestDatabase};

/// The bound on each wait: a reconnection takes at most 5 s of back-off.
const PATIENCE: Duration = Duration::from_secs(30);

/// The next changes of the subscription, or how it ended: (sequence, key id).
async fn next(subscription: &mut Subscription) -> Result<Vec<(u64, String)>, Ended> {
    let published = tokio::time::timeout(PATIENCE, subscription.recv())
        .await
        .expect("published or ended within the patience");
    published.map(|changes| {
        changes
            .iter()
            .map(|c| (c.sequence, c.key.key().key_id.clone()))
            .collect()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_back_after_retention_purged_what_it_missed_ends_the_watchers() {
    let Some(db) = TestDatabase::create(
        "keysmith-store-postgres: tests/feed_retention.rs",
        "cargo test -p keysmith-store-postgres --test feed_retention",
    )
    .await
    else {
        return;
    };
    let url = db.url();
    let relay = Relay::to(&url).await;
    let b = open_url(url.clone()).await;
    let a = open_url(relay.url(&url)).await;
    let (_, mut on_a) = a.change_feed().subscribe("hotel");

    // A hears B's commit: its listener is listening.
    write(&b, key("k1", "ada", None), None).await;
    assert_eq!(next(&mut on_a).await, Ok(vec![(1, "k1".into())]));

    // A is cut off; meanwhile B commits two changes, and retention purges
    // them (and the first) before A is back; B commits a fourth.
    relay.cut();
    write(&b, key("k2", "bob", None), None).await;
    write(&b, key("k3", "cy", None), None).await;
    let purged = b
        .purge_changes(Timestamp::from_micros(i64::MAX), 100)
        .await
        .unwrap();
    assert_eq!(purged, 3);
    write(&b, key("k4", "dee", None), None).await;
    relay.restore();

    // Back, A cannot read 2 and 3: its watcher is ended, not left waiting.
    assert_eq!(next(&mut on_a).await, Err(Ended::Skipped));

    // And its feed goes on: a new watcher gets B's next change, numbered
    // after the fourth.
    let (_, mut again) = a.change_feed().subscribe("hotel");
    write(&b, key("k5", "eve", None), None).await;
    let mut seen = next(&mut again).await.expect("not ended");
    while seen.last().map(|(s, _)| *s) < Some(5) {
        seen.extend(next(&mut again).await.expect("not ended"));
    }
    assert_eq!(seen.last(), Some(&(5, "k5".to_owned())));
    assert!(seen.iter().all(|(s, _)| *s >= 4), "{seen:?}");
}
