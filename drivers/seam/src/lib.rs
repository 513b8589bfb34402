//! keysmith's Seam driver: access grants with reservation_key, routed by
//! entrance capability; asynchronous access methods, which keysmith's key
//! follower polls and Seam's events announce.
mod build;
pub mod client;
pub mod config;
pub mod driver;
pub mod errors;
pub mod standing;
pub mod svix;
pub mod webhook;

pub use build::{build, EVENTS};
pub use config::SeamConfig;
pub use driver::{SeamDriver, DRIVER_NAME};
