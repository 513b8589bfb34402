//! Several keysmith processes on one PostgreSQL database (issue 20): real
//! `keysmith serve` processes on ephemeral loopback ports, called with the
//! generated client. What one replica does, the others see and respect:
//! a request_id answered once, a reservation established once, a write
//! readable everywhere as soon as it is answered, nothing acknowledged lost
//! when a replica is killed, and calls that fail cleanly (UNAVAILABLE with
//! a RetryInfo) while the database is gone and succeed again once it is
//! back, without a restart. Runs when `KEYSMITH_TEST_POSTGRES_URL` names a
//! server (`.ci/run` sets it), in a fresh database dropped at the end;
//! without it each test says it was skipped and passes.
mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
    time::Duration,
};

use common::{
    guest,
    process::{serve_with_env, write_config},
    reason, DAY, PROPERTY,
};
use keysmith_api::v1::{self as pb, access_service_client::AccessServiceClient};
use keysmith_store_postgres::testing::{Relay, TestDatabase};
use tokio::{process::Child, sync::watch};
use tonic::{transport::Channel, Code, Status};
use tonic_types::StatusExt;

/// One `keysmith serve` process and a client connected to it.
struct Replica {
    process: Child,
    client: AccessServiceClient<Channel>,
}

/// Replicas on one database, sharing one configuration file and one
/// key-encryption key (the data keys are in the database, wrapped by it).
struct Replicas {
    root: tempfile::TempDir,
    config: PathBuf,
    url: String,
    started: usize,
}

impl Replicas {
    /// Replicas of one database, reached at `url` (the database's own, or
    /// a relay's in front of it).
    fn on(url: String) -> Self {
        let root = tempfile::tempdir().unwrap();
        let config = write_config(root.path(), "");
        Self {
            root,
            config,
            url,
            started: 0,
        }
    }

    /// Starts one more replica and connects to it. Replicas start one after
    /// the other: the first makes the key-encryption key the others read.
    async fn start(&mut self) -> Replica {
        self.started += 1;
        let data_dir = self.root.path().join(format!("replica-{}", self.started));
        let env = [
            ("KEYSMITH__STORAGE__BACKEND", "postgres".to_owned()),
            ("KEYSMITH__STORAGE__POSTGRES__URL", self.url.clone()),
            ("KEYSMITH__STORAGE__POSTGRES__POOL_SIZE", "8".to_owned()),
            // Short, so that a call fails within the test's patience while
            // the database cannot be reached.
            (
                "KEYSMITH__STORAGE__POSTGRES__ACQUIRE_TIMEOUT_SECONDS",
                "2".to_owned(),
            ),
            (
                "KEYSMITH__STORAGE__DATA_DIR",
                data_dir.display().to_string(),
            ),
        ];
        let (process, addr, _log) = serve_with_env(&self.config, &env).await;
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        Replica {
            process,
            client: AccessServiceClient::new(channel),
        }
    }

    async fn start_many(&mut self, n: usize) -> Vec<Replica> {
        let mut replicas = Vec::with_capacity(n);
        for _ in 0..n {
            replicas.push(self.start().await);
        }
        replicas
    }
}

async fn database(test: &str) -> Option<TestDatabase> {
    TestDatabase::create(
        &format!("tests/replicas.rs {test}"),
        &format!("cargo test --test replicas {test}"),
    )
    .await
}

/// The binary runs on the real clock: keys start when the test process
/// did. Fixed once, so that a retry sends the very request it retries (a
/// later start would be another request under the same request_id, refused
/// REQUEST_ID_REUSED).
fn now() -> i64 {
    static STARTED: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *STARTED.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    })
}

/// A lobby card for `holder`, sent with `request_id`.
fn lobby_card(holder: &str, request_id: &str) -> pb::IssueRequest {
    let now = now();
    pb::IssueRequest {
        request_id: request_id.into(),
        ..guest(holder, &["lobby"], now, now + DAY, "")
    }
}

async fn issue(
    client: &AccessServiceClient<Channel>,
    request: pb::IssueRequest,
) -> Result<pb::AccessKey, Status> {
    client
        .clone()
        .issue(request)
        .await
        .map(|r| r.into_inner().key.expect("a key"))
}

async fn get(client: &AccessServiceClient<Channel>, key_id: &str) -> Result<pb::AccessKey, Status> {
    client
        .clone()
        .get_key(pb::GetKeyRequest {
            property_id: PROPERTY.into(),
            key_id: key_id.into(),
        })
        .await
        .map(|r| r.into_inner())
}

