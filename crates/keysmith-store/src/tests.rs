use std::collections::BTreeMap;

use keysmith_core::{
    key::KeyState,
    store::{KeyIndex, KeyScan, Store, WriteSet},
    AccessKey, Timestamp, Window,
};

use super::{EmbeddedStore, StoreOptions};
use crate::{
    sealing::KeyRing,
    suite::{key, scan, write, Harness},
};

fn test_options() -> StoreOptions {
    StoreOptions::new(crate::suite::test_keys())
}

/// sled in a temporary directory.
struct EmbeddedHarness {
    dir: tempfile::TempDir,
}

impl Harness for EmbeddedHarness {
    type Store = EmbeddedStore;

    async fn open_with(&self, keys: KeyRing) -> keysmith_core::Result<EmbeddedStore> {
        EmbeddedStore::open_with(self.dir.path(), StoreOptions::new(keys))
    }

    fn close(&self, store: &EmbeddedStore) {
        store.close();
    }

    async fn stored_values_hold(&self, store: &EmbeddedStore, needle: &[u8]) -> bool {
        store.tree().unwrap().iter().any(|e| {
            let (_, v) = e.unwrap();
            v.windows(needle.len()).any(|w| w == needle)
        })
    }

    async fn entries_of_key(
        &self,
        store: &EmbeddedStore,
        _property_id: &str,
        key_id: &str,
    ) -> usize {
        store
            .tree()
            .unwrap()
            .iter()
            .map(|e| e.unwrap().0)
            .filter(|k| k.windows(key_id.len()).any(|w| w == key_id.as_bytes()))
            .count()
    }
}

/// The engine's memory for a store a test opens by hand.
fn test_memory() -> crate::kv::Memory {
    crate::kv::Memory {
        cache_bytes: 8 << 20,
        write_buffer_bytes: 8 << 20,
    }
}

/// The store suite on sled.
mod embedded_suite {
    use super::EmbeddedHarness;

    crate::store_suite!(async {
        Some(EmbeddedHarness {
            dir: tempfile::tempdir().unwrap(),
        })
    });
}

#[tokio::test]
async fn a_driver_tree_of_an_earlier_layout_moves_into_the_main_tree() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = crate::rewrite::open_sled(dir.path()).unwrap();
        let old = db.open_tree("driver/offline-lock").unwrap();
        old.insert(b"enc/101", b"7").unwrap();
        db.flush().unwrap();
    }
    let store = EmbeddedStore::open_with_test_key(dir.path()).unwrap();
    let lock = store.driver_state("offline-lock").unwrap();
    assert_eq!(lock.get(b"enc/101").unwrap().as_deref(), Some(&b"7"[..]));
    store.close();
    drop((lock, store));

    let db = crate::open_db(dir.path(), test_memory()).unwrap();
    assert_eq!(
        db.tree_names(),
        [crate::MAIN_TREE],
        "the old tree is not copied"
    );
    assert!(!dir.path().join("conf").exists(), "sled's files are gone");
}

#[tokio::test]
async fn a_store_of_layout_1_is_upgraded_when_opened() {
    use crate::{codec, layout};
    let dir = tempfile::tempdir().unwrap();
    let mut revoked = key("k1", "g1", None);
    revoked.stored_state = KeyState::Revoked;
    let live = key("k2", "g2", None);
    {
        // Layout 1: every key under K, with a property index in A and L.
        let db = crate::rewrite::open_sled(dir.path()).unwrap();
        let main = db.open_tree("keysmith").unwrap();
        for k in [&revoked, &live] {
            main.insert(
                layout::key_path(layout::LIVE_KEY, "hotel", &k.key_id),
                codec::encode(k).unwrap(),
            )
            .unwrap();
            let entry = &codec::path(0, &[b"hotel", b"p", b"", k.key_id.as_bytes()])[1..];
            main.insert([&[layout::INDEX_ALL][..], entry].concat(), &[])
                .unwrap();
            if !k.is_revoked() {
                main.insert([&[layout::INDEX_LIVE][..], entry].concat(), &[])
                    .unwrap();
            }
        }
        db.flush().unwrap();
    }
    let store = EmbeddedStore::open_with_test_key(dir.path()).unwrap();
    assert_eq!(scan(&store, KeyIndex::Property, true, None), ["k2"]);
    assert_eq!(scan(&store, KeyIndex::Property, false, None), ["k1", "k2"]);
    assert!(store.key("hotel", "k1").unwrap().unwrap().is_revoked());
    assert!(
        store
            .tree()
            .unwrap()
            .scan_prefix([layout::INDEX_ALL])
            .chain(store.tree().unwrap().scan_prefix([layout::INDEX_LIVE]))
            .next()
            .is_none(),
        "the property index is gone"
    );
    store.close();
    drop(store);

    // A layout this build does not know is refused, not misread.
    {
        let db = crate::open_db(dir.path(), test_memory()).unwrap();
        let main = db.open_tree("keysmith").unwrap();
        main.insert(layout::layout_marker(), [layout::LAYOUT + 1])
            .unwrap();
        db.flush().unwrap();
    }
    let error = EmbeddedStore::open_with_test_key(dir.path())
        .err()
        .expect("refused");
    assert!(error.to_string().contains("newer keysmith"), "{error}");
}

