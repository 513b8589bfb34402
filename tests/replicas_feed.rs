//! Two keysmith servers on one PostgreSQL database (issue 20's replicas),
//! through the generated client: WatchKeys on either delivers the changes
//! made on both, with the same sequence numbers; a resume token from one
//! resumes on the other; what one answered the other lists at once; and a
//! replica whose listening connection was cut still delivers what was
//! changed meanwhile. Runs when `KEYSMITH_TEST_POSTGRES_URL` names a server,
//! in a fresh database dropped at the end; without it each test says it was
//! skipped and passes.
mod common;

use std::time::Duration;

use common::{postgres::on_postgres, *};
use keysmith_api::v1 as pb;
use keysmith_store_postgres::testing::TestDatabase;
use pb::KeyEventType as Event;
use tonic::{Code, Streaming};

/// Replica A, and replica B on A's database with A's key-encryption key.
async fn replicas(db: &TestDatabase) -> (TestServer, TestServer) {
    let a = TestServer::start_with(on_postgres(db)).await;
    let kek = a.root.join("kek");
    let b = TestServer::start_with(|c| {
        on_postgres(db)(c);
        c.storage.encryption.key_file = Some(kek);
    })
    .await;
    (a, b)
}

async fn database(test: &str) -> Option<TestDatabase> {
    TestDatabase::create(
        &format!("tests/replicas_feed.rs {test}"),
        &format!("cargo test --test replicas_feed {test}"),
    )
    .await
}

/// A watch of the property on `server`, from `resume_token` or from now,
/// past its WATCHING message.
async fn watch(server: &TestServer, resume_token: &str) -> Streaming<pb::WatchKeysResponse> {
    let mut stream = server
        .client
        .clone()
        .watch_keys(pb::WatchKeysRequest {
            property_id: PROPERTY.into(),
            resume_token: resume_token.into(),
            ..Default::default()
        })
        .await
        .expect("watching")
        .into_inner();
    assert_eq!(next(&mut stream).await.event_type, Event::Watching as i32);
    stream
}

/// The next change: (event, key id, resume token).
async fn change(stream: &mut Streaming<pb::WatchKeysResponse>) -> (i32, String, String) {
    let m = next(stream).await;
    (m.event_type, m.key.expect("a key").key_id, m.resume_token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_on_b_delivers_what_a_changed_with_a_s_numbers() {
    let Some(db) = database("a_watch_on_b").await else {
        return;
    };
    let (a, b) = replicas(&db).await;
    let mut on_a = watch(&a, "").await;
    let mut on_b = watch(&b, "").await;

    let ada = a
        .issue(guest("ada", &["room-101"], T0, T0 + DAY, "stay-ada"))
        .await
        .unwrap();
    a.revoke_key(&ada.key_id).await.unwrap();

    for expected in [Event::Issued, Event::Revoked] {
        let seen_on_a = change(&mut on_a).await;
        assert_eq!((seen_on_a.0, &seen_on_a.1), (expected as i32, &ada.key_id));
        // The resume token carries the sequence number: the same token is
        // the same change at the same place in the property's sequence.
        assert_eq!(change(&mut on_b).await, seen_on_a, "B as A saw it");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_token_from_a_resumes_on_b() {
    let Some(db) = database("a_resume_token").await else {
        return;
    };
    let (a, b) = replicas(&db).await;
    let mut on_a = watch(&a, "").await;
    let ada = a
        .issue(guest("ada", &["room-101"], T0, T0 + DAY, "stay-ada"))
        .await
        .unwrap();
    let (_, _, after_issue) = change(&mut on_a).await;
    a.revoke_key(&ada.key_id).await.unwrap();
    let (_, _, after_revoke) = change(&mut on_a).await;

    // Taken on B as soon as A delivered it, before B may have heard of the
    // change: B reads the database rather than refusing a token ahead of it.
    let mut resumed = watch(&b, &after_issue).await;
    assert_eq!(
        change(&mut resumed).await,
        (Event::Revoked as i32, ada.key_id.clone(), after_revoke),
        "nothing missed, the Issue not again"
    );
    let bob = a
        .issue(guest("bob", &["room-102"], T0, T0 + DAY, "stay-bob"))
        .await
        .unwrap();
    let (event, key_id, _) = change(&mut resumed).await;
    assert_eq!((event, key_id), (Event::Issued as i32, bob.key_id));

    // A token of a change B may not have heard of yet, resumed on B.
    let carol = a
        .issue(guest("carol", &["room-101"], T0, T0 + DAY, "stay-carol"))
        .await
        .unwrap();
    let _bob_on_a = change(&mut on_a).await;
    let (_, _, after_carol) = change(&mut on_a).await;
    a.revoke_key(&carol.key_id).await.unwrap();
    let mut resumed = watch(&b, &after_carol).await;
    let (event, key_id, _) = change(&mut resumed).await;
    assert_eq!((event, key_id), (Event::Revoked as i32, carol.key_id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b_lists_and_gets_a_key_right_after_a_answered() {
    let Some(db) = database("b_lists").await else {
        return;
    };
    let (a, b) = replicas(&db).await;
    let ada = a
        .issue(guest("ada", &["room-101"], T0, T0 + DAY, "stay-ada"))
        .await
        .unwrap();
    let listed = b
        .list(pb::ListKeysRequest {
            property_id: PROPERTY.into(),
            page_size: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        listed
            .keys
            .iter()
            .map(|k| (k.key_id.as_str(), k.state))
            .collect::<Vec<_>>(),
        [(ada.key_id.as_str(), ada.state)]
    );
    assert_eq!(b.get(&ada.key_id).await.unwrap().state, ada.state);

    a.revoke_key(&ada.key_id).await.unwrap();
    assert_eq!(
        b.get(&ada.key_id).await.unwrap().state,
        pb::KeyState::Revoked as i32
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b_delivers_a_change_made_while_its_listener_was_cut_off() {
    let Some(db) = database("b_delivers").await else {
        return;
    };
    let (a, b) = replicas(&db).await;
    let mut on_b = watch(&b, "").await;

    // Every session of the database ends, B's listening one with them, as
    // when PostgreSQL restarts: a notification sent before B listens again
    // never reaches it.
    assert!(db.terminate_sessions().await > 0);
    let mut issue = guest("ada", &["room-101"], T0, T0 + DAY, "stay-ada");
    issue.request_id = "ada-while-cut-off".into();
    let ada = issued_once_the_pool_reconnects(&a, issue).await;

    let (event, key_id, _) = change(&mut on_b).await;
    assert_eq!((event, key_id), (Event::Issued as i32, ada.key_id));
}

/// Issues on `server`, again (the same request_id) while the store is
/// unavailable: a pooled connection the database ended may be handed out
/// once before the pool sees that it is closed.
async fn issued_once_the_pool_reconnects(
    server: &TestServer,
    request: pb::IssueRequest,
) -> pb::AccessKey {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match server.issue(request.clone()).await {
            Ok(key) => return key,
            Err(status) if status.code() == Code::Unavailable => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "still unavailable after 30 s: {status:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(status) => panic!("issue failed: {status:?}"),
        }
    }
}
