//! The simulator's state: each lock's own state, the encoder's counters per
//! lock, the PINs programmed at keypads, and the sequence value each
//! reservation got at each lock and its copy counters. A lock's records are
//! kept in memory and written through to the store; the copy in memory is
//! read again whenever the lock's stored version is not the one it holds
//! (another keysmith process on the same store changed it). A
//! reservation's records are read from the store whenever they are needed:
//! they are read once or twice per Issue, never scanned in bulk.
//!
//! Each lock has its own section and version, and so does each
//! reservation: Issues to different rooms of a property neither wait on
//! each other nor make each other's copies stale. What the model decides is
//! all per lock (a lock's sequence, staff codes, PINs and audit trail are
//! its own; offline locks never hear of each other), except a
//! reservation's copy numbers and the values it got at each lock, which
//! live under the reservation's section.
use std::collections::{BTreeMap, HashMap};

use keysmith_driver::{
    state::{Change, StateSection},
    Error, Result, Secret,
};
use parking_lot::{Mutex, MutexGuard};
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

/// One lock as this process holds it.
pub struct Slot {
    pub lock: Lock,
    /// The version of the lock's stored records this copy is of; None: read
    /// them at the lock's next section (never read, or a section failed
    /// part way).
    pub version: Option<u64>,
}

/// Where a reservation stands at one lock: (property, reservation key, epoch, lock).
pub type ReservationAtLock = (String, String, u64, String);

/// Every configured lock, each behind its own mutex: it is taken only by
/// the holder of the lock's section, so it is never waited on for long.
pub struct Sim {
    locks: HashMap<(String, String), Mutex<Slot>>,
}

/// The section every change of one lock's records (state, encoder, PINs)
/// is made in.
pub fn lock_section(property: &str, lock: &str) -> Vec<u8> {
    format!("lock\0{property}\0{lock}").into_bytes()
}
/// The section every change of one reservation's records (its value at
/// each lock, its copy counters) is made in.
pub fn reservation_section(property: &str, reservation_key: &str) -> Vec<u8> {
    format!("reservation\0{property}\0{reservation_key}").into_bytes()
}
/// Where the version of a lock's stored records is kept: one more with
/// each section that changes them, so that a process whose copy is of an
/// older version reads them again.
pub fn version_key(property: &str, lock: &str) -> Vec<u8> {
    format!("ver\0{property}\0{lock}").into_bytes()
}
/// The lock whose records `key` is one of (state, encoder, PINs, or PINs
/// stored the earlier ways), or None for any other record.
pub fn lock_of_record(key: &[u8]) -> Option<(String, String)> {
    let key = std::str::from_utf8(key).ok()?;
    let mut parts = key.split('\0');
    match parts.next()? {
        "lock" | "enc" | "pins" | "pin" => {
            let property = parts.next()?;
            let lock = parts.next()?;
            Some((property.to_owned(), lock.to_owned()))
        }
        _ => None,
    }
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
    /// read: each lock is read at its first section.
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
                let slot = Slot {
                    lock,
                    version: None,
                };
                (at, Mutex::new(slot))
            })
            .collect();
        Self { locks }
    }

    /// Whether `lock` of `property` is configured.
    pub fn has(&self, property: &str, lock: &str) -> bool {
        self.locks
            .contains_key(&(property.to_owned(), lock.to_owned()))
    }

    /// Takes the slot of `lock`, when it is configured. Only the holder of
    /// the lock's section takes it.
    pub fn slot(&self, property: &str, lock: &str) -> Option<MutexGuard<'_, Slot>> {
        self.locks
            .get(&(property.to_owned(), lock.to_owned()))
            .map(|slot| slot.lock())
    }
}

impl Lock {
    /// Reads everything stored of this lock (its state, encoder counters
    /// and PINs) from `stored`, in place of what this copy held. At the
    /// `first` read (no earlier one this process holds), also moves PIN
    /// entries stored the earlier ways into today's records and returns
    /// those writes: every keysmith since writes only today's, so a later
    /// read need not look for them.
    pub fn reload(&mut self, stored: &dyn StateSection, first: bool) -> Result<Vec<Change>> {
        let (p, l) = (
            self.config.property_code.clone(),
            self.config.lock_id.clone(),
        );
        self.state = match stored.get(&lock_key(&p, &l))? {
            Some(v) => decode(&v)?,
            None => LockState::default(),
        };
        self.encoder = match stored.get(&encoder_key(&p, &l))? {
            Some(v) => decode(&v)?,
            None => EncoderState::default(),
        };
        self.pins = PinTable::default();
        let prefix = format!("pins\0{p}\0{l}\0").into_bytes();
        for (_, v) in stored.scan_prefix(&prefix)? {
            let held: HeldPins = decode(&v)?;
            for (pin, entry) in held {
                self.pins.restore(pin.expose().clone(), entry);
            }
        }
        if first {
            self.upgrade_pin_entries(stored, &p, &l)
        } else {
            Ok(Vec::new())
        }
    }