/// Layout 2 forgot a reservation's ended keys; layout 3 rebuilds every
/// reservation's members from the keys that name it, ended and revoked ones
/// included, and leaves cleared reservations empty.
#[tokio::test]
async fn a_store_of_layout_2_rebuilds_reservation_members_when_opened() {
    use crate::{codec, layout};
    use keysmith_core::reservation::Member;
    #[derive(serde::Serialize)]
    struct ReservationLayout2 {
        property_id: String,
        reservation_key: String,
        epoch: u64,
        door_set: std::collections::BTreeSet<String>,
        members: BTreeMap<String, Window>,
    }
    let dir = tempfile::tempdir().unwrap();
    let ended = key("k1", "g1", Some("s1"));
    let mut joiner = key("k2", "g2", Some("s1"));
    joiner.window.ends_at = Timestamp::from_unix_seconds(20);
    let mut revoked = key("k3", "g3", Some("s1"));
    revoked.stored_state = KeyState::Revoked;
    let cleared = key("k4", "g4", Some("s2"));
    {
        let db = crate::rewrite::open_sled(dir.path()).unwrap();
        let main = db.open_tree("keysmith").unwrap();
        for k in [&ended, &joiner, &revoked, &cleared] {
            main.insert(layout::record_path(k), codec::encode(k).unwrap())
                .unwrap();
        }
        let rooms: std::collections::BTreeSet<String> = ["room-101".to_string()].into();
        for (rk, door_set, members) in [
            // k1 had ended when k2 joined, so layout 2 kept only k2.
            (
                "s1",
                rooms,
                BTreeMap::from([("k2".to_string(), joiner.window)]),
            ),
            ("s2", Default::default(), BTreeMap::new()),
        ] {
            let old = ReservationLayout2 {
                property_id: "hotel".into(),
                reservation_key: rk.into(),
                epoch: 1,
                door_set,
                members,
            };
            main.insert(
                codec::path(layout::RESERVATION, &[b"hotel", rk.as_bytes()]),
                codec::encode(&old).unwrap(),
            )
            .unwrap();
        }
        main.insert(layout::layout_marker(), &[2u8]).unwrap();
        db.flush().unwrap();
    }
    let store = EmbeddedStore::open_with_test_key(dir.path()).unwrap();
    let s1 = store.reservation("hotel", "s1").unwrap().unwrap();
    assert_eq!(
        s1.members,
        BTreeMap::from([
            ("k1".to_string(), Member::new(ended.window)),
            ("k2".to_string(), Member::new(joiner.window)),
            (
                "k3".to_string(),
                Member {
                    window: revoked.window,
                    revoked: true
                }
            ),
        ])
    );
    let s2 = store.reservation("hotel", "s2").unwrap().unwrap();
    assert!(s2.members.is_empty(), "a cleared reservation stays cleared");
    assert_current_layout(&store);
}

fn in_property(property: &str, id: &str) -> AccessKey {
    let mut k = key(id, "g1", None);
    k.property_id = property.into();
    k
}

fn live_page(
    store: &EmbeddedStore,
    property: &str,
) -> Vec<std::sync::Arc<keysmith_core::ListedKey>> {
    store
        .scan_keys(&KeyScan {
            property_id: property,
            index: KeyIndex::Property,
            live_only: true,
            after: None,
            limit: 100,
        })
        .unwrap()
}

fn summary(store: &EmbeddedStore, property: &str) -> Vec<(String, Option<String>)> {
    live_page(store, property)
        .iter()
        .map(|k| (k.key_id.clone(), k.holder.name.clone()))
        .collect()
}

fn ids(store: &EmbeddedStore, property: &str) -> Vec<String> {
    summary(store, property)
        .into_iter()
        .map(|(id, _)| id)
        .collect()
}

/// Whether two listings hand out the very same versions: the cache's.
fn served_from_memory(store: &EmbeddedStore, property: &str) -> bool {
    // A listing of a property the cache does not hold asks the loader for
    // it: wait for that before comparing.
    live_page(store, property);
    store.settle_listing_cache();
    let (a, b) = (live_page(store, property), live_page(store, property));
    !a.is_empty() && a.iter().zip(&b).all(|(x, y)| std::sync::Arc::ptr_eq(x, y))
}

