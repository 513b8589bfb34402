//! A wrapper for values that must never reach a log, an error or Debug output:
//! PINs, card data, QR data, compartments, API keys, tokens.
use std::fmt;

use serde::{Deserialize, Serialize};

/// A value that prints as `[redacted]` in Debug and Display.
#[derive(Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps a secret value.
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// The secret itself. Call it only where the value is delivered or used.
    pub fn expose(&self) -> &T {
        &self.0
    }

    /// The secret itself, unwrapped, where it is delivered or used.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Self(value)
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// The most distinct byte values a signing key is asked to have: a key of
/// one byte repeated (`"aaaa…"`), or of a few, is a length without the
/// entropy. A key of `n` bytes needs `min(n / 4, 8)` distinct values: a
/// random key of 16 hex digits has 4 or more with a probability above
/// 1 - 1e-8, one of 24 random bytes 6 or more above 1 - 1e-20.
pub const MIN_DISTINCT_KEY_BYTES: usize = 8;

/// Why `key` is too weak to sign or verify webhook deliveries with, or
/// `None`: empty, shorter than `min_len` bytes, or with too few distinct
/// byte values ([`MIN_DISTINCT_KEY_BYTES`]). Says nothing of the
/// key's content, so it may be shown.
pub fn key_weakness(key: &[u8], min_len: usize) -> Option<String> {
    if key.is_empty() {
        return Some("is empty".into());
    }
    if key.len() < min_len {
        return Some(format!(
            "is {} bytes long, shorter than the {min_len} bytes required",
            key.len()
        ));
    }
    let mut seen = [false; 256];
    for b in key {
        seen[usize::from(*b)] = true;
    }
    let distinct = seen.iter().filter(|s| **s).count();
    let required = (key.len() / 4).min(MIN_DISTINCT_KEY_BYTES);
    if distinct < required {
        return Some(format!(
            "has only {distinct} distinct byte values (at least {required} required): it is \
             not random"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let pin = Secret::new("482913".to_string());
        assert_eq!(format!("{pin:?}"), "[redacted]");
        assert_eq!(format!("{pin}"), "[redacted]");
        assert_eq!(format!("{:?}", Some(&pin)), "Some([redacted])");
        assert_eq!(pin.expose(), "482913");
    }

    #[test]
    fn weak_keys_are_named_and_random_ones_pass() {
        assert!(key_weakness(b"", 16).is_some());
        assert!(key_weakness(b"short", 16).unwrap().contains("5 bytes"));
        assert!(key_weakness(&[b'a'; 64], 16).unwrap().contains("distinct"));
        assert!(key_weakness(b"abababababababababababab", 16).is_some());
        assert!(key_weakness(b"0123456789abcdef", 16).is_none());
        assert!(key_weakness(b"a very secret signing key", 24).is_none());
    }
}
