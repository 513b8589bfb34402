//! The access service: the operations of keysmith.v1.AccessService on domain
//! types. It resolves entrances to drivers, enforces the capabilities and the
//! reservation rules for every driver alike, and makes each answer durable
//! before returning it.
use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
};

use serde::Serialize;
use sha2::{Digest, Sha256};
use tracing::warn;

use crate::{
    audit::AuditRecord,
    driver::{
        Driver, DriverInfo, DriverKeyRecord, EncodeArgs, EntranceTarget, IssueArgs, IssuedState,
        KeySlice, ListArgs, RevokeArgs, UpdateArgs,
    },
    error::{reasons, Error, ErrorKind, Result},
    key::{warnings, AccessKey, Behaviour, KeyEntrance, KeyState, Role, Warning},
    listed::ListedKey,
    locks::Locks,
    page,
    request::{
        EncodeKeyRequest, IssueRequest, ListDriverKeysRequest, ListKeysRequest, RevokeRequest,
        RevokeTarget, UpdateKeyRequest,
    },
    reservation::{self, Admission, Member, Reservation},
    router::{RoutedEntrance, Router},
    store::{IdempotencyRecord, KeyIndex, KeyScan, Store, StoredAnswer, WriteSet},
    time::Timestamp,
};

/// Where "now" comes from; tests substitute their own.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// The answer to a revocation.
#[derive(Clone, Debug)]
pub struct Revocation {
    pub keys: Vec<AccessKey>,
    pub warnings: Vec<Warning>,
}

pub struct KeyPage {
    pub keys: Vec<Arc<ListedKey>>,
    pub next_page_token: Option<String>,
}

/// A key a driver holds, beside what keysmith knows of it: `None` when
/// keysmith has no such key (an orphan on the driver's side).
pub struct HeldKey {
    pub record: DriverKeyRecord,
    pub keysmith_state: Option<KeyState>,
}

pub struct DriverKeyPage {
    pub keys: Vec<HeldKey>,
    pub next_page_token: Option<String>,
}

pub struct AccessService {
    store: Arc<dyn Store>,
    router: Arc<Router>,
    clock: Arc<dyn Clock>,
    locks: Locks,
    observers: parking_lot::RwLock<Vec<Arc<dyn KeyObserver>>>,
}

/// Told of keys revoked through the service, after the revocation is
/// durable and before the caller's answer: an integration that published a
/// key elsewhere (a PMS) queues its clean-up there, durably, and so never
/// misses one. An observer's failure is logged; the revocation stands.
#[async_trait::async_trait]
pub trait KeyObserver: Send + Sync + 'static {
    async fn revoked(&self, key: &AccessKey) -> Result<()>;
}

/// Listing scans at most this many index entries per page size unit, so a
/// selective filter yields a short page rather than an unbounded scan.
const SCAN_FACTOR: usize = 8;