#[tokio::test]
async fn the_listing_cache_shows_what_the_tree_shows_after_every_change_and_a_reopen() {
    let (cached_dir, disk_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let cached = EmbeddedStore::open_with_test_key(cached_dir.path()).unwrap();
    let disk = EmbeddedStore::open_with(
        disk_dir.path(),
        StoreOptions {
            memory_budget_bytes: 0,
            ..test_options()
        },
    )
    .unwrap();
    let same = |step: &str| {
        assert_eq!(summary(&cached, "hotel"), summary(&disk, "hotel"), "{step}");
        summary(&cached, "hotel")
    };

    for store in [&cached, &disk] {
        for id in ["k1", "k2", "k3"] {
            write(store, key(id, "g1", None), None).await;
        }
    }
    assert_eq!(same("issued").len(), 3);
    assert!(served_from_memory(&cached, "hotel"));
    assert!(!served_from_memory(&disk, "hotel"));

    for store in [&cached, &disk] {
        let old = store.key("hotel", "k2").unwrap().unwrap();
        let mut renamed = old.clone();
        renamed.holder.name = Some("Ada".into());
        write(store, renamed, Some(old)).await;
    }
    assert_eq!(same("updated")[1].1.as_deref(), Some("Ada"));

    for store in [&cached, &disk] {
        let old = store.key("hotel", "k1").unwrap().unwrap();
        let mut revoked = old.clone();
        revoked.stored_state = KeyState::Revoked;
        write(store, revoked, Some(old)).await;
    }
    assert_eq!(same("revoked").len(), 2);
    // An index walk of live keys takes them from the cache too.
    assert_eq!(
        scan(&cached, KeyIndex::Holder("g1".into()), true, None),
        ["k2", "k3"]
    );

    cached.close();
    drop(cached);
    let reopened = EmbeddedStore::open_with_test_key(cached_dir.path()).unwrap();
    assert_eq!(summary(&reopened, "hotel"), summary(&disk, "hotel"));
    assert!(served_from_memory(&reopened, "hotel"));
}

/// The listing cache holds the most recently listed properties whole,
/// within its budget of bytes: listing a property it does not hold reads the
/// tree and brings the property in, and the least recently listed one makes
/// room; a property larger than the whole budget is always listed from disk.
#[tokio::test]
async fn the_listing_cache_keeps_the_most_recently_listed_properties_within_its_budget() {
    let dir = tempfile::tempdir().unwrap();
    let one_key = keysmith_core::ListedKey::new(in_property("small", "k1")).approx_bytes();
    // Room for three keys in the listing cache's two thirds of the budget.
    let options = StoreOptions {
        memory_budget_bytes: (3 * one_key + one_key / 2) * 3 / 2,
        ..test_options()
    };
    let store = EmbeddedStore::open_with(dir.path(), options.clone()).unwrap();
    for (property, id) in [
        ("small", "k1"),
        ("small", "k2"),
        ("other", "k3"),
        ("other", "k4"),
        ("huge", "k5"),
        ("huge", "k6"),
        ("huge", "k7"),
        ("huge", "k8"),
    ] {
        write(&store, in_property(property, id), None).await;
    }
    let listed = |store: &EmbeddedStore, property: &str| {
        let ids = ids(store, property);
        store.settle_listing_cache();
        ids
    };
    assert_eq!(listed(&store, "small"), ["k1", "k2"]);
    assert!(served_from_memory(&store, "small"));
    assert_eq!(listed(&store, "other"), ["k3", "k4"]);
    assert!(served_from_memory(&store, "other"));
    assert!(
        !store.catalog.holds("small"),
        "the least recently listed property made room"
    );
    assert_eq!(listed(&store, "huge"), ["k5", "k6", "k7", "k8"]);
    assert!(!store.catalog.holds("huge"), "larger than the whole budget");
    // Listings that missed before the first load found it too big asked
    // for it again: those loads do not read it again.
    let reads = store.listing_cache().too_big_reads;
    assert_eq!(reads, 1);
    store.catalog.ask_to_load("huge");
    store.catalog.ask_to_load("huge");
    store.settle_listing_cache();
    assert_eq!(
        store.listing_cache().too_big_reads,
        reads,
        "a property known too big was read again"
    );
    assert!(
        store.catalog.holds("other"),
        "a property too big evicts nobody"
    );
    assert!(store.listing_cache().bytes <= options.listing_cache_bytes());

    // A change to a held property shows at once, as the tree shows it.
    let old = store.key("other", "k3").unwrap().unwrap();
    let mut revoked = old.clone();
    revoked.stored_state = KeyState::Revoked;
    write(&store, revoked, Some(old)).await;
    assert_eq!(ids(&store, "other"), ["k4"]);

    // At the next start the cache fills in the background while it can.
    store.close();
    drop(store);
    let store = EmbeddedStore::open_with(dir.path(), options.clone()).unwrap();
    assert_eq!(ids(&store, "small"), ["k1", "k2"], "listed before the fill");
    store.settle_listing_cache();
    let held = ["small", "other", "huge"].map(|p| store.catalog.holds(p));
    assert_eq!(
        held,
        [true, true, false],
        "three keys fit, the huge one never"
    );
}

fn with_keys(
    current: &crate::sealing::KeyEncryptionKey,
    previous: &[&crate::sealing::KeyEncryptionKey],
) -> StoreOptions {
    StoreOptions::new(crate::sealing::KeyRing {
        current: current.clone(),
        previous: previous.iter().map(|k| (*k).clone()).collect(),
    })
}

/// A data key rotation seals every record again with a new key, online,
/// and forgets the old key; a key-encryption key rotation rewraps the data
/// keys online. Everything stays readable, across a reopen.
#[tokio::test]
async fn rotations_keep_every_record_readable() {
    use crate::sealing::{KeyEncryptionKey, Sealer};
    let dir = tempfile::tempdir().unwrap();
    let k1 = KeyEncryptionKey::generate("k1");
    let store = EmbeddedStore::open_with(dir.path(), with_keys(&k1, &[])).unwrap();
    for i in 0..1_200 {
        write(&store, key(&format!("k{i:04}"), "g", None), None).await;
    }
    let first = store.encryption_status().current_data_key;
    let second = store.rotate_data_key().await.unwrap();
    assert_ne!(first, second);
    store.resealed().await;
    let status = store.encryption_status();
    assert_eq!(status.data_keys, [second], "the old data key is gone");
    assert!(!status.resealing);
    assert!(store.tree().unwrap().iter().all(|e| {
        let (k, v) = e.unwrap();
        k.first() == Some(&crate::layout::META) || Sealer::key_of(&v).is_none_or(|id| id == second)
    }));

    let k2 = KeyEncryptionKey::generate("k2");
    store.rotate_key_encryption_key(k2.clone()).await.unwrap();
    assert_eq!(store.encryption_status().key_encryption_key_id, "k2");
    store.close();
    drop(store);
    let store = EmbeddedStore::open_with(dir.path(), with_keys(&k2, &[])).unwrap();
    assert_eq!(scan(&store, KeyIndex::Property, true, None).len(), 100);
    assert!(store.key("hotel", "k1199").unwrap().is_some());
}

/// A store written before sealing is sealed when it opens.
#[tokio::test]
async fn a_store_of_layout_5_is_sealed_when_opened() {
    use crate::{codec, layout, sealing::Sealer};
    let dir = tempfile::tempdir().unwrap();
    let plain = key("k1", "g1", None);
    {
        let db = crate::rewrite::open_sled(dir.path()).unwrap();
        let main = db.open_tree("keysmith").unwrap();
        main.insert(layout::record_path(&plain), codec::encode(&plain).unwrap())
            .unwrap();
        main.insert(layout::layout_marker(), &[5u8]).unwrap();
        db.flush().unwrap();
    }
    let store = EmbeddedStore::open_with_test_key(dir.path()).unwrap();
    let raw = store
        .tree()
        .unwrap()
        .get(layout::record_path(&plain))
        .unwrap()
        .unwrap();
    assert!(Sealer::key_of(&raw).is_some(), "sealed in place");
    assert_eq!(store.key("hotel", "k1").unwrap().unwrap(), plain);
}

/// Every file under `dir`, read whole, holds `needle` somewhere.
fn files_hold(dir: &std::path::Path, needle: &[u8]) -> bool {
    std::fs::read_dir(dir).unwrap().any(|entry| {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files_hold(&path, needle)
        } else {
            let bytes = std::fs::read(&path).unwrap();
            bytes.windows(needle.len()).any(|w| w == needle)
        }
    })
}

