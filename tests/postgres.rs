//! The real server on PostgreSQL (`storage.backend = "postgres"`), through
//! the generated client: Issue, ListKeys, Revoke and WatchKeys, and what
//! was committed still there after a restart. Runs when
//! `KEYSMITH_TEST_POSTGRES_URL` names a server (`.ci/run` sets it), in a
//! fresh database dropped at the end; without it the test says it was
//! skipped and passes.
mod common;

use std::io::Write as _;

use common::*;
use keysmith_api::v1 as pb;
use keysmith_core::Secret;
use keysmith_server::config::{PostgresConfig, StorageBackend};
use pb::KeyEventType as Event;
use tonic::Streaming;

const URL_VARIABLE: &str = "KEYSMITH_TEST_POSTGRES_URL";

/// A database of the test's own, dropped when this is.
struct Database {
    admin: tokio_postgres::Config,
    name: String,
}

async fn connect(config: &tokio_postgres::Config) -> tokio_postgres::Client {
    let (client, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("{URL_VARIABLE} is set but PostgreSQL is not reachable: {e}"));
    tokio::spawn(connection);
    client
}

impl Database {
    async fn create() -> Option<Self> {
        let Ok(url) = std::env::var(URL_VARIABLE) else {
            let _ = writeln!(
                std::io::stderr(),
                "\ntests/postgres.rs: SKIPPED, {URL_VARIABLE} is not set. To run it: \
                 {URL_VARIABLE}=postgres://postgres@127.0.0.1:5432/test cargo test --test postgres\n"
            );
            return None;
        };
        let admin: tokio_postgres::Config = url.parse().expect("a PostgreSQL URL");
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let name = format!("keysmith_e2e_{}_{nanos}", std::process::id());
        connect(&admin)
            .await
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("CREATE DATABASE");
        Some(Self { admin, name })
    }

    /// The server's configuration for this database.
    fn storage(&self) -> PostgresConfig {
        let host = match self.admin.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            _ => "127.0.0.1".into(),
        };
        let port = self.admin.get_ports().first().copied().unwrap_or(5432);
        let user = self.admin.get_user().unwrap_or("postgres");
        PostgresConfig {
            url: Secret::new(format!("postgres://{user}@{host}:{port}/{}", self.name)),
            pool_size: 8,
            acquire_timeout_seconds: 30,
        }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let _ = connect(&admin)
                    .await
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await;
            });
        })
        .join();
    }
}

async fn next(stream: &mut Streaming<pb::WatchKeysResponse>) -> pb::WatchKeysResponse {
    tokio::time::timeout(std::time::Duration::from_secs(30), stream.message())
        .await
        .expect("a change within 30 s")
        .expect("a message, not an error")
        .expect("the watch goes on")
}

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
    let Some(db) = Database::create().await else {
        return;
    };
    let on_postgres = |c: &mut keysmith_server::Config| {
        c.storage.backend = StorageBackend::Postgres;
        c.storage.postgres = Some(db.storage());
    };
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
    assert!(!server.data_dir.join("db").exists(), "sled was not opened");
}
