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
pub fn pin_key(property: &str, lock: &str, pin: &str, key_id: &str) -> Vec<u8> {
    format!("pin\0{property}\0{lock}\0{pin}\0{key_id}").into_bytes()
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
            let prefix = format!("pin\0{p}\0{l}\0").into_bytes();
            let mut upgraded = Vec::new();
            for (k, v) in store.scan_prefix(&prefix)? {
                let rest = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
                match rest.split_once('\0') {
                    Some((pin, _key_id)) => pins.restore(pin.to_owned(), decode(&v)?),
                    // Stored before a PIN could stand for several keys over
                    // time: its start was not kept, so it counts from the
                    // beginning of time.
                    None => {
                        let old: PinEntryV1 = decode(&v)?;
                        let entry = PinEntry {
                            key_id: old.key_id,
                            sealed: old.sealed,
                            starts_at: UnixSeconds::MIN,
                            ends_at: old.ends_at,
                        };
                        upgraded.push((k.clone(), None));
                        upgraded
                            .push((pin_key(&p, &l, &rest, &entry.key_id), Some(encode(&entry)?)));
                        pins.restore(rest, entry);
                    }
                }
            }
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
