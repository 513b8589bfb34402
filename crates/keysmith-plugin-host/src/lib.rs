//! keysmith's side of driver plugins: loads a shared library listed in the
//! configuration with libloading, checks its sha256 (when configured), its
//! ABI version and table size, and wraps it as a [`keysmith_core::Driver`]
//! of kind `Plugin` that behaves like a built-in one. The contract is
//! documented in the `keysmith-plugin` SDK.
//!
//! Plugin errors reach callers with their kind and reason. keysmith's
//! reasons are `&'static str`, so a plugin's reasons are kept in a bounded
//! set: an UPPER_SNAKE reason passes through as it is; a malformed one, or
//! a new one once the set is full, becomes `DRIVER_FAILED` with the
//! plugin's reason in the `plugin_reason` metadata.
mod handle;
mod instance;
mod load;

pub use handle::PluginDriverHandle;
#[doc(hidden)]
pub use load::load_table;
pub use load::{load, LoadError, PluginSpec};

#[cfg(test)]
mod tests;
