//! Decision model of a simulated offline hotel lock (Saflok / Onity / Visionline style).
//!
//! The credential carries the data ([`CredentialPayload`], sealed by [`CredentialCodec`]);
//! the lock keeps a small state ([`LockState`]) and decides locally
//! ([`LockState::present`]) following `offline-lock-semantics.md`:
//!
//! 1. unreadable credential -> `invalid` / `unknown_pin`;
//! 2. wrong property code -> `wrong_property`;
//! 3. lock blocked -> `blocked` unless the credential is staff;
//! 4. blocked card id -> `card_blocked`;
//! 5. staff -> staff path (lock listed, shift, level code; never touches guest state);
//! 6. guest path: guest-cancel (inhibit), lock listed, window by the lock's clock, sequence
//!    (superseded / joined / overridden / out of window), deadbolt.
//!
//! Every outcome appends exactly one [`AuditRecord`].
//!
//! The module only refers to itself through `self::` / `super::` paths so it can be moved
//! into another crate as is.

pub mod credential;
pub mod lock;

#[cfg(test)]
mod tests;

/// A lock sequence value (guest or staff code). Values wrap at 16 bits and are compared
/// with [`sequence_ahead`] (RFC 1982 serial-number arithmetic).
pub type Sequence = u16;

/// Seconds since the Unix epoch.
pub type UnixSeconds = i64;

pub use self::credential::{
    CredentialCodec, CredentialError, CredentialPayload, CredentialRole, LockGrant,
};
pub use self::lock::{
    sequence_ahead, AuditRecord, Decision, LockConfig, LockState, Presented, Reason, SequenceOrder,
};
