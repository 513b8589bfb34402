//! The simulated offline lock as a keysmith driver: issuing encodes sealed
//! credentials carrying sequence values, as a front-desk encoder would.
use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
};

use async_trait::async_trait;
use keysmith_driver::{
    driver::{
        DriverInfo, DriverKind, EncodeArgs, EncodeReply, EntranceSpec, ForgetArgs, IssueArgs,
        IssueReply, IssuedState, KeySlice, RevokeArgs, RevokeReply, UpdateArgs, UpdateReply,
    },
    error::quoted,
    key::{warnings, Behaviour, Credential, CredentialData, Warning},
    reasons,
    state::{Change, DriverState, StateSection},
    CredentialMode, Driver, DriverCapability, EntranceCapability, Error, ErrorKind, Result, Role,
    Secret, Timestamp,
};
use parking_lot::MutexGuard;
use rand::Rng;

use crate::{
    config::{EntranceKind, OfflineLockConfig},
    model::{CredentialCodec, CredentialPayload, CredentialRole, LockConfig, LockGrant, Sequence},
    pins::PinEntry,
    state::{self, Doors, Sim},
    time::rfc3339,
};

pub const DRIVER_NAME: &str = "offline-lock";

pub struct OfflineLock {
    pub(crate) config: OfflineLockConfig,
    pub(crate) codec: CredentialCodec,
    pub(crate) sim: Sim,
    pub(crate) store: Arc<dyn DriverState>,
}

impl OfflineLock {
    pub fn new(config: OfflineLockConfig, store: Arc<dyn DriverState>) -> Result<Self> {
        config
            .validate()
            .map_err(|why| Error::new(ErrorKind::InvalidArgument, reasons::FIELD_INVALID, why))?;
        let codec = CredentialCodec::new(config.site_secret.expose().as_bytes());
        let mut locks = Vec::new();
        for p in &config.properties {
            for e in &p.entrances {
                locks.push(LockConfig {
                    property_code: p.property_id.clone(),
                    lock_id: e.id.clone(),
                    reservation_capable: e.kind == EntranceKind::Room,
                    look_ahead: p.look_ahead,
                    audit_capacity: p.audit_capacity,
                    blocked_cards_capacity: p.blocked_cards_capacity,
                    invalid_credentials_advance: p.invalid_credentials_advance,
                });
            }
        }
        let properties: Vec<(String, Vec<String>)> = config
            .properties
            .iter()
            .map(|p| {
                let doors = p.entrances.iter().map(|e| e.id.clone()).collect();
                (p.property_id.clone(), doors)
            })
            .collect();
        let lock = Self {
            config,
            codec,
            sim: Sim::new(locks),
            store,
        };
        // Each lock is read now, so that a store that cannot be read fails
        // the start, and PINs stored the earlier ways are moved.
        for (property, doors) in &properties {
            lock.transact(property, doors, None, |_, _| Ok(()))?;
        }
        Ok(lock)
    }