/// Every key `request` lists, page by page.
async fn list_all(
    client: &AccessServiceClient<Channel>,
    request: pb::ListKeysRequest,
) -> Vec<pb::AccessKey> {
    let mut keys = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .clone()
            .list_keys(pb::ListKeysRequest {
                property_id: PROPERTY.into(),
                page_size: 500,
                page_token,
                ..request.clone()
            })
            .await
            .expect("a listing")
            .into_inner();
        keys.extend(page.keys);
        if page.next_page_token.is_empty() {
            return keys;
        }
        page_token = page.next_page_token;
    }
}

/// The ids of the live keys of `holder`.
async fn keys_of(client: &AccessServiceClient<Channel>, holder: &str) -> Vec<String> {
    list_all(
        client,
        pb::ListKeysRequest {
            holder_id: holder.into(),
            ..Default::default()
        },
    )
    .await
    .into_iter()
    .map(|k| k.key_id)
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_id_sent_to_two_replicas_at_once_makes_one_key() {
    let Some(db) = database("one_request_id").await else {
        return;
    };
    let mut replicas = Replicas::on(db.url());
    let [a, b] = <[Replica; 2]>::try_from(replicas.start_many(2).await)
        .ok()
        .unwrap();
    const ROUNDS: usize = 20;
    for round in 0..ROUNDS {
        let holder = format!("guest-{round}");
        let request = lobby_card(&holder, &format!("race-{round}"));
        let (on_a, on_b) =
            tokio::join!(issue(&a.client, request.clone()), issue(&b.client, request));
        let (on_a, on_b) = (on_a.expect("issued on A"), on_b.expect("issued on B"));
        assert_eq!(on_a, on_b, "round {round}: the same answer from both");
        assert_eq!(
            keys_of(&a.client, &holder).await,
            [on_a.key_id],
            "round {round}: one key"
        );
    }
    let all = list_all(&b.client, pb::ListKeysRequest::default()).await;
    assert_eq!(all.len(), ROUNDS);
}

/// The reservation rules hold across replicas: two replicas establishing
/// one reservation_key with different doors at once end with one door set,
/// and the other request is refused as it would be on one replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_racing_to_establish_a_reservation_end_with_one_door_set() {
    let Some(db) = database("racing_to_establish").await else {
        return;
    };
    let mut replicas = Replicas::on(db.url());
    let [a, b] = <[Replica; 2]>::try_from(replicas.start_many(2).await)
        .ok()
        .unwrap();
    let now = now();
    for round in 0..20 {
        let stay = format!("stay-{round}");
        let holder = format!("guest-{round}");
        let (on_a, on_b) = tokio::join!(
            issue(
                &a.client,
                guest(&holder, &["room-201"], now, now + DAY, &stay)
            ),
            issue(
                &b.client,
                guest(&holder, &["room-203"], now, now + DAY, &stay)
            )
        );
        let (winner, refused) = match (on_a, on_b) {
            (Ok(key), Err(refused)) | (Err(refused), Ok(key)) => (key, refused),
            (a, b) => panic!("round {round}: one must win and one be refused: {a:?} {b:?}"),
        };
        assert_eq!(
            reason(&refused),
            (
                Code::FailedPrecondition,
                "RESERVATION_ENTRANCE_CHANGE_REQUIRES_CLEANUP".into()
            ),
            "round {round}"
        );
        let listed = list_all(
            &a.client,
            pb::ListKeysRequest {
                reservation_key: stay,
                ..Default::default()
            },
        )
        .await;
        assert_eq!(
            listed.iter().map(|k| &k.key_id).collect::<Vec<_>>(),
            [&winner.key_id],
            "round {round}: the reservation has the winner's key only"
        );
    }
}

