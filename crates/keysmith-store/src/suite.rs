//! The store suite: what every [`Store`] must do, whatever engine keeps the
//! data. Each case is a generic function over a [`Harness`], which opens
//! the engine's store (again, over the same data) and looks at what it
//! stored; [`store_suite!`](crate::store_suite) makes one test per case for
//! a harness. This crate runs it on sled (`tests.rs`), and each other
//! engine's crate runs it on its own.
use std::{collections::BTreeMap, future::Future, sync::Arc, time::Duration};

use keysmith_core::{
    audit::AuditRecord,
    changes::ChangeKind,
    key::{Behaviour, Credential, CredentialData, Holder, KeyEntrance, KeyState},
    reservation::{Member, Reservation},
    store::{IdempotencyRecord, KeyIndex, KeyScan, LockName, Store, StoredAnswer, WriteSet},
    AccessKey, CredentialMode, ErrorKind, Result, Role, Secret, Timestamp, Window,
};

use crate::sealing::{KeyEncryptionKey, KeyRing};

/// An engine under test: its store opened over the same data each time.
pub trait Harness: Send + Sync {
    type Store: Store;
    /// Opens the store over the harness's data (what an earlier store of
    /// this harness committed is there), its data keys wrapped by `keys`.
    fn open_with(&self, keys: KeyRing) -> impl Future<Output = Result<Self::Store>> + Send;
    /// Stops the store as keysmith does at shutdown.
    fn close(&self, store: &Self::Store);
    /// Whether any value the store holds has `needle` in it, in clear.
    fn stored_values_hold(
        &self,
        store: &Self::Store,
        needle: &[u8],
    ) -> impl Future<Output = bool> + Send;
    /// How many entries (records, index entries) the store still has of a
    /// key.
    fn entries_of_key(
        &self,
        store: &Self::Store,
        property_id: &str,
        key_id: &str,
    ) -> impl Future<Output = usize> + Send;
}

/// Makes one `#[tokio::test]` per case of the suite. `$harness` is an
/// expression whose value is a future of `Option<impl Harness>`: `None`
/// skips the case (an engine that is not reachable here, which the harness
/// says).
#[macro_export]
macro_rules! store_suite {
    ($harness:expr) => {
        $crate::store_suite!(@cases $harness;
            indexes_follow_revocation_and_resume_after_a_key,
            everything_committed_survives_a_reopen,
            many_concurrent_commits_all_complete,
            driver_state_reads_its_own_writes_and_keeps_them,
            a_driver_state_section_excludes_the_next_and_writes_only_when_committed,
            driver_state_sections_of_several_names_hold_each_and_leave_the_others,
            a_commit_after_close_fails_instead_of_waiting_forever,
            a_listing_with_revoked_keys_merges_both_in_key_order,
            a_key_is_found_by_its_end_then_by_when_it_ended_then_purged_whole,
            records_are_sealed_and_a_wrong_key_is_refused_by_name,
            key_changes_are_logged_in_order_across_a_reopen_and_purged,
            a_transaction_holds_its_locks_and_writes_only_when_committed,
            reservations_answers_and_audit_records_are_kept_and_expire
        );
    };
    (@cases $harness:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                if let Some(harness) = $harness.await {
                    $crate::suite::$case(&harness).await;
                }
            }
        )*
    };
}

/// The fixed test key-encryption key.
pub fn test_keys() -> KeyRing {
    KeyRing::new(KeyEncryptionKey::insecure_for_tests())
}

async fn open<H: Harness>(h: &H) -> H::Store {
    h.open_with(test_keys()).await.expect("the store opens")
}

/// Closes and drops a store, then opens the harness's store again.
async fn reopen<H: Harness>(h: &H, store: H::Store) -> H::Store {
    h.close(&store);
    drop(store);
    open(h).await
}

