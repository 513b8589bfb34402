//! The access service: the operations of keysmith.v1.AccessService on domain
//! types. It resolves entrances to drivers, enforces the capabilities and the
//! reservation rules for every driver alike, and makes each answer durable
//! before returning it.
//!
//! Each file does one job: [`envelope`] is what every mutation shares
//! (validation, idempotency, locks, audit, commit), `fanout` makes one
//! change at each driver of a key, `policy` holds the capability and
//! reservation rules, and one file per operation computes its answer.
use std::{collections::BTreeSet, sync::Arc};

use crate::{
    driver::{Driver, DriverInfo, DriverKeyRecord, EntranceTarget, KeySlice},
    error::{bounded, quoted, reasons, Error, ErrorKind, Result},
    key::{AccessKey, KeyState, Warning},
    listed::ListedKey,
    router::{RoutedEntrance, Router},
    store::Store,
    time::Timestamp,
};

mod driver_calls;
mod encode;
mod encoders;
pub mod envelope;
mod fanout;
mod issue;
mod list;
mod policy;
mod refresh;
mod revoke;
mod sweep;
mod update;
mod watch;

pub use driver_calls::{DriverCall, DriverCallWatcher};
pub use encoders::Encoder;
pub use envelope::Method;
pub use sweep::{Retention, SweepReport};
pub use watch::{KeyWatch, WatchEvent, WatchKeysRequest};

/// Where "now" comes from; tests substitute their own.
pub trait Clock: Send + Sync + 'static {
    /// The current time. A mutation reads it once and judges everything at
    /// that instant.
    fn now(&self) -> Timestamp;
}

/// The real clock: [`Timestamp::now`].
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// The answer to a revocation.
#[derive(Clone, Debug)]
pub struct Revocation {
    /// Every key targeted, each now revoked; those revoked before are as they
    /// were.
    pub keys: Vec<AccessKey>,
    /// What the drivers said, each once: an offline credential that still
    /// opens, a driver no longer configured.
    pub warnings: Vec<Warning>,
}

/// A page of ListKeys.
pub struct KeyPage {
    /// The page's keys in key id (creation) order, shared with the store.
    pub keys: Vec<Arc<ListedKey>>,
    /// The token of the next page, `None` when the listing is done. A page
    /// scans a bounded stretch of the index, so a short or even empty page may
    /// still have a next one.
    pub next_page_token: Option<String>,
}

/// A key a driver holds, beside what keysmith knows of it: `None` when
/// keysmith has no such key (an orphan on the driver's side).
pub struct HeldKey {
    /// The key as the driver holds it.
    pub record: DriverKeyRecord,
    /// keysmith's state of the key now (`EXPIRED` derived), `None` for an
    /// orphan.
    pub keysmith_state: Option<KeyState>,
}

/// A page of ListDriverKeys.
pub struct DriverKeyPage {
    /// The driver's keys, in the driver's order.
    pub keys: Vec<HeldKey>,
    /// The driver's own token for the next page, passed through as it is;
    /// `None` after the last.
    pub next_page_token: Option<String>,
}

/// keysmith's access service: the operations of
/// `keysmith.v1.AccessService` on domain types, the same for every driver.
///
/// Every mutation ([`issue`](Self::issue), [`revoke`](Self::revoke),
/// [`update_key`](Self::update_key), [`encode_key`](Self::encode_key)) runs
/// in one envelope: the request is validated before anything is read; a
/// store transaction holds the request_id and, where one is involved, the
/// reservation; a request_id seen before is answered with its first answer
/// (or refused with `REQUEST_ID_REUSED` when the request differs); and the
/// change is committed with its audit record and its request_id's answer
/// atomically, durable before the method returns. A key that spans several
/// drivers is changed at each in entrance order: all or nothing where a
/// driver's step can be undone (issue, update), with its progress stored
/// for a retry to complete where it cannot (revoke, encode).
///
/// Errors carry a reason from [`reasons`]; a driver's own error reaches the
/// caller as the driver answered it.
pub struct AccessService {
    store: Arc<dyn Store>,
    /// Counts and times every driver call of a change.
    driver_calls: driver_calls::DriverCalls,
    router: Arc<Router>,
    clock: Arc<dyn Clock>,
    observers: parking_lot::RwLock<Vec<Arc<dyn KeyObserver>>>,
}

