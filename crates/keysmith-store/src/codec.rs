//! How records are laid out in the engine: keys of length-prefixed parts, values
//! of a schema version byte followed by postcard.
use keysmith_core::{Error, Result};
use serde::{de::DeserializeOwned, Serialize};

use crate::sealing::Sealer;

/// The schema version of every stored value written by this code.
pub const SCHEMA_VERSION: u8 = 1;

pub fn path(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + parts.iter().map(|p| p.len() + 2).sum::<usize>());
    out.push(tag);
    for part in parts {
        push_part(&mut out, part);
    }
    out
}

pub fn push_part(out: &mut Vec<u8>, part: &[u8]) {
    let len = u16::try_from(part.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&part[..usize::from(len)]);
}

/// The last length-prefixed part of a path.
pub fn last_part(path: &[u8], prefix_len: usize) -> Option<&[u8]> {
    let rest = path.get(prefix_len..)?;
    let len = usize::from(u16::from_be_bytes([*rest.first()?, *rest.get(1)?]));
    rest.get(2..2 + len)
}

/// Every length-prefixed part of a path without its tag, up to the first
/// that does not parse.
pub fn parts(mut rest: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while let [a, b, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*a, *b]));
        let Some(part) = tail.get(..len) else {
            break;
        };
        out.push(part);
        rest = &tail[len..];
    }
    out
}

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    let mut out = vec![SCHEMA_VERSION];
    postcard::to_io(value, &mut out)
        .map_err(|e| Error::internal(format!("encoding a record: {e}")))?;
    Ok(out)
}

/// Opens the sealed value of the record at `path` and decodes it.
pub fn open<T: DeserializeOwned>(sealer: &Sealer, path: &[u8], bytes: &[u8]) -> Result<T> {
    decode(&sealer.open(path, bytes)?)
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    match bytes.split_first() {
        Some((&SCHEMA_VERSION, body)) => postcard::from_bytes(body)
            .map_err(|e| Error::internal(format!("decoding a record: {e}"))),
        Some((version, _)) => Err(Error::internal(format!(
            "a record has schema version {version}, this build reads {SCHEMA_VERSION}"
        ))),
        None => Err(Error::internal("an empty record")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_unambiguous() {
        assert_ne!(path(b'K', &[b"ab", b"c"]), path(b'K', &[b"a", b"bc"]));
        let p = path(b'X', &[b"hotel", b"key-1"]);
        let prefix = path(b'X', &[b"hotel"]);
        assert_eq!(last_part(&p, prefix.len()), Some(&b"key-1"[..]));
        assert_eq!(parts(&p[1..]), [&b"hotel"[..], &b"key-1"[..]]);
    }

    #[test]
    fn values_carry_their_schema_version() {
        let bytes = encode(&("a", 7u32)).unwrap();
        assert_eq!(bytes[0], SCHEMA_VERSION);
        let back: (String, u32) = decode(&bytes).unwrap();
        assert_eq!(back, ("a".to_owned(), 7));
        let mut future = bytes.clone();
        future[0] = SCHEMA_VERSION + 1;
        assert!(decode::<(String, u32)>(&future).is_err());
    }
}
