//! The real server on PostgreSQL (`storage.backend = "postgres"`), through
//! the generated client: Issue, ListKeys, Revoke and WatchKeys, and what
//! was committed still there after a restart. Runs when
//! `KEYSMITH_TEST_POSTGRES_URL` names a server (`.ci/run` sets it), in a
//! fresh database dropped at the end; without it the test says it was
//! skipped and passes.
mod common;

use common::*;
use keysmith_api::v1 as pb;
use keysmith_store_postgres::testing::TestDatabase;
use pb::KeyEventType as Event;

async fn listed(s: &TestServer, include_revoked: bool) -> Vec<(String, i32)> {
    s.list(pb::ListKeysRequest {
        property_id: PROPERTY.into(),
        include_revoked,
        page_size: 100,
        ..Default::default()
    })
    .await
    .unwrap()
    .keys
    .into_iter()
    .map(|k| (k.key_id, k.state))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_list_revoke_and_watch_on_postgres() {
    let Some(db) = TestDatabase::create("tests/postgres.rs", "cargo test --test postgres").await
    else {
        return;
    };
    let on_postgres = common::postgres::on_postgres(&db);
    let server = TestServer::start_with(on_postgres).await;
    let mut watch = server
        .client
        .clone()
        .watch_keys(pb::WatchKeysRequest {
            property_id: PROPERTY.into(),
            ..Default::default()
        })
        .await
        .expect("watching")
        .into_inner();
    assert_eq!(next(&mut watch).await.event_type, Event::Watching as i32);

    let ada = server
        .issue(guest("ada", &["room-101"], T0, T0 + DAY, "stay-ada"))
        .await
        .unwrap();
    let bob = server
        .issue(guest("bob", &["room-101"], T0, T0 + DAY, "stay-ada"))
        .await
        .unwrap();
    for expected in [&ada, &bob] {
        let change = next(&mut watch).await;
        assert_eq!(
            (change.event_type, change.key.unwrap().key_id),
            (Event::Issued as i32, expected.key_id.clone())
        );
    }
    assert_eq!(
        listed(&server, false).await,
        [
            (ada.key_id.clone(), ada.state),
            (bob.key_id.clone(), bob.state)
        ]
    );

    server.revoke_key(&ada.key_id).await.unwrap();
    let change = next(&mut watch).await;
    assert_eq!(
        (change.event_type, change.key.unwrap().key_id),
        (Event::Revoked as i32, ada.key_id.clone())
    );
    let resume_token = change.resume_token;
    assert_eq!(
        listed(&server, false).await,
        [(bob.key_id.clone(), bob.state)]
    );
    assert_eq!(listed(&server, true).await.len(), 2);
    drop(watch);

    // Everything answered was committed to the database: a new process on
    // it finds it, and resumes the watch where it was.
    let server = server.restart_with(on_postgres).await;
    assert_eq!(
        server.get(&ada.key_id).await.unwrap().state,
        pb::KeyState::Revoked as i32
    );
    assert_eq!(
        listed(&server, false).await,
        [(bob.key_id.clone(), bob.state)]
    );
    let mut resumed = server
        .client
        .clone()
        .watch_keys(pb::WatchKeysRequest {
            property_id: PROPERTY.into(),
            resume_token,
            ..Default::default()
        })
        .await
        .expect("resuming")
        .into_inner();
    assert_eq!(next(&mut resumed).await.event_type, Event::Watching as i32);
    server.revoke_key(&bob.key_id).await.unwrap();
    let change = next(&mut resumed).await;
    assert_eq!(
        (change.event_type, change.key.unwrap().key_id),
        (Event::Revoked as i32, bob.key_id.clone()),
        "nothing repeated, nothing missed"
    );
    assert!(
        !server.data_dir.join("fjall").exists(),
        "the embedded engine was not opened"
    );
}
