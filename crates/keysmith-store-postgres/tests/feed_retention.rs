//! A store whose listener was away while another store on the database
//! committed changes and the change log was purged past them (retention
//! shorter than the time away): it cannot read what it missed, so it ends
//! the property's watchers (as a too-old resume token ends a watch: they
//! list and watch again) instead of leaving them waiting for good, and its
//! feed goes on from what the log still holds. Runs when
//! `KEYSMITH_TEST_POSTGRES_URL` names a server; without it the test says
//! it was skipped and passes.
use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use keysmith_core::{
    changes::{Ended, Subscription},
    store::Store,
    Timestamp,
};
use keysmith_store::suite::{key, test_keys, write};
use keysmith_store_postgres::{testing::TestDatabase, PgOptions, PgStore};
use tokio::{net::TcpListener, task::JoinHandle};

/// The bound on each wait: a reconnection takes at most 5 s of back-off.
const PATIENCE: Duration = Duration::from_secs(30);

async fn open(url: String) -> PgStore {
    PgStore::open(PgOptions {
        url,
        pool_size: 4,
        acquire_timeout: Duration::from_secs(30),
        keys: test_keys(),
        watch_buffer: 1024,
    })
    .await
    .expect("the store opens")
}

/// A TCP relay to the database that the test can cut (every connection
/// through it ends, and new ones are refused) and restore: a store behind
/// it is away from the database meanwhile, as in a network partition.
struct Relay {
    addr: SocketAddr,
    refusing: Arc<AtomicBool>,
    relayed: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Relay {
    async fn to(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let refusing = Arc::new(AtomicBool::new(false));
        let relayed = Arc::new(Mutex::new(Vec::new()));
        let (refused, tasks) = (refusing.clone(), relayed.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if refused.load(Ordering::SeqCst) {
                    continue; // dropped: the connection closes at once
                }
                tasks.lock().unwrap().push(tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                }));
            }
        });
        Self {
            addr,
            refusing,
            relayed,
            accept,
        }
    }

    fn cut(&self) {
        self.refusing.store(true, Ordering::SeqCst);
        for task in self.relayed.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    fn restore(&self) {
        self.refusing.store(false, Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

/// Where `url` (the database's own) connects, and its `host:port` part.
async fn database_address(url: &str) -> (SocketAddr, String) {
    let config: tokio_postgres::Config = url.parse().unwrap();
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        other => panic!("a TCP host, not {other:?}"),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let target = tokio::net::lookup_host((host.as_str(), port))
        .await
        .unwrap()
        .next()
        .expect("the database's address");
    (target, format!("{host}:{port}"))
}

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
    let (target, host_port) = database_address(&url).await;
    let relay = Relay::to(target).await;
    let relayed_url = url.replacen(&host_port, &relay.addr.to_string(), 1);
    let b = open(url).await;
    let a = open(relayed_url).await;
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
