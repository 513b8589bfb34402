//! The simulator's state: each lock's own state, the encoder's counters per
//! lock, the sequence value each reservation got at each lock, and the PINs
//! programmed at keypads. Kept in memory and written through to the store;
//! the copy in memory is read again whenever the property's stored version
//! is not the one it holds (another keysmith process on the same store
//! changed it).
use std::collections::{BTreeMap, HashMap};

use keysmith_driver::{
    state::{Change, StateSection},
    Error, Result, Secret,
};
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
    /// The version of each property's stored state this copy holds; a
    /// property not here is read again at its next section.
    pub versions: HashMap<String, u64>,
}

/// The section every change of a property's simulated state is made in:
/// one property's locks, PINs and reservations are decided together.
pub fn section_name(property: &str) -> Vec<u8> {
    format!("property\0{property}").into_bytes()
}
/// Where the version of a property's stored state is kept: one more with
/// each section that changes it, so that a process whose copy is of an
/// older version reads it again.
pub fn version_key(property: &str) -> Vec<u8> {
    format!("ver\0{property}").into_bytes()
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

/// The parts of `key` after `prefix`, split at NUL.
fn parts_after(key: &[u8], prefix: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(&key[prefix.len()..])
        .split('\0')
        .map(str::to_owned)
        .collect()
}

impl Sim {
    /// The simulator of the locks `configs` describes, before anything is
    /// read: each property is read at its first section.
    pub fn new(configs: Vec<LockConfig>) -> Self {
        let locks = configs
            .into_iter()
            .map(|config| {
                let at = (config.property_code.clone(), config.lock_id.clone());
                let lock = Lock {
                    config,
                    state: LockState::default(),
                    encoder: EncoderState::default(),
                    pins: PinTable::default(),
                };
                (at, lock)
            })
            .collect();
        Self {
            locks,
            reservation_values: HashMap::new(),
            copies: HashMap::new(),
            versions: HashMap::new(),
        }
    }

    /// Reads everything stored of `property` (its locks' state, encoder
    /// counters and PINs, its reservations' values and copy counters) from
    /// `stored`, in place of what this copy held; returns the writes that
    /// move PIN entries stored the earlier ways into today's records.
    pub fn reload(&mut self, stored: &dyn StateSection, property: &str) -> Result<Vec<Change>> {
        let p = property;
        for ((lp, _), lock) in self.locks.iter_mut() {
            if lp == p {
                lock.state = LockState::default();
                lock.encoder = EncoderState::default();
                lock.pins = PinTable::default();
            }
        }
        let prefix = format!("lock\0{p}\0").into_bytes();
        for (k, v) in stored.scan_prefix(&prefix)? {
            if let Some(lock) = self.lock_mut(p, &parts_after(&k, &prefix)[0]) {
                lock.state = decode(&v)?;
            }
        }
        let prefix = format!("enc\0{p}\0").into_bytes();
        for (k, v) in stored.scan_prefix(&prefix)? {
            if let Some(lock) = self.lock_mut(p, &parts_after(&k, &prefix)[0]) {
                lock.encoder = decode(&v)?;
            }
        }
        let prefix = format!("pins\0{p}\0").into_bytes();
        for (k, v) in stored.scan_prefix(&prefix)? {
            if let Some(lock) = self.lock_mut(p, &parts_after(&k, &prefix)[0]) {
                let held: HeldPins = decode(&v)?;
                for (pin, entry) in held {
                    lock.pins.restore(pin.expose().clone(), entry);
                }
            }
        }
        let upgraded = self.upgrade_pin_entries(stored, p)?;

        self.reservation_values.retain(|(rp, ..), _| rp != p);
        let prefix = format!("res\0{p}\0").into_bytes();
        for (k, v) in stored.scan_prefix(&prefix)? {
            if let [rk, epoch, lock] = &parts_after(&k, &prefix)[..] {
                let epoch = epoch.parse().unwrap_or_default();
                self.reservation_values
                    .insert((p.to_owned(), rk.clone(), epoch, lock.clone()), decode(&v)?);
            }
        }
        self.copies.retain(|(cp, ..), _| cp != p);
        let prefix = format!("copy\0{p}\0").into_bytes();
        for (k, v) in stored.scan_prefix(&prefix)? {
            if let [rk, epoch] = &parts_after(&k, &prefix)[..] {
                let epoch = epoch.parse().unwrap_or_default();
                self.copies
                    .insert((p.to_owned(), rk.clone(), epoch), decode(&v)?);
            }
        }
        Ok(upgraded)
    }

    fn lock_mut(&mut self, property: &str, lock: &str) -> Option<&mut Lock> {
        self.locks.get_mut(&(property.to_owned(), lock.to_owned()))
    }

    /// Moves PIN entries stored the earlier ways, one per PIN and key with
    /// the PIN in the path (`pin\0…\0{pin}\0{key_id}`), or one per PIN before
    /// a PIN could stand for several keys over time (`pin\0…\0{pin}`), into
    /// one record per key; returns the writes.
    fn upgrade_pin_entries(&mut self, stored: &dyn StateSection, p: &str) -> Result<Vec<Change>> {
        let prefix = format!("pin\0{p}\0").into_bytes();
        let mut writes = Vec::new();
        let mut keys = std::collections::BTreeSet::new();
        for (k, v) in stored.scan_prefix(&prefix)? {
            let (lock, pin, entry) = match &parts_after(&k, &prefix)[..] {
                [lock, pin, _key_id] => (lock.clone(), pin.clone(), decode::<PinEntry>(&v)?),
                // Its start was not kept: it counts from the beginning of time.
                [lock, pin] => {
                    let old: PinEntryV1 = decode(&v)?;
                    let entry = PinEntry {
                        key_id: old.key_id,
                        sealed: old.sealed,
                        starts_at: UnixSeconds::MIN,
                        ends_at: old.ends_at,
                    };
                    (lock.clone(), pin.clone(), entry)
                }
                _ => continue,
            };
            writes.push((k.clone(), None));
            if let Some(at) = self.lock_mut(p, &lock) {
                keys.insert((lock, entry.key_id.clone()));
                at.pins.restore(pin, entry);
            }
        }
        for (lock, key_id) in keys {
            let pins = &self.locks[&(p.to_owned(), lock.clone())].pins;
            writes.push(pins_record(pins, p, &lock, &key_id)?);
        }
        Ok(writes)
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeMap, sync::Mutex};

    use keysmith_driver::{
        section::{LocalSection, LocalSections},
        state::DriverState,
    };

    use super::*;

    #[derive(Default)]
    struct Memory(Mutex<BTreeMap<Vec<u8>, Vec<u8>>>, LocalSections);

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
        fn section(&self, name: &[u8]) -> Result<Box<dyn StateSection + '_>> {
            Ok(Box::new(LocalSection::open(self, &self.1, name.to_vec())))
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
            let mut sim = Sim::new(vec![LockConfig::room("hotel", "room-101")]);
            let mut section = store.section(&section_name("hotel")).unwrap();
            let upgraded = sim.reload(section.as_ref(), "hotel").unwrap();
            section.apply(upgraded);
            section.commit().unwrap();
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