/// A write answered by one replica is read by another at once: there is no
/// cache between a replica and the database to go stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_issued_on_one_replica_is_read_on_the_others_at_once() {
    let Some(db) = database("read_on_the_others").await else {
        return;
    };
    let mut replicas = Replicas::on(db.url());
    let all = replicas.start_many(3).await;
    for i in 0..12 {
        let (writer, reader) = (&all[i % 3], &all[(i + 1) % 3]);
        let holder = format!("guest-{i}");
        let key = issue(&writer.client, lobby_card(&holder, ""))
            .await
            .unwrap();
        assert_eq!(get(&reader.client, &key.key_id).await.unwrap(), key);
        assert_eq!(
            keys_of(&reader.client, &holder).await,
            std::slice::from_ref(&key.key_id)
        );

        // And a revoke on the reader is seen by the writer.
        reader
            .client
            .clone()
            .revoke(pb::RevokeRequest {
                property_id: PROPERTY.into(),
                request_id: String::new(),
                target: Some(pb::revoke_request::Target::KeyId(key.key_id.clone())),
            })
            .await
            .unwrap();
        assert_eq!(
            get(&writer.client, &key.key_id).await.unwrap().state(),
            pb::KeyState::Revoked
        );
        assert!(keys_of(&writer.client, &holder).await.is_empty());
    }
}

/// What clients of a replica saw: the keys it acknowledged, by request_id,
/// and the request_ids that were sent without an answer (in flight when
/// the replica died, or refused while the database was gone).
#[derive(Default)]
struct Outcomes {
    acknowledged: BTreeMap<String, String>,
    unanswered: BTreeSet<String>,
    errors: Vec<Status>,
}

/// `clients` clients issuing lobby cards with request_ids `{tag}-{c}-{i}`
/// (holder the same) on `targets` round-robin, until `stop` turns true or,
/// with `stop_at_first_error`, their first failure. Each reports its
/// acknowledged keys on `acks` as they come.
fn issuing_clients(
    targets: &[AccessServiceClient<Channel>],
    clients: usize,
    tag: &str,
    stop: watch::Receiver<bool>,
    stop_at_first_error: bool,
    acks: tokio::sync::mpsc::UnboundedSender<()>,
) -> Vec<tokio::task::JoinHandle<Outcomes>> {
    (0..clients)
        .map(|c| {
            let client = targets[c % targets.len()].clone();
            let (tag, stop, acks) = (tag.to_owned(), stop.clone(), acks.clone());
            tokio::spawn(async move {
                let mut seen = Outcomes::default();
                for i in 0.. {
                    if *stop.borrow() {
                        break;
                    }
                    let id = format!("{tag}-{c}-{i}");
                    match issue(&client, lobby_card(&id, &id)).await {
                        Ok(key) => {
                            seen.acknowledged.insert(id, key.key_id);
                            let _ = acks.send(());
                        }
                        Err(status) => {
                            seen.unanswered.insert(id);
                            seen.errors.push(status);
                            if stop_at_first_error {
                                break;
                            }
                        }
                    }
                }
                seen
            })
        })
        .collect()
}

/// Waits for `n` more acknowledgements; a stall (no progress within a
/// minute, as when the replicas deadlock) fails the test instead of hanging.
async fn some_acks(acks: &mut tokio::sync::mpsc::UnboundedReceiver<()>, n: usize) {
    for got in 0..n {
        tokio::time::timeout(Duration::from_secs(60), acks.recv())
            .await
            .unwrap_or_else(|_| panic!("no Issue answered for a minute ({got} of {n} came)"))
            .expect("the clients are issuing");
    }
}

async fn gather(clients: Vec<tokio::task::JoinHandle<Outcomes>>) -> Outcomes {
    let mut all = Outcomes::default();
    for client in clients {
        let seen = client.await.unwrap();
        all.acknowledged.extend(seen.acknowledged);
        all.unanswered.extend(seen.unanswered);
        all.errors.extend(seen.errors);
    }
    all
}

/// Every acknowledged key is there through `survivor`, and every
/// unanswered request_id, sent again to `survivor`, ends with exactly one
/// key (the one the lost answer was for, or a new one).
async fn nothing_lost_nothing_doubled(survivor: &AccessServiceClient<Channel>, seen: &Outcomes) {
    for (request_id, key_id) in &seen.acknowledged {
        let key = get(survivor, key_id).await.unwrap_or_else(|e| {
            panic!("{request_id}'s key {key_id} was acknowledged and is gone: {e:?}")
        });
        assert_eq!(key.holder_id, *request_id);
    }
    for request_id in &seen.unanswered {
        let retried = issue(survivor, lobby_card(request_id, request_id))
            .await
            .unwrap_or_else(|e| panic!("retrying {request_id}: {e:?}"));
        assert_eq!(
            keys_of(survivor, request_id).await,
            [retried.key_id],
            "{request_id}: one key after the retry"
        );
    }
    let listed = list_all(survivor, pb::ListKeysRequest::default()).await;
    assert_eq!(
        listed.len(),
        seen.acknowledged.len() + seen.unanswered.len(),
        "one key per request_id"
    );
}