    /// Runs `decide` on the locks `doors` of `property` (and, with
    /// `reservation`, that reservation's records) in their sections of the
    /// store, and writes the changes it returns in `changes` through before
    /// leaving them. The sections exclude every other process on the store
    /// (replicas on one PostgreSQL database) from these locks and this
    /// reservation only: decisions on other rooms go on beside this one.
    /// Each lock's copy in memory is read again first when its stored
    /// version is not the one it holds: what `decide` sees is what was last
    /// committed, by whichever process. Within one process the copies stay
    /// current, so a sled store is read once. When anything fails, the
    /// copies (which `decide` may have changed in part) are read again at
    /// their next section. Doors not configured are left out; `decide`
    /// finds them missing.
    pub(crate) fn transact<T>(
        &self,
        property: &str,
        doors: &[impl AsRef<str>],
        reservation: Option<&str>,
        decide: impl FnOnce(&mut Doors<'_>, &mut Vec<Change>) -> Result<T>,
    ) -> Result<T> {
        let mut doors: Vec<&str> = doors
            .iter()
            .map(AsRef::as_ref)
            .filter(|d| self.sim.has(property, d))
            .collect();
        doors.sort_unstable();
        doors.dedup();
        let mut names: Vec<Vec<u8>> = doors
            .iter()
            .map(|d| state::lock_section(property, d))
            .collect();
        if let Some(rk) = reservation {
            names.push(state::reservation_section(property, rk));
        }
        let section = self.store.sections(&names)?;
        // Each slot is taken under its lock's section, in one order.
        let mut locks = BTreeMap::new();
        for d in doors {
            if let Some(slot) = self.sim.slot(property, d) {
                locks.insert(d.to_owned(), slot);
            }
        }
        match Self::decide_in(section, &mut locks, property, decide) {
            Ok(out) => Ok(out),
            Err(e) => {
                for slot in locks.values_mut() {
                    slot.version = None;
                }
                Err(e)
            }
        }
    }

    /// [`Self::transact`]'s work in the open sections; on success, each
    /// slot holds the version of its lock's records now stored.
    fn decide_in<'a, T>(
        mut section: Box<dyn StateSection + '_>,
        locks: &mut BTreeMap<String, MutexGuard<'a, state::Slot>>,
        property: &str,
        decide: impl FnOnce(&mut Doors<'_>, &mut Vec<Change>) -> Result<T>,
    ) -> Result<T> {
        let mut changes = Vec::new();
        let mut versions = BTreeMap::new();
        for (door, slot) in locks.iter_mut() {
            let stored: u64 = match section.get(&state::version_key(property, door))? {
                Some(bytes) => state::decode(&bytes)?,
                None => 0,
            };
            if slot.version != Some(stored) {
                let first = slot.version.is_none();
                changes.extend(slot.lock.reload(section.as_ref(), first)?);
            }
            versions.insert(door.clone(), stored);
        }
        let out = decide(
            &mut Doors {
                locks: locks
                    .iter_mut()
                    .map(|(door, slot)| (door.as_str(), &mut **slot))
                    .collect(),
                section: section.as_ref(),
            },
            &mut changes,
        )?;
        // Each lock whose records change gets its next version.
        let changed: BTreeSet<String> = changes
            .iter()
            .filter_map(|(k, _)| state::lock_of_record(k))
            .filter(|(p, _)| p == property)
            .map(|(_, l)| l)
            .collect();
        for door in changed {
            if let Some(version) = versions.get_mut(&door) {
                *version = version.wrapping_add(1);
                changes.push((
                    state::version_key(property, &door),
                    Some(state::encode(version)?),
                ));
            }
        }
        section.apply(changes);
        section.commit()?;
        for (door, slot) in locks.iter_mut() {
            slot.version = versions.get(door).copied();
        }
        Ok(out)
    }

    /// The staff level a staff holder's credentials belong to: each staff
    /// member has their own, so a replacement card cancels only theirs.
    fn staff_level(holder_id: &str) -> String {
        format!("staff:{holder_id}")
    }

    fn payload(
        &self,
        key: &KeySlice,
        card_id: String,
        copy: u16,
        locks: Vec<LockGrant>,
        now: Timestamp,
    ) -> CredentialPayload {
        CredentialPayload {
            property_code: key.property_id.clone(),
            card_id,
            copy,
            role: match key.role {
                Role::Guest => CredentialRole::Guest,
                Role::Staff => CredentialRole::Staff {
                    level: Self::staff_level(&key.holder.id),
                },
            },
            locks,
            starts_at: key.window.starts_at.unix_seconds(),
            ends_at: key.window.ends_at.unix_seconds(),
            new_key_time: now.unix_seconds(),
            deadbolt_override: key.role == Role::Staff,
        }
    }

    /// Builds one credential per requested mode over the same lock grants.
    /// PINs are programmed at every lock of the key.
    #[allow(clippy::too_many_arguments)]
    fn credentials(
        &self,
        sim: &mut Doors<'_>,
        key: &KeySlice,
        modes: &[CredentialMode],
        pin: Option<&str>,
        generation: u32,
        copy: u16,
        grants: &[LockGrant],
        changes: &mut Vec<Change>,
    ) -> Result<Vec<Credential>> {
        let now = Timestamp::now();
        let entrance_ids: Vec<String> = key
            .entrances
            .iter()
            .map(|e| e.entrance_id.clone())
            .collect();
        let mut out = Vec::with_capacity(modes.len());
        for mode in modes {
            let tag = match mode {
                CredentialMode::Pin => "P",
                CredentialMode::Card => "C",
                CredentialMode::MobileKey => "M",
                CredentialMode::Qr => "Q",
                CredentialMode::KeyStorage => {
                    return Err(Error::invalid_field(
                        reasons::CREDENTIAL_MODE_NOT_SUPPORTED,
                        "modes",
                        "the offline lock has no key storage",
                    ))
                }
            };
            let card_id = format!("{}-{tag}-{generation}", key.key_id);
            let sealed =
                self.codec
                    .seal(&self.payload(key, card_id.clone(), copy, grants.to_vec(), now));
            let data = match mode {
                CredentialMode::Pin => {
                    let pin = pin.expect("a PIN is chosen before credentials are built");
                    for e in &entrance_ids {
                        let entry = PinEntry {
                            key_id: key.key_id.clone(),
                            sealed: Secret::new(sealed.clone()),
                            starts_at: key.window.starts_at.unix_seconds(),
                            ends_at: key.window.ends_at.unix_seconds(),
                        };
                        if let Some(lock) = sim.lock_mut(e) {
                            let dropped = lock.pins.program(pin, entry);
                            for id in std::iter::once(&key.key_id).chain(&dropped) {
                                changes.push(state::pins_record(
                                    &lock.pins,
                                    &key.property_id,
                                    e,
                                    id,
                                )?);
                            }
                        }
                    }
                    CredentialData::Pin(Secret::new(pin.to_owned()))
                }
                CredentialMode::Card => CredentialData::Card(Secret::new(sealed)),
                CredentialMode::MobileKey => CredentialData::MobileKey(Secret::new(sealed)),
                CredentialMode::Qr => CredentialData::Qr(Secret::new(sealed)),
                CredentialMode::KeyStorage => unreachable!("refused above"),
            };
            out.push(Credential {
                mode: *mode,
                driver: DRIVER_NAME.to_owned(),
                entrance_ids: entrance_ids.clone(),
                data,
                credential_id: card_id,
                encoding_required: false,
            });
        }
        Ok(out)
    }

    /// A PIN free at every lock of the key for its whole window: the
    /// caller's, or a generated one. A PIN is shared over time only by keys
    /// whose windows do not overlap, as stored; no clock is read.
    fn choose_pin(&self, sim: &Doors<'_>, key: &KeySlice, wanted: Option<&str>) -> Result<String> {
        if let Some(pin) = wanted {
            if !pin_is_free(sim, key, pin) {
                return Err(Error::new(
                    ErrorKind::AlreadyExists,
                    reasons::PIN_IN_USE,
                    "this PIN is already in use at one of the entrances: choose another or omit it",
                )
                .with_violation("pin", "already in use at one of the entrances"));
            }
            return Ok(pin.to_owned());
        }
        let mut rng = rand::rng();
        for _ in 0..1000 {
            let pin = format!("{:06}", rng.random_range(0..1_000_000u32));
            if pin_is_free(sim, key, &pin) {
                return Ok(pin);
            }
        }
        Err(Error::new(
            ErrorKind::ResourceExhausted,
            reasons::PIN_IN_USE,
            "no free PIN could be found at these entrances",
        ))
    }

    fn lock_exists(&self, sim: &Doors<'_>, property: &str, entrance: &str) -> Result<()> {
        if sim.lock(entrance).is_some() {
            Ok(())
        } else {
            Err(Error::not_found(
                reasons::ENTRANCE_NOT_FOUND,
                format!(
                    "the offline lock has no entrance {} at property {}",
                    quoted(entrance),
                    quoted(property)
                ),
            ))
        }
    }

    /// The sealed credential a key already carries, to re-encode it.
    fn existing_payload(&self, sim: &Doors<'_>, key: &KeySlice) -> Result<CredentialPayload> {
        for c in &key.credentials {
            let sealed = match &c.data {
                CredentialData::Card(s) | CredentialData::MobileKey(s) | CredentialData::Qr(s) => {
                    Some(s.expose().clone())
                }
                CredentialData::Pin(pin) => key.entrances.iter().find_map(|e| {
                    sim.lock(&e.entrance_id)
                        .and_then(|l| l.pins.entry_of(pin.expose(), &key.key_id))
                        .map(|p| p.sealed.expose().clone())
                }),
                _ => None,
            };
            if let Some(payload) = sealed.and_then(|s| self.codec.open(&s).ok()) {
                return Ok(payload);
            }
        }
        Err(Error::internal(
            "offline-lock: the key carries no credential this lock sealed",
        ))
    }
}

#[async_trait]
impl Driver for OfflineLock {
    fn info(&self) -> DriverInfo {
        DriverInfo {
            name: DRIVER_NAME.to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            kind: DriverKind::BuiltIn,
            capability: DriverCapability {
                issue: true,
                revoke: true,
                update: true,
                encode: true,
                // Credentials are ready when issued.
                refresh: false,
                // An offline lock keeps no record of the cards it was given:
                // there is nothing on its side to list.
                list: false,
                reservations: true,
                staff: true,
                caller_pin: true,
                online: false,
                offline: true,
                modes: vec![
                    CredentialMode::Pin,
                    CredentialMode::Card,
                    CredentialMode::MobileKey,
                    CredentialMode::Qr,
                ],
            },
        }
    }

