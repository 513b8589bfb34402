//! Timestamps as Seam writes them (`2025-05-10T15:00:00.000Z`: UTC,
//! milliseconds) and reads them (ISO 8601 with `Z` or an offset).

use jiff::Timestamp;

pub(crate) fn render(ts: Timestamp) -> String {
    ts.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// `None` for anything that is not an ISO 8601 instant with an offset: a
/// local time or a bare date cannot be placed on the timeline.
pub(crate) fn parse(s: &str) -> Option<Timestamp> {
    s.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_utc_with_milliseconds() {
        let ts = parse("2025-05-10T17:00:00+02:00").unwrap();
        assert_eq!(render(ts), "2025-05-10T15:00:00.000Z");
        assert_eq!(
            render(parse("2025-05-10T15:00:00.5Z").unwrap()),
            "2025-05-10T15:00:00.500Z"
        );
        assert!(parse("2025-05-10").is_none());
        assert!(parse("2025-05-10T15:00:00").is_none());
    }
}
