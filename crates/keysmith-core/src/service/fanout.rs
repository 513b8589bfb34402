//! One change of a key, made at each of its drivers in turn. A key can span
//! drivers (a room on one lock system, the lobby on another), and a change
//! is all-or-nothing across them: when a driver fails, the operation either
//! undoes what the drivers before it did ([`AccessService::compensate`]), or,
//! where a step cannot be undone (a revocation, an encoding), stores how far
//! it got so that a retry completes it.
use std::{future::Future, sync::Arc, time::Instant};

use tracing::warn;

use crate::{
    driver::{Driver, KeySlice},
    error::{Error, Result},
    key::AccessKey,
};

use super::{driver_calls::DriverOperation, slice_for, AccessService};

/// A driver's reply to its part of the change.
pub(super) struct Done<T> {
    pub driver: String,
    pub reply: T,
}

/// The driver that failed, and how.
pub(super) struct Stopped {
    pub driver: String,
    pub error: Error,
}

/// How far a change across drivers got.
pub(super) struct FanOut<T> {
    pub done: Vec<Done<T>>,
    pub stopped: Option<Stopped>,
}

impl AccessService {
    /// Asks each of `drivers`, in order, to make its part of the change to
    /// `key`, stopping at the first that fails (a driver that is not
    /// configured fails with DRIVER_NOT_CONFIGURED). Each call is counted
    /// and timed as `operation` (service::driver_calls).
    pub(super) async fn fan_out<T, F, Fut>(
        &self,
        key: &AccessKey,
        drivers: &[String],
        operation: DriverOperation,
        call: F,
    ) -> FanOut<T>
    where
        F: Fn(Arc<dyn Driver>, KeySlice) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut out = FanOut {
            done: Vec::with_capacity(drivers.len()),
            stopped: None,
        };
        for name in drivers {
            let result = match self.router.driver(name) {
                Ok(driver) => {
                    let started = Instant::now();
                    let result = call(driver.clone(), slice_for(key, name)).await;
                    self.driver_calls
                        .record(name, operation, &result, started.elapsed());
                    result
                }
                Err(error) => Err(error),
            };
            match result {
                Ok(reply) => out.done.push(Done {
                    driver: name.clone(),
                    reply,
                }),
                Err(error) => {
                    out.stopped = Some(Stopped {
                        driver: name.clone(),
                        error,
                    });
                    break;
                }
            }
        }
        out
    }

    /// Best effort: asks each of `drivers` to undo its part of `key` (as
    /// `key` describes it) with `operation`, logging, never failing, where
    /// it cannot.
    pub(super) async fn compensate<F, Fut>(
        &self,
        key: &AccessKey,
        drivers: &[String],
        what: &str,
        operation: DriverOperation,
        undo: F,
    ) where
        F: Fn(Arc<dyn Driver>, KeySlice) -> Fut,
        Fut: Future<Output = Result<()>>,
    {
        for name in drivers {
            let result = match self.router.driver(name) {
                Ok(driver) => {
                    let started = Instant::now();
                    let result = undo(driver.clone(), slice_for(key, name)).await;
                    self.driver_calls
                        .record(name, operation, &result, started.elapsed());
                    result
                }
                Err(error) => Err(error),
            };
            if let Err(error) = result {
                warn!(
                    key_id = %key.key_id,
                    driver = %name,
                    %error,
                    "could not undo {what} at a driver after another driver failed"
                );
            }
        }
    }
}

impl<T> FanOut<T> {
    /// The names of the drivers that did their part.
    pub fn done_drivers(&self) -> Vec<String> {
        self.done.iter().map(|d| d.driver.clone()).collect()
    }
}