/// Told of keys revoked through the service, after the revocation is
/// durable and before the caller's answer: an integration that published a
/// key elsewhere (a PMS) queues its clean-up there, durably, and so never
/// misses one. An observer's failure is logged; the revocation stands.
#[async_trait::async_trait]
pub trait KeyObserver: Send + Sync + 'static {
    /// Called once for each key newly revoked, with its revoked version. An
    /// error is logged and does not undo or fail the revocation, so queue the
    /// clean-up durably rather than doing it here.
    async fn revoked(&self, key: &AccessKey) -> Result<()>;
}

impl AccessService {
    /// A service over `store`, reaching drivers through `router` and judging
    /// time by `clock`; no observer yet.
    pub fn new(store: Arc<dyn Store>, router: Arc<Router>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            driver_calls: driver_calls::DriverCalls::new(&router),
            router,
            clock,
            observers: parking_lot::RwLock::new(Vec::new()),
        }
    }

    /// Sets the watcher told of every driver call as it ends (the first one
    /// set stays).
    pub fn watch_driver_calls(&self, watcher: Arc<dyn DriverCallWatcher>) {
        self.driver_calls.watch(watcher);
    }

    /// Adds an observer, told of every key revoked from then on.
    pub fn observe(&self, observer: Arc<dyn KeyObserver>) {
        self.observers.write().push(observer);
    }

    /// The router, for its drivers and entrances.
    pub fn router(&self) -> &Arc<Router> {
        &self.router
    }

    /// Forgets the request_ids answered more than `retention` ago: a retry
    /// after that is a new request. Returns how many were forgotten.
    pub async fn expire_idempotency(&self, retention: std::time::Duration) -> Result<usize> {
        let retention = i64::try_from(retention.as_micros()).unwrap_or(i64::MAX);
        let before = Timestamp::from_micros(self.clock.now().as_micros().saturating_sub(retention));
        self.store.expire_idempotency(before).await
    }

    /// The current time by the service's clock.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// The key as committed, revoked and expired ones included, with its
    /// credential data: the caller decides what to show (see
    /// [`AccessKey::state`] for the state to show). Checks the ids
    /// (InvalidArgument: `FIELD_REQUIRED`, `FIELD_TOO_LONG`, `FIELD_INVALID`);
    /// NotFound `KEY_NOT_FOUND` when the property has no such key. Reads only.
    pub fn get_key(&self, property_id: &str, key_id: &str) -> Result<AccessKey> {
        let mut v = crate::request::Violations::default();
        v.id("property_id", property_id);
        v.id("key_id", key_id);
        v.finish()?;
        self.require_key(property_id, key_id)
    }

    /// Re-reads every driver's entrances and reports what changed: an
    /// entrance that disappeared is said, loudly, not dropped in silence.
    pub async fn refresh_entrances(&self) -> Result<crate::router::EntranceChanges> {
        let changes = self.router.refresh().await?;
        for (property, entrance) in &changes.disappeared {
            tracing::warn!(
                property,
                entrance,
                "an entrance disappeared from its driver"
            );
        }
        for (property, entrance) in &changes.appeared {
            tracing::info!(property, entrance, "a new entrance");
        }
        for (driver, error) in &changes.failed {
            tracing::warn!(driver, %error, "could not read a driver's entrances; kept the old ones");
        }
        Ok(changes)
    }

    /// Every entrance of a property with its driver, in
    /// [`Router::entrances_of`]'s order. Checks the id; NotFound
    /// `PROPERTY_NOT_FOUND` when no driver serves the property. Reads only.
    pub fn list_entrances(&self, property_id: &str) -> Result<Vec<Arc<RoutedEntrance>>> {
        let mut v = crate::request::Violations::default();
        v.id("property_id", property_id);
        v.finish()?;
        self.router.entrances_of(property_id)
    }

    /// Every configured driver, by name.
    pub fn list_drivers(&self) -> Vec<DriverInfo> {
        self.router.driver_infos()
    }

    /// The key as stored, outside any mutation.
    fn require_key(&self, property_id: &str, key_id: &str) -> Result<AccessKey> {
        self.store
            .key(property_id, key_id)?
            .ok_or_else(|| key_not_found(property_id, key_id))
    }

    /// Fails unless `driver`'s capability has what `operation` needs.
    fn require(
        &self,
        driver: &dyn Driver,
        has: impl Fn(&crate::capability::DriverCapability) -> bool,
        operation: &str,
    ) -> Result<()> {
        let info = driver.info();
        if has(&info.capability) {
            Ok(())
        } else {
            Err(Error::new(
                ErrorKind::Unsupported,
                reasons::OPERATION_NOT_SUPPORTED,
                format!("driver {:?} does not support {operation}", info.name),
            )
            .with_context("driver", info.name)
            .with_context("operation", operation.to_owned()))
        }
    }
}

