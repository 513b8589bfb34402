//! The SDK for keysmith driver plugins: a third-party driver in a shared
//! library that keysmith loads at start-up, with no rebuild of keysmith.
//!
//! # Writing a plugin
//!
//! Make a crate with `crate-type = ["cdylib"]`, depend on `keysmith-plugin`
//! and `keysmith-driver`, implement [`PluginDriver`] (an ordinary synchronous
//! trait on keysmith's own types) and export it with one macro:
//!
//! ```ignore
//! use keysmith_plugin::{export_driver, PluginDriver, PluginInfo};
//!
//! struct MyLock { /* ... */ }
//!
//! impl MyLock {
//!     /// `config` is the JSON of the plugin's `config` table in keysmith's
//!     /// configuration: parse it with serde_json.
//!     fn from_config(config: &[u8]) -> keysmith_driver::Result<Self> { todo!() }
//! }
//!
//! impl PluginDriver for MyLock { /* info, entrances, issue, revoke, ... */ }
//!
//! export_driver!(MyLock::from_config);
//! ```
//!
//! The SDK does the bytes, the panics and the memory. See the keypad
//! example in `plugins/keypad`.
//!
//! # The contract
//!
//! Rust has no stable ABI, so no Rust type crosses the boundary. The
//! library exports one C symbol, `keysmith_driver_plugin`, returning a
//! versioned table of `extern "C"` functions ([`abi::PluginTable`]):
//! `abi_version` and `table_size` first (frozen for every version, so that
//! keysmith can refuse a library built for another version by name),
//! `create(config bytes)`, `call(method, request bytes) -> response bytes`,
//! `free_buffer` and `destroy`. The bytes are protobuf messages of
//! `proto/keysmith/driver/v1/driver.proto` (the [`proto`] module), the major
//! version in the package name.
//!
//! - Memory is freed by whoever allocated it: keysmith returns each
//!   response buffer to the plugin's `free_buffer`; request bytes are lent
//!   for one call only.
//! - Every entry point catches panics: a panic becomes an INTERNAL
//!   `PLUGIN_PANICKED` error for that one call, and its message (which may
//!   hold a secret) is neither returned nor printed, only where it happened.
//!   Build plugins with the default `panic = "unwind"`: with `abort` a panic
//!   ends the whole keysmith process.
//! - keysmith calls the plugin on blocking threads, several at once: a
//!   driver is `Send + Sync` and guards its own state. No async runtime is
//!   shared across the boundary; a plugin needing one keeps its own.
//! - keysmith reads [`PluginDriver::info`] once, at load.
//! - keysmith never unloads a library.
//! - A plugin must be built with the same `keysmith-plugin` major version
//!   (ABI version) as the keysmith that loads it; keysmith refuses others
//!   at start-up, naming the library and both versions.
pub mod abi;
pub mod convert;
mod driver;
#[doc(hidden)]
pub mod export;
mod in_process;
mod intern;

pub use driver::{PluginDriver, PluginInfo};
pub use in_process::InProcess;

/// The generated messages of the driver contract, `keysmith.driver.v1`.
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/keysmith.driver.v1.rs"));
}

/// The reasons the plugin boundary itself reports.
pub mod reasons {
    /// The plugin panicked during the call; the call failed, nothing else.
    pub const PLUGIN_PANICKED: &str = "PLUGIN_PANICKED";
    /// One side sent bytes the contract does not allow.
    pub const PLUGIN_PROTOCOL_ERROR: &str = "PLUGIN_PROTOCOL_ERROR";
}

/// This SDK's version: a plugin built against another major version (another
/// ABI version) is refused.
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");
