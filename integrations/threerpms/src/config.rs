//! How keysmith reaches 3RPMS and which hotels it keeps in step.
use std::{net::SocketAddr, time::Duration};

use keysmith_core::Secret;
use serde::Deserialize;

use crate::{limiter::LimiterConfig, transport::Timeouts};

/// `[threerpms]` in keysmith's config.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThreeRpmsConfig {
    /// 3RPMS's GraphQL endpoint; the sandbox is https://demo.3rpms.de/graphql.
    #[serde(default = "default_endpoint")]
    pub endpoint: String,
    /// Requests per rolling minute for all hotels together: 3RPMS counts per
    /// client IP (200 a minute) and they share keysmith's egress.
    #[serde(default = "default_requests_per_minute")]
    pub requests_per_minute: u32,
    /// How long keysmith stops sending once it suspects a block (3RPMS
    /// blocks for 20 minutes).
    #[serde(default = "default_block_backoff_seconds")]
    pub block_backoff_seconds: u64,
    #[serde(default = "default_timeouts_before_block")]
    pub timeouts_before_block: u32,
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Operations per request (a create and its assignment are two).
    /// 3RPMS documents no bound; the default, 100, is the one size it does
    /// document (its page maximum), so no request holds more operations
    /// than 3RPMS documents answering at once. A refused step costs about
    /// log2(batch_limit) extra requests to isolate, so larger is not free.
    #[serde(default = "default_batch_limit")]
    pub batch_limit: usize,
    /// Ask 3RPMS's schema (GraphQL introspection) which undocumented fields
    /// and mutations it has, and use those it has (see the inventory in
    /// README.md). Off: keysmith uses only what 3RPMS documents.
    #[serde(default = "default_true")]
    pub detect_schema: bool,
    /// A webhook event (or a room stay's step) that fails this many times
    /// is parked in the hotel's dead-letter list, and the hotel's queue goes
    /// on without it. A validation or schema error is parked sooner
    /// (after [`PERMANENT_FAILURE_ATTEMPTS`](crate::worker::PERMANENT_FAILURE_ATTEMPTS)).
    #[serde(default = "default_dead_letter_after_attempts")]
    pub dead_letter_after_attempts: u32,
    /// The wait before an event that failed is tried again; it doubles with
    /// every failure, up to an hour.
    #[serde(default = "default_retry_backoff_ms")]
    pub retry_backoff_ms: u64,
    /// Where the webhook receiver listens; no receiver when absent.
    #[serde(default)]
    pub webhook_listen: Option<SocketAddr>,
    /// The public URL 3RPMS posts to, for `keysmith threerpms register-webhook`;
    /// `/3rpms/webhooks/{property_id}` is appended.
    #[serde(default)]
    pub webhook_public_url: Option<String>,
    #[serde(default = "default_webhook_tolerance_seconds")]
    pub webhook_tolerance_seconds: u64,
    /// Poll every hotel's window when keysmith starts, as 3RPMS recommends.
    #[serde(default = "default_true")]
    pub initial_sync: bool,
    #[serde(default)]
    pub hotels: Vec<HotelConfig>,
}

/// One 3RPMS hotel kept in step with one keysmith property.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HotelConfig {
    pub property_id: String,
    /// The hotel's API key (`api_...`), one per hotel. Prefer setting it
    /// through the environment.
    pub api_key: Secret<String>,
    /// What keysmith publishes to 3RPMS: `pin` (RoomAccessPin) or `qr`
    /// (RoomAccessQR), from the credential the lock driver issued.
    #[serde(default)]
    pub key_type: PublishedKeyType,
    /// The hotel's time zone, for check-in and check-out times.
    #[serde(default = "default_time_zone")]
    pub time_zone: String,
    #[serde(default = "default_check_in")]
    pub check_in: String,
    #[serde(default = "default_check_out")]
    pub check_out: String,
    /// Days ahead kept in step, today included (3RPMS recommends 7).
    #[serde(default = "default_sync_days")]
    pub sync_days: u32,
    /// Local time of the nightly sync.
    #[serde(default = "default_nightly_at")]
    pub nightly_at: String,
    /// The reservation statuses that mean cancelled, when 3RPMS's schema
    /// has a reservation status (3RPMS documents neither the field nor its
    /// values). Unset: the values introspection lists that contain
    /// "CANCEL". Without the field, a stay 3RPMS no longer returns counts
    /// as gone.
    #[serde(default)]
    pub cancelled_reservation_statuses: Option<Vec<String>>,
    /// Which keysmith entrances or spaces each 3RPMS room opens. A list,
    /// not a map: 3RPMS ids are case-sensitive and config map keys are not.
    pub rooms: Vec<RoomMapping>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoomMapping {
    /// 3RPMS's `room_setup { id }`.
    pub room_setup_id: String,
    #[serde(default)]
    pub entrances: Vec<String>,
    #[serde(default)]
    pub spaces: Vec<String>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PublishedKeyType {
    #[default]
    Pin,
    Qr,
}

impl HotelConfig {
    pub fn room(&self, room_setup_id: &str) -> Option<&RoomMapping> {
        self.rooms.iter().find(|r| r.room_setup_id == room_setup_id)
    }
}

impl ThreeRpmsConfig {
    pub fn limiter(&self) -> LimiterConfig {
        LimiterConfig {
            requests_per_minute: self.requests_per_minute,
            block_backoff: Duration::from_secs(self.block_backoff_seconds),
            timeouts_before_block: self.timeouts_before_block,
        }
    }

    pub fn timeouts(&self) -> Timeouts {
        Timeouts {
            connect: Duration::from_millis(self.connect_timeout_ms),
            request: Duration::from_millis(self.request_timeout_ms),
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_endpoint() -> String {
    "https://www.3rpms.de/graphql".into()
}
fn default_requests_per_minute() -> u32 {
    120
}
fn default_block_backoff_seconds() -> u64 {
    20 * 60
}
fn default_timeouts_before_block() -> u32 {
    2
}
fn default_connect_timeout_ms() -> u64 {
    10_000
}
fn default_request_timeout_ms() -> u64 {
    30_000
}
fn default_batch_limit() -> usize {
    crate::client::DEFAULT_BATCH_LIMIT
}
fn default_dead_letter_after_attempts() -> u32 {
    8
}
fn default_retry_backoff_ms() -> u64 {
    30_000
}
fn default_webhook_tolerance_seconds() -> u64 {
    300
}
fn default_time_zone() -> String {
    "UTC".into()
}
fn default_check_in() -> String {
    "15:00".into()
}
fn default_check_out() -> String {
    "11:00".into()
}
fn default_sync_days() -> u32 {
    7
}
fn default_nightly_at() -> String {
    "03:00".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_key_never_shows_in_debug_output() {
        let config: ThreeRpmsConfig = serde_json::from_value(serde_json::json!({
            "hotels": [{
                "property_id": "h",
                "api_key": "api_very_secret_value",
                "rooms": [{"room_setup_id": "1", "entrances": ["room-1"]}],
            }],
        }))
        .unwrap();
        let shown = format!("{config:?}");
        assert!(!shown.contains("api_very_secret_value"), "{shown}");
        assert_eq!(config.hotels[0].api_key.expose(), "api_very_secret_value");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let refused = serde_json::from_value::<ThreeRpmsConfig>(serde_json::json!({
            "hotels": [], "request_per_minute": 10,
        }));
        assert!(refused
            .unwrap_err()
            .to_string()
            .contains("request_per_minute"));
    }
}
