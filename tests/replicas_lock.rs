//! Two keysmith replicas on one PostgreSQL database, each with the
//! simulated offline lock: what one encodes, the other knows. An override
//! issued on one supersedes a card encoded on the other, a PIN made on one
//! is refused again on the other, and a co-guest joins across them; the
//! doors (Present, asked of either) decide from the one shared state. Runs
//! when `KEYSMITH_TEST_POSTGRES_URL` names a server, in a fresh database
//! dropped at the end; without it the test says it was skipped and passes.
mod common;

use common::*;
use keysmith_api::v1 as pb;
use keysmith_store_postgres::testing::TestDatabase;
use tonic::Code;

/// Two servers on `db`, sharing the key-encryption key that wraps its data
/// keys.
async fn replicas(db: &TestDatabase) -> (TestServer, TestServer) {
    let on = postgres::on_postgres(db);
    let a = TestServer::start_with(on).await;
    let kek = a.root.join("kek");
    let b = TestServer::start_with(|c| {
        on(c);
        c.storage.encryption.key_file = Some(kek);
    })
    .await;
    (a, b)
}

async fn database(test: &str) -> Option<TestDatabase> {
    TestDatabase::create(
        &format!("tests/replicas_lock.rs ({test})"),
        "cargo test --test replicas_lock",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_stay_issued_on_one_replica_supersedes_a_card_encoded_on_the_other() {
    let Some(db) = database("override").await else {
        return;
    };
    let (a, b) = replicas(&db).await;
    let ada = a
        .issue(guest("ada", &["room-101"], T0, T0 + 10 * DAY, "stay-ada"))
        .await
        .unwrap();
    let r = a.present("room-101", &card(&ada), T0 + HOUR).await;
    assert!(r.granted && r.overrode, "{r:?}");

    // The next stay in the room, issued on the other replica.
    let bob = b
        .issue(guest(
            "bob",
            &["room-101"],
            T0 + DAY,
            T0 + 10 * DAY,
            "stay-bob",
        ))
        .await
        .unwrap();
    assert_eq!(
        behaviours(&bob),
        [("room-101".to_owned(), pb::ReservationBehaviour::Override)]
    );
    let r = b.present("room-101", &card(&bob), T0 + DAY + HOUR).await;
    assert!(r.granted && r.overrode, "the new card opens: {r:?}");
    // The old card no longer does, whichever replica the door is asked of.
    for door in [&a, &b] {
        let r = door
            .present("room-101", &card(&ada), T0 + DAY + 2 * HOUR)
            .await;
        assert!(!r.granted, "the old card still opens: {r:?}");
        assert_eq!(r.reason, "superseded");
    }
    let r = a
        .present("room-101", &card(&bob), T0 + DAY + 3 * HOUR)
        .await;
    assert!(r.granted && !r.overrode, "{r:?}");
    // Both replicas show the lock as the doors left it.
    assert_eq!(
        a.lock_state("room-101").await,
        b.lock_state("room-101").await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pin_made_on_one_replica_is_refused_again_on_the_other() {
    let Some(db) = database("pin").await else {
        return;
    };
    let (a, b) = replicas(&db).await;
    let mut r = guest("g1", &["room-101", "gym"], T0, T0 + DAY, "stay-pin");
    r.modes = vec![pb::CredentialMode::Pin as i32];
    r.pin = "4821".into();
    a.issue(r.clone()).await.unwrap();
    // The other replica's keypads know it.
    assert!(b.present("gym", "4821", T0 + HOUR).await.granted);

    r.holder_id = "g2".into();
    let err = b.issue(r.clone()).await.unwrap_err();
    assert_eq!(reason(&err), (Code::AlreadyExists, "PIN_IN_USE".into()));
    // A PIN B generates is not A's either.
    r.pin.clear();
    let generated = pin(&b.issue(r).await.unwrap());
    assert_ne!(generated, "4821");
    assert!(a.present("gym", &generated, T0 + HOUR).await.granted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_co_guest_joins_on_the_other_replica() {
    let Some(db) = database("join").await else {
        return;
    };
    let (a, b) = replicas(&db).await;
    let ada = a
        .issue(guest("ada", &["room-102"], T0, T0 + 5 * DAY, "stay-c"))
        .await
        .unwrap();
    let cy = b
        .issue(guest("cy", &["room-102"], T0, T0 + 5 * DAY, "stay-c"))
        .await
        .expect("the co-guest joins on the other replica");
    assert_eq!(
        behaviours(&cy),
        [("room-102".to_owned(), pb::ReservationBehaviour::Join)]
    );
    let r = a.present("room-102", &card(&cy), T0 + HOUR).await;
    assert!(
        r.granted && r.overrode,
        "the joiner's first use opens: {r:?}"
    );
    let r = b.present("room-102", &card(&ada), T0 + 2 * HOUR).await;
    assert!(
        r.granted && !r.overrode,
        "the first guest still opens: {r:?}"
    );
}