/// sled keeps replaced bytes in its files: after the upgrade seals what was
/// in clear, the store is rewritten into a fresh directory, and the record
/// in clear is nowhere in the data directory any more.
#[tokio::test]
async fn records_in_clear_leave_the_files_when_a_store_is_sealed() {
    use crate::{codec, layout};
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("data");
    let mut plain = key("k1", "g1", None);
    plain.holder.name = Some("NAME-IN-CLEAR-5150".into());
    {
        let db = crate::rewrite::open_sled(&dir).unwrap();
        let main = db.open_tree("keysmith").unwrap();
        main.insert(layout::record_path(&plain), codec::encode(&plain).unwrap())
            .unwrap();
        main.insert(layout::layout_marker(), &[5u8]).unwrap();
        db.flush().unwrap();
    }
    assert!(files_hold(&dir, b"NAME-IN-CLEAR-5150"), "the test can fail");
    let store = EmbeddedStore::open_with_test_key(&dir).unwrap();
    assert_eq!(store.key("hotel", "k1").unwrap().unwrap(), plain);
    store.close();
    drop(store);
    assert!(!files_hold(&dir, b"NAME-IN-CLEAR-5150"));
    let left: Vec<_> = std::fs::read_dir(root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["data"], "no copy or old directory is left beside it");
    let store = EmbeddedStore::open_with_test_key(&dir).unwrap();
    assert_eq!(store.key("hotel", "k1").unwrap().unwrap(), plain);
}

/// A rewrite stopped at any point leaves a store that opens whole: before
/// the old directory moved aside (the copy is dropped), and between the two
/// renames (the copy is put in place).
#[tokio::test]
async fn an_interrupted_rewrite_is_finished_or_undone_at_open() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("data");
    let store = EmbeddedStore::open_with_test_key(&dir).unwrap();
    write(&store, key("k1", "g1", None), None).await;
    store.close();
    drop(store);
    let copy_of = |to: &std::path::Path| {
        std::fs::create_dir_all(to).unwrap();
        for entry in walk(&dir) {
            let target = to.join(entry.strip_prefix(&dir).unwrap());
            std::fs::create_dir_all(target.parent().unwrap()).unwrap();
            std::fs::copy(&entry, target).unwrap();
        }
    };
    // A copy begun and never finished (here: an empty directory).
    std::fs::create_dir_all(root.path().join("data.rewrite")).unwrap();
    let store = EmbeddedStore::open_with_test_key(&dir).unwrap();
    assert!(store.key("hotel", "k1").unwrap().is_some());
    store.close();
    drop(store);
    assert!(!root.path().join("data.rewrite").exists());
    // Stopped between the renames: the old one aside, the copy complete.
    copy_of(&root.path().join("data.rewrite"));
    std::fs::rename(&dir, root.path().join("data.old")).unwrap();
    let store = EmbeddedStore::open_with_test_key(&dir).unwrap();
    assert!(store.key("hotel", "k1").unwrap().is_some());
    assert!(!root.path().join("data.old").exists());
    assert!(!root.path().join("data.rewrite").exists());
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .flat_map(|e| {
            let path = e.unwrap().path();
            if path.is_dir() {
                walk(&path)
            } else {
                vec![path]
            }
        })
        .collect()
}

/// An audit record of `property` made at `seconds`, its id given by the
/// store as it is written.
fn audit(property: &str, action: &str, seconds: i64) -> keysmith_core::audit::AuditRecord {
    keysmith_core::audit::AuditRecord::new(
        &keysmith_core::audit::AuditOrigin {
            actor: "tester".into(),
            peer: None,
            reads_secrets: false,
        },
        action,
        property,
        Timestamp::from_unix_seconds(seconds),
    )
}

async fn write_audit(store: &EmbeddedStore, records: Vec<keysmith_core::audit::AuditRecord>) {
    store
        .commit(WriteSet {
            audit: records,
            ..Default::default()
        })
        .await
        .unwrap();
}

fn actions(
    store: &EmbeddedStore,
    property: &str,
    after: Option<&str>,
    limit: usize,
) -> Vec<String> {
    store
        .audit_page(property, after, limit)
        .unwrap()
        .into_iter()
        .map(|r| r.action)
        .collect()
}

fn journal_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir.join(crate::journal::DIR))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

/// The audit log lives in the journal: records come back by property in
/// the order written, page after page, across a reopen, and none is a
/// sled record.
#[tokio::test]
async fn audit_records_are_journaled_and_paged_by_property_across_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = EmbeddedStore::open_with_test_key(dir.path()).unwrap();
        for i in 0..5 {
            write_audit(
                &store,
                vec![audit("hotel", &format!("a{i}"), i), audit("other", "x", i)],
            )
            .await;
        }
        assert_eq!(actions(&store, "hotel", None, 3), ["a0", "a1", "a2"]);
        store.close();
    }
    let store = EmbeddedStore::open_with_test_key(dir.path()).unwrap();
    let first = store.audit_page("hotel", None, 2).unwrap();
    assert_eq!(
        actions(&store, "hotel", Some(&first[1].id), 10),
        ["a2", "a3", "a4"]
    );
    assert_eq!(actions(&store, "other", None, 10).len(), 5);
    assert!(store
        .tree()
        .unwrap()
        .scan_prefix([crate::layout::AUDIT])
        .next()
        .is_none());
    assert!(!journal_files(dir.path()).is_empty());
}

