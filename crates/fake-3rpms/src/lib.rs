//! A faithful fake of the 3RPMS GraphQL API for keysmith's tests and demos:
//! room stays, reservations and room access keys, Relay pagination with
//! signed cursors, filters, batches with `@chain`, all-or-nothing
//! mutations, the error categories, the per-IP rate limit with its silent
//! block, and signed webhooks with retries and injectable faults.
//! README.md lists what it honours and what it assumes. By default its
//! schema holds only what the vendor documents; each guess about 3RPMS
//! ([`Assumed`]) is on only when asked for.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use fake_3rpms::{Access, Fake3rpms, FakeConfig};
//! let fake = Fake3rpms::start(FakeConfig::default()).await?;
//! fake.add_hotel("h1");
//! fake.add_api_key("h1", "keysmith", "api_write", Access::Write);
//! fake.add_room("h1", "101", "Room 101");
//! let reservation = fake.add_reservation("h1", "R-1");
//! let stay = fake.add_room_stay("h1", &reservation, "101", "2026-01-30", "2026-02-02");
//! // ... point a client at fake.graphql_url() ...
//! # let _ = stay; Ok(()) }
//! ```
//!
//! Differences from the original brief, on purpose:
//! - `FakeConfig` has four more fields (`rate_limit_window`, `cursor_ttl`,
//!   `webhook_disable_after`, `webhook_stale_signature`); build it with
//!   `..FakeConfig::default()`.
//! - `add_foreign_key` takes a [`KeyKind`] (`ForeignKey` is an alias).
//! - `send_badly_signed_event` returns the event id; there is also
//!   `send_event_with_signature_fault` (wrong secret, stale timestamp, none).
//! - Extra helpers: `addr`, `room_stays`, `reservation_status`,
//!   `webhook_endpoints`, `wait_for_block`, `wait_until_unblocked`,
//!   `hold_webhooks`/`release_webhooks`, `set_duplicate_webhooks`,
//!   `set_reorder_webhooks`, `clear_deliveries`.
//!
//! Control-API misuse (an unknown hotel, stay or key, a malformed date) is a
//! bug in the test and panics with a message; nothing a client sends over
//! HTTP can make the fake panic.

mod batch;
mod chain;
mod config;
mod control;
mod counts;
mod cursor;
mod errors;
mod filter;
mod model;
mod rate_limit;
mod schema;
mod server;
mod state;
mod types;
mod webhooks;

pub use batch::Refusal;
pub use config::{Access, Assumed, FakeConfig};
pub use control::Fake3rpms;
pub use counts::RequestCounts;
pub use cursor::{DEFAULT_PAGE, MAX_PAGE};
pub use model::{
    ForeignKey, KeyKind, KeySnapshot, ReservationStatus, RoomStaySnapshot, WebhookEndpointSnapshot,
    WebhookEndpointStatus, MAX_ACTIVE_ENDPOINTS, WEBHOOK_EVENTS,
};
pub use schema::sdl;
pub use webhooks::{sign, DeliveryAttempt, DeliveryOutcome, SignatureFault, SIGNATURE_HEADER};

/// Resolves once the fake is shutting down: the flag turned true (seen even
/// if it happened before this was called) or its sender is gone.
pub(crate) async fn stopped(rx: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}