    async fn entrances(&self) -> Result<Vec<EntranceSpec>> {
        Ok(self
            .config
            .properties
            .iter()
            .flat_map(|p| {
                p.entrances.iter().map(|e| EntranceSpec {
                    property_id: p.property_id.clone(),
                    entrance_id: e.id.clone(),
                    name: e.name.clone().unwrap_or_else(|| e.id.clone()),
                    space_ids: e.spaces.clone(),
                    capability: EntranceCapability {
                        can_belong_to_reservation: e.kind == EntranceKind::Room,
                        modes: e.modes.iter().map(|m| (*m).into()).collect(),
                        online: false,
                        requires_reservation_for_guests: e.requires_reservation_for_guests,
                    },
                })
            })
            .collect())
    }

    async fn issue(&self, args: IssueArgs) -> Result<IssueReply> {
        let key = KeySlice {
            key_id: args.key_id.clone(),
            property_id: args.property_id.clone(),
            holder: args.holder.clone(),
            role: args.role,
            window: args.window,
            reservation: args.reservation.clone(),
            entrances: args.entrances.clone(),
            credentials: Vec::new(),
            driver_ref: None,
        };
        let doors: Vec<&str> = args
            .entrances
            .iter()
            .map(|e| e.entrance_id.as_str())
            .collect();
        let rk = args.reservation.as_ref().map(|r| r.key.as_str());
        let (credentials, superseded_at) =
            self.transact(&key.property_id, &doors, rk, |sim, changes| {
                for e in &args.entrances {
                    self.lock_exists(sim, &args.property_id, &e.entrance_id)?;
                }
                let pin = if args.modes.contains(&CredentialMode::Pin) {
                    Some(self.choose_pin(
                        sim,
                        &key,
                        args.pin.as_ref().map(|p| p.expose().as_str()),
                    )?)
                } else {
                    None
                };

                // Sequence values: a new reservation takes the lock's next value, a
                // joiner the reservation's, staff their level's next code.
                let mut grants = Vec::with_capacity(args.entrances.len());
                let mut superseded_at = Vec::new();
                for e in &args.entrances {
                    let at = (args.property_id.clone(), e.entrance_id.clone());
                    let lock = sim.lock_mut(&at.1).expect("checked above");
                    let sequence: Option<Sequence> = match (args.role, e.behaviour) {
                        (Role::Staff, _) => {
                            let level = Self::staff_level(&args.holder.id);
                            let next = lock
                                .encoder
                                .staff_last
                                .get(&level)
                                .copied()
                                .unwrap_or(0)
                                .wrapping_add(1);
                            lock.encoder.staff_last.insert(level, next);
                            changes.push((
                                state::encoder_key(&at.0, &at.1),
                                Some(state::encode(&lock.encoder)?),
                            ));
                            Some(next)
                        }
                        (Role::Guest, Behaviour::Standard) => None,
                        (Role::Guest, Behaviour::Override) => {
                            let r = args.reservation.as_ref().ok_or_else(|| {
                                Error::internal("offline-lock: an override without a reservation")
                            })?;
                            let next = lock.encoder.guest_last.wrapping_add(1);
                            lock.encoder.guest_last = next;
                            changes.push((
                                state::encoder_key(&at.0, &at.1),
                                Some(state::encode(&lock.encoder)?),
                            ));
                            let slot = (at.0.clone(), r.key.clone(), r.epoch, at.1.clone());
                            changes
                                .push((state::reservation_key(&slot), Some(state::encode(&next)?)));
                            Some(next)
                        }
                        (Role::Guest, Behaviour::Join) => {
                            let r = args.reservation.as_ref().ok_or_else(|| {
                                Error::internal("offline-lock: a joiner without a reservation")
                            })?;
                            let slot = (at.0.clone(), r.key.clone(), r.epoch, at.1.clone());
                            let value =
                                sim.reservation_value(&slot, changes)?.ok_or_else(|| {
                                    Error::internal(format!(
                                        "offline-lock: reservation {:?} has no value at {:?}",
                                        r.key, at.1
                                    ))
                                })?;
                            // The encoder has handed out a newer guest value here
                            // since: a newer reservation overrides this one at its
                            // first use (it may have been used already).
                            let newest = sim.lock(&at.1).map(|l| l.encoder.guest_last);
                            if newest != Some(value) {
                                superseded_at.push(e.entrance_id.clone());
                            }
                            Some(value)
                        }
                    };
                    grants.push(LockGrant {
                        lock_id: e.entrance_id.clone(),
                        sequence,
                    });
                }
                let copy = match &args.reservation {
                    Some(r) => {
                        let copy = sim
                            .copies(&args.property_id, &r.key, r.epoch, changes)?
                            .saturating_add(1);
                        changes.push((
                            state::copies_key(&args.property_id, &r.key, r.epoch),
                            Some(state::encode(&copy)?),
                        ));
                        copy
                    }
                    None => 1,
                };
                let credentials = self.credentials(
                    sim,
                    &key,
                    &args.modes,
                    pin.as_deref(),
                    1,
                    copy,
                    &grants,
                    changes,
                )?;
                Ok((credentials, superseded_at))
            })?;
        let mut warnings = Vec::new();
        if !superseded_at.is_empty() {
            warnings.push(Warning::new(
                warnings::RESERVATION_SUPERSEDED,
                format!(
                    "a newer reservation has been issued at {} since this one: this credential \
                     joins its own (older) stay, so the lock refuses it there as soon as the \
                     newer reservation's credential has been used, which may already be the case",
                    superseded_at.join(", ")
                ),
            ));
        }
        Ok(IssueReply {
            credentials,
            state: IssuedState::Active,
            warnings,
            driver_ref: None,
        })
    }