/// A frame written to the journal whose sled batch never became durable
/// (a crash between the two), and a torn frame after it, are cut off when
/// the store opens: only what was committed is read.
#[tokio::test]
async fn a_journal_tail_that_sled_never_committed_is_cut_off_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open_with_test_key(dir.path()).unwrap();
    write_audit(&store, vec![audit("hotel", "committed", 1)]).await;
    store.close();
    drop(store);
    let segment = journal_files(dir.path()).pop().unwrap();
    let committed_len = std::fs::metadata(&segment).unwrap().len();
    {
        // A whole frame the journal would have written, then a torn one.
        let db = crate::open_db(dir.path(), test_memory()).unwrap();
        let main = db.open_tree(crate::MAIN_TREE).unwrap();
        let sealer = crate::encryption::open_sealer(
            &db,
            &main,
            crate::sealing::KeyRing::new(crate::sealing::KeyEncryptionKey::insecure_for_tests()),
        )
        .unwrap();
        let end = crate::committer::journal_end(&main).unwrap();
        let journal = crate::journal::Journal::open(dir.path(), end, 0).unwrap();
        let mut late = audit("hotel", "never-committed", 2);
        late.id = ulid::Ulid::new().to_string();
        journal.append(&sealer, &[late]).unwrap();
        drop(journal);
        use std::io::Write;
        std::fs::OpenOptions::new()
            .append(true)
            .open(&segment)
            .unwrap()
            .write_all(&[0, 0, 1, 0, 7, 7])
            .unwrap();
        assert!(std::fs::metadata(&segment).unwrap().len() > committed_len);
    }
    let store = EmbeddedStore::open_with_test_key(dir.path()).unwrap();
    assert_eq!(actions(&store, "hotel", None, 10), ["committed"]);
    assert_eq!(std::fs::metadata(&segment).unwrap().len(), committed_len);
    // Appending goes on from the committed end.
    write_audit(&store, vec![audit("hotel", "next", 3)]).await;
    store.close();
    drop(store);
    let store = EmbeddedStore::open_with_test_key(dir.path()).unwrap();
    assert_eq!(actions(&store, "hotel", None, 10), ["committed", "next"]);
}

/// Retention hides exactly the records before its time, at most a batch
/// at a time, and deletes the segments that hold nothing else; the mark
/// survives a reopen.
#[tokio::test]
async fn audit_retention_purges_records_and_drops_whole_old_segments() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open_with_test_key(dir.path()).unwrap();
    // One frame past a segment's size, so that the next one starts a new
    // segment.
    let old: Vec<_> = (0..40_000).map(|_| audit("hotel", "old", 100)).collect();
    write_audit(&store, old).await;
    write_audit(&store, vec![audit("hotel", "new", 300)]).await;
    assert_eq!(journal_files(dir.path()).len(), 2);
    let before = Timestamp::from_unix_seconds(200);
    assert_eq!(store.purge_audit(before, 30_000).await.unwrap(), 30_000);
    assert_eq!(
        journal_files(dir.path()).len(),
        2,
        "the segment still holds records"
    );
    assert_eq!(actions(&store, "hotel", None, 1), ["old"]);
    assert_eq!(store.purge_audit(before, 30_000).await.unwrap(), 10_000);
    assert_eq!(store.purge_audit(before, 30_000).await.unwrap(), 0);
    assert_eq!(
        journal_files(dir.path()).len(),
        1,
        "the old segment is gone"
    );
    assert_eq!(actions(&store, "hotel", None, 10), ["new"]);
    store.close();
    drop(store);
    let store = EmbeddedStore::open_with_test_key(dir.path()).unwrap();
    assert_eq!(actions(&store, "hotel", None, 10), ["new"]);
}

/// A store of layout 6 keeps its audit records in sled: opening it moves
/// them into the journal, in id order, and out of the tree.
#[tokio::test]
async fn a_store_of_layout_6_moves_its_audit_records_into_the_journal() {
    use crate::{codec, layout};
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<String> = (0..3)
        .map(|i| ulid::Ulid::from_parts(1_000 + i, 0).to_string())
        .collect();
    {
        let store = EmbeddedStore::open_with_test_key(dir.path()).unwrap();
        let main = store.tree().unwrap();
        // Written as layout 6 did: sealed, under `U`, property then id.
        for (i, id) in ids.iter().enumerate().rev() {
            let mut record = audit("hotel", &format!("a{i}"), i as i64);
            record.id = id.clone();
            let at = codec::path(layout::AUDIT, &[b"hotel", id.as_bytes()]);
            let sealed = store
                .sealer
                .seal(&at, &codec::encode(&record).unwrap())
                .unwrap();
            main.insert(at, sealed).unwrap();
        }
        main.insert(layout::layout_marker(), [6u8]).unwrap();
        main.flush().unwrap();
        store.close();
    }
    let store = EmbeddedStore::open_with_test_key(dir.path()).unwrap();
    assert_eq!(actions(&store, "hotel", None, 10), ["a0", "a1", "a2"]);
    assert_eq!(actions(&store, "hotel", Some(&ids[0]), 10), ["a1", "a2"]);
    let main = store.tree().unwrap();
    assert!(main.scan_prefix([layout::AUDIT]).next().is_none());
    assert_eq!(
        main.get(layout::layout_marker()).unwrap().as_deref(),
        Some(&[layout::LAYOUT][..])
    );
}

/// A data key rotation seals the journal's frames again too, and the old
/// key's bytes leave its files; the records stay readable after the old
/// key is forgotten.
#[tokio::test]
async fn a_data_key_rotation_seals_the_journal_again() {
    use crate::sealing::Sealer;
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open_with_test_key(dir.path()).unwrap();
    write_audit(&store, vec![audit("hotel", "before", 1)]).await;
    let first = store.encryption_status().current_data_key;
    let second = store.rotate_data_key().await.unwrap();
    store.resealed().await;
    assert_eq!(store.encryption_status().data_keys, [second]);
    write_audit(&store, vec![audit("hotel", "after", 2)]).await;
    assert_eq!(actions(&store, "hotel", None, 10), ["before", "after"]);
    for file in journal_files(dir.path()) {
        let bytes = std::fs::read(file).unwrap();
        // Each frame's sealed part starts after its 36-byte header.
        let mut at = 0;
        while at < bytes.len() {
            let len = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            let sealed = &bytes[at + 36..at + 4 + len];
            assert_eq!(Sealer::key_of(sealed), Some(second), "not {first}");
            at += 4 + len;
        }
    }
    store.close();
    drop(store);
    let store = EmbeddedStore::open_with_test_key(dir.path()).unwrap();
    assert_eq!(actions(&store, "hotel", None, 10), ["before", "after"]);
}