/// A live guest key of the property `hotel` to room-101, its window 0..10 s.
pub fn key(id: &str, holder: &str, rk: Option<&str>) -> AccessKey {
    AccessKey {
        key_id: id.into(),
        property_id: "hotel".into(),
        holder: Holder {
            id: holder.into(),
            name: None,
        },
        entrances: vec![KeyEntrance {
            entrance_id: "room-101".into(),
            driver: "offline-lock".into(),
            behaviour: Behaviour::Standard,
        }],
        window: Window {
            starts_at: Timestamp::from_unix_seconds(0),
            ends_at: Timestamp::from_unix_seconds(10),
        },
        reservation: rk.map(|k| keysmith_core::key::ReservationRef {
            key: k.into(),
            epoch: 1,
        }),
        role: Role::Guest,
        modes: vec![],
        credentials: vec![],
        stored_state: KeyState::Active,
        warnings: vec![],
        created_at: Timestamp::from_unix_seconds(0),
        updated_at: Timestamp::from_unix_seconds(0),
        revoked_at: None,
        driver_refs: BTreeMap::new(),
    }
}

/// The ids a scan of the property `hotel` returns (at most 100).
pub fn scan(
    store: &dyn Store,
    index: KeyIndex,
    live_only: bool,
    after: Option<&str>,
) -> Vec<String> {
    store
        .scan_keys(&KeyScan {
            property_id: "hotel",
            index,
            live_only,
            after,
            limit: 100,
        })
        .unwrap()
        .into_iter()
        .map(|k| k.key_id.clone())
        .collect()
}

/// Commits one key write.
pub async fn write(store: &dyn Store, key: AccessKey, old: Option<AccessKey>) {
    store
        .commit(WriteSet {
            keys: vec![(key, old)],
            ..Default::default()
        })
        .await
        .unwrap();
}

/// The stored key, revoked.
async fn revoke(store: &dyn Store, property: &str, id: &str) {
    let old = store.key(property, id).unwrap().unwrap();
    let mut revoked = old.clone();
    revoked.stored_state = KeyState::Revoked;
    write(store, revoked, Some(old)).await;
}

pub async fn indexes_follow_revocation_and_resume_after_a_key<H: Harness>(h: &H) {
    let store = open(h).await;
    let mut writes = WriteSet::default();
    for (id, holder, rk) in [
        ("k1", "g1", Some("s1")),
        ("k2", "g2", None),
        ("k3", "g1", Some("s1")),
    ] {
        writes.keys.push((key(id, holder, rk), None));
    }
    store.commit(writes).await.unwrap();

    assert_eq!(
        scan(&store, KeyIndex::Property, true, None),
        ["k1", "k2", "k3"]
    );
    assert_eq!(
        scan(&store, KeyIndex::Property, true, Some("k1")),
        ["k2", "k3"]
    );
    assert_eq!(
        scan(&store, KeyIndex::Holder("g1".into()), true, None),
        ["k1", "k3"]
    );
    assert_eq!(
        scan(&store, KeyIndex::Holder("g1".into()), true, Some("k1")),
        ["k3"]
    );
    assert_eq!(
        scan(&store, KeyIndex::Reservation("s1".into()), true, None),
        ["k1", "k3"]
    );
    assert_eq!(
        scan(&store, KeyIndex::Entrance("room-101".into()), true, None),
        ["k1", "k2", "k3"]
    );
    assert!(scan(&store, KeyIndex::Entrance("room-102".into()), true, None).is_empty());

    revoke(&store, "hotel", "k1").await;
    assert_eq!(scan(&store, KeyIndex::Property, true, None), ["k2", "k3"]);
    assert_eq!(
        scan(&store, KeyIndex::Property, false, None),
        ["k1", "k2", "k3"]
    );
    assert_eq!(
        scan(&store, KeyIndex::Holder("g1".into()), true, None),
        ["k3"]
    );
    assert_eq!(
        scan(&store, KeyIndex::Reservation("s1".into()), false, None),
        ["k1", "k3"],
        "an index walk of every key keeps the ended ones"
    );
}

pub async fn everything_committed_survives_a_reopen<H: Harness>(h: &H) {
    let store = open(h).await;
    write(&store, key("k1", "g1", None), None).await;
    let store = reopen(h, store).await;
    assert_eq!(store.key("hotel", "k1").unwrap().unwrap().holder.id, "g1");
}

