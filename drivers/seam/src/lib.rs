//! keysmith's Seam driver: access grants with reservation_key, routed by
//! entrance capability; asynchronous access methods followed by polling.
pub mod client;
pub mod config;
pub mod driver;
pub mod errors;
pub mod follower;
pub mod svix;
pub mod webhook;

pub use config::SeamConfig;
pub use driver::{SeamDriver, DRIVER_NAME};
