//! What keysmith needs from a driver beyond the [`Driver`] trait to run it:
//! the driver built from its configuration, the work it does beside
//! requests (a webhook receiver), the addresses it listens on, and how often
//! keysmith should follow its keys and entrances. Each driver exposes a
//! factory returning a [`Built`]; the server holds a registry of factories.
use std::{future::Future, net::SocketAddr, pin::Pin, sync::Arc};

use tokio::sync::watch;

use crate::{
    error::Result,
    follower::Follow,
    store::{DriverState, Store},
    AccessService, Driver,
};

/// What a factory may use to build a driver.
pub struct DriverContext {
    store: Arc<dyn Store>,
}

impl DriverContext {
    /// A context over keysmith's store.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// The private state of the driver named `driver`, kept in the store.
    pub fn state(&self, driver: &str) -> Result<Arc<dyn DriverState>> {
        self.store.driver_state(driver)
    }
}

/// Work a driver runs beside requests, started once the access service
/// exists, until the stop signal changes. It runs on every replica of a
/// shared database, without a lease (`crate::lease`): fit for a webhook
/// receiver, the only driver task there is, not for rounds of work that
/// must run once.
pub type Task = Box<
    dyn FnOnce(
            Arc<AccessService>,
            watch::Receiver<bool>,
        ) -> Pin<Box<dyn Future<Output = ()> + Send>>
        + Send,
>;

/// A driver built from its configuration, and what comes with it.
pub struct Built {
    /// The driver itself.
    pub driver: Arc<dyn Driver>,
    /// Its background work (a webhook receiver).
    pub tasks: Vec<Task>,
    /// The addresses it listens on, by what they receive ("seam-events").
    pub listening: Vec<(&'static str, SocketAddr)>,
    /// How often keysmith should follow its keys and entrances.
    pub follow: Follow,
}

impl Built {
    /// A driver with nothing beside it; its keys are followed at the
    /// default pace when its capability says `refresh`.
    pub fn driver(driver: Arc<dyn Driver>) -> Self {
        let follow = Follow {
            keys: driver
                .info()
                .capability
                .refresh
                .then_some(Follow::DEFAULT_KEYS),
            entrances: None,
        };
        Self {
            driver,
            tasks: Vec::new(),
            listening: Vec::new(),
            follow,
        }
    }
}
