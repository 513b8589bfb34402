//! keysmith's domain: access keys, entrances, the capability router, the
//! reservation rules and the access service. Free of any wire format and of
//! any storage engine. The driver contract is its own crate
//! (`keysmith-driver`), re-exported here under the same paths.
#![warn(missing_docs)]
pub mod audit;
pub mod budget;
pub mod changes;
pub mod follower;
pub mod hosting;
pub mod key;
pub mod lease;
pub mod listed;
pub mod locks;
pub mod page;
pub mod request;
pub mod reservation;
pub mod router;
pub mod service;
pub mod store;
pub mod sweeper;

pub use keysmith_driver::{capability, driver, error, secret, time};

pub use capability::{CredentialMode, DriverCapability, EntranceCapability};
pub use driver::{Driver, DriverInfo, DriverKind, EntranceSpec};
pub use error::{reasons, Error, ErrorKind, Result};
pub use key::{AccessKey, KeyState, Role};
pub use listed::ListedKey;
pub use secret::Secret;
pub use service::AccessService;
pub use time::{Timestamp, Window};