impl AccessService {
    pub fn new(store: Arc<dyn Store>, router: Arc<Router>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            router,
            clock,
            locks: Locks::default(),
            observers: parking_lot::RwLock::new(Vec::new()),
        }
    }

    pub fn observe(&self, observer: Arc<dyn KeyObserver>) {
        self.observers.write().push(observer);
    }

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

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    pub async fn issue(&self, req: IssueRequest) -> Result<AccessKey> {
        req.validate()?;
        let fingerprint = fingerprint("Issue", &req);
        let _guards = self
            .locks
            .acquire(&lock_names(
                &req.property_id,
                req.request_id.as_deref(),
                req.reservation_key.as_deref(),
            ))
            .await;
        if let Some(answer) =
            self.replay(&req.property_id, &req.request_id, "Issue", &fingerprint)?
        {
            return answer_key(answer);
        }
        let now = self.clock.now();
        if req.window.has_ended(now) {
            return Err(Error::invalid_field(
                reasons::INVALID_TIME_WINDOW,
                "ends_at",
                "is in the past",
            ));
        }
        let entrances = self
            .router
            .resolve(&req.property_id, &req.entrance_ids, &req.space_ids)?;
        self.check_capabilities(&req, &entrances)?;

        let key_id = ulid::Ulid::new().to_string();
        let placement = self.place_in_reservation(&req, &key_id, &entrances)?;
        let reservation = placement.reservation.clone();

        let mut key = AccessKey {
            key_id: key_id.clone(),
            property_id: req.property_id.clone(),
            holder: req.holder.clone(),
            entrances: entrances
                .iter()
                .map(|e| KeyEntrance {
                    entrance_id: e.spec.entrance_id.clone(),
                    driver: e.driver.clone(),
                    behaviour: placement.behaviour_of(&e.spec.entrance_id),
                })
                .collect(),
            window: req.window,
            reservation: reservation.as_ref().map(Reservation::reference),
            role: req.role,
            modes: req.modes.clone(),
            credentials: Vec::new(),
            stored_state: KeyState::Active,
            warnings: Vec::new(),
            created_at: now,
            updated_at: now,
            revoked_at: None,
            driver_refs: BTreeMap::new(),
        };

        let mut issued_drivers: Vec<String> = Vec::new();
        for driver_name in key
            .drivers()
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>()
        {
            let driver = self.router.driver(&driver_name)?.clone();
            let slice = slice_for(&key, &driver_name);
            let args = IssueArgs {
                key_id: key.key_id.clone(),
                property_id: key.property_id.clone(),
                holder: key.holder.clone(),
                role: key.role,
                window: key.window,
                reservation: key.reservation.clone(),
                entrances: slice.entrances,
                modes: key.modes.clone(),
                pin: req.pin.clone(),
            };
            match driver.issue(args).await {
                Ok(reply) => {
                    issued_drivers.push(driver_name.clone());
                    if reply.state == IssuedState::Issuing {
                        key.stored_state = KeyState::Issuing;
                    }
                    if let Some(r) = reply.driver_ref {
                        key.driver_refs.insert(driver_name.clone(), r);
                    }
                    key.credentials
                        .extend(reply.credentials.into_iter().map(|mut c| {
                            c.driver = driver_name.clone();
                            c
                        }));
                    key.warnings.extend(reply.warnings);
                }
                Err(error) => {
                    self.undo_issue(&key, &issued_drivers).await;
                    return Err(error);
                }
            }
        }

        let mut writes = WriteSet::default();
        writes.keys.push((key.clone(), None));
        writes.reservations.extend(reservation);
        if let Some(origin) = &req.origin {
            writes.audit.push(AuditRecord::change(
                origin,
                "Issue",
                &req.property_id,
                std::slice::from_ref(&key),
                req.reservation_key.as_deref(),
                now,
            ));
        }
        self.record(
            &mut writes,
            &req.property_id,
            &req.request_id,
            "Issue",
            fingerprint,
            now,
            || StoredAnswer::Key(Box::new(key.clone())),
        );
        if let Err(error) = self.commit(writes).await {
            self.undo_issue(&key, &issued_drivers).await;
            return Err(error);
        }
        Ok(key)
    }

    pub async fn revoke(&self, req: RevokeRequest) -> Result<Revocation> {
        req.validate()?;
        let fingerprint = fingerprint("Revoke", &req);
        let reservation_key = match &req.target {
            RevokeTarget::Reservation(rk) => Some(rk.clone()),
            RevokeTarget::Key(key_id) => self
                .require_key(&req.property_id, key_id)?
                .reservation_key()
                .map(str::to_owned),
        };
        let _guards = self
            .locks
            .acquire(&lock_names(
                &req.property_id,
                req.request_id.as_deref(),
                reservation_key.as_deref(),
            ))
            .await;
        if let Some(answer) =
            self.replay(&req.property_id, &req.request_id, "Revoke", &fingerprint)?
        {
            return match answer {
                StoredAnswer::Revoked { keys, warnings } => Ok(Revocation { keys, warnings }),
                StoredAnswer::Key(_) => Err(Error::internal("stored answer of another kind")),
            };
        }
        let now = self.clock.now();
        let mut reservation = match &reservation_key {
            Some(rk) => self.store.reservation(&req.property_id, rk)?,
            None => None,
        };
        let targets: Vec<AccessKey> = match &req.target {
            RevokeTarget::Key(key_id) => vec![self.require_key(&req.property_id, key_id)?],
            RevokeTarget::Reservation(rk) => {
                self.router.require_property(&req.property_id)?;
                let r = reservation.as_ref().ok_or_else(|| {
                    Error::not_found(
                        reasons::RESERVATION_NOT_FOUND,
                        format!("property {:?} has no reservation {rk:?}", req.property_id),
                    )
                    .with_context("reservation_key", rk.clone())
                })?;
                self.keys_clearing(r)?
            }
        };
        let mut writes = WriteSet::default();
        let mut all_warnings = Vec::new();
        let mut answer = Vec::with_capacity(targets.len());
        for old in targets {
            if old.is_revoked() {
                answer.push(old);
                continue;
            }
            let mut key = old.clone();
            let mut key_warnings = Vec::new();
            for driver_name in old.drivers() {
                let driver = self.router.driver(driver_name)?;
                self.require(driver.as_ref(), |c| c.revoke, "revoke")?;
                let reply = driver
                    .revoke(RevokeArgs {
                        key: slice_for(&old, driver_name),
                    })
                    .await?;
                key_warnings.extend(reply.warnings);
            }
            key.stored_state = KeyState::Revoked;
            key.revoked_at = Some(now);
            key.updated_at = now;
            key.warnings.extend(key_warnings.iter().cloned());
            // A key revoked on its own stays a member: its card still
            // carries the reservation's value.
            if let Some(member) = reservation
                .as_mut()
                .filter(|r| key.reservation.as_ref().is_some_and(|k| r.holds(k)))
                .and_then(|r| r.members.get_mut(&key.key_id))
            {
                member.revoked = true;
            }
            all_warnings.extend(key_warnings);
            writes.keys.push((key.clone(), Some(old)));
            answer.push(key);
        }
        if let Some(mut r) = reservation {
            if matches!(req.target, RevokeTarget::Reservation(_)) {
                // Cleared: the next key of this reservation_key starts a new stay.
                r.clear();
            }
            writes.reservations.push(r);
        }
        dedup_warnings(&mut all_warnings);
        let newly_revoked: Vec<AccessKey> = writes
            .keys
            .iter()
            .filter(|(_, old)| old.as_ref().is_some_and(|o| !o.is_revoked()))
            .map(|(k, _)| k.clone())
            .collect();
        let revocation = Revocation {
            keys: answer,
            warnings: all_warnings,
        };
        if let Some(origin) = &req.origin {
            let reservation_key = match &req.target {
                RevokeTarget::Reservation(rk) => Some(rk.as_str()),
                RevokeTarget::Key(_) => None,
            };
            writes.audit.push(AuditRecord::change(
                origin,
                "Revoke",
                &req.property_id,
                &revocation.keys,
                reservation_key,
                now,
            ));
        }
        self.record(
            &mut writes,
            &req.property_id,
            &req.request_id,
            "Revoke",
            fingerprint,
            now,
            || StoredAnswer::Revoked {
                keys: revocation.keys.clone(),
                warnings: revocation.warnings.clone(),
            },
        );
        self.commit(writes).await?;
        let observers = self.observers.read().clone();
        for key in &newly_revoked {
            for observer in &observers {
                if let Err(error) = observer.revoked(key).await {
                    tracing::error!(key_id = %key.key_id, %error, "a key observer failed");
                }
            }
        }
        Ok(revocation)
    }

    pub async fn update_key(&self, req: UpdateKeyRequest) -> Result<AccessKey> {
        req.validate()?;
        let fingerprint = fingerprint("UpdateKey", &req);
        let first = self.require_key(&req.property_id, &req.key_id)?;
        let _guards = self
            .locks
            .acquire(&lock_names(
                &req.property_id,
                req.request_id.as_deref(),
                first.reservation_key(),
            ))
            .await;
        if let Some(answer) =
            self.replay(&req.property_id, &req.request_id, "UpdateKey", &fingerprint)?
        {
            return answer_key(answer);
        }
        let now = self.clock.now();
        let old = self.require_key(&req.property_id, &req.key_id)?;
        if old.is_revoked() {
            return Err(key_revoked(&old));
        }
        if req.window.has_ended(now) {
            return Err(Error::invalid_field(
                reasons::INVALID_TIME_WINDOW,
                "ends_at",
                "is in the past",
            ));
        }
        // Rule 4 against every other member, ended and revoked ones included.
        let mut reservation = None;
        if let Some(held) = &old.reservation {
            if let Some(mut r) = self.store.reservation(&req.property_id, &held.key)? {
                if r.holds(held) {
                    reservation::check_overlap(&r, Some(&old.key_id), &req.window)?;
                    r.members
                        .entry(old.key_id.clone())
                        .or_insert(Member::new(req.window))
                        .window = req.window;
                    reservation = Some(r);
                }
            }
        }
        let mut key = old.clone();
        let mut encoding_required = false;
        let mut reissuing = false;
        for driver_name in old.drivers() {
            let driver = self.router.driver(driver_name)?;
            self.require(driver.as_ref(), |c| c.update, "update")?;
            let reply = driver
                .update(UpdateArgs {
                    key: slice_for(&old, driver_name),
                    new_window: req.window,
                })
                .await?;
            // An online platform reissues the credentials for the new
            // window asynchronously (Seam revokes and reissues every access
            // method): issuing again until a refresh sees them issued.
            reissuing |= driver.info().capability.refresh && !reply.encoding_required;
            encoding_required |= reply.encoding_required;
            replace_credentials(&mut key, driver_name, reply.credentials);
            key.warnings.extend(reply.warnings);
        }
        key.window = req.window;
        key.updated_at = now;
        if reissuing && !encoding_required {
            key.stored_state = KeyState::Issuing;
        }
        if encoding_required {
            key.stored_state = KeyState::EncodingRequired;
            if !key
                .warnings
                .iter()
                .any(|w| w.code == warnings::ENCODING_REQUIRED)
            {
                key.warnings.push(Warning::new(
                    warnings::ENCODING_REQUIRED,
                    "the offline credentials still carry the old window: re-encode them \
                     (EncodeKey); the old card keeps its old expiry",
                ));
            }
        }
        dedup_warnings(&mut key.warnings);
        let mut writes = WriteSet::default();
        writes.keys.push((key.clone(), Some(old)));
        writes.reservations.extend(reservation);
        if let Some(origin) = &req.origin {
            writes.audit.push(AuditRecord::change(
                origin,
                "UpdateKey",
                &req.property_id,
                std::slice::from_ref(&key),
                None,
                now,
            ));
        }
        self.record(
            &mut writes,
            &req.property_id,
            &req.request_id,
            "UpdateKey",
            fingerprint,
            now,
            || StoredAnswer::Key(Box::new(key.clone())),
        );
        self.commit(writes).await?;
        Ok(key)
    }

    pub async fn encode_key(&self, req: EncodeKeyRequest) -> Result<AccessKey> {
        req.validate()?;
        let fingerprint = fingerprint("EncodeKey", &req);
        let first = self.require_key(&req.property_id, &req.key_id)?;
        let _guards = self
            .locks
            .acquire(&lock_names(
                &req.property_id,
                req.request_id.as_deref(),
                first.reservation_key(),
            ))
            .await;
        if let Some(answer) =
            self.replay(&req.property_id, &req.request_id, "EncodeKey", &fingerprint)?
        {
            return answer_key(answer);
        }
        let now = self.clock.now();
        let old = self.require_key(&req.property_id, &req.key_id)?;
        if old.is_revoked() {
            return Err(key_revoked(&old));
        }
        if old.stored_state != KeyState::EncodingRequired {
            return Err(Error::failed_precondition(
                reasons::ENCODING_NOT_REQUIRED,
                format!("key {} does not need re-encoding", old.key_id),
            )
            .with_context("key_id", old.key_id.clone()));
        }
        let mut key = old.clone();
        for driver_name in old.drivers() {
            if !old
                .credentials
                .iter()
                .any(|c| c.driver == driver_name && c.encoding_required)
            {
                continue;
            }
            let driver = self.router.driver(driver_name)?;
            self.require(driver.as_ref(), |c| c.encode, "encode")?;
            let reply = driver
                .encode(EncodeArgs {
                    key: slice_for(&old, driver_name),
                    encoder_id: req.encoder_id.clone(),
                })
                .await?;
            replace_credentials(&mut key, driver_name, reply.credentials);
            key.warnings.extend(reply.warnings);
        }
        key.warnings
            .retain(|w| w.code != warnings::ENCODING_REQUIRED);
        key.stored_state = KeyState::Active;
        key.updated_at = now;
        let mut writes = WriteSet::default();
        writes.keys.push((key.clone(), Some(old)));
        if let Some(origin) = &req.origin {
            writes.audit.push(AuditRecord::change(
                origin,
                "EncodeKey",
                &req.property_id,
                std::slice::from_ref(&key),
                None,
                now,
            ));
        }
        self.record(
            &mut writes,
            &req.property_id,
            &req.request_id,
            "EncodeKey",
            fingerprint,
            now,
            || StoredAnswer::Key(Box::new(key.clone())),
        );
        self.commit(writes).await?;
        Ok(key)
    }

    /// Asks the drivers that issue asynchronously where a key stands and
    /// stores what they answer: credentials as they get issued, and the
    /// key's state (issuing, active, encoding required).
    pub async fn refresh_key(&self, property_id: &str, key_id: &str) -> Result<AccessKey> {
        let first = self.require_key(property_id, key_id)?;
        let _guards = self
            .locks
            .acquire(&lock_names(property_id, None, first.reservation_key()))
            .await;
        let old = self.require_key(property_id, key_id)?;
        if old.is_revoked() {
            return Ok(old);
        }
        let mut key = old.clone();
        let mut states = Vec::new();
        for driver_name in old.drivers() {
            let driver = self.router.driver(driver_name)?;
            if !driver.info().capability.refresh {
                continue;
            }
            let reply = driver
                .refresh(crate::driver::RefreshArgs {
                    key: slice_for(&old, driver_name),
                })
                .await?;
            replace_credentials(&mut key, driver_name, reply.credentials);
            for w in reply.warnings {
                if !key.warnings.contains(&w) {
                    key.warnings.push(w);
                }
            }
            states.push(reply.state);
        }
        use crate::driver::ProvisionState;
        if states.is_empty() {
            return Ok(old);
        }
        key.stored_state = if states.contains(&ProvisionState::Issuing) {
            KeyState::Issuing
        } else if states.contains(&ProvisionState::EncodingRequired) {
            KeyState::EncodingRequired
        } else {
            KeyState::Active
        };
        if key.credentials == old.credentials
            && key.stored_state == old.stored_state
            && key.warnings == old.warnings
        {
            return Ok(old);
        }
        key.updated_at = self.clock.now();
        let mut writes = WriteSet::default();
        writes.keys.push((key.clone(), Some(old)));
        self.commit(writes).await?;
        Ok(key)
    }

    pub fn get_key(&self, property_id: &str, key_id: &str) -> Result<AccessKey> {
        let mut v = crate::request::Violations::default();
        v.id("property_id", property_id);
        v.id("key_id", key_id);
        v.finish()?;
        self.require_key(property_id, key_id)
    }

    pub fn list_keys(&self, req: &ListKeysRequest) -> Result<KeyPage> {
        let page_size = req.validate()?;
        self.router.require_property(&req.property_id)?;
        let mut after = page::decode(req)?;
        let now = self.clock.now();
        let wants_revoked = req.include_revoked || req.states.contains(&KeyState::Revoked);
        let index = if let Some(rk) = &req.reservation_key {
            KeyIndex::Reservation(rk.clone())
        } else if let Some(holder) = &req.holder_id {
            KeyIndex::Holder(holder.clone())
        } else if let Some(entrance) = &req.entrance_id {
            KeyIndex::Entrance(entrance.clone())
        } else {
            KeyIndex::Property
        };
        let matches = |k: &AccessKey| {
            (wants_revoked || !k.is_revoked())
                && req
                    .reservation_key
                    .as_deref()
                    .is_none_or(|rk| k.reservation_key() == Some(rk))
                && req.holder_id.as_deref().is_none_or(|h| k.holder.id == h)
                && req
                    .entrance_id
                    .as_deref()
                    .is_none_or(|e| k.entrances.iter().any(|ke| ke.entrance_id == e))
                && (req.states.is_empty() || req.states.contains(&k.state(now)))
        };
        let budget = page_size * SCAN_FACTOR;
        let mut scanned = 0;
        let mut keys = Vec::with_capacity(page_size);
        loop {
            let chunk = self.store.scan_keys(&KeyScan {
                property_id: &req.property_id,
                index: index.clone(),
                live_only: !wants_revoked,
                after: after.as_deref(),
                limit: (page_size + 1).min(budget - scanned).max(1),
            })?;
            let exhausted = chunk.is_empty();
            for key in chunk {
                scanned += 1;
                after = Some(key.key_id.clone());
                if matches(key.key()) {
                    if keys.len() == page_size {
                        // One more match exists: the page is full.
                        let last: &Arc<ListedKey> = keys.last().expect("page_size > 0");
                        return Ok(KeyPage {
                            next_page_token: Some(page::encode(req, &last.key_id)),
                            keys,
                        });
                    }
                    keys.push(key);
                }
                if scanned >= budget {
                    // Bounded work per page: continue from here next time.
                    return Ok(KeyPage {
                        next_page_token: after.map(|a| page::encode(req, &a)),
                        keys,
                    });
                }
            }
            if exhausted {
                return Ok(KeyPage {
                    keys,
                    next_page_token: None,
                });
            }
        }
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

    pub fn list_entrances(&self, property_id: &str) -> Result<Vec<Arc<RoutedEntrance>>> {
        let mut v = crate::request::Violations::default();
        v.id("property_id", property_id);
        v.finish()?;
        self.router.entrances_of(property_id)
    }

    pub fn list_drivers(&self) -> Vec<DriverInfo> {
        self.router.driver_infos()
    }

    /// The keys one driver holds on its side for a property, each with the
    /// state keysmith has for it, so that an operator can reconcile the two.
    pub async fn list_driver_keys(&self, req: &ListDriverKeysRequest) -> Result<DriverKeyPage> {
        let page_size = req.validate()?;
        self.router.require_property(&req.property_id)?;
        let driver = self.router.find_driver(&req.driver).ok_or_else(|| {
            Error::not_found(
                reasons::DRIVER_NOT_FOUND,
                format!("no driver named {:?} is registered", req.driver),
            )
            .with_context("driver", req.driver.clone())
            .with_violation("driver", "no such driver")
        })?;
        self.require(driver.as_ref(), |c| c.list, "list")?;
        let reply = driver
            .list(ListArgs {
                property_id: req.property_id.clone(),
                page_size,
                page_token: (!req.page_token.is_empty()).then(|| req.page_token.clone()),
            })
            .await?;
        let now = self.clock.now();
        let mut keys = Vec::with_capacity(reply.keys.len());
        for record in reply.keys {
            let keysmith_state = self
                .store
                .key(&req.property_id, &record.key_id)?
                .map(|k| k.state(now));
            keys.push(HeldKey {
                record,
                keysmith_state,
            });
        }
        Ok(DriverKeyPage {
            keys,
            next_page_token: reply.next_page_token,
        })
    }

    fn check_capabilities(
        &self,
        req: &IssueRequest,
        entrances: &[Arc<RoutedEntrance>],
    ) -> Result<()> {
        for entrance in entrances {
            for mode in &req.modes {
                if !entrance.spec.capability.accepts(*mode) {
                    return Err(Error::invalid_field(
                        reasons::CREDENTIAL_MODE_NOT_SUPPORTED,
                        "modes",
                        format!(
                            "entrance {:?} does not accept {} credentials",
                            entrance.spec.entrance_id,
                            mode.as_str()
                        ),
                    )
                    .with_context("entrance_id", entrance.spec.entrance_id.clone())
                    .with_context("mode", mode.as_str()));
                }
            }
        }
        let mut drivers: Vec<&str> = entrances.iter().map(|e| e.driver.as_str()).collect();
        drivers.dedup();
        for name in drivers {
            let driver = self.router.driver(name)?;
            self.require(driver.as_ref(), |c| c.issue, "issue")?;
            if req.role == Role::Staff {
                let capability = driver.info().capability;
                if !capability.staff {
                    return Err(Error::invalid_field(
                        reasons::STAFF_NOT_SUPPORTED,
                        "role",
                        format!("driver {name:?} cannot issue staff keys"),
                    ));
                }
            }
            if req.pin.is_some() && !driver.info().capability.caller_pin {
                return Err(Error::invalid_field(
                    reasons::PIN_NOT_SUPPORTED,
                    "pin",
                    format!("driver {name:?} does not accept a PIN chosen by the caller"),
                ));
            }
        }
        Ok(())
    }

    /// Applies rule 1 and "required", then 2 to 4 through the stored
    /// reservation: its members, not the clock, decide whether a key
    /// establishes it (and overrides) or joins it.
    fn place_in_reservation(
        &self,
        req: &IssueRequest,
        key_id: &str,
        entrances: &[Arc<RoutedEntrance>],
    ) -> Result<Placement> {
        let capable: BTreeSet<String> = entrances
            .iter()
            .filter(|e| e.spec.capability.can_belong_to_reservation)
            .map(|e| e.spec.entrance_id.clone())
            .collect();
        let Some(rk) = &req.reservation_key else {
            if req.role == Role::Guest {
                for e in entrances {
                    if e.spec.capability.requires_reservation_for_guests
                        || (e.spec.capability.can_belong_to_reservation
                            && self.router.driver(&e.driver)?.info().capability.offline)
                    {
                        return Err(reservation_key_required(e));
                    }
                }
            }
            return Ok(Placement::standard());
        };
        if req.role == Role::Staff {
            return Err(Error::invalid_field(
                reasons::RESERVATION_KEY_NOT_ALLOWED_FOR_STAFF,
                "reservation_key",
                "staff keys never take part in reservations: omit reservation_key",
            ));
        }
        if capable.is_empty() {
            return Err(Error::invalid_field(
                reasons::RESERVATION_KEY_NOT_SUPPORTED,
                "reservation_key",
                "no targeted entrance supports reservations: remove reservation_key or \
                 include a reservation-capable entrance",
            ));
        }
        for e in entrances
            .iter()
            .filter(|e| capable.contains(&e.spec.entrance_id))
        {
            let driver = self.router.driver(&e.driver)?;
            self.require(driver.as_ref(), |c| c.reservations, "reservations")?;
        }
        let mut r = self
            .store
            .reservation(&req.property_id, rk)?
            .unwrap_or_else(|| Reservation::new(&req.property_id, rk));
        let behaviour = match reservation::admit(&r, &capable, &req.window)? {
            Admission::Establish => {
                r.establish(capable.clone());
                Behaviour::Override
            }
            Admission::Join => Behaviour::Join,
        };
        r.members.insert(key_id.to_owned(), Member::new(req.window));
        Ok(Placement {
            capable,
            behaviour,
            reservation: Some(r),
        })
    }

    /// The keys Revoke by reservation_key revokes: every member not yet
    /// revoked, and any key the reservation index still lists as live under
    /// this reservation_key, so that nothing of the stay is left behind.
    fn keys_clearing(&self, r: &Reservation) -> Result<Vec<AccessKey>> {
        let mut ids: BTreeSet<String> = r.unrevoked_members().map(str::to_owned).collect();
        let mut after: Option<String> = None;
        loop {
            let chunk = self.store.scan_keys(&KeyScan {
                property_id: &r.property_id,
                index: KeyIndex::Reservation(r.reservation_key.clone()),
                live_only: true,
                after: after.as_deref(),
                limit: 256,
            })?;
            let Some(last) = chunk.last() else {
                break;
            };
            after = Some(last.key_id.clone());
            ids.extend(
                chunk
                    .iter()
                    .filter(|k| k.key().reservation_key() == Some(r.reservation_key.as_str()))
                    .map(|k| k.key_id.clone()),
            );
        }
        let mut keys = Vec::with_capacity(ids.len());
        for key_id in ids {
            keys.extend(self.store.key(&r.property_id, &key_id)?);
        }
        Ok(keys)
    }

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

    fn require_key(&self, property_id: &str, key_id: &str) -> Result<AccessKey> {
        self.store.key(property_id, key_id)?.ok_or_else(|| {
            Error::not_found(
                reasons::KEY_NOT_FOUND,
                format!("property {property_id:?} has no key {key_id:?}"),
            )
            .with_context("key_id", key_id.to_owned())
        })
    }

    /// The first answer to this request_id, if it was seen; an error if the
    /// id was used for a different request.
    fn replay(
        &self,
        property_id: &str,
        request_id: &Option<String>,
        method: &str,
        fingerprint: &[u8; 32],
    ) -> Result<Option<StoredAnswer>> {
        let Some(request_id) = request_id else {
            return Ok(None);
        };
        match self.store.idempotency(property_id, request_id)? {
            None => Ok(None),
            Some(record) if record.method == method && &record.fingerprint == fingerprint => {
                Ok(Some(record.answer))
            }
            Some(record) => Err(Error::invalid_field(
                reasons::REQUEST_ID_REUSED,
                "request_id",
                "was already used for a different request",
            )
            .with_context("request_id", request_id.clone())
            .with_context("first_method", record.method)),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        writes: &mut WriteSet,
        property_id: &str,
        request_id: &Option<String>,
        method: &str,
        fingerprint: [u8; 32],
        now: Timestamp,
        answer: impl FnOnce() -> StoredAnswer,
    ) {
        if let Some(request_id) = request_id {
            writes.idempotency.push(IdempotencyRecord {
                property_id: property_id.to_owned(),
                request_id: request_id.clone(),
                method: method.to_owned(),
                fingerprint,
                answer: answer(),
                created_at: now,
            });
        }
    }

    async fn commit(&self, writes: WriteSet) -> Result<()> {
        self.store.commit(writes).await
    }

    /// Best effort: withdraws what some drivers issued when the key as a
    /// whole could not be issued.
    async fn undo_issue(&self, key: &AccessKey, drivers: &[String]) {
        for name in drivers {
            let Ok(driver) = self.router.driver(name) else {
                continue;
            };
            if let Err(error) = driver
                .revoke(RevokeArgs {
                    key: slice_for(key, name),
                })
                .await
            {
                warn!(key_id = %key.key_id, driver = %name, %error, "could not withdraw a partly issued key");
            }
        }
    }
}

/// Where a new key stands in its reservation: the behaviour at its
/// reservation-capable entrances (the others are standard access), and the
/// reservation to store.
struct Placement {
    capable: BTreeSet<String>,
    behaviour: Behaviour,
    reservation: Option<Reservation>,
}

impl Placement {
    fn standard() -> Self {
        Self {
            capable: BTreeSet::new(),
            behaviour: Behaviour::Standard,
            reservation: None,
        }
    }

    fn behaviour_of(&self, entrance_id: &str) -> Behaviour {
        if self.capable.contains(entrance_id) {
            self.behaviour
        } else {
            Behaviour::Standard
        }
    }
}

fn lock_names<'a>(
    property_id: &'a str,
    request_id: Option<&'a str>,
    reservation_key: Option<&'a str>,
) -> Vec<(&'static str, &'a str, &'a str)> {
    let mut names = Vec::with_capacity(2);
    if let Some(id) = request_id {
        names.push(("request", property_id, id));
    }
    if let Some(rk) = reservation_key {
        names.push(("reservation", property_id, rk));
    }
    names
}