    async fn revoke(&self, args: RevokeArgs) -> Result<RevokeReply> {
        // An offline lock never hears of a revocation: say so rather than pretend.
        let key = &args.key;
        let doors: Vec<&str> = key
            .entrances
            .iter()
            .map(|e| e.entrance_id.as_str())
            .collect();
        let until = match key.role {
            Role::Guest => "a newer reservation's credential is used there",
            Role::Staff => "a newer credential of the same staff member is used there",
        };
        let ids: Vec<&str> = key
            .credentials
            .iter()
            .map(|c| c.credential_id.as_str())
            .collect();
        Ok(RevokeReply {
            warnings: vec![Warning::new(
                warnings::OFFLINE_CREDENTIAL_STILL_VALID,
                format!(
                    "offline locks are not told of revocations: the physical credentials ({}) \
                     keep opening {} until {until} or they expire at {}; collect them, or block \
                     their ids at the locks to stop them sooner",
                    ids.join(", "),
                    doors.join(", "),
                    rfc3339(key.window.ends_at.unix_seconds()),
                ),
            )],
        })
    }

    async fn update(&self, args: UpdateArgs) -> Result<UpdateReply> {
        // The data on a card does not change by itself: it must be re-encoded.
        let credentials = args
            .key
            .credentials
            .into_iter()
            .map(|mut c| {
                c.encoding_required = true;
                c
            })
            .collect();
        Ok(UpdateReply {
            credentials,
            encoding_required: true,
            warnings: Vec::new(),
        })
    }

