//! Where the webhook state lives in the driver's key space.
//!
//! Several hotels share one driver tree, and keysmith property ids may
//! contain `/`, so a plain `wh/{property}/...` could let property `a/seen`
//! read into property `a`'s keys. The property segment is therefore closed
//! by a NUL byte, which a property id can never contain (it is rejected
//! here, and keysmith's request validation forbids control characters).
use keysmith_core::{reasons, Error, Result};

const ROOT: &[u8] = b"wh/";

/// The longest property id accepted; the same bound keysmith puts on ids.
const MAX_PROPERTY_LEN: usize = 128;

/// Every webhook key of one property starts with this.
pub(crate) fn property_prefix(property_id: &str) -> Result<Vec<u8>> {
    if property_id.is_empty() {
        return Err(Error::invalid_field(
            reasons::FIELD_REQUIRED,
            "property_id",
            "is required",
        ));
    }
    if property_id.len() > MAX_PROPERTY_LEN {
        return Err(Error::invalid_field(
            reasons::FIELD_TOO_LONG,
            "property_id",
            format!("must be at most {MAX_PROPERTY_LEN} bytes"),
        ));
    }
    if property_id.chars().any(char::is_control) {
        return Err(Error::invalid_field(
            reasons::FIELD_INVALID,
            "property_id",
            "must not contain control characters",
        ));
    }
    let mut out = Vec::with_capacity(ROOT.len() + property_id.len() + 1);
    out.extend_from_slice(ROOT);
    out.extend_from_slice(property_id.as_bytes());
    out.push(0);
    Ok(out)
}

/// `wh/{property}\0{section}/`
pub(crate) fn section(prefix: &[u8], section: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(prefix.len() + section.len() + 1);
    out.extend_from_slice(prefix);
    out.extend_from_slice(section.as_bytes());
    out.push(b'/');
    out
}

/// A key of `section` followed by `suffix`.
pub(crate) fn entry(section: &[u8], suffix: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(section.len() + suffix.len());
    out.extend_from_slice(section);
    out.extend_from_slice(suffix);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_property_prefix_is_a_prefix_of_another_property() {
        let a = section(&property_prefix("a").unwrap(), "seen");
        let nested = section(&property_prefix("a/seen").unwrap(), "seen");
        assert!(!nested.starts_with(&a));
        assert!(!a.starts_with(&property_prefix("a/seen").unwrap()));
    }

    #[test]
    fn property_ids_that_could_break_the_layout_are_refused() {
        assert!(property_prefix("").is_err());
        assert!(property_prefix("a\0b").is_err());
        assert!(property_prefix(&"x".repeat(MAX_PROPERTY_LEN + 1)).is_err());
        assert!(property_prefix("hotel-1/berlin").is_ok());
    }
}
