//! Instants and validity windows, in microseconds since the Unix epoch.
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Microseconds since the Unix epoch, UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Timestamp(i64);

impl Timestamp {
    /// From microseconds since the epoch.
    pub const fn from_micros(micros: i64) -> Self {
        Self(micros)
    }

    /// None when the instant is outside the range keysmith keeps (about
    /// ±292,000 years).
    pub fn from_parts(seconds: i64, nanos: i32) -> Option<Self> {
        if !(0..1_000_000_000).contains(&nanos) {
            return None;
        }
        // In i128: the lowest second of the range holds instants that fit in
        // i64 microseconds (i64::MIN among them) although the second itself,
        // times a million, does not.
        let micros = i128::from(seconds) * 1_000_000 + i128::from(nanos / 1_000);
        i64::try_from(micros).ok().map(Self)
    }

    /// From whole seconds since the epoch (saturating).
    pub fn from_unix_seconds(seconds: i64) -> Self {
        Self(seconds.saturating_mul(1_000_000))
    }

    /// The machine's clock now; keysmith's service reads time through its
    /// own clock, so prefer that where one is at hand.
    pub fn now() -> Self {
        let micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(0);
        Self(micros)
    }

    /// Microseconds since the epoch.
    pub fn as_micros(self) -> i64 {
        self.0
    }

    /// Whole seconds since the epoch (rounded down).
    pub fn unix_seconds(self) -> i64 {
        self.0.div_euclid(1_000_000)
    }

    /// The nanoseconds past [`Timestamp::unix_seconds`].
    pub fn subsec_nanos(self) -> i32 {
        (self.0.rem_euclid(1_000_000) * 1_000) as i32
    }

    /// Later by `seconds` (earlier when negative), saturating.
    pub fn saturating_add_seconds(self, seconds: i64) -> Self {
        Self(self.0.saturating_add(seconds.saturating_mul(1_000_000)))
    }
}

/// A half-open validity window: `starts_at <= t < ends_at`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Window {
    /// The first instant it opens.
    pub starts_at: Timestamp,
    /// The first instant it no longer opens.
    pub ends_at: Timestamp,
}

impl Window {
    /// Whether some instant is in both (touching ends do not overlap).
    pub fn overlaps(&self, other: &Window) -> bool {
        self.starts_at < other.ends_at && other.starts_at < self.ends_at
    }

    /// Whether `now` is at or past the end.
    pub fn has_ended(&self, now: Timestamp) -> bool {
        now >= self.ends_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: i64, e: i64) -> Window {
        Window {
            starts_at: Timestamp::from_unix_seconds(s),
            ends_at: Timestamp::from_unix_seconds(e),
        }
    }

    #[test]
    fn windows_touching_at_an_instant_do_not_overlap() {
        assert!(!w(0, 10).overlaps(&w(10, 20)));
        assert!(w(0, 11).overlaps(&w(10, 20)));
        assert!(w(5, 6).overlaps(&w(0, 20)));
    }

    #[test]
    fn parts_round_trip_and_reject_bad_nanos() {
        let t = Timestamp::from_parts(1_700_000_000, 123_456_000).unwrap();
        assert_eq!(t.unix_seconds(), 1_700_000_000);
        assert_eq!(t.subsec_nanos(), 123_456_000);
        assert!(Timestamp::from_parts(0, -1).is_none());
        assert!(Timestamp::from_parts(i64::MAX, 0).is_none());
        assert!(Timestamp::from_parts(i64::MIN, 0).is_none());
        let before_epoch = Timestamp::from_parts(-1, 500_000_000).unwrap();
        assert_eq!(before_epoch.unix_seconds(), -1);
        assert_eq!(before_epoch.subsec_nanos(), 500_000_000);
    }

    /// Found by the plugin boundary's round-trip property: the instants of
    /// the lowest second of the range went out as a protobuf Timestamp and
    /// did not come back.
    #[test]
    fn the_lowest_instants_round_trip_through_seconds_and_nanos() {
        for micros in [i64::MIN, i64::MIN + 1, i64::MIN + 224_191, i64::MAX] {
            let t = Timestamp::from_micros(micros);
            assert_eq!(
                Timestamp::from_parts(t.unix_seconds(), t.subsec_nanos()),
                Some(t),
                "{micros}"
            );
        }
        // Below the range: the second before i64::MIN's is refused.
        assert!(Timestamp::from_parts(-9_223_372_036_855, 224_191_000).is_none());
    }
}