    async fn encode(&self, args: EncodeArgs) -> Result<EncodeReply> {
        let key = &args.key;
        let doors: Vec<&str> = key
            .entrances
            .iter()
            .map(|e| e.entrance_id.as_str())
            .collect();
        let (credentials, warnings) =
            self.transact(&key.property_id, &doors, None, |sim, changes| {
                let old = self.existing_payload(sim, key)?;
                // The re-encoded credential carries the same sequence values: it
                // joins its reservation instead of cancelling the co-guests.
                let generation = key
                    .credentials
                    .iter()
                    .filter_map(|c| c.credential_id.rsplit('-').next()?.parse::<u32>().ok())
                    .max()
                    .unwrap_or(1)
                    + 1;
                let modes: Vec<CredentialMode> = key.credentials.iter().map(|c| c.mode).collect();
                let old_pin = key.credentials.iter().find_map(|c| match &c.data {
                    CredentialData::Pin(p) => Some(p.expose().clone()),
                    _ => None,
                });
                // The new window may overlap another key that took this PIN after
                // the old window: two people must never share a PIN at once, so
                // the key gets a new one.
                let mut warnings = Vec::new();
                let pin = match old_pin {
                    Some(p) if !pin_is_free(sim, key, &p) => {
                        warnings.push(Warning::new(
                            warnings::PIN_CHANGED,
                            "the key's PIN is held by another key for part of the new window: \
                     the re-encoded key has a new PIN",
                        ));
                        Some(self.choose_pin(sim, key, None)?)
                    }
                    other => other,
                };
                let credentials = self.credentials(
                    sim,
                    key,
                    &modes,
                    pin.as_deref(),
                    generation,
                    old.copy,
                    &old.locks,
                    changes,
                )?;
                Ok((credentials, warnings))
            })?;
        Ok(EncodeReply {
            credentials,
            warnings,
        })
    }

