//! Encryption at rest through the real server: a store opens only with its
//! key-encryption key (or refuses, naming it), both keys rotate online over
//! `keysmith.v1.EncryptionService` while every key stays readable and keeps
//! opening its door, and only a token for every property may turn them.
//! (That no secret reaches the data files in clear is proven with every
//! driver in tests/secrets_in_logs.rs.) The same tests run on PostgreSQL
//! with `KEYSMITH_TEST_BACKEND=postgres`; the last one runs two keysmith
//! processes on one PostgreSQL database and rotates the data key on one.
mod common;

use std::sync::Arc;

use common::*;
use keysmith_api::v1::{self as pb, encryption_service_client::EncryptionServiceClient};
use keysmith_server::config::{AuthMode, KeySource, TokenConfig};
use tonic::{transport::Channel, Code};

fn encryption(s: &TestServer) -> EncryptionServiceClient<Channel> {
    EncryptionServiceClient::new(s.channel.clone())
}

async fn status(s: &TestServer) -> pb::GetEncryptionStatusResponse {
    encryption(s)
        .get_encryption_status(pb::GetEncryptionStatusRequest {})
        .await
        .unwrap()
        .into_inner()
}

/// A guest with a PIN at room-101, and the PIN.
async fn issue_pin(s: &TestServer) -> (pb::AccessKey, String) {
    let mut req = guest("guest-1", &["room-101"], T0, T0 + DAY, "stay-1");
    req.modes = vec![pb::CredentialMode::Pin as i32];
    let key = s.issue(req).await.unwrap();
    let pin = pin(&key);
    (key, pin)
}

/// Why keysmith refused to start with `config`.
async fn refused(config: keysmith_server::Config) -> String {
    let clock = Arc::new(TestClock::new(T0));
    match keysmith_server::start_with_clock(config, clock).await {
        Ok(_) => panic!("keysmith started"),
        Err(e) => format!("{e:#}"),
    }
}

#[tokio::test]
async fn a_store_opens_only_with_its_key_and_a_refusal_names_it() {
    let s = TestServer::start().await;
    let (key, _) = issue_pin(&s).await;
    let root = s.root.clone();
    assert_eq!(status(&s).await.key_encryption_key_id, "development");
    // The server's own configuration (on PostgreSQL, its database).
    let base = s.base_config();
    let config = |_: &std::path::Path| base.clone();
    let s = {
        let mut s = s;
        s.running.take().unwrap().stop().await.unwrap();
        s
    };

    // Another key under the same name: it does not open the data keys.
    keysmith_server::encryption::write_new_key("development", &root.join("other")).unwrap();
    let mut c = config(&root);
    c.storage.encryption.key_file = Some(root.join("other"));
    let why = refused(c).await;
    assert!(
        why.contains("\"development\"") && why.contains("does not open"),
        "{why}"
    );
    // A key of another name: the refusal names the one the store needs.
    let mut c = config(&root);
    c.storage.encryption.key_id = "kek-2".into();
    c.storage.encryption.key_file = Some(root.join("other"));
    let why = refused(c).await;
    assert!(why.contains("\"development\""), "{why}");
    // A missing key, outside development: the start stops, naming it.
    let mut c = config(&root);
    c.storage.encryption.key_file = Some(root.join("missing"));
    c.storage.encryption.generate_if_missing = false;
    let why = refused(c).await;
    assert!(
        why.contains("\"development\"") && why.contains("missing"),
        "{why}"
    );
    // A key kept inside the data directory would travel with every copy.
    let mut c = config(&root);
    c.storage.encryption.key_file = Some(root.join("data").join("kek"));
    let why = refused(c).await;
    assert!(why.contains("inside the data directory"), "{why}");

    // With its own key, everything is there.
    let s = s.restart().await;
    assert_eq!(s.get(&key.key_id).await.unwrap().key_id, key.key_id);
}

