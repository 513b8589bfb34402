use std::collections::BTreeMap;

use keysmith_core::{
    key::{Behaviour, Holder, KeyEntrance, KeyState},
    store::{KeyIndex, KeyScan, Store, WriteSet},
    AccessKey, Role, Timestamp, Window,
};

use super::SledStore;

fn key(id: &str, holder: &str, rk: Option<&str>) -> AccessKey {
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

fn scan(store: &SledStore, index: KeyIndex, live_only: bool, after: Option<&str>) -> Vec<String> {
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
        .map(|k| k.key_id)
        .collect()
}

#[tokio::test]
async fn indexes_follow_revocation_and_resume_after_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let mut writes = WriteSet::default();
    for (id, holder, rk) in [
        ("k1", "g1", Some("s1")),
        ("k2", "g2", None),
        ("k3", "g1", Some("s1")),
    ] {
        writes.keys.push((key(id, holder, rk), None));
    }
    store.apply(writes).unwrap();
    store.sync().await.unwrap();

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
        scan(&store, KeyIndex::Reservation("s1".into()), true, None),
        ["k1", "k3"]
    );
    assert_eq!(
        scan(&store, KeyIndex::Entrance("room-101".into()), true, None),
        ["k1", "k2", "k3"]
    );

    let old = store.key("hotel", "k1").unwrap().unwrap();
    let mut revoked = old.clone();
    revoked.stored_state = KeyState::Revoked;
    store
        .apply(WriteSet {
            keys: vec![(revoked, Some(old))],
            ..Default::default()
        })
        .unwrap();
    assert_eq!(scan(&store, KeyIndex::Property, true, None), ["k2", "k3"]);
    assert_eq!(
        scan(&store, KeyIndex::Property, false, None),
        ["k1", "k2", "k3"]
    );
    assert_eq!(
        scan(&store, KeyIndex::Holder("g1".into()), true, None),
        ["k3"]
    );
}

#[tokio::test]
async fn everything_synced_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SledStore::open(dir.path()).unwrap();
        store
            .apply(WriteSet {
                keys: vec![(key("k1", "g1", None), None)],
                ..Default::default()
            })
            .unwrap();
        store.sync().await.unwrap();
        store.close();
    }
    let store = SledStore::open(dir.path()).unwrap();
    assert_eq!(store.key("hotel", "k1").unwrap().unwrap().holder.id, "g1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_concurrent_syncs_all_complete() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(SledStore::open(dir.path()).unwrap());
    let mut tasks = Vec::new();
    for i in 0..500 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let id = format!("k{i:04}");
            store
                .apply(WriteSet {
                    keys: vec![(key(&id, "g", None), None)],
                    ..Default::default()
                })
                .unwrap();
            store.sync().await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        scan(&store, KeyIndex::Holder("g".into()), true, None).len(),
        100,
        "the scan limit"
    );
}