/// A replica killed outright while it is answering Issues loses nothing it
/// acknowledged (an answer goes out after PostgreSQL committed), and a
/// client that lost its answer retries the request_id on another replica
/// and gets one key, never two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_under_load_loses_no_acknowledged_key() {
    const CLIENTS: usize = 16;
    const KILL_AFTER: usize = 150;
    let Some(db) = database("killed_under_load").await else {
        return;
    };
    let mut replicas = Replicas::on(db.url());
    let [mut doomed, survivor] = <[Replica; 2]>::try_from(replicas.start_many(2).await)
        .ok()
        .unwrap();
    let (_never, stop) = watch::channel(false);
    let (acked, mut acks) = tokio::sync::mpsc::unbounded_channel();
    let clients = issuing_clients(
        std::slice::from_ref(&doomed.client),
        CLIENTS,
        "kill",
        stop,
        true,
        acked,
    );
    some_acks(&mut acks, KILL_AFTER).await;
    doomed.process.start_kill().unwrap();
    doomed.process.wait().await.unwrap();
    let seen = gather(clients).await;
    assert!(seen.acknowledged.len() >= KILL_AFTER);
    assert_eq!(
        seen.unanswered.len(),
        CLIENTS,
        "each client's last call was cut"
    );
    nothing_lost_nothing_doubled(&survivor.client, &seen).await;
}

/// The code, reason and RetryInfo of a failed call, which must be the
/// store's temporary unavailability and never INTERNAL.
fn assert_unavailable_with_retry_info(status: &Status) {
    assert_eq!(
        reason(status),
        (Code::Unavailable, "STORE_UNAVAILABLE".into()),
        "{status:?}"
    );
    let retry = status.get_error_details();
    assert!(
        retry.retry_info().and_then(|r| r.retry_delay).is_some(),
        "no RetryInfo in {status:?}"
    );
}

/// PostgreSQL restarted (every session ended) and then unreachable for a
/// while under load: calls fail with UNAVAILABLE and a RetryInfo, never
/// INTERNAL; once it is back the same processes answer again; nothing
/// acknowledged is lost and every unanswered request_id retried makes one
/// key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_ride_out_a_database_restart_and_outage_under_load() {
    const CLIENTS: usize = 8;
    let Some(db) = database("database_restart").await else {
        return;
    };
    let direct = db.url();
    let relay = Relay::to(&direct).await;
    let mut replicas = Replicas::on(relay.url(&direct));
    let all = replicas.start_many(2).await;
    let targets: Vec<_> = all.iter().map(|r| r.client.clone()).collect();
    let (stop_clients, stop) = watch::channel(false);
    let (acked, mut acks) = tokio::sync::mpsc::unbounded_channel();
    let clients = issuing_clients(&targets, CLIENTS, "outage", stop, false, acked);
    some_acks(&mut acks, 50).await;

    // A restart, as the replicas see it: every connection ended.
    assert!(db.terminate_sessions().await > 0);
    some_acks(&mut acks, 50).await;

    // Then gone for a while: until each replica has refused a call with the
    // database unreachable.
    relay.cut();
    for (i, target) in targets.iter().enumerate() {
        let refused = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                if let Err(status) = issue(target, lobby_card("probe", "")).await {
                    break status;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("replica {i} kept answering without its database"));
        assert_unavailable_with_retry_info(&refused);
    }
    relay.restore();
    // The same processes answer again, each of them.
    for (i, target) in targets.iter().enumerate() {
        tokio::time::timeout(Duration::from_secs(30), async {
            while issue(target, lobby_card("probe", "")).await.is_err() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("replica {i} did not recover"));
    }
    some_acks(&mut acks, 50).await;
    stop_clients.send_replace(true);
    let seen = gather(clients).await;
    for status in &seen.errors {
        assert_unavailable_with_retry_info(status);
    }
    // The probes' keys are not the clients': revoke them out of the count.
    for key_id in keys_of(&targets[0], "probe").await {
        targets[0]
            .clone()
            .revoke(pb::RevokeRequest {
                property_id: PROPERTY.into(),
                request_id: String::new(),
                target: Some(pb::revoke_request::Target::KeyId(key_id)),
            })
            .await
            .unwrap();
    }
    nothing_lost_nothing_doubled(&targets[1], &seen).await;
    drop(all);
}
