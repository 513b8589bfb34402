//! keysmith's domain: access keys, entrances, the driver contract, the
//! capability router and the reservation rules. Free of any wire format.
pub mod audit;
pub mod capability;
pub mod driver;
pub mod error;
pub mod key;
pub mod listed;
pub mod locks;
pub mod page;
pub mod request;
pub mod reservation;
pub mod router;
pub mod secret;
pub mod service;
pub mod store;
pub mod time;

pub use capability::{CredentialMode, DriverCapability, EntranceCapability};
pub use driver::{Driver, DriverInfo, DriverKind, EntranceSpec};
pub use error::{reasons, Error, ErrorKind, Result};
pub use key::{AccessKey, KeyState, Role};
pub use listed::ListedKey;
pub use secret::Secret;
pub use service::AccessService;
pub use time::{Timestamp, Window};
