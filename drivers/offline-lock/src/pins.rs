//! The PINs programmed at one keypad lock. A PIN may be shared over time by
//! keys whose windows do not overlap, never by two keys at once: the lock
//! cannot tell two people typing the same digits apart. Which key a typed
//! PIN stands for is decided by the stored windows and the lock's own
//! clock, never by the encoder's wall clock.
use std::collections::HashMap;

use keysmith_driver::{Secret, Window};
use serde::{Deserialize, Serialize};

use crate::model::UnixSeconds;

/// How many keys one PIN may stand for over time at one lock; past it the
/// entry that ended first is dropped (a real keypad's table is small too).
pub const MAX_KEYS_PER_PIN: usize = 8;

/// A PIN programmed at a keypad lock, and the credential it stands for.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PinEntry {
    pub key_id: String,
    pub sealed: Secret<String>,
    pub starts_at: UnixSeconds,
    pub ends_at: UnixSeconds,
}

impl PinEntry {
    fn overlaps(&self, window: &Window) -> bool {
        self.starts_at < window.ends_at.unix_seconds()
            && window.starts_at.unix_seconds() < self.ends_at
    }

    fn covers(&self, t: UnixSeconds) -> bool {
        self.starts_at <= t && t < self.ends_at
    }
}

#[derive(Default)]
pub struct PinTable {
    entries: HashMap<String, Vec<PinEntry>>,
}

impl PinTable {
    /// Loads an entry read from the store.
    pub fn restore(&mut self, pin: String, entry: PinEntry) {
        self.entries.entry(pin).or_default().push(entry);
    }

    /// Whether `key_id` may hold `pin` for `window`: no other key holds it
    /// for any part of that window.
    pub fn is_free_for(&self, pin: &str, key_id: &str, window: &Window) -> bool {
        self.entries
            .get(pin)
            .is_none_or(|v| v.iter().all(|e| e.key_id == key_id || !e.overlaps(window)))
    }

    /// The entry `key_id` holds for `pin`, if any.
    pub fn entry_of(&self, pin: &str, key_id: &str) -> Option<&PinEntry> {
        self.entries.get(pin)?.iter().find(|e| e.key_id == key_id)
    }

    /// What a PIN typed at lock time `t` stands for: the key whose window
    /// covers `t`; else the one that ended last before `t` (the lock then
    /// says expired); else the first to start (not yet valid).
    pub fn typed(&self, pin: &str, t: UnixSeconds) -> Option<&PinEntry> {
        let v = self.entries.get(pin)?;
        v.iter()
            .find(|e| e.covers(t))
            .or_else(|| {
                v.iter()
                    .filter(|e| e.starts_at <= t)
                    .max_by_key(|e| e.ends_at)
            })
            .or_else(|| v.iter().min_by_key(|e| e.starts_at))
    }

    /// Every PIN `key_id` holds here, with its entry: what is stored for it.
    pub fn held_by(&self, key_id: &str) -> Vec<(Secret<String>, PinEntry)> {
        let mut held: Vec<_> = self
            .entries
            .iter()
            .flat_map(|(pin, v)| {
                v.iter()
                    .filter(|e| e.key_id == key_id)
                    .map(|e| (Secret::new(pin.clone()), e.clone()))
            })
            .collect();
        held.sort_by(|a, b| a.0.expose().cmp(b.0.expose()));
        held
    }

    /// Removes what `key_id` holds for `pin`; whether it held anything.
    pub fn remove(&mut self, pin: &str, key_id: &str) -> bool {
        let Some(v) = self.entries.get_mut(pin) else {
            return false;
        };
        let before = v.len();
        v.retain(|e| e.key_id != key_id);
        let removed = v.len() < before;
        if v.is_empty() {
            self.entries.remove(pin);
        }
        removed
    }

    /// Programs `entry` for `pin`, replacing the same key's earlier entry.
    /// Returns the key ids whose entries for this PIN were dropped to stay
    /// within [`MAX_KEYS_PER_PIN`].
    pub fn program(&mut self, pin: &str, entry: PinEntry) -> Vec<String> {
        let v = self.entries.entry(pin.to_owned()).or_default();
        v.retain(|e| e.key_id != entry.key_id);
        v.push(entry);
        let mut dropped = Vec::new();
        while v.len() > MAX_KEYS_PER_PIN {
            let first_to_end = v
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| e.ends_at)
                .map(|(i, _)| i)
                .expect("more than one entry");
            dropped.push(v.remove(first_to_end).key_id);
        }
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keysmith_driver::Timestamp;

    fn window(start: i64, end: i64) -> Window {
        Window {
            starts_at: Timestamp::from_unix_seconds(start),
            ends_at: Timestamp::from_unix_seconds(end),
        }
    }

    fn entry(key_id: &str, start: i64, end: i64) -> PinEntry {
        PinEntry {
            key_id: key_id.into(),
            sealed: Secret::new(format!("sealed-{key_id}")),
            starts_at: start,
            ends_at: end,
        }
    }

    #[test]
    fn a_pin_is_shared_only_by_keys_that_never_hold_it_at_once() {
        let mut t = PinTable::default();
        t.program("1234", entry("a", 0, 100));
        assert!(!t.is_free_for("1234", "b", &window(50, 150)));
        assert!(t.is_free_for("1234", "a", &window(50, 150)));
        assert!(t.is_free_for("1234", "b", &window(100, 200)));
        t.program("1234", entry("b", 100, 200));
        // Each holder is recognised in their own window, by the lock's clock.
        assert_eq!(t.typed("1234", 10).unwrap().key_id, "a");
        assert_eq!(t.typed("1234", 150).unwrap().key_id, "b");
        assert_eq!(t.typed("1234", 250).unwrap().key_id, "b");
        assert_eq!(t.typed("1234", -5).unwrap().key_id, "a");
        assert!(t.typed("9999", 10).is_none());
    }

    #[test]
    fn reprogramming_replaces_the_keys_own_entry_and_the_table_is_bounded() {
        let mut t = PinTable::default();
        t.program("1", entry("a", 0, 10));
        t.program("1", entry("a", 0, 20));
        assert_eq!(t.entry_of("1", "a").unwrap().ends_at, 20);
        for i in 1..=MAX_KEYS_PER_PIN as i64 {
            let dropped = t.program("1", entry(&format!("k{i}"), i * 100, i * 100 + 50));
            if i == MAX_KEYS_PER_PIN as i64 {
                assert_eq!(dropped, ["a"], "the entry that ended first goes");
            } else {
                assert!(dropped.is_empty());
            }
        }
    }
}
