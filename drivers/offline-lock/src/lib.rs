//! A simulated offline hotel lock system, faithful to how real offline locks
//! (Saflok, Onity, Visionline, Salto) decide: credentials carry sealed
//! sequence values, each lock keeps a little state and judges by its own
//! clock. See `offline-lock-semantics.md` in the reference notes.
pub mod config;
mod driver;
pub mod model;
mod pins;
mod simulator;
mod state;
mod time;

pub use config::OfflineLockConfig;
pub use driver::{OfflineLock, DRIVER_NAME};
pub use simulator::{FlagChange, LockView};