pub async fn many_concurrent_commits_all_complete<H: Harness>(h: &H) {
    let store = Arc::new(open(h).await);
    let mut tasks = Vec::new();
    for i in 0..500 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            write(&*store, key(&format!("k{i:04}"), "g", None), None).await;
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        scan(&*store, KeyIndex::Holder("g".into()), true, None).len(),
        100,
        "the scan limit"
    );
    let mut all = 0;
    let mut after: Option<String> = None;
    loop {
        let page = scan(&*store, KeyIndex::Property, true, after.as_deref());
        let Some(last) = page.last() else { break };
        after = Some(last.clone());
        all += page.len();
    }
    assert_eq!(all, 500, "every commit is there, paged through");
}

pub async fn driver_state_reads_its_own_writes_and_keeps_them<H: Harness>(h: &H) {
    let store = open(h).await;
    let lock = store.driver_state("lock").unwrap();
    let other = store.driver_state("lock2").unwrap();
    lock.apply(vec![
        (b"a/1".to_vec(), Some(b"one".to_vec())),
        (b"a/2".to_vec(), Some(b"two".to_vec())),
        (b"b/1".to_vec(), Some(b"three".to_vec())),
    ])
    .unwrap();
    lock.apply(vec![(b"a/2".to_vec(), None)]).unwrap();
    // Seen at once, whether or not the change is durable yet.
    assert_eq!(lock.get(b"a/1").unwrap().as_deref(), Some(&b"one"[..]));
    assert_eq!(lock.get(b"a/2").unwrap(), None);
    assert_eq!(
        lock.scan_prefix(b"a/").unwrap(),
        [(b"a/1".to_vec(), b"one".to_vec())]
    );
    // Namespaces do not overlap, even when one driver's name starts another's.
    assert_eq!(other.get(b"a/1").unwrap(), None);
    assert!(other.scan_prefix(b"").unwrap().is_empty());

    lock.sync().await.unwrap();
    assert_eq!(lock.get(b"a/1").unwrap().as_deref(), Some(&b"one"[..]));
    assert_eq!(lock.scan_prefix(b"").unwrap().len(), 2);
    drop((lock, other));
    let store = reopen(h, store).await;
    let lock = store.driver_state("lock").unwrap();
    assert_eq!(lock.get(b"b/1").unwrap().as_deref(), Some(&b"three"[..]));
    assert_eq!(lock.get(b"a/2").unwrap(), None);
}

/// A driver's state section excludes the next one of its name until it
/// commits, which reads what the first wrote; a section dropped without a
/// commit writes nothing and lets the next in. (The PostgreSQL store's
/// sections exclude across processes too: tests/replicas_lock.rs.)
pub async fn a_driver_state_section_excludes_the_next_and_writes_only_when_committed<H: Harness>(
    h: &H,
) {
    let store = open(h).await;
    let state = store.driver_state("lock").unwrap();
    let mut first = state.section(b"counter").unwrap();
    assert_eq!(first.get(b"n").unwrap(), None);
    first.apply(vec![(b"n".to_vec(), Some(b"1".to_vec()))]);
    assert_eq!(
        first.get(b"n").unwrap().as_deref(),
        Some(&b"1"[..]),
        "its own write"
    );
    assert_eq!(
        state.get(b"n").unwrap(),
        None,
        "nothing written before the commit"
    );

    // The next section of the name increments what it reads.
    let increment = |state: Arc<dyn keysmith_core::store::DriverState>| {
        move || {
            let mut section = state.section(b"counter").unwrap();
            let seen = section.get(b"n").unwrap();
            let n: u32 = seen
                .as_deref()
                .map_or(0, |v| std::str::from_utf8(v).unwrap().parse().unwrap());
            section.apply(vec![(
                b"n".to_vec(),
                Some((n + 1).to_string().into_bytes()),
            )]);
            section.commit().unwrap();
            seen
        }
    };
    let (began_tx, began) = tokio::sync::oneshot::channel();
    let second = tokio::task::spawn_blocking({
        let next = increment(state.clone());
        move || {
            let _ = began_tx.send(());
            next()
        }
    });
    began.await.unwrap();
    first.commit().unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(30), second)
        .await
        .expect("the second section opened")
        .unwrap();
    assert_eq!(
        seen.as_deref(),
        Some(&b"1"[..]),
        "the second opened only after the first committed"
    );
    assert_eq!(state.get(b"n").unwrap().as_deref(), Some(&b"2"[..]));

    let mut dropped = state.section(b"counter").unwrap();
    dropped.apply(vec![(b"n".to_vec(), Some(b"99".to_vec()))]);
    drop(dropped);
    let seen = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::task::spawn_blocking(increment(state.clone())),
    )
    .await
    .expect("a dropped section lets the next in")
    .unwrap();
    assert_eq!(
        seen.as_deref(),
        Some(&b"2"[..]),
        "a dropped section wrote nothing"
    );
    assert_eq!(state.get(b"n").unwrap().as_deref(), Some(&b"3"[..]));
}