fn key_not_found(property_id: &str, key_id: &str) -> Error {
    Error::not_found(
        reasons::KEY_NOT_FOUND,
        format!(
            "property {} has no key {}",
            quoted(property_id),
            quoted(key_id)
        ),
    )
    .with_context("key_id", bounded(key_id))
}

fn key_revoked(key: &AccessKey) -> Error {
    Error::failed_precondition(
        reasons::KEY_REVOKED,
        format!("key {} is revoked", key.key_id),
    )
    .with_context("key_id", key.key_id.clone())
}

/// The drivers of a key, owned, in entrance order.
fn drivers_of(key: &AccessKey) -> Vec<String> {
    key.drivers().into_iter().map(str::to_owned).collect()
}

/// The part of a key that one driver handles.
pub fn slice_for(key: &AccessKey, driver: &str) -> KeySlice {
    KeySlice {
        key_id: key.key_id.clone(),
        property_id: key.property_id.clone(),
        holder: key.holder.clone(),
        role: key.role,
        window: key.window,
        reservation: key.reservation.clone(),
        entrances: key
            .entrances_of(driver)
            .map(|e| EntranceTarget {
                entrance_id: e.entrance_id.clone(),
                behaviour: e.behaviour,
            })
            .collect(),
        credentials: key
            .credentials
            .iter()
            .filter(|c| c.driver == driver)
            .cloned()
            .collect(),
        driver_ref: key.driver_refs.get(driver).cloned(),
    }
}

/// Replaces one driver's credentials of a key with `fresh`.
fn replace_credentials(key: &mut AccessKey, driver: &str, fresh: Vec<crate::key::Credential>) {
    key.credentials.retain(|c| c.driver != driver);
    key.credentials.extend(fresh.into_iter().map(|mut c| {
        c.driver = driver.to_owned();
        c
    }));
}

/// Adds `fresh` warnings a key does not carry yet.
fn add_warnings(list: &mut Vec<Warning>, fresh: impl IntoIterator<Item = Warning>) {
    list.extend(fresh);
    dedup_warnings(list);
}

fn dedup_warnings(list: &mut Vec<Warning>) {
    let mut seen = BTreeSet::new();
    list.retain(|w| seen.insert((w.code.clone(), w.message.clone())));
}

/// The warning a key carries while a driver has not made a change: it names
/// the driver and the failure's reason (never its message, which is the
/// driver's).
fn driver_pending(code: &str, driver: &str, error: &Error, what: &str) -> Warning {
    Warning::new(
        code,
        format!(
            "driver {driver:?} could not {what} ({}): retry the request (the same request_id) \
             to complete it",
            error.reason()
        ),
    )
}
