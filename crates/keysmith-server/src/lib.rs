//! keysmith's gRPC server: the tonic adapter of the access service and the
//! lock simulator, configuration, logging and the tower layers.
mod access;
mod admission;
mod audit;
pub mod auth;
pub mod config;
pub mod connection;
pub mod convert;
mod edge;
pub mod encryption;
mod exporter;
mod layers;
mod listing;
mod observe;
mod paced;
mod pms;
mod registry;
mod server;
mod simulator;
pub mod storage;
pub mod telemetry;
mod tls;
mod watch;

pub use config::{Config, Source};
pub use server::{
    shutdown_signal, start, start_with_clock, start_with_drivers, Running, WRITES_HEALTH,
};
