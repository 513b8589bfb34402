//! The driver over a store in memory: what it reads of a store written
//! before each lock had its own version, and two drivers on one store (as
//! two keysmith processes on one database) deciding from each other's
//! writes.
use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use keysmith_driver::{
    driver::{EntranceTarget, IssueArgs},
    key::{Behaviour, CredentialData, Holder, ReservationRef},
    section::{LocalSection, LocalSections},
    state::{Change, DriverState, StateSection},
    CredentialMode, Driver, Result, Role, Secret, Timestamp, Window,
};

use crate::{
    config::{EntranceConfig, EntranceKind, ModeName, OfflineLockConfig, PropertyConfig},
    model::{CredentialPayload, LockState, Sequence},
    state::{self, EncoderState},
    OfflineLock,
};

/// A driver state in memory; its sections exclude across every driver
/// given the same `Arc`, as a shared store's do across processes.
#[derive(Default)]
pub(crate) struct Memory(
    pub(crate) Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
    pub(crate) LocalSections,
);

#[async_trait::async_trait]
impl DriverState for Memory {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.0.lock().unwrap().get(key).cloned())
    }
    fn apply(&self, changes: Vec<Change>) -> Result<()> {
        let mut map = self.0.lock().unwrap();
        for (k, v) in changes {
            match v {
                Some(v) => map.insert(k, v),
                None => map.remove(&k),
            };
        }
        Ok(())
    }
    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
    async fn sync(&self) -> Result<()> {
        Ok(())
    }
    fn sections(&self, names: &[Vec<u8>]) -> Result<Box<dyn StateSection + '_>> {
        Ok(Box::new(LocalSection::open(self, &self.1, names.to_vec())))
    }
}

const T0: i64 = 1_900_000_000;

fn config() -> OfflineLockConfig {
    let room = |id: &str| EntranceConfig {
        id: id.into(),
        name: None,
        kind: EntranceKind::Room,
        spaces: Vec::new(),
        modes: vec![ModeName::Card],
        requires_reservation_for_guests: false,
    };
    OfflineLockConfig {
        site_secret: Secret::new("test site secret".into()),
        properties: vec![PropertyConfig {
            property_id: "hotel".into(),
            look_ahead: 5,
            audit_capacity: 10,
            blocked_cards_capacity: 10,
            invalid_credentials_advance: false,
            entrances: vec![room("room-101"), room("room-102")],
        }],
    }
}

fn driver(store: &Arc<Memory>) -> OfflineLock {
    OfflineLock::new(config(), store.clone()).unwrap()
}

/// A guest card for `rooms` of reservation `stay` (epoch 1), each room
/// with `behaviour`.
fn guest(key_id: &str, rooms: &[&str], stay: &str, behaviour: Behaviour) -> IssueArgs {
    IssueArgs {
        key_id: key_id.into(),
        property_id: "hotel".into(),
        holder: Holder {
            id: key_id.into(),
            name: None,
        },
        role: Role::Guest,
        window: Window {
            starts_at: Timestamp::from_unix_seconds(T0),
            ends_at: Timestamp::from_unix_seconds(T0 + 86_400),
        },
        reservation: Some(ReservationRef {
            key: stay.into(),
            epoch: 1,
        }),
        entrances: rooms
            .iter()
            .map(|r| EntranceTarget {
                entrance_id: (*r).into(),
                behaviour,
            })
            .collect(),
        modes: vec![CredentialMode::Card],
        pin: None,
    }
}

/// What the card issued carries.
async fn issue(lock: &OfflineLock, args: IssueArgs) -> CredentialPayload {
    let reply = lock.issue(args).await.unwrap();
    match &reply.credentials[0].data {
        CredentialData::Card(sealed) => lock.codec.open(sealed.expose()).unwrap(),
        other => panic!("not a card: {other:?}"),
    }
}

fn sequences(card: &CredentialPayload) -> Vec<(String, Option<Sequence>)> {
    card.locks
        .iter()
        .map(|g| (g.lock_id.clone(), g.sequence))
        .collect()
}