    /// Drops the purged key's PINs at its locks and, when its whole
    /// reservation is purged, the sequence values and copy counters the
    /// encoder kept for it. The locks' own state is theirs: untouched.
    async fn forget(&self, args: ForgetArgs) -> Result<()> {
        let key = &args.key;
        let doors: Vec<&str> = key
            .entrances
            .iter()
            .map(|e| e.entrance_id.as_str())
            .collect();
        let reservation = match (args.reservation_forgotten, &key.reservation) {
            (true, Some(r)) => Some(r.key.as_str()),
            _ => None,
        };
        self.transact(&key.property_id, &doors, reservation, |sim, changes| {
            let pins: Vec<String> = key
                .credentials
                .iter()
                .filter_map(|c| match &c.data {
                    CredentialData::Pin(pin) => Some(pin.expose().clone()),
                    _ => None,
                })
                .collect();
            for e in &key.entrances {
                let at = (key.property_id.clone(), e.entrance_id.clone());
                if let Some(lock) = sim.lock_mut(&at.1) {
                    let mut removed = false;
                    for pin in &pins {
                        removed |= lock.pins.remove(pin, &key.key_id);
                    }
                    if removed {
                        changes.push(state::pins_record(&lock.pins, &at.0, &at.1, &key.key_id)?);
                    }
                }
            }
            if let (true, Some(r)) = (args.reservation_forgotten, &key.reservation) {
                changes.extend(sim.forget_reservation(&key.property_id, &r.key)?);
            }
            Ok(())
        })
    }
}

/// Whether `pin` is free for `key`'s window at every lock of the key.
fn pin_is_free(sim: &Doors<'_>, key: &KeySlice, pin: &str) -> bool {
    key.entrances.iter().all(|e| {
        sim.lock(&e.entrance_id)
            .is_none_or(|l| l.pins.is_free_for(pin, &key.key_id, &key.window))
    })
}
