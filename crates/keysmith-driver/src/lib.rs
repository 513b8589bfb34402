//! The keysmith driver contract: what a lock system, an online access
//! platform or a plugin implements so that keysmith can issue, revoke and
//! change keys at its doors.
//!
//! A driver implements [`Driver`]. keysmith's core calls it after checking,
//! in one place, the driver's [`DriverCapability`] (a plain struct of flags,
//! all false by default: a driver opts in to what it can do) and the
//! reservation rules, so a driver only provisions: it never decides whether
//! a request is allowed. Every argument and reply is plain data (no
//! handles, no callbacks), so the same contract crosses the plugin ABI as
//! bytes. Errors are [`Error`]s with a kind (deciding the gRPC code), a
//! stable UPPER_SNAKE reason from [`reasons`], and context safe to show.
//!
//! Built-in drivers and the plugin SDK (`keysmith-plugin`) depend on this
//! crate alone; keysmith's core re-exports it.
#![warn(missing_docs)]

pub mod capability;
pub mod driver;
pub mod error;
pub mod key;
pub mod secret;
pub mod section;
pub mod state;
pub mod time;

pub use capability::{CredentialMode, DriverCapability, EntranceCapability};
pub use driver::{Driver, DriverInfo, DriverKind, EncoderSpec, EntranceSpec};
pub use error::{reasons, Error, ErrorKind, Result};
pub use key::{Role, Warning};
pub use secret::Secret;
pub use time::{Timestamp, Window};