/// What the key records name: (first answers, change records). No
/// reference has an entry of its own (layout 7's `Q` and `W`).
fn named_by_key_records(store: &EmbeddedStore) -> (usize, usize) {
    use crate::{layout, stored_key};
    let tree = store.tree().unwrap();
    for tag in [layout::ANSWER_REFERENCE, layout::CHANGE_REFERENCE] {
        assert!(tree.scan_prefix([tag]).next().is_none(), "a {tag} entry");
    }
    let mut named = (0, 0);
    for tag in [layout::LIVE_KEY, layout::REVOKED_KEY] {
        for entry in tree.scan_prefix([tag]) {
            let (k, v) = entry.unwrap();
            let stored = stored_key::open(&store.sealer, &k, &v).unwrap();
            named.0 += stored.answered.len();
            named.1 += usize::from(stored.logged_by.is_some());
        }
    }
    named
}

fn issued_with_request(key: &AccessKey, request_id: &str) -> WriteSet {
    use keysmith_core::store::{IdempotencyRecord, StoredAnswer};
    WriteSet {
        keys: vec![(key.clone(), None)],
        idempotency: vec![IdempotencyRecord {
            property_id: key.property_id.clone(),
            request_id: request_id.into(),
            method: "Issue".into(),
            fingerprint: [7; 32],
            answer: StoredAnswer::Key(Box::new(key.clone())),
            created_at: Timestamp::from_unix_seconds(5),
        }],
        ..Default::default()
    }
}

/// The first answer of `request_id`, a key.
fn answer(store: &EmbeddedStore, request_id: &str) -> AccessKey {
    use keysmith_core::store::{IdempotencyRecord, StoredAnswer};
    match store.idempotency("hotel", request_id).unwrap().unwrap() {
        IdempotencyRecord {
            answer: StoredAnswer::Key(key),
            method,
            fingerprint,
            ..
        } => {
            assert_eq!((method.as_str(), fingerprint), ("Issue", [7; 32]));
            *key
        }
        other => panic!("{other:?}"),
    }
}

fn revoked_at(key: &AccessKey, seconds: i64) -> AccessKey {
    let mut revoked = key.clone();
    revoked.stored_state = KeyState::Revoked;
    revoked.updated_at = Timestamp::from_unix_seconds(seconds);
    revoked
}

/// The first answer of a request_id that is the key the same commit stores
/// names the key instead of copying it, and the key's record names the
/// request_id; the change that replaces that version makes the record
/// whole again with the version it answered, so a retry gets its first
/// answer unchanged.
#[tokio::test]
async fn an_answer_that_is_the_stored_key_is_kept_by_reference_until_the_key_changes() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open_with_test_key(dir.path()).unwrap();
    let issued = key("k1", "g1", None);
    store
        .commit(issued_with_request(&issued, "r1"))
        .await
        .unwrap();
    let stored_len = |store: &EmbeddedStore| {
        store
            .tree()
            .unwrap()
            .get(crate::idempotency::record_path("hotel", "r1"))
            .unwrap()
            .map(|v| v.len())
    };
    assert_eq!(named_by_key_records(&store).0, 1);
    let by_reference = stored_len(&store).unwrap();
    assert_eq!(answer(&store, "r1"), issued);

    // A write that leaves the key as it is keeps what its record names,
    // and names an answer of its own.
    let mut unchanged = issued_with_request(&issued, "r3");
    unchanged.keys = vec![(issued.clone(), Some(issued.clone()))];
    store.commit(unchanged).await.unwrap();
    assert_eq!(named_by_key_records(&store), (2, 1));

    write(&store, revoked_at(&issued, 9), Some(issued.clone())).await;
    assert_eq!(named_by_key_records(&store), (0, 1));
    assert!(stored_len(&store).unwrap() > by_reference, "whole again");
    assert_eq!(answer(&store, "r3"), issued);
    let logged = store.changes_after("hotel", 0, 10).unwrap();
    assert_eq!(logged[0].key.key(), &issued);
    assert_eq!(
        answer(&store, "r1"),
        issued,
        "the first answer, not the key now"
    );
    store.close();
    drop(store);
    let store = EmbeddedStore::open_with_test_key(dir.path()).unwrap();
    assert_eq!(answer(&store, "r1"), issued);
}

/// Expiry takes a record by reference alone, and the key's record still
/// names its request_id: when the request_id is used again for another
/// key, a change of the first key leaves the new record as it is.
#[tokio::test]
async fn a_request_id_used_again_after_expiry_keeps_its_new_answer() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open_with_test_key(dir.path()).unwrap();
    let first = key("k1", "g1", None);
    store
        .commit(issued_with_request(&first, "r1"))
        .await
        .unwrap();
    let expired = store
        .expire_idempotency(Timestamp::from_unix_seconds(6))
        .await
        .unwrap();
    assert_eq!(expired, 1);
    assert!(store.idempotency("hotel", "r1").unwrap().is_none());
    assert_eq!(named_by_key_records(&store).0, 1, "k1 still names r1");
    let second = key("k2", "g2", None);
    store
        .commit(issued_with_request(&second, "r1"))
        .await
        .unwrap();
    write(&store, revoked_at(&first, 9), Some(first.clone())).await;
    assert_eq!(answer(&store, "r1"), second);
    write(&store, revoked_at(&second, 9), Some(second.clone())).await;
    assert_eq!(answer(&store, "r1"), second);
}

