//! The simulator's state: each lock's own state, the encoder's counters per
//! lock, the sequence value each reservation got at each lock, and the PINs
//! programmed at keypads. Kept in memory and written through to the store.
use std::collections::{BTreeMap, HashMap};

use keysmith_driver::{state::DriverState, Error, Result, Secret};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::{
    model::{LockConfig, LockState, Sequence, UnixSeconds},
    pins::{PinEntry, PinTable},
};

const VERSION: u8 = 1;

/// What the encoder (the front desk's card writer) remembers about one lock.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct EncoderState {
    /// The last guest sequence value handed out for this lock.
    pub guest_last: Sequence,
    /// The last code handed out per staff level.
    pub staff_last: BTreeMap<String, Sequence>,
}

/// A PIN entry as stored before entries kept their start: one key per PIN.
#[derive(Deserialize)]
struct PinEntryV1 {
    key_id: String,
    sealed: Secret<String>,
    ends_at: UnixSeconds,
}

pub struct Lock {
    pub config: LockConfig,
    pub state: LockState,
    pub encoder: EncoderState,
    pub pins: PinTable,
}

/// Where a reservation stands at one lock: (property, reservation key, epoch, lock).
pub type ReservationAtLock = (String, String, u64, String);

pub struct Sim {
    pub locks: HashMap<(String, String), Lock>,
    pub reservation_values: HashMap<ReservationAtLock, Sequence>,
    /// How many credentials each reservation incarnation has had (copy numbers).
    pub copies: HashMap<(String, String, u64), u16>,
}

pub fn lock_key(property: &str, lock: &str) -> Vec<u8> {
    format!("lock\0{property}\0{lock}").into_bytes()
}
pub fn encoder_key(property: &str, lock: &str) -> Vec<u8> {
    format!("enc\0{property}\0{lock}").into_bytes()
}
/// Where the PINs one key holds at one lock are stored. The PIN is in the
/// (sealed) value, never in the path: the store seals values, not paths.
pub fn pins_key(property: &str, lock: &str, key_id: &str) -> Vec<u8> {
    format!("pins\0{property}\0{lock}\0{key_id}").into_bytes()
}

/// A put (Some) or delete (None) of driver state.
pub type Change = (Vec<u8>, Option<Vec<u8>>);

/// The PINs of a key at a lock, as stored.
type HeldPins = Vec<(Secret<String>, PinEntry)>;

/// The write that stores what `key_id` holds at the lock now (a delete when
/// it holds nothing).
pub fn pins_record(pins: &PinTable, property: &str, lock: &str, key_id: &str) -> Result<Change> {
    let held = pins.held_by(key_id);
    let value = if held.is_empty() {
        None
    } else {
        Some(encode(&held)?)
    };
    Ok((pins_key(property, lock, key_id), value))
}
pub fn reservation_key((p, rk, epoch, lock): &ReservationAtLock) -> Vec<u8> {
    format!("res\0{p}\0{rk}\0{epoch}\0{lock}").into_bytes()
}
pub fn copies_key(p: &str, rk: &str, epoch: u64) -> Vec<u8> {
    format!("copy\0{p}\0{rk}\0{epoch}").into_bytes()
}

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    let mut out = vec![VERSION];
    postcard::to_io(value, &mut out)
        .map_err(|e| Error::internal(format!("offline-lock: encoding state: {e}")))?;
    Ok(out)
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    match bytes.split_first() {
        Some((&VERSION, body)) => postcard::from_bytes(body)
            .map_err(|e| Error::internal(format!("offline-lock: decoding state: {e}"))),
        _ => Err(Error::internal(
            "offline-lock: a state record of an unknown schema version",
        )),
    }
}

/// Moves PIN entries stored the earlier ways, one per PIN and key with the
/// PIN in the path (`pin\0…\0{pin}\0{key_id}`), or one per PIN before a PIN
/// could stand for several keys over time (`pin\0…\0{pin}`), into one
/// record per key; returns the writes.
fn upgrade_pin_entries(
    store: &dyn DriverState,
    p: &str,
    l: &str,
    pins: &mut PinTable,
) -> Result<Vec<Change>> {
    let prefix = format!("pin\0{p}\0{l}\0").into_bytes();
    let mut writes = Vec::new();
    let mut keys = std::collections::BTreeSet::new();
    for (k, v) in store.scan_prefix(&prefix)? {
        let rest = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
        let (pin, entry) = match rest.split_once('\0') {
            Some((pin, _key_id)) => (pin.to_owned(), decode::<PinEntry>(&v)?),
            // Its start was not kept: it counts from the beginning of time.
            None => {
                let old: PinEntryV1 = decode(&v)?;
                let entry = PinEntry {
                    key_id: old.key_id,
                    sealed: old.sealed,
                    starts_at: UnixSeconds::MIN,
                    ends_at: old.ends_at,
                };
                (rest, entry)
            }
        };
        writes.push((k.clone(), None));
        keys.insert(entry.key_id.clone());
        pins.restore(pin, entry);
    }
    for key_id in keys {
        writes.push(pins_record(pins, p, l, &key_id)?);
    }
    Ok(writes)
}