/// A store written when each property had one version (`ver\0{property}`)
/// is read lock by lock: the encoder's counters, the lock's state, the
/// values a reservation got and its copy counter are all as they were.
#[tokio::test]
async fn a_store_with_one_version_per_property_is_read_as_it_was() {
    let store = Arc::new(Memory::default());
    let encoder = EncoderState {
        guest_last: 41,
        ..EncoderState::default()
    };
    let door = LockState {
        guest_sequence: 40,
        blocked: true,
        ..LockState::default()
    };
    store
        .apply(vec![
            (b"ver\0hotel".to_vec(), Some(state::encode(&7u64).unwrap())),
            (
                state::encoder_key("hotel", "room-101"),
                Some(state::encode(&encoder).unwrap()),
            ),
            (
                state::lock_key("hotel", "room-101"),
                Some(state::encode(&door).unwrap()),
            ),
            (
                state::reservation_key(&("hotel".into(), "stay-old".into(), 1, "room-101".into())),
                Some(state::encode::<Sequence>(&41).unwrap()),
            ),
            (
                state::copies_key("hotel", "stay-old", 1),
                Some(state::encode(&2u16).unwrap()),
            ),
        ])
        .unwrap();

    let lock = driver(&store);
    assert_eq!(lock.lock_state("hotel", "room-101").unwrap().state, door);
    let joiner = issue(
        &lock,
        guest("k-join", &["room-101"], "stay-old", Behaviour::Join),
    )
    .await;
    assert_eq!(sequences(&joiner), [("room-101".into(), Some(41))]);
    assert_eq!(joiner.copy, 3, "the third copy of the stay");
    let next = issue(
        &lock,
        guest("k-new", &["room-101"], "stay-new", Behaviour::Override),
    )
    .await;
    assert_eq!(
        sequences(&next),
        [("room-101".into(), Some(42))],
        "the encoder's counter goes on from where it was"
    );
}

/// Two drivers on one store, as two keysmith processes on one database:
/// each reads again what the other changed at a lock before deciding, and
/// a reservation's copy counter is the store's, whichever lock it is
/// issued at.
#[tokio::test]
async fn two_drivers_on_one_store_decide_from_each_others_writes() {
    let store = Arc::new(Memory::default());
    let (a, b) = (driver(&store), driver(&store));
    // Both have read every lock (at their start); each now changes it.
    let first = issue(
        &a,
        guest("k1", &["room-101"], "stay-1", Behaviour::Override),
    )
    .await;
    assert_eq!(sequences(&first), [("room-101".into(), Some(1))]);
    let second = issue(
        &b,
        guest("k2", &["room-101"], "stay-2", Behaviour::Override),
    )
    .await;
    assert_eq!(
        sequences(&second),
        [("room-101".into(), Some(2))],
        "b read the value a handed out"
    );
    let third = issue(
        &a,
        guest("k3", &["room-101"], "stay-3", Behaviour::Override),
    )
    .await;
    assert_eq!(sequences(&third), [("room-101".into(), Some(3))]);

    // One stay across both rooms, its copies issued by both drivers.
    let both = issue(
        &b,
        guest(
            "k4",
            &["room-101", "room-102"],
            "stay-4",
            Behaviour::Override,
        ),
    )
    .await;
    assert_eq!(
        sequences(&both),
        [("room-101".into(), Some(4)), ("room-102".into(), Some(1))]
    );
    assert_eq!(both.copy, 1);
    let joiner = issue(&a, guest("k5", &["room-102"], "stay-4", Behaviour::Join)).await;
    assert_eq!(sequences(&joiner), [("room-102".into(), Some(1))]);
    assert_eq!(joiner.copy, 2, "a counts on from b's copy");
    let again = issue(&b, guest("k6", &["room-101"], "stay-4", Behaviour::Join)).await;
    assert_eq!(sequences(&again), [("room-101".into(), Some(4))]);
    assert_eq!(again.copy, 3, "b counts on from a's copy");

    // A door's state changed through one is what the other shows.
    a.set_flags(
        "hotel",
        "room-102",
        crate::FlagChange {
            blocked: Some(true),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(b.lock_state("hotel", "room-102").unwrap().state.blocked);
}
