//! Opaque, signed, short-lived pagination cursors and the page arithmetic.
//!
//! A cursor names a position (the creation order of the last row seen), the
//! moment it was issued, and is signed together with the query it belongs to
//! (connection, hotel, parent object, filter). So a cursor from another query
//! or another hotel, an edited one, garbage, or an old one is rejected as a
//! `validation` error instead of silently paging the wrong list.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use crate::errors::{arg_path, ApiError, ApiResult, Msg};

/// Default page size and the largest `first` the vendor accepts.
pub const DEFAULT_PAGE: i32 = 20;
pub const MAX_PAGE: i32 = 100;

const TAG_LEN: usize = 16;

pub(crate) struct CursorCodec {
    key: [u8; 32],
    ttl: Duration,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl CursorCodec {
    pub fn new(ttl: Duration) -> Self {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        CursorCodec { key, ttl }
    }

    fn mac(&self, scope: &str, payload: &[u8]) -> Hmac<Sha256> {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(scope.as_bytes());
        mac.update(&[0]);
        mac.update(payload);
        mac
    }

    fn tag(&self, scope: &str, payload: &[u8]) -> [u8; TAG_LEN] {
        let full = self.mac(scope, payload).finalize().into_bytes();
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&full[..TAG_LEN]);
        tag
    }

    /// Hides the position so cursors are not readable offsets: XOR with
    /// a pad derived from the issue time.
    fn mask(&self, issued: &[u8]) -> u64 {
        let pad = self.tag("mask", issued);
        let mut eight = [0u8; 8];
        eight.copy_from_slice(&pad[..8]);
        u64::from_be_bytes(eight)
    }

    pub fn encode(&self, scope: &str, position: u64) -> String {
        self.encode_at(scope, position, now_ms())
    }

    fn encode_at(&self, scope: &str, position: u64, issued_ms: u64) -> String {
        let issued = issued_ms.to_be_bytes();
        let mut bytes = Vec::with_capacity(16 + TAG_LEN);
        bytes.extend_from_slice(&(position ^ self.mask(&issued)).to_be_bytes());
        bytes.extend_from_slice(&issued);
        let tag = self.tag(scope, &bytes);
        bytes.extend_from_slice(&tag);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The position a cursor stands for, if it is genuine, fresh and was
    /// issued for `scope`.
    pub fn decode(&self, scope: &str, cursor: &str) -> ApiResult<u64> {
        let invalid = || ApiError::validation(Msg::InvalidCursor, arg_path!["after"]);
        let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
        if bytes.len() != 16 + TAG_LEN {
            return Err(invalid());
        }
        let (payload, tag) = bytes.split_at(16);
        self.mac(scope, payload)
            .verify_truncated_left(tag)
            .map_err(|_| invalid())?;
        let mut position = [0u8; 8];
        position.copy_from_slice(&payload[..8]);
        let mut issued = [0u8; 8];
        issued.copy_from_slice(&payload[8..16]);
        let age = now_ms().saturating_sub(u64::from_be_bytes(issued));
        if u128::from(age) > self.ttl.as_millis() {
            return Err(ApiError::validation(Msg::ExpiredCursor, arg_path!["after"]));
        }
        Ok(u64::from_be_bytes(position) ^ self.mask(&issued))
    }
}

/// One page of a connection.
pub(crate) struct Page<T> {
    pub edges: Vec<(String, T)>,
    pub has_next_page: bool,
    pub end_cursor: Option<String>,
}

/// Checks `first` against the vendor's bounds.
pub(crate) fn page_size(first: Option<i32>) -> ApiResult<usize> {
    match first {
        None => Ok(DEFAULT_PAGE as usize),
        Some(n) if (0..=MAX_PAGE).contains(&n) => Ok(n as usize),
        Some(_) => Err(ApiError::validation(
            Msg::FirstOutOfRange { max: MAX_PAGE },
            arg_path!["first"],
        )),
    }
}

/// Cuts a page out of `rows` (in creation order, each with its position).
pub(crate) fn paginate<T>(
    codec: &CursorCodec,
    scope: &str,
    rows: Vec<(u64, T)>,
    first: Option<i32>,
    after: Option<&str>,
) -> ApiResult<Page<T>> {
    let size = page_size(first)?;
    let start_after = after.map(|c| codec.decode(scope, c)).transpose()?;
    let mut remaining = rows
        .into_iter()
        .filter(|(pos, _)| start_after.is_none_or(|a| *pos > a))
        .peekable();
    let mut edges = Vec::with_capacity(size.min(MAX_PAGE as usize));
    while edges.len() < size {
        match remaining.next() {
            Some((pos, row)) => edges.push((codec.encode(scope, pos), row)),
            None => break,
        }
    }
    let has_next_page = remaining.peek().is_some();
    let end_cursor = edges.last().map(|(c, _)| c.clone());
    Ok(Page {
        edges,
        has_next_page,
        end_cursor,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_scope() {
        let codec = CursorCodec::new(Duration::from_secs(60));
        let c = codec.encode("room_stays|h|", 42);
        assert_eq!(codec.decode("room_stays|h|", &c).ok(), Some(42));
        assert!(codec.decode("reservations|h|", &c).is_err());
        assert!(codec.decode("room_stays|h|", "garbage!").is_err());
        assert!(codec.decode("room_stays|h|", "").is_err());
        // A cursor from another fake instance (other key) is rejected too.
        let other = CursorCodec::new(Duration::from_secs(60));
        assert!(other.decode("room_stays|h|", &c).is_err());
    }

    #[test]
    fn expired_cursor() {
        let codec = CursorCodec::new(Duration::from_secs(1));
        let old = codec.encode_at("s", 1, now_ms() - 10_000);
        assert_eq!(
            codec.decode("s", &old).map_err(|e| e.msg),
            Err(Msg::ExpiredCursor)
        );
    }

    #[test]
    fn page_bounds() {
        assert_eq!(page_size(None).ok(), Some(20));
        assert_eq!(page_size(Some(100)).ok(), Some(100));
        assert!(page_size(Some(101)).is_err());
        assert!(page_size(Some(-1)).is_err());
    }
}
