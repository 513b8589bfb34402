//! A faithful fake of the Seam Connect endpoints keysmith's Seam driver
//! uses, for tests and demos: entrances, user identities, access grants with
//! Seam's reservation rules, asynchronously issued access methods, card
//! encoding through action attempts, events and Svix-signed webhooks, plus
//! fault switches. Built like Seam's own `@seamapi/fake-seam-connect`:
//! in-memory state, one handler per route, schema validation, sequential
//! ids, test-only control routes under `/_fake/*`. README.md lists what it
//! honours and what it assumes.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use fake_seam::{EntranceSeed, FakeSeam, FakeSeamConfig};
//! let fake = FakeSeam::start(FakeSeamConfig::manual()).await?;
//! fake.add_workspace("ws1", "seam_test_key");
//! fake.add_acs_system("ws1", "sys1", "Visionline", true);
//! let room = fake.add_entrance("ws1", "sys1", EntranceSeed {
//!     display_name: "Room 101".into(),
//!     space_key: Some("room-101".into()),
//!     can_belong_to_reservation: true,
//!     can_unlock_with_card: true,
//!     ..EntranceSeed::default()
//! });
//! // ... point a Seam client at fake.base_url() with "seam_test_key" ...
//! fake.issue_pending(); // access methods become issued
//! # let _ = room; Ok(()) }
//! ```
//!
//! Differences from the brief this crate was built to, on purpose:
//! - `FakeSeamConfig` has two more fields, `encode_delay` and
//!   `webhook_timeout`; build it with `..FakeSeamConfig::default()`.
//!   `Default` has every delay `Some(ZERO)` (background steps happen at
//!   once, but after the answer that caused them); `FakeSeamConfig::manual()`
//!   has them `None` (steps wait for `issue_pending` and friends).
//! - `Fault` has one more variant, `HangAfterCommit { route }` (commit, then
//!   never answer, so the client times out); `DropResponseAfterCommit`
//!   closes the connection without an answer. `fail_next(fault,
//!   UNTIL_CLEARED)` arms a fault until `clear_faults()`.
//! - Extra methods: `addr`, `add_encoder` (encoding needs an encoder),
//!   `finish_encodings`, `settled` (await timed background steps without
//!   polling), `events`, `clear_faults`.
//! - `RequestCounts` has `total`, `by_route` and `faulted`, read with
//!   `route(path)` and `faulted(path)`.
//! - `/access_methods/list` and `/events/list` answer without `pagination`,
//!   as Seam's OpenAPI document has them; `/events/list` requires `since` or
//!   `between`, as Seam documents.
//! - The reservation errors answer `message` = the guide's title, `type`
//!   `invalid_input` (400) or `reservation_conflict` (409); see `rules.rs`.
//! - reqwest is a normal dependency (webhook deliveries), and hyper plus
//!   hyper-util are declared directly, as in fake-3rpms (no new crates).
//! - Seam's published API definition is the contract (`contract.rs`):
//!   requests are refused as its schemas refuse them, and every answer,
//!   event and request is checked against it
//!   ([`FakeSeam::contract_violations`]).
//!
//! Control-API misuse (an unknown workspace, system or entrance) panics with
//! a message; nothing a client sends over HTTP can make the fake panic.

mod config;
pub mod contract;
mod control;
mod core;
mod counts;
mod errors;
mod events;
mod faults;
mod ids;
mod lifecycle;
mod model;
mod pagination;
mod routes;
mod rules;
mod server;
mod state;
mod time;
mod validate;
mod webhooks;

pub use config::FakeSeamConfig;
pub use control::FakeSeam;
pub use counts::RequestCounts;
pub use events::EVENT_TYPES;
pub use faults::{Fault, UNTIL_CLEARED};
pub use model::{
    AccessMethodSnapshot, AccessMode, EntranceSeed, GrantSnapshot, UserIdentitySnapshot,
};
pub use pagination::{DEFAULT_LIMIT, ENTRANCES_DEFAULT_LIMIT};
pub use rules::{
    ReservationErrorText, RESERVATION_CONFLICT_TYPE, RESERVATION_ENTRANCE_CHANGE_REQUIRES_CLEANUP,
    RESERVATION_ENTRANCE_CHANGE_REQUIRES_CLEANUP_MESSAGE, RESERVATION_JOINER_ENTRANCE_SET_CONFLICT,
    RESERVATION_JOINER_ENTRANCE_SET_CONFLICT_MESSAGE, RESERVATION_KEY_NOT_SUPPORTED,
    RESERVATION_KEY_NOT_SUPPORTED_MESSAGE, RESERVATION_KEY_REQUIRED_FOR_GUEST_CARDS,
    RESERVATION_TIME_FRAMES_MUST_OVERLAP, RESERVATION_TIME_FRAMES_MUST_OVERLAP_MESSAGE,
};
pub use server::REQUEST_ID_HEADER;
pub use webhooks::{svix_signature, DeliveryAttempt, DeliveryOutcome};

/// Resolves once the fake is shutting down: the flag turned true (seen even
/// if it happened before this was called) or its sender is gone.
pub(crate) async fn stopped(rx: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}
