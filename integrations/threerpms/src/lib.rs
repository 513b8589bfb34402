//! keysmith's 3RPMS integration: it keeps every upcoming room stay of a
//! 3RPMS hotel supplied with a key, issued through keysmith's access service
//! like any client's and published to 3RPMS, and reads the room access keys
//! of reservations and room stays. It is not a lock driver: the keys come
//! from whichever driver opens each room.
//!
//! The server calls [`start`] and keeps the [`Handle`]; everything else is
//! the integration's own.
mod calendar;
pub mod client;
pub mod config;
pub mod detect;
pub mod errors;
pub mod failure;
mod hotel;
pub mod inventory;
pub mod limiter;
pub mod model;
mod observer;
pub mod queries;
mod records;
mod registration;
mod start;
mod sync;
pub mod transport;
pub mod webhook;
pub mod worker;

pub use client::{Assignment, Client, Creation, WriteOutcome, WritePlan};
pub use config::ThreeRpmsConfig;
pub use hotel::{Hotel, Hotels, WebhookRegistration};
pub use limiter::{Egress, LimiterConfig};
pub use model::{NewKey, RoomAccessKey, RoomStay, RoomStayKey};
pub use records::StayRecord;
pub use registration::Replacing;
pub use start::{start, Handle, StartError, STATE_TREE};
pub use sync::SyncReport;
pub use transport::{Timeouts, Transport};
pub use webhook::ParkedItem;