impl Sim {
    /// Loads every lock of `configs` with what the store remembers of it.
    pub fn load(store: &dyn DriverState, configs: Vec<LockConfig>) -> Result<Self> {
        let mut locks = HashMap::new();
        for config in configs {
            let (p, l) = (config.property_code.clone(), config.lock_id.clone());
            let state = match store.get(&lock_key(&p, &l))? {
                Some(bytes) => decode(&bytes)?,
                None => LockState::default(),
            };
            let encoder = match store.get(&encoder_key(&p, &l))? {
                Some(bytes) => decode(&bytes)?,
                None => EncoderState::default(),
            };
            let mut pins = PinTable::default();
            for (_, v) in store.scan_prefix(&format!("pins\0{p}\0{l}\0").into_bytes())? {
                let held: HeldPins = decode(&v)?;
                for (pin, entry) in held {
                    pins.restore(pin.expose().clone(), entry);
                }
            }
            let upgraded = upgrade_pin_entries(store, &p, &l, &mut pins)?;
            if !upgraded.is_empty() {
                store.apply(upgraded)?;
            }
            locks.insert(
                (p, l),
                Lock {
                    config,
                    state,
                    encoder,
                    pins,
                },
            );
        }
        let mut reservation_values = HashMap::new();
        for (k, v) in store.scan_prefix(b"res\0")? {
            let text = String::from_utf8_lossy(&k[4..]).into_owned();
            let parts: Vec<&str> = text.split('\0').collect();
            if let [p, rk, epoch, lock] = parts[..] {
                let epoch = epoch.parse().unwrap_or_default();
                reservation_values.insert(
                    (p.to_owned(), rk.to_owned(), epoch, lock.to_owned()),
                    decode(&v)?,
                );
            }
        }
        let mut copies = HashMap::new();
        for (k, v) in store.scan_prefix(b"copy\0")? {
            let text = String::from_utf8_lossy(&k[5..]).into_owned();
            let parts: Vec<&str> = text.split('\0').collect();
            if let [p, rk, epoch] = parts[..] {
                let epoch = epoch.parse().unwrap_or_default();
                copies.insert((p.to_owned(), rk.to_owned(), epoch), decode(&v)?);
            }
        }
        Ok(Self {
            locks,
            reservation_values,
            copies,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeMap, sync::Mutex};

    use super::*;

    #[derive(Default)]
    struct Memory(Mutex<BTreeMap<Vec<u8>, Vec<u8>>>);

    #[async_trait::async_trait]
    impl DriverState for Memory {
        fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
            Ok(self.0.lock().unwrap().get(key).cloned())
        }
        fn apply(&self, changes: Vec<(Vec<u8>, Option<Vec<u8>>)>) -> Result<()> {
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
    }

    /// The store seals values, not paths: PINs stored with the PIN in the
    /// path (both earlier ways) move into one record per key, and load again
    /// from it.
    #[test]
    fn pins_stored_in_the_path_move_into_the_value() {
        let store = Memory::default();
        let entry = |key_id: &str| PinEntry {
            key_id: key_id.into(),
            sealed: Secret::new("sealed".into()),
            starts_at: 10,
            ends_at: 100,
        };
        let v1 = PinEntryV1 {
            key_id: "k2".into(),
            sealed: Secret::new("sealed".into()),
            ends_at: 50,
        };
        #[derive(Serialize)]
        struct V1Out<'a>(&'a str, &'a Secret<String>, UnixSeconds);
        store
            .apply(vec![
                (
                    b"pin\0hotel\0room-101\x00482913\0k1".to_vec(),
                    Some(encode(&entry("k1")).unwrap()),
                ),
                (
                    b"pin\0hotel\0room-101\x00739104".to_vec(),
                    Some(encode(&V1Out(&v1.key_id, &v1.sealed, v1.ends_at)).unwrap()),
                ),
            ])
            .unwrap();
        let at = ("hotel".to_owned(), "room-101".to_owned());
        for _ in 0..2 {
            let sim = Sim::load(&store, vec![LockConfig::room("hotel", "room-101")]).unwrap();
            let pins = &sim.locks[&at].pins;
            assert_eq!(pins.entry_of("482913", "k1").unwrap().starts_at, 10);
            assert_eq!(
                pins.entry_of("739104", "k2").unwrap().starts_at,
                UnixSeconds::MIN
            );
            let paths = store.scan_prefix(b"").unwrap();
            assert_eq!(paths.len(), 2, "one record per key");
            for (path, _) in paths {
                assert!(
                    !path.windows(6).any(|w| w == b"482913" || w == b"739104"),
                    "no PIN in a path"
                );
            }
        }
    }
}
