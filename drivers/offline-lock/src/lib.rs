//! A simulated offline hotel lock system, faithful to how real offline locks
//! (Saflok, Onity, Visionline, Salto) decide: credentials carry sealed
//! sequence values, each lock keeps a little state and judges by its own
//! clock. See `offline-lock-semantics.md` in the reference notes.
//!
//! The encoder's counters, each lock's state, the PINs and the values each
//! reservation got are the driver's stored state ([`DriverState`]), of
//! which it keeps a copy in memory. Every operation, the simulated doors'
//! included, runs in the sections of the locks it touches (and of the
//! reservation it reads or changes, [`DriverState::sections`]) on that copy
//! as last committed: each lock is read again when the version stored
//! beside its records is not the copy's. Several keysmith replicas on one
//! PostgreSQL database therefore decide as one encoder and one set of
//! doors: a guest value is handed out once, a PIN is known to every
//! replica, and a door asked of any replica judges by what the others
//! encoded and what it saw before.
//!
//! [`DriverState`]: keysmith_driver::state::DriverState
//! [`DriverState::sections`]: keysmith_driver::state::DriverState::sections
pub mod config;
mod driver;
pub mod model;
mod pins;
mod simulator;
mod state;
#[cfg(test)]
mod tests;
mod time;

pub use config::OfflineLockConfig;
pub use driver::{OfflineLock, DRIVER_NAME};
pub use simulator::{FlagChange, LockView};
