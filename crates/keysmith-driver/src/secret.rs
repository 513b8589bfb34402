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
}