fn fingerprint(method: &str, request: &impl Serialize) -> [u8; 32] {
    let bytes = postcard::to_stdvec(&(method, request)).unwrap_or_default();
    Sha256::digest(bytes).into()
}

fn answer_key(answer: StoredAnswer) -> Result<AccessKey> {
    match answer {
        StoredAnswer::Key(key) => Ok(*key),
        StoredAnswer::Revoked { .. } => Err(Error::internal("stored answer of another kind")),
    }
}

/// A guest key without a reservation_key at a door that needs one: one that
/// says so, or a reservation-capable door of an offline (override-based)
/// driver, where a standard key would neither override the previous guest
/// nor be overridden, so the previous guest's card would keep opening.
/// Online drivers revoke at the door; Seam enforces its own rule.
fn reservation_key_required(entrance: &RoutedEntrance) -> Error {
    let id = &entrance.spec.entrance_id;
    Error::invalid_field(
        reasons::RESERVATION_KEY_REQUIRED,
        "reservation_key",
        format!(
            "entrance {id:?} overrides the previous guest by reservation: guest keys there \
             need a reservation_key (one per stay, shared by its co-guests)"
        ),
    )
    .with_context("entrance_id", id.clone())
}

fn key_revoked(key: &AccessKey) -> Error {
    Error::failed_precondition(
        reasons::KEY_REVOKED,
        format!("key {} is revoked", key.key_id),
    )
    .with_context("key_id", key.key_id.clone())
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

fn replace_credentials(key: &mut AccessKey, driver: &str, fresh: Vec<crate::key::Credential>) {
    key.credentials.retain(|c| c.driver != driver);
    key.credentials.extend(fresh.into_iter().map(|mut c| {
        c.driver = driver.to_owned();
        c
    }));
}

fn dedup_warnings(list: &mut Vec<Warning>) {
    let mut seen = BTreeSet::new();
    list.retain(|w| seen.insert((w.code.clone(), w.message.clone())));
}