    /// Moves PIN entries stored the earlier ways, one per PIN and key with
    /// the PIN in the path (`pin\0…\0{pin}\0{key_id}`), or one per PIN before
    /// a PIN could stand for several keys over time (`pin\0…\0{pin}`), into
    /// one record per key; returns the writes.
    fn upgrade_pin_entries(
        &mut self,
        stored: &dyn StateSection,
        p: &str,
        l: &str,
    ) -> Result<Vec<Change>> {
        let prefix = format!("pin\0{p}\0{l}\0").into_bytes();
        let mut writes = Vec::new();
        let mut keys = std::collections::BTreeSet::new();
        for (k, v) in stored.scan_prefix(&prefix)? {
            let (pin, entry) = match &parts_after(&k, &prefix)[..] {
                [pin, _key_id] => (pin.clone(), decode::<PinEntry>(&v)?),
                // Its start was not kept: it counts from the beginning of time.
                [pin] => {
                    let old: PinEntryV1 = decode(&v)?;
                    let entry = PinEntry {
                        key_id: old.key_id,
                        sealed: old.sealed,
                        starts_at: UnixSeconds::MIN,
                        ends_at: old.ends_at,
                    };
                    (pin.clone(), entry)
                }
                _ => continue,
            };
            writes.push((k.clone(), None));
            keys.insert(entry.key_id.clone());
            self.pins.restore(pin, entry);
        }
        for key_id in keys {
            writes.push(pins_record(&self.pins, p, l, &key_id)?);
        }
        Ok(writes)
    }
}

/// What one decision holds: the locks it named (each read as last
/// committed) and the section, through which it reads the reservation's
/// records.
pub struct Doors<'a> {
    pub(crate) locks: BTreeMap<&'a str, &'a mut Slot>,
    pub(crate) section: &'a dyn StateSection,
}

impl Doors<'_> {
    /// `lock` as last committed, when the decision named it and it is
    /// configured.
    pub fn lock(&self, lock: &str) -> Option<&Lock> {
        self.locks.get(lock).map(|slot| &slot.lock)
    }

    pub fn lock_mut(&mut self, lock: &str) -> Option<&mut Lock> {
        self.locks.get_mut(lock).map(|slot| &mut slot.lock)
    }

    /// The value under `key` as the decision sees it: its own latest write
    /// in `changes`, else what is committed.
    fn stored<T: DeserializeOwned>(&self, key: &[u8], changes: &[Change]) -> Result<Option<T>> {
        let value = match changes.iter().rev().find(|(k, _)| k == key) {
            Some((_, written)) => written.clone(),
            None => self.section.get(key)?,
        };
        value.map(|v| decode(&v)).transpose()
    }

    /// The sequence value a reservation got at a lock. The decision must
    /// hold the reservation's section.
    pub fn reservation_value(
        &self,
        slot: &ReservationAtLock,
        changes: &[Change],
    ) -> Result<Option<Sequence>> {
        self.stored(&reservation_key(slot), changes)
    }

    /// How many credentials a reservation incarnation has had (copy
    /// numbers). The decision must hold the reservation's section.
    pub fn copies(&self, p: &str, rk: &str, epoch: u64, changes: &[Change]) -> Result<u16> {
        Ok(self
            .stored(&copies_key(p, rk, epoch), changes)?
            .unwrap_or(0))
    }

    /// The writes that delete every record of a reservation (its values at
    /// each lock and its copy counters, of every epoch). The decision must
    /// hold the reservation's section.
    pub fn forget_reservation(&self, p: &str, rk: &str) -> Result<Vec<Change>> {
        let mut deletes = Vec::new();
        let prefix = format!("res\0{p}\0{rk}\0").into_bytes();
        for (k, _) in self.section.scan_prefix(&prefix)? {
            if let [_epoch, _lock] = &parts_after(&k, &prefix)[..] {
                deletes.push((k, None));
            }
        }
        let prefix = format!("copy\0{p}\0{rk}\0").into_bytes();
        for (k, _) in self.section.scan_prefix(&prefix)? {
            if let [_epoch] = &parts_after(&k, &prefix)[..] {
                deletes.push((k, None));
            }
        }
        Ok(deletes)
    }
}

#[cfg(test)]
mod tests {
    use keysmith_driver::state::DriverState;

    use super::*;
    use crate::tests::Memory;

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
        for _ in 0..2 {
            let sim = Sim::new(vec![LockConfig::room("hotel", "room-101")]);
            let mut slot = sim.slot("hotel", "room-101").unwrap();
            let mut section = store.section(&lock_section("hotel", "room-101")).unwrap();
            let upgraded = slot.lock.reload(section.as_ref(), true).unwrap();
            section.apply(upgraded);
            section.commit().unwrap();
            let pins = &slot.lock.pins;
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
