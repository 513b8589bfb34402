//! An example keysmith driver plugin: keypad locks that open with PINs.
//! Build it with `cargo build --release -p keysmith-keypad-plugin` and list
//! the library in keysmith's configuration (see README.md, "Plugins").
mod config;
mod keypad;

pub use config::{DoorConfig, DoorKind, Faults, KeypadConfig, PropertyConfig};
pub use keypad::{KeypadDriver, DRIVER_NAME};

keysmith_plugin::export_driver!(KeypadDriver::from_config);
