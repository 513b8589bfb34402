//! keysmith and the 3RPMS PMS: reading the room access keys of reservations
//! and room stays, publishing keys that a lock driver issued, and keeping
//! every upcoming room stay supplied with a key.
pub mod calendar;
pub mod client;
pub mod config;
pub mod errors;
pub mod limiter;
pub mod model;
pub mod observer;
pub mod queries;
pub mod records;
pub mod registration;
pub mod sync;
pub mod transport;
pub mod webhook;
pub mod worker;

pub use client::{Assignment, Client, Creation, WriteOutcome, WritePlan};
pub use limiter::{Egress, LimiterConfig};
pub use model::{NewKey, RoomAccessKey, RoomStay, RoomStayKey};
pub use transport::{Timeouts, Transport};