#[tokio::test]
async fn both_keys_rotate_online_and_every_key_still_opens_its_door() {
    let s = TestServer::start().await;
    let (key, pin) = issue_pin(&s).await;
    let before = status(&s).await;
    assert_eq!(before.data_keys, [before.current_data_key]);

    // A new data key: new records are sealed with it at once, every record
    // again in the background, and the old key is forgotten.
    let rotated = encryption(&s)
        .rotate_data_key(pb::RotateDataKeyRequest {})
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    assert_ne!(rotated.current_data_key, before.current_data_key);
    s.running.as_ref().unwrap().resealed().await;
    let after = status(&s).await;
    assert_eq!(after.data_keys, [rotated.current_data_key]);
    assert!(!after.resealing);
    assert!(s.present("room-101", &pin, T0 + 60).await.granted);

    // A new key-encryption key, read from a file on keysmith's machine.
    let next = s.root.join("kek-2");
    keysmith_server::encryption::write_new_key("kek-2", &next).unwrap();
    let wrong = encryption(&s)
        .rotate_key_encryption_key(pb::RotateKeyEncryptionKeyRequest {
            key_id: "kek-3".into(),
            key_file: s.root.join("absent").display().to_string(),
            key_env: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        reason(&wrong),
        (Code::InvalidArgument, "KEY_ENCRYPTION_KEY_INVALID".into())
    );
    let turned = encryption(&s)
        .rotate_key_encryption_key(pb::RotateKeyEncryptionKeyRequest {
            key_id: "kek-2".into(),
            key_file: next.display().to_string(),
            key_env: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    assert_eq!(turned.key_encryption_key_id, "kek-2");

    // From the next start on, the new key opens the store and the old one
    // does not.
    let root = s.root.clone();
    let s = s
        .restart_with(|c| {
            c.storage.encryption.key_id = "kek-2".into();
            c.storage.encryption.key_file = Some(root.join("kek-2"));
            c.storage.encryption.generate_if_missing = false;
        })
        .await;
    assert_eq!(s.get(&key.key_id).await.unwrap().key_id, key.key_id);
    assert!(s.present("room-101", &pin, T0 + 120).await.granted);
    let mut s = s;
    let base = s.base_config();
    s.running.take().unwrap().stop().await.unwrap();
    let why = refused(base).await;
    assert!(why.contains("\"kek-2\""), "{why}");
}

/// A rotation by restart: the new key as current, the old one as previous;
/// the data keys are rewrapped at start, and from then on the new key alone
/// opens the store.
#[tokio::test]
async fn a_previous_key_lets_a_restart_rotate() {
    let s = TestServer::start().await;
    let (key, pin) = issue_pin(&s).await;
    let root = s.root.clone();
    keysmith_server::encryption::write_new_key("kek-2", &root.join("kek-2")).unwrap();
    let new_key = |c: &mut keysmith_server::Config| {
        c.storage.encryption.key_id = "kek-2".into();
        c.storage.encryption.key_file = Some(root.join("kek-2"));
        c.storage.encryption.generate_if_missing = false;
    };
    let s = s
        .restart_with(|c| {
            new_key(c);
            c.storage.encryption.previous = vec![KeySource {
                key_id: "development".into(),
                key_file: Some(root.join("kek")),
                key_env: None,
            }];
        })
        .await;
    assert_eq!(status(&s).await.key_encryption_key_id, "kek-2");
    let s = s.restart_with(new_key).await;
    assert_eq!(s.get(&key.key_id).await.unwrap().key_id, key.key_id);
    assert!(s.present("room-101", &pin, T0 + 60).await.granted);
}

/// The keys protect every property: a token for one property, even with
/// keysmith.admin, may neither read nor turn them.
#[tokio::test]
async fn only_a_token_for_every_property_may_turn_the_keys() {
    use keysmith_server::auth::{generate_token, hash_token};
    let everything = generate_token();
    let one_hotel = generate_token();
    let token = |id: &str, secret: &str, properties: &[&str]| TokenConfig {
        id: id.into(),
        sha256: hash_token(secret),
        properties: properties.iter().map(|p| p.to_string()).collect(),
        scopes: vec!["keysmith.admin".into()],
        max_in_flight: 8,
        requests_per_minute: None,
    };
    let tokens = vec![
        token("operator", &everything, &["*"]),
        token("hotel-admin", &one_hotel, &[PROPERTY]),
    ];
    let s = TestServer::start_with(move |c| {
        c.auth.mode = AuthMode::Tokens;
        c.auth.tokens = tokens;
    })
    .await;
    let call = |bearer: &str| {
        let mut request = tonic::Request::new(pb::RotateDataKeyRequest {});
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {bearer}").parse().unwrap());
        let mut client = encryption(&s);
        async move { client.rotate_data_key(request).await }
    };
    let denied = call(&one_hotel).await.unwrap_err();
    assert_eq!(
        reason(&denied),
        (Code::PermissionDenied, "SCOPE_MISSING".into())
    );
    call(&everything).await.unwrap();
}

/// The tables whose values are sealed, and the column that holds them.
const SEALED_COLUMNS: &[(&str, &str)] = &[
    ("keys", "record"),
    ("reservations", "record"),
    ("idempotency", "record"),
    ("audit", "record"),
    ("changes", "record"),
    ("driver_state", "value"),
];

/// How many values of the database name data key `id` (a sealed value is
/// `[2][data key id, big-endian][nonce][ciphertext]`).
async fn values_sealed_with(db: &tokio_postgres::Client, id: u32) -> i64 {
    let header = [&[2u8][..], &id.to_be_bytes()].concat();
    let mut count = 0;
    for (table, column) in SEALED_COLUMNS {
        let row = db
            .query_one(
                &format!(
                    "SELECT count(*) FROM {table} WHERE substring({column} from 1 for 5) = $1"
                ),
                &[&header],
            )
            .await
            .unwrap();
        count += row.get::<_, i64>(0);
    }
    count
}

/// Two `keysmith serve` processes on one PostgreSQL database (issue 20): a
/// data key rotated through one is read and used by the other at once, the
/// values are sealed again once (by the holder of the `reseal` lease), and
/// the old key is deleted only when no value in the database names it
/// (checked through SQL).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_key_rotated_on_one_replica_is_read_and_used_by_another() {
    use common::process::{serve_with_env, write_config};
    use keysmith_api::v1::access_service_client::AccessServiceClient;
    use keysmith_store_postgres::testing::TestDatabase;

    let Some(db) = TestDatabase::create(
        "tests/encryption.rs a_data_key_rotated_on_one_replica",
        "cargo test --test encryption a_data_key_rotated_on_one_replica",
    )
    .await
    else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let config_file = write_config(root.path(), "");
    let start = |n: usize| {
        let env = [
            ("KEYSMITH__STORAGE__BACKEND", "postgres".to_owned()),
            ("KEYSMITH__STORAGE__POSTGRES__URL", db.url()),
            (
                "KEYSMITH__STORAGE__DATA_DIR",
                root.path()
                    .join(format!("replica-{n}"))
                    .display()
                    .to_string(),
            ),
        ];
        let config_file = config_file.clone();
        async move {
            let (process, addr, log) = serve_with_env(&config_file, &env).await;
            let channel = Channel::from_shared(format!("http://{addr}"))
                .unwrap()
                .connect()
                .await
                .unwrap();
            (process, log, channel)
        }
    };
    // One after the other: the first makes the key-encryption key.
    let (mut process_a, log_a, a) = start(1).await;
    let (mut process_b, log_b, b) = start(2).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let issue = |channel: &Channel, holder: &str| {
        let mut client = AccessServiceClient::new(channel.clone());
        let request = guest(holder, &["lobby"], now, now + DAY, "");
        async move {
            client
                .issue(request)
                .await
                .unwrap()
                .into_inner()
                .key
                .unwrap()
                .key_id
        }
    };
    let get = |channel: &Channel, key_id: &str| {
        let mut client = AccessServiceClient::new(channel.clone());
        let request = pb::GetKeyRequest {
            property_id: PROPERTY.into(),
            key_id: key_id.into(),
        };
        async move { client.get_key(request).await.map(|r| r.into_inner().key_id) }
    };
    let status_of = |channel: &Channel| {
        let mut client = EncryptionServiceClient::new(channel.clone());
        async move {
            client
                .get_encryption_status(pb::GetEncryptionStatusRequest {})
                .await
                .unwrap()
                .into_inner()
        }
    };
    // The test's own connection hears what the replicas announce.
    let (sql, mut connection) = tokio_postgres::connect(&db.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    let (told, mut announced) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(message)) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            if let tokio_postgres::AsyncMessage::Notification(_) = message {
                let _ = told.send(());
            }
        }
    });
    sql.batch_execute("LISTEN keysmith_data_keys")
        .await
        .unwrap();

    let before = issue(&a, "guest-1").await;
    let old = status_of(&a).await.current_data_key;
    assert_eq!(status_of(&b).await.current_data_key, old);

    let rotated = EncryptionServiceClient::new(a.clone())
        .rotate_data_key(pb::RotateDataKeyRequest {})
        .await
        .expect("the data key rotates on PostgreSQL")
        .into_inner()
        .status
        .unwrap();
    let new = rotated.current_data_key;
    assert_ne!(new, old);

    // B reads what A sealed with the new key (a key it did not hold at its
    // start), and from then on seals with it too.
    let sealed_by_a = issue(&a, "guest-2").await;
    assert_eq!(get(&b, &sealed_by_a).await.unwrap(), sealed_by_a);
    assert_eq!(status_of(&b).await.current_data_key, new);
    let sealed_by_b = issue(&b, "guest-3").await;
    let header: Vec<u8> = sql
        .query_one(
            "SELECT substring(record from 1 for 5) FROM keys WHERE key_id = $1",
            &[&sealed_by_b],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(header, [&[2u8][..], &new.to_be_bytes()].concat());

    // The end of the resealing is announced too: waited for, notification
    // by notification.
    let sql = &sql;
    let data_keys = move || async move {
        sql.query("SELECT id FROM data_keys ORDER BY id", &[])
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.get::<_, i32>(0) as u32)
            .collect::<Vec<_>>()
    };
    while data_keys().await != [new] {
        tokio::time::timeout(std::time::Duration::from_secs(60), announced.recv())
            .await
            .expect("the resealing ends within a minute")
            .expect("the listening connection stays");
    }
    assert_eq!(
        values_sealed_with(sql, old).await,
        0,
        "no value names the old data key"
    );
    assert!(values_sealed_with(sql, new).await > 0);
    for key_id in [&before, &sealed_by_a, &sealed_by_b] {
        assert_eq!(&get(&a, key_id).await.unwrap(), key_id);
        assert_eq!(&get(&b, key_id).await.unwrap(), key_id);
    }
    let after = issue(&b, "guest-4").await;
    assert_eq!(get(&a, &after).await.unwrap(), after);
    assert_eq!(values_sealed_with(sql, old).await, 0);

    // The values were sealed again once, by the replica that held the
    // `reseal` lease: its log says so, the other's does not.
    let mut resealed_by = Vec::new();
    for (process, log) in [(&mut process_a, log_a), (&mut process_b, log_b)] {
        common::process::sigterm(process).await;
        process.wait().await.unwrap();
        let lines = log.await.unwrap();
        resealed_by.push(
            lines
                .iter()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter(|l| {
                    l["message"]
                        == "every value is sealed with the current data key; older data keys are gone"
                })
                .map(|l| l["records"].as_u64().unwrap())
                .sum::<u64>(),
        );
    }
    assert!(
        resealed_by.contains(&0) && resealed_by.iter().any(|n| *n > 0),
        "resealed on one replica only: {resealed_by:?}"
    );
}
