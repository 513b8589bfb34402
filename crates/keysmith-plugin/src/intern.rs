//! keysmith's errors carry `&'static str` reasons and metadata keys, while a
//! plugin's arrive as strings. Each distinct one is leaked once into a
//! bounded set, so that a plugin inventing a new reason per call cannot
//! grow keysmith's memory without limit.
use std::{
    collections::HashSet,
    sync::{Mutex, OnceLock, PoisonError},
};

/// Distinct strings kept, reasons and keys together, for the process.
const CAPACITY: usize = 1024;
const MAX_LEN: usize = 64;

struct Interner {
    kept: Mutex<HashSet<&'static str>>,
    capacity: usize,
}

impl Interner {
    fn new(capacity: usize) -> Self {
        Self {
            kept: Mutex::default(),
            capacity,
        }
    }

    fn intern(&self, s: &str) -> Option<&'static str> {
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(k) = kept.get(s) {
            return Some(k);
        }
        if kept.len() >= self.capacity {
            return None;
        }
        let k: &'static str = Box::leak(s.to_owned().into_boxed_str());
        kept.insert(k);
        Some(k)
    }
}

fn intern(s: &str) -> Option<&'static str> {
    static GLOBAL: OnceLock<Interner> = OnceLock::new();
    GLOBAL.get_or_init(|| Interner::new(CAPACITY)).intern(s)
}

/// An UPPER_SNAKE reason as keysmith's own, or None.
pub fn reason(s: &str) -> Option<&'static str> {
    let well_formed = (1..=MAX_LEN).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_uppercase())
        && s.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    well_formed.then(|| intern(s)).flatten()
}

/// A lower_snake metadata key, or None.
pub fn metadata_key(s: &str) -> Option<&'static str> {
    let well_formed = (1..=MAX_LEN).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    well_formed.then(|| intern(s)).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_string_is_kept_once_and_malformed_ones_are_refused() {
        let a = reason("PIN_IN_USE").unwrap();
        let b = reason(&String::from("PIN_IN_USE")).unwrap();
        assert!(std::ptr::eq(a, b));
        for bad in ["", "pin_in_use", "PIN IN USE", "_X", &"A".repeat(65)] {
            assert_eq!(reason(bad), None, "{bad:?}");
        }
        assert_eq!(metadata_key("entrance_id"), Some("entrance_id"));
        assert_eq!(metadata_key("Entrance"), None);
    }

    #[test]
    fn the_set_is_bounded() {
        let small = Interner::new(3);
        for i in 0..3 {
            assert!(small.intern(&format!("R_{i}")).is_some());
        }
        assert_eq!(small.intern("R_NEW"), None);
        assert_eq!(small.intern("R_1"), Some("R_1"), "kept ones still answer");
    }
}
