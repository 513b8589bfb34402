//! 3RPMS webhooks: the signal that a room stay, a reservation or a key
//! changed, so that keysmith can keep each upcoming stay supplied with a
//! working key.
//!
//! How 3RPMS delivers shapes every part of this module:
//! - At least once and in no particular order: an event may come twice, a
//!   retry may overtake a newer event. Events are deduplicated on their id
//!   ([`Inbox`]), and an event is only a hint to re-read the object it
//!   names, so the order does not matter.
//! - Anything but a 2xx is retried for days. A 2xx is therefore sent only
//!   once the event is durably stored; before that, a crash would lose it
//!   for good. Conversely, whatever keysmith cannot take yet (no endpoint
//!   registered, store failing) is answered 503 so that 3RPMS tries again.
//! - Slow answers count as failures, and an endpoint failing for days is
//!   disabled. The handler ([`router`]) only verifies, parses and queues;
//!   the room-stay work happens in a worker draining the inbox.
//! - Deliveries are signed with the endpoint's secret ([`verify`]) over the
//!   raw body and a timestamp, which keeps forgeries and replays out.
//!   Secrets and signatures never reach a log, an error or Debug output.
pub mod dead_letter;
pub mod event;
pub mod inbox;
mod keys;
pub mod receiver;
pub mod secrets;
pub mod signature;

pub use dead_letter::ParkedItem;
pub use event::WebhookEvent;
pub use inbox::{Accepted, Inbox, Queued, DEDUP_RETENTION};
pub use receiver::{router, HotelWebhooks, ReceiverConfig};
pub use secrets::EndpointRecord;
pub use signature::{sign, verify, SignatureError};
