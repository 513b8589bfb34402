//! Counts and times the calls the access service makes to its drivers, by
//! driver, operation and outcome, through the `metrics` facade: whoever
//! embeds the core decides where they go (the server exports them to
//! Prometheus); without a recorder they cost next to nothing.
//!
//! A [`DriverCallWatcher`], when one is set, is told of each call as it
//! ends too, on the task that made it (the server makes each call a span
//! of the RPC it served).
//!
//! Labels stay bounded: driver names come from the configuration,
//! operations and outcomes from the enums here. Each handle is made once,
//! when its series first occurs, so that a call looks nothing up by name in
//! the registry.
use std::{
    collections::HashMap,
    sync::{Arc, OnceLock},
    time::Duration,
};

use crate::{
    error::{ErrorKind, Result},
    router::Router,
};

/// The driver method a change calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum DriverOperation {
    Issue,
    Revoke,
    Update,
    Encode,
    Refresh,
}

impl DriverOperation {
    const ALL: [DriverOperation; 5] = [
        DriverOperation::Issue,
        DriverOperation::Revoke,
        DriverOperation::Update,
        DriverOperation::Encode,
        DriverOperation::Refresh,
    ];

    fn as_str(self) -> &'static str {
        match self {
            DriverOperation::Issue => "issue",
            DriverOperation::Revoke => "revoke",
            DriverOperation::Update => "update",
            DriverOperation::Encode => "encode",
            DriverOperation::Refresh => "refresh",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// `ok`, or the kind of the driver's error.
const OUTCOMES: usize = 11;

fn outcome_index(kind: Option<ErrorKind>) -> usize {
    match kind {
        None => 0,
        Some(ErrorKind::InvalidArgument) => 1,
        Some(ErrorKind::NotFound) => 2,
        Some(ErrorKind::AlreadyExists) => 3,
        Some(ErrorKind::FailedPrecondition) => 4,
        Some(ErrorKind::PermissionDenied) => 5,
        Some(ErrorKind::Unauthenticated) => 6,
        Some(ErrorKind::Unavailable) => 7,
        Some(ErrorKind::Unsupported) => 8,
        Some(ErrorKind::ResourceExhausted) => 9,
        Some(ErrorKind::Internal) => 10,
    }
}

const OUTCOME_NAMES: [&str; OUTCOMES] = [
    "ok",
    "invalid_argument",
    "not_found",
    "already_exists",
    "failed_precondition",
    "permission_denied",
    "unauthenticated",
    "unavailable",
    "unsupported",
    "resource_exhausted",
    "internal",
];

/// One operation at one driver; each handle is made when first needed, so
/// that an operation never called exports nothing.
struct OperationHandles {
    driver: String,
    operation: DriverOperation,
    seconds: OnceLock<metrics::Histogram>,
    /// By [`outcome_index`], made when the outcome first occurs.
    calls: [OnceLock<metrics::Counter>; OUTCOMES],
}

impl OperationHandles {
    fn new(driver: &str, operation: DriverOperation) -> Self {
        Self {
            driver: driver.to_owned(),
            operation,
            seconds: OnceLock::new(),
            calls: Default::default(),
        }
    }

    fn seconds(&self) -> &metrics::Histogram {
        self.seconds.get_or_init(|| {
            metrics::histogram!(
                "keysmith_driver_call_seconds",
                "driver" => self.driver.clone(),
                "operation" => self.operation.as_str(),
            )
        })
    }

    fn calls(&self, outcome: usize) -> &metrics::Counter {
        self.calls[outcome].get_or_init(|| {
            metrics::counter!(
                "keysmith_driver_calls_total",
                "driver" => self.driver.clone(),
                "operation" => self.operation.as_str(),
                "outcome" => OUTCOME_NAMES[outcome],
            )
        })
    }
}

/// One call to a driver, as it ended.
#[derive(Clone, Copy, Debug)]
pub struct DriverCall<'a> {
    /// The driver's configured name.
    pub driver: &'a str,
    /// `issue`, `revoke`, `update`, `encode` or `refresh`.
    pub operation: &'static str,
    /// `ok`, or the kind of the driver's error (`unavailable`, ...).
    pub outcome: &'static str,
    /// From the call to the driver's answer.
    pub took: Duration,
}

/// Told of every driver call as it ends, on the task that made it, beside
/// its metrics. Nothing secret is in a [`DriverCall`].
pub trait DriverCallWatcher: Send + Sync + 'static {
    /// Called once per driver call, as it ended.
    fn ended(&self, call: &DriverCall<'_>);
}

/// The handles of every configured driver's operations.
pub(super) struct DriverCalls {
    by_driver: HashMap<String, Vec<OperationHandles>>,
    watcher: OnceLock<Arc<dyn DriverCallWatcher>>,
}

impl DriverCalls {
    pub(super) fn new(router: &Router) -> Self {
        let by_driver = router
            .driver_infos()
            .into_iter()
            .map(|info| {
                let handles = DriverOperation::ALL
                    .iter()
                    .map(|op| OperationHandles::new(&info.name, *op))
                    .collect();
                (info.name, handles)
            })
            .collect();
        Self {
            by_driver,
            watcher: OnceLock::new(),
        }
    }

    /// Sets the watcher; the first one set stays.
    pub(super) fn watch(&self, watcher: Arc<dyn DriverCallWatcher>) {
        let _ = self.watcher.set(watcher);
    }

    /// Records one call to `driver` that took `took` and ended with `result`.
    pub(super) fn record<T>(
        &self,
        driver: &str,
        operation: DriverOperation,
        result: &Result<T>,
        took: Duration,
    ) {
        let Some(handles) = self.by_driver.get(driver) else {
            return;
        };
        let handles = &handles[operation.index()];
        handles.seconds().record(took.as_secs_f64());
        let outcome = outcome_index(result.as_ref().err().map(|e| e.kind()));
        handles.calls(outcome).increment(1);
        if let Some(watcher) = self.watcher.get() {
            watcher.ended(&DriverCall {
                driver,
                operation: operation.as_str(),
                outcome: OUTCOME_NAMES[outcome],
                took,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_are_indexed_in_order() {
        for (i, op) in DriverOperation::ALL.iter().enumerate() {
            assert_eq!(op.index(), i);
        }
    }
}