/// A change record names its key's version while the key stays as the
/// change stored it; a later change, a second change in the same batch, or
/// the key's purge leaves every record holding the version it logged.
#[tokio::test]
async fn change_records_show_the_version_they_logged_after_the_key_changes() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open_with_test_key(dir.path()).unwrap();
    let states = |store: &EmbeddedStore| -> Vec<(u64, KeyState)> {
        store
            .changes_after("hotel", 0, 100)
            .unwrap()
            .into_iter()
            .map(|c| (c.sequence, c.key.stored_state))
            .collect()
    };
    let references = |store: &EmbeddedStore| named_by_key_records(store).1;
    let issued = key("k1", "g1", None);
    write(&store, issued.clone(), None).await;
    assert_eq!(references(&store), 1);
    let mut revoking = issued.clone();
    revoking.stored_state = KeyState::Revoking;
    revoking.updated_at = Timestamp::from_unix_seconds(1);
    write(&store, revoking.clone(), Some(issued.clone())).await;
    assert_eq!(
        references(&store),
        1,
        "only the latest change names the key"
    );
    // Two changes of one key in one batch (queued without waiting).
    let mut revoked = revoking.clone();
    revoked.stored_state = KeyState::Revoked;
    revoked.updated_at = Timestamp::from_unix_seconds(2);
    let mut again = revoked.clone();
    again
        .warnings
        .push(keysmith_core::key::Warning::new("W", "m"));
    again.updated_at = Timestamp::from_unix_seconds(3);
    store
        .enqueue(WriteSet {
            keys: vec![(revoked.clone(), Some(revoking.clone()))],
            ..Default::default()
        })
        .unwrap();
    store
        .commit(WriteSet {
            keys: vec![(again.clone(), Some(revoked.clone()))],
            ..Default::default()
        })
        .await
        .unwrap();
    let expected = vec![
        (1, KeyState::Active),
        (2, KeyState::Revoking),
        (3, KeyState::Revoked),
        (4, KeyState::Revoked),
    ];
    assert_eq!(states(&store), expected);
    assert_eq!(references(&store), 1);
    let last = store.changes_after("hotel", 3, 1).unwrap();
    assert_eq!(last[0].key.key(), &again);
    // Purged with every entry it has: the log keeps the version it logged.
    store
        .commit(WriteSet {
            purged: vec![again.clone()],
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(store.key("hotel", "k1").unwrap().is_none());
    assert_eq!(references(&store), 0);
    assert_eq!(states(&store), expected);
    assert_eq!(
        store.changes_after("hotel", 3, 1).unwrap()[0].key.key(),
        &again
    );
    // Retention takes a record by reference alone; the key's record still
    // names its sequence, which is never given again.
    let second = key("k2", "g2", None);
    write(&store, second.clone(), None).await;
    assert_eq!(references(&store), 1);
    store
        .purge_changes(Timestamp::from_unix_seconds(i64::MAX / 2_000_000), 100)
        .await
        .unwrap();
    assert_eq!(states(&store), []);
    write(&store, revoked_at(&second, 9), Some(second.clone())).await;
    assert_eq!(states(&store), [(6, KeyState::Revoked)]);
}

/// A store of layout 7 keeps the references to a key's version as entries
/// of their own (`Q`, `W`): opening it moves them into the key records, so
/// that a retry and a resumed watch still get what they got before, once
/// the key changes too.
#[tokio::test]
async fn a_store_of_layout_7_moves_its_references_into_the_key_records() {
    use crate::{codec, layout, stored_key};
    let dir = tempfile::tempdir().unwrap();
    let first = key("k1", "g1", None);
    let second = key("k2", "g2", None);
    {
        let store = EmbeddedStore::open_with_test_key(dir.path()).unwrap();
        store
            .commit(issued_with_request(&first, "r1"))
            .await
            .unwrap();
        store
            .commit(issued_with_request(&second, "r2"))
            .await
            .unwrap();
        store.close();
        let sealer = store.sealer.clone();
        drop(store);
        // Written back as layout 7 kept it: the key records bare, the
        // references as entries (the records that name a key are the same
        // in both layouts).
        let db = crate::open_db(dir.path(), test_memory()).unwrap();
        let main = db.open_tree(crate::MAIN_TREE).unwrap();
        for entry in main.scan_prefix([layout::LIVE_KEY]) {
            let (at, v) = entry.unwrap();
            let stored = stored_key::open(&sealer, &at, &v).unwrap();
            let (p, id) = (
                stored.key.property_id.as_bytes(),
                stored.key.key_id.as_bytes(),
            );
            for request_id in &stored.answered {
                let reference =
                    codec::path(layout::ANSWER_REFERENCE, &[p, id, request_id.as_bytes()]);
                main.insert(reference, []).unwrap();
            }
            if let Some(sequence) = stored.logged_by {
                let reference =
                    codec::path(layout::CHANGE_REFERENCE, &[p, id, &sequence.to_be_bytes()]);
                main.insert(reference, []).unwrap();
            }
            let bare = sealer
                .seal(&at, &codec::encode(&stored.key).unwrap())
                .unwrap();
            main.insert(at, bare).unwrap();
        }
        main.insert(layout::layout_marker(), [7u8]).unwrap();
        main.flush().unwrap();
    }
    let store = EmbeddedStore::open_with_test_key(dir.path()).unwrap();
    assert_eq!(answer(&store, "r1"), first);
    assert_eq!(store.key("hotel", "k1").unwrap().unwrap(), first);
    let revoked = revoked_at(&first, 9);
    write(&store, revoked.clone(), Some(first.clone())).await;
    assert_eq!(answer(&store, "r1"), first, "the first answer, whole");
    assert_eq!(answer(&store, "r2"), second);
    let logged: Vec<(u64, AccessKey)> = store
        .changes_after("hotel", 0, 10)
        .unwrap()
        .into_iter()
        .map(|c| (c.sequence, c.key.key().clone()))
        .collect();
    assert_eq!(logged, [(1, first), (2, second), (3, revoked)]);
    // k2's record still names r2 and change 2; k1's names change 3.
    assert_eq!(named_by_key_records(&store), (1, 2));
    assert_current_layout(&store);
}

/// The bytes of the engine's journal files under `dir`.
fn engine_journal_bytes(dir: &std::path::Path) -> u64 {
    crate::disk_usage(&dir.join(crate::kv::DIR).join("journals"))
}

/// A store that stops writes what its journal holds into the engine's
/// tables, so that the next start has nothing to replay.
#[tokio::test]
async fn a_store_that_stops_leaves_no_journal_to_replay() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open_with_test_key(dir.path()).unwrap();
    for i in 0..200 {
        write(&store, key(&format!("k{i}"), "g1", None), None).await;
    }
    let written = engine_journal_bytes(dir.path());
    assert!(written > 50_000, "the test can fail: {written} bytes");
    store.close();
    let left = engine_journal_bytes(dir.path());
    assert!(
        left < written / 10,
        "the journal still holds {left} of {written} bytes after the stop"
    );
    drop(store);
    let store = EmbeddedStore::open_with_test_key(dir.path()).unwrap();
    for i in [0, 199] {
        assert!(store.key("hotel", &format!("k{i}")).unwrap().is_some());
    }
    store.close();
}