/// A section of several names holds each of them: a section of any one
/// waits until it commits (and reads what it wrote), a section of another
/// name goes on beside it, and two overlapping sets named in opposite
/// orders both get through (one order is taken everywhere).
pub async fn driver_state_sections_of_several_names_hold_each_and_leave_the_others<H: Harness>(
    h: &H,
) {
    let store = open(h).await;
    let state = store.driver_state("lock").unwrap();
    let mut both = state
        .sections(&[b"door-b".to_vec(), b"door-a".to_vec()])
        .unwrap();
    both.apply(vec![
        (b"a".to_vec(), Some(b"1".to_vec())),
        (b"b".to_vec(), Some(b"1".to_vec())),
    ]);

    // Another name is not held up by them.
    tokio::time::timeout(
        Duration::from_secs(30),
        tokio::task::spawn_blocking({
            let state = state.clone();
            move || {
                let mut other = state.section(b"door-c").unwrap();
                other.apply(vec![(b"c".to_vec(), Some(b"1".to_vec()))]);
                other.commit().unwrap();
            }
        }),
    )
    .await
    .expect("a section of another name opened while both were held")
    .unwrap();

    // One of the names waits for the commit, and reads what it wrote.
    let (began_tx, began) = tokio::sync::oneshot::channel();
    let second = tokio::task::spawn_blocking({
        let state = state.clone();
        move || {
            let _ = began_tx.send(());
            let section = state.section(b"door-a").unwrap();
            section.get(b"a").unwrap()
        }
    });
    began.await.unwrap();
    both.commit().unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(30), second)
        .await
        .expect("the section of one name opened")
        .unwrap();
    assert_eq!(
        seen.as_deref(),
        Some(&b"1"[..]),
        "it opened only after the section of both committed"
    );

    // Overlapping sets, named in opposite orders, many times over: none
    // waits on the other forever.
    let racers = [
        vec![b"door-a".to_vec(), b"door-b".to_vec()],
        vec![b"door-b".to_vec(), b"door-a".to_vec()],
    ]
    .map(|names| {
        let state = state.clone();
        tokio::task::spawn_blocking(move || {
            for _ in 0..20 {
                let mut section = state.sections(&names).unwrap();
                let n: u32 = section
                    .get(b"n")
                    .unwrap()
                    .map_or(0, |v| std::str::from_utf8(&v).unwrap().parse().unwrap());
                section.apply(vec![(
                    b"n".to_vec(),
                    Some((n + 1).to_string().into_bytes()),
                )]);
                section.commit().unwrap();
            }
        })
    });
    for racer in racers {
        tokio::time::timeout(Duration::from_secs(60), racer)
            .await
            .expect("overlapping sections got through")
            .unwrap();
    }
    assert_eq!(
        state.get(b"n").unwrap().as_deref(),
        Some(&b"40"[..]),
        "each increment saw the one before"
    );
}

pub async fn a_commit_after_close_fails_instead_of_waiting_forever<H: Harness>(h: &H) {
    let store = open(h).await;
    h.close(&store);
    let error = store
        .commit(WriteSet {
            keys: vec![(key("k1", "g1", None), None)],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unavailable);
}

pub async fn a_listing_with_revoked_keys_merges_both_in_key_order<H: Harness>(h: &H) {
    let store = open(h).await;
    let mut writes = WriteSet::default();
    for id in ["k1", "k2", "k3", "k4", "k5"] {
        writes.keys.push((key(id, "g", None), None));
    }
    store.commit(writes).await.unwrap();
    let mut writes = WriteSet::default();
    for id in ["k2", "k3", "k5"] {
        let old = store.key("hotel", id).unwrap().unwrap();
        let mut revoked = old.clone();
        revoked.stored_state = KeyState::Revoked;
        writes.keys.push((revoked, Some(old)));
    }
    store.commit(writes).await.unwrap();

    assert_eq!(scan(&store, KeyIndex::Property, true, None), ["k1", "k4"]);
    assert_eq!(
        scan(&store, KeyIndex::Property, false, None),
        ["k1", "k2", "k3", "k4", "k5"]
    );
    assert_eq!(
        scan(&store, KeyIndex::Property, false, Some("k2")),
        ["k3", "k4", "k5"]
    );
    let two = store
        .scan_keys(&KeyScan {
            property_id: "hotel",
            index: KeyIndex::Property,
            live_only: false,
            after: Some("k1"),
            limit: 2,
        })
        .unwrap();
    assert_eq!(
        two.iter().map(|k| k.key_id.as_str()).collect::<Vec<_>>(),
        ["k2", "k3"]
    );
    assert!(store.key("hotel", "k3").unwrap().unwrap().is_revoked());
}

/// The sweeper's walks follow a key through its life, and a purge leaves
/// nothing of the key behind.
pub async fn a_key_is_found_by_its_end_then_by_when_it_ended_then_purged_whole<H: Harness>(h: &H) {
    let store = open(h).await;
    let live = key("k1", "g1", Some("s1"));
    write(&store, live.clone(), None).await;
    write(&store, key("k2", "g1", None), None).await;
    let at = Timestamp::from_unix_seconds;
    let due = store.ended_live_keys(at(11), None, 10).unwrap();
    assert_eq!(
        due.iter()
            .map(|d| (d.at, d.key_id.as_str()))
            .collect::<Vec<_>>(),
        [(at(10), "k1"), (at(10), "k2")]
    );
    let after_first = store.ended_live_keys(at(11), Some(&due[0]), 10).unwrap();
    assert_eq!(after_first, due[1..], "a page resumes after its cursor");
    assert!(store.ended_live_keys(at(10), None, 10).unwrap().is_empty());

    let mut ended = live.clone();
    ended.stored_state = KeyState::Expired;
    write(&store, ended.clone(), Some(live)).await;
    assert_eq!(store.ended_live_keys(at(100), None, 10).unwrap().len(), 1);
    assert_eq!(scan(&store, KeyIndex::Property, true, None), ["k2"]);
    assert_eq!(scan(&store, KeyIndex::Property, false, None), ["k1", "k2"]);
    let purgeable = store.purgeable_keys(at(11), None, 10).unwrap();
    assert_eq!(
        purgeable
            .iter()
            .map(|d| (d.at, d.key_id.as_str()))
            .collect::<Vec<_>>(),
        [(at(10), "k1")]
    );
    assert!(store.purgeable_keys(at(10), None, 10).unwrap().is_empty());

    assert!(
        h.entries_of_key(&store, "hotel", "k1").await > 0,
        "the check can fail"
    );
    store
        .commit(WriteSet {
            purged: vec![ended],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        h.entries_of_key(&store, "hotel", "k1").await,
        0,
        "entries of the key remain"
    );
    assert!(store.key("hotel", "k1").unwrap().is_none());
    assert!(scan(&store, KeyIndex::Reservation("s1".into()), false, None).is_empty());
    assert!(store.purgeable_keys(at(11), None, 10).unwrap().is_empty());
}

fn with_keys(current: &KeyEncryptionKey, previous: &[&KeyEncryptionKey]) -> KeyRing {
    KeyRing {
        current: current.clone(),
        previous: previous.iter().map(|k| (*k).clone()).collect(),
    }
}

/// Every value is sealed: a credential's data is nowhere in the store in
/// clear, and the store opens only with the key that wraps its data keys,
/// or refuses, naming the key.
pub async fn records_are_sealed_and_a_wrong_key_is_refused_by_name<H: Harness>(h: &H) {
    let k1 = KeyEncryptionKey::generate("k1");
    let store = h.open_with(with_keys(&k1, &[])).await.unwrap();
    let mut secret = key("k1", "g1", Some("s1"));
    secret.credentials.push(Credential {
        mode: CredentialMode::Pin,
        driver: "offline-lock".into(),
        entrance_ids: vec!["room-101".into()],
        data: CredentialData::Pin(Secret::new("SECRET-481516".into())),
        credential_id: "c1".into(),
        encoding_required: false,
    });
    store
        .commit(WriteSet {
            keys: vec![(secret.clone(), None)],
            idempotency: vec![IdempotencyRecord {
                property_id: "hotel".into(),
                request_id: "r1".into(),
                method: "Issue".into(),
                fingerprint: [0; 32],
                answer: StoredAnswer::Key(Box::new(secret)),
                created_at: Timestamp::from_unix_seconds(1),
            }],
            ..Default::default()
        })
        .await
        .unwrap();
    let state = store.driver_state("lock").unwrap();
    state
        .apply(vec![(
            b"pin".to_vec(),
            Some(b"DRIVER-SECRET-2342".to_vec()),
        )])
        .unwrap();
    state.sync().await.unwrap();
    assert_eq!(
        state.get(b"pin").unwrap().as_deref(),
        Some(&b"DRIVER-SECRET-2342"[..])
    );
    assert!(
        !h.stored_values_hold(&store, b"SECRET").await,
        "no value holds a secret in clear"
    );
    h.close(&store);
    drop((state, store));

    let wrong = KeyEncryptionKey::generate("k1");
    let err = h
        .open_with(with_keys(&wrong, &[]))
        .await
        .err()
        .expect("refused");
    assert!(err.message().contains("does not open"), "{}", err.message());
    let other = KeyEncryptionKey::generate("k2");
    let err = h
        .open_with(with_keys(&other, &[]))
        .await
        .err()
        .expect("refused");
    assert!(err.message().contains("\"k1\""), "{}", err.message());

    // The new key with the old one as previous: the data keys are rewrapped,
    // and from then on the new key alone opens the store.
    let store = h.open_with(with_keys(&other, &[&k1])).await.unwrap();
    h.close(&store);
    drop(store);
    let store = h.open_with(with_keys(&other, &[])).await.unwrap();
    let read = store.key("hotel", "k1").unwrap().unwrap();
    assert_eq!(read.credentials.len(), 1);
    let answer = store.idempotency("hotel", "r1").unwrap().unwrap();
    assert!(matches!(answer.answer, StoredAnswer::Key(k) if k.credentials.len() == 1));
}

/// Each key change is numbered in its property's change log in the same
/// commit and published once durable; the numbers go on after a reopen, a
/// change that shows nothing new is not logged, and retention's purge
/// keeps the head and marks what it purged.
pub async fn key_changes_are_logged_in_order_across_a_reopen_and_purged<H: Harness>(h: &H) {
    let logged = |store: &H::Store| -> Vec<(u64, ChangeKind, String)> {
        store
            .changes_after("hotel", 0, 100)
            .unwrap()
            .into_iter()
            .map(|c| (c.sequence, c.kind, c.key.key_id.clone()))
            .collect()
    };
    let store = open(h).await;
    let incarnation = store.incarnation().to_owned();
    let (_head, mut live) = store.change_feed().subscribe("hotel");
    store
        .commit(WriteSet {
            keys: vec![(key("k1", "g1", None), None), (key("k2", "g2", None), None)],
            changed_at: Some(Timestamp::from_unix_seconds(100)),
            ..Default::default()
        })
        .await
        .unwrap();
    let published: Vec<u64> = tokio::time::timeout(Duration::from_secs(30), live.recv())
        .await
        .expect("published")
        .unwrap()
        .iter()
        .map(|c| c.sequence)
        .collect();
    assert_eq!(published, vec![1, 2], "published once durable, in order");
    let old = store.key("hotel", "k1").unwrap().unwrap();
    let mut revoked = old.clone();
    revoked.stored_state = KeyState::Revoked;
    let same = store.key("hotel", "k2").unwrap().unwrap();
    store
        .commit(WriteSet {
            keys: vec![(revoked, Some(old)), (same.clone(), Some(same))],
            changed_at: Some(Timestamp::from_unix_seconds(200)),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        logged(&store),
        vec![
            (1, ChangeKind::Issued, "k1".into()),
            (2, ChangeKind::Issued, "k2".into()),
            (3, ChangeKind::Revoked, "k1".into()),
        ]
    );
    drop(live);
    let store = reopen(h, store).await;
    assert_eq!(store.incarnation(), incarnation);
    assert_eq!(store.change_feed().head("hotel"), 3);
    assert_eq!(store.changes_after("hotel", 1, 100).unwrap().len(), 2);

    // Purged up to 150: the two changes made at 100.
    let purged = store
        .purge_changes(Timestamp::from_unix_seconds(150), 10)
        .await
        .unwrap();
    assert_eq!(purged, 2);
    assert_eq!(store.changes_purged_through("hotel").unwrap(), 2);
    assert_eq!(logged(&store), vec![(3, ChangeKind::Revoked, "k1".into())]);
    // Everything purged: the numbers still go on from the head.
    store
        .purge_changes(Timestamp::from_unix_seconds(300), 10)
        .await
        .unwrap();
    write(&store, key("k3", "g3", None), None).await;
    assert_eq!(logged(&store), vec![(4, ChangeKind::Issued, "k3".into())]);
    let store = reopen(h, store).await;
    assert_eq!(store.change_feed().head("hotel"), 4);
}

/// A transaction holds its locks until it ends: one that waits for the same
/// lock begins after the first committed and reads what it wrote. Nothing is
/// written before the commit, and a transaction dropped without one writes
/// nothing and lets go of its locks.
pub async fn a_transaction_holds_its_locks_and_writes_only_when_committed<H: Harness>(h: &H) {
    let store = Arc::new(open(h).await);
    let lock = || LockName::Key {
        property_id: "hotel".into(),
        key_id: "k1".into(),
    };
    let mut first = store.begin(vec![lock()]).await.unwrap();
    assert!(first.key("hotel", "k1").await.unwrap().is_none());
    first.writes().keys.push((key("k1", "g1", None), None));
    let (began_tx, began) = tokio::sync::oneshot::channel();
    let second = tokio::spawn({
        let store = store.clone();
        async move {
            let _ = began_tx.send(());
            let mut tx = store.begin(vec![lock()]).await.unwrap();
            let seen = tx.key("hotel", "k1").await.unwrap();
            tx.commit().await.unwrap();
            seen
        }
    });
    began.await.unwrap();
    assert!(
        store.key("hotel", "k1").unwrap().is_none(),
        "nothing is written before the commit"
    );
    first.commit().await.unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(30), second)
        .await
        .expect("the second transaction began")
        .unwrap();
    assert_eq!(
        seen.map(|k| k.holder.id),
        Some("g1".to_string()),
        "the second began only after the first committed"
    );

    let mut dropped = store.begin(vec![lock()]).await.unwrap();
    let mut changed = store.key("hotel", "k1").unwrap().unwrap();
    changed.holder.id = "g2".into();
    dropped.writes().keys.push((changed, None));
    drop(dropped);
    let mut again = tokio::time::timeout(Duration::from_secs(30), store.begin(vec![lock()]))
        .await
        .expect("a dropped transaction lets go of its locks")
        .unwrap();
    assert_eq!(
        again.key("hotel", "k1").await.unwrap().unwrap().holder.id,
        "g1"
    );
    again.commit().await.unwrap();
    assert_eq!(store.key("hotel", "k1").unwrap().unwrap().holder.id, "g1");
}

/// Reservations, request_id answers and audit records are read back as
/// written, inside a transaction and out; audit pages follow the ids, and
/// retention deletes what is older than its cut-off only.
pub async fn reservations_answers_and_audit_records_are_kept_and_expire<H: Harness>(h: &H) {
    let store = open(h).await;
    let k1 = key("k1", "g1", Some("s1"));
    let mut k2 = key("k2", "g2", Some("s1"));
    k2.stored_state = KeyState::Revoked;
    let reservation = Reservation {
        property_id: "hotel".into(),
        reservation_key: "s1".into(),
        epoch: 1,
        door_set: ["room-101".to_string()].into(),
        members: BTreeMap::from([
            ("k1".to_string(), Member::new(k1.window)),
            (
                "k2".to_string(),
                Member {
                    window: k2.window,
                    revoked: true,
                },
            ),
        ]),
    };
    let answer = |request_id: &str, at: i64| IdempotencyRecord {
        property_id: "hotel".into(),
        request_id: request_id.into(),
        method: "Issue".into(),
        fingerprint: [7; 32],
        answer: StoredAnswer::Key(Box::new(k1.clone())),
        created_at: Timestamp::from_unix_seconds(at),
    };
    let audit = |at: i64| {
        let mut r = AuditRecord::new(
            &keysmith_core::audit::AuditOrigin::default(),
            "Issue",
            "hotel",
            Timestamp::from_unix_seconds(at),
        );
        r.key_ids = vec!["k1".into()];
        r
    };
    store
        .commit(WriteSet {
            keys: vec![(k1.clone(), None), (k2.clone(), None)],
            reservations: vec![reservation.clone()],
            idempotency: vec![answer("r-old", 10), answer("r-new", 1_000)],
            audit: vec![audit(10), audit(20), audit(1_000)],
            ..Default::default()
        })
        .await
        .unwrap();

    assert_eq!(
        store.reservation("hotel", "s1").unwrap(),
        Some(reservation.clone())
    );
    assert!(store.reservation("hotel", "s2").unwrap().is_none());
    let mut tx = store.begin(Vec::new()).await.unwrap();
    assert_eq!(
        tx.reservation("hotel", "s1").await.unwrap(),
        Some(reservation)
    );
    assert_eq!(
        tx.keys_of_reservation("hotel", "s1").await.unwrap(),
        ["k1", "k2"]
    );
    assert_eq!(
        tx.live_keys_of_reservation("hotel", "s1").await.unwrap(),
        ["k1"]
    );
    let found = tx.idempotency("hotel", "r-new").await.unwrap().unwrap();
    assert_eq!(
        (found.method.as_str(), found.fingerprint),
        ("Issue", [7; 32])
    );
    assert!(tx.idempotency("other", "r-new").await.unwrap().is_none());
    drop(tx);

    let page = store.audit_page("hotel", None, 2).unwrap();
    assert_eq!(page.len(), 2);
    assert!(page[0].id < page[1].id, "in the order written");
    let rest = store.audit_page("hotel", Some(&page[1].id), 10).unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].at, Timestamp::from_unix_seconds(1_000));
    assert!(store.audit_page("other", None, 10).unwrap().is_empty());

    let cutoff = Timestamp::from_unix_seconds(500);
    assert_eq!(
        store.purge_audit(cutoff, 1).await.unwrap(),
        1,
        "at most the limit"
    );
    assert_eq!(store.purge_audit(cutoff, 10).await.unwrap(), 1);
    assert_eq!(store.audit_page("hotel", None, 10).unwrap().len(), 1);
    assert_eq!(store.expire_idempotency(cutoff).await.unwrap(), 1);
    assert!(store.idempotency("hotel", "r-old").unwrap().is_none());
    assert!(store.idempotency("hotel", "r-new").unwrap().is_some());

    store
        .commit(WriteSet {
            purged: vec![k1, k2],
            purged_reservations: vec![("hotel".into(), "s1".into())],
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(store.reservation("hotel", "s1").unwrap().is_none());
}