/// A data directory the previous keysmith wrote with sled (layout 8:
/// sealed records, a first answer and a change by reference, the audit
/// journal beside it) is copied into fjall when it is first opened, with
/// everything it held, and sled's files are gone.
#[tokio::test]
async fn a_store_sled_wrote_is_moved_into_fjall_whole() {
    let root = tempfile::tempdir().unwrap();
    let made = root.path().join("made");
    let old = root.path().join("old");
    let issued = key("k1", "g1", None);
    {
        let store = EmbeddedStore::open_with_test_key(&made).unwrap();
        store
            .commit(issued_with_request(&issued, "r1"))
            .await
            .unwrap();
        write_audit(&store, vec![audit("hotel", "read", 1)]).await;
        store.close();
    }
    // The same entries and journal, as sled held them.
    {
        let db = crate::open_db(&made, test_memory()).unwrap();
        let sled = crate::rewrite::open_sled(&old).unwrap();
        let main = sled.open_tree(crate::MAIN_TREE).unwrap();
        for entry in db.open_tree(crate::MAIN_TREE).unwrap().iter() {
            let (k, v) = entry.unwrap();
            main.insert(&k[..], &v[..]).unwrap();
        }
        sled.flush().unwrap();
        let journal = old.join(crate::journal::DIR);
        std::fs::create_dir(&journal).unwrap();
        for segment in journal_files(&made) {
            std::fs::copy(&segment, journal.join(segment.file_name().unwrap())).unwrap();
        }
    }
    assert!(old.join("conf").exists() && !old.join(crate::kv::DIR).exists());
    let store = EmbeddedStore::open_with_test_key(&old).unwrap();
    assert_eq!(store.key("hotel", "k1").unwrap().unwrap(), issued);
    assert_eq!(answer(&store, "r1"), issued);
    assert_eq!(store.changes_after("hotel", 0, 10).unwrap().len(), 1);
    assert_eq!(actions(&store, "hotel", None, 10), ["read"]);
    assert_current_layout(&store);
    assert!(
        !old.join("conf").exists() && !old.join("db").exists(),
        "sled's files are gone"
    );
    assert!(old.join(crate::kv::DIR).is_dir());
}

/// The store says it has this build's layout.
fn assert_current_layout(store: &EmbeddedStore) {
    let marker = store
        .tree()
        .unwrap()
        .get(crate::layout::layout_marker())
        .unwrap();
    assert_eq!(marker.as_deref(), Some(&[crate::layout::LAYOUT][..]));
}

/// Purged keys leave no tombstones in the engine's tables once the
/// sweeper asks for their space back (`Store::reclaim_space`): fjall keeps
/// a tombstone until a compaction reaches its last level, which a store
/// this size never does by itself, so a store that deletes as much as it
/// writes would grow for good. What was not purged stays.
#[tokio::test]
async fn the_space_of_purged_keys_is_given_back() {
    let dir = tempfile::tempdir().unwrap();
    // Revoked (ended) keys, as retention purges them.
    let keys: Vec<AccessKey> = (0..3000)
        .map(|i| revoked_at(&key(&format!("k{i:04}"), "g1", None), 1))
        .collect();
    {
        let store = EmbeddedStore::open_with_test_key(dir.path()).unwrap();
        for chunk in keys.chunks(100) {
            let keys = chunk.iter().map(|k| (k.clone(), None)).collect();
            store
                .commit(WriteSet {
                    keys,
                    ..Default::default()
                })
                .await
                .unwrap();
        }
        // All but the last are purged.
        for chunk in keys[..keys.len() - 1].chunks(100) {
            store
                .commit(WriteSet {
                    purged: chunk.to_vec(),
                    ..Default::default()
                })
                .await
                .unwrap();
        }
        assert!(store.key("hotel", "k0000").unwrap().is_none());
        // A stop writes the memtables to tables.
        store.close();
    }
    let store = EmbeddedStore::open_with_test_key(dir.path()).unwrap();
    assert!(
        store.key("hotel", "k0000").unwrap().is_none(),
        "after reopen"
    );
    let before = store.tree().unwrap().table_counts();
    assert!(
        before.tombstones >= super::RECLAIM_AT_TOMBSTONES,
        "the test can fail: {before:?}"
    );
    let reclaimed = store.reclaim_space().await.unwrap();
    let after = store.tree().unwrap().table_counts();
    assert_eq!(after.tombstones, 0, "tombstones left: {after:?}");
    assert!(reclaimed > 0, "the directory did not shrink");
    assert!(store.key("hotel", "k0000").unwrap().is_none());
    assert!(store.key("hotel", "k2999").unwrap().is_some());
    // Nothing more to do: a second call leaves the tables alone.
    assert_eq!(store.reclaim_space().await.unwrap(), 0);
    store.close();
}
