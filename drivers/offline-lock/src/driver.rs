//! The simulated offline lock as a keysmith driver: issuing encodes sealed
//! credentials carrying sequence values, as a front-desk encoder would.
use std::sync::Arc;

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
use parking_lot::Mutex;
use rand::Rng;

use crate::{
    config::{EntranceKind, OfflineLockConfig},
    model::{CredentialCodec, CredentialPayload, CredentialRole, LockConfig, LockGrant, Sequence},
    pins::PinEntry,
    state::{self, Sim},
    time::rfc3339,
};

pub const DRIVER_NAME: &str = "offline-lock";

pub struct OfflineLock {
    pub(crate) config: OfflineLockConfig,
    pub(crate) codec: CredentialCodec,
    pub(crate) sim: Mutex<Sim>,
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
        let properties: Vec<String> = config
            .properties
            .iter()
            .map(|p| p.property_id.clone())
            .collect();
        let lock = Self {
            config,
            codec,
            sim: Mutex::new(Sim::new(locks)),
            store,
        };
        // Each property is read now, so that a store that cannot be read
        // fails the start, and PINs stored the earlier ways are moved.
        for property in &properties {
            lock.transact(property, |_, _| Ok(()))?;
        }
        Ok(lock)
    }

    /// Runs `decide` on the simulator in `property`'s section of the
    /// store, and writes the changes it returns in `changes` through before
    /// leaving it. The section excludes every other process on the store
    /// (replicas on one PostgreSQL database), and the copy in memory is
    /// read again first when the property's stored version is not the one
    /// it holds: what `decide` sees is what was last committed, by
    /// whichever process. Within one process the copy stays current, so a
    /// sled store is read once. When anything fails, the copy (which
    /// `decide` may have changed in part) is read again at the next section.
    pub(crate) fn transact<T>(
        &self,
        property: &str,
        decide: impl FnOnce(&mut Sim, &mut Vec<Change>) -> Result<T>,
    ) -> Result<T> {
        let section = self.store.section(&state::section_name(property))?;
        let mut sim = self.sim.lock();
        match Self::decide_in(section, &mut sim, property, decide) {
            Ok((out, version)) => {
                sim.versions.insert(property.to_owned(), version);
                Ok(out)
            }
            Err(e) => {
                sim.versions.remove(property);
                Err(e)
            }
        }
    }

    /// [`Self::transact`]'s work in the open section; returns what `decide`
    /// did and the version of the property's state now stored.
    fn decide_in<T>(
        mut section: Box<dyn StateSection + '_>,
        sim: &mut Sim,
        property: &str,
        decide: impl FnOnce(&mut Sim, &mut Vec<Change>) -> Result<T>,
    ) -> Result<(T, u64)> {
        let version_key = state::version_key(property);
        let stored: u64 = match section.get(&version_key)? {
            Some(bytes) => state::decode(&bytes)?,
            None => 0,
        };
        let mut changes = if sim.versions.get(property) == Some(&stored) {
            Vec::new()
        } else {
            sim.reload(section.as_ref(), property)?
        };
        let out = decide(sim, &mut changes)?;
        let version = if changes.is_empty() {
            stored
        } else {
            let next = stored.wrapping_add(1);
            changes.push((version_key, Some(state::encode(&next)?)));
            next
        };
        section.apply(changes);
        section.commit()?;
        Ok((out, version))
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
        sim: &mut Sim,
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
                        if let Some(lock) = sim.locks.get_mut(&(key.property_id.clone(), e.clone()))
                        {
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
    fn choose_pin(&self, sim: &Sim, key: &KeySlice, wanted: Option<&str>) -> Result<String> {
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

    fn lock_exists(&self, sim: &Sim, property: &str, entrance: &str) -> Result<()> {
        if sim
            .locks
            .contains_key(&(property.to_owned(), entrance.to_owned()))
        {
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
    fn existing_payload(&self, sim: &Sim, key: &KeySlice) -> Result<CredentialPayload> {
        for c in &key.credentials {
            let sealed = match &c.data {
                CredentialData::Card(s) | CredentialData::MobileKey(s) | CredentialData::Qr(s) => {
                    Some(s.expose().clone())
                }
                CredentialData::Pin(pin) => key.entrances.iter().find_map(|e| {
                    sim.locks
                        .get(&(key.property_id.clone(), e.entrance_id.clone()))
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
        let (credentials, superseded_at) = self.transact(&args.property_id, |sim, changes| {
            for e in &args.entrances {
                self.lock_exists(sim, &args.property_id, &e.entrance_id)?;
            }
            let pin = if args.modes.contains(&CredentialMode::Pin) {
                Some(self.choose_pin(sim, &key, args.pin.as_ref().map(|p| p.expose().as_str()))?)
            } else {
                None
            };

            // Sequence values: a new reservation takes the lock's next value, a
            // joiner the reservation's, staff their level's next code.
            let mut grants = Vec::with_capacity(args.entrances.len());
            let mut superseded_at = Vec::new();
            for e in &args.entrances {
                let at = (args.property_id.clone(), e.entrance_id.clone());
                let lock = sim.locks.get_mut(&at).expect("checked above");
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
                        changes.push((state::reservation_key(&slot), Some(state::encode(&next)?)));
                        sim.reservation_values.insert(slot, next);
                        Some(next)
                    }
                    (Role::Guest, Behaviour::Join) => {
                        let r = args.reservation.as_ref().ok_or_else(|| {
                            Error::internal("offline-lock: a joiner without a reservation")
                        })?;
                        let slot = (at.0.clone(), r.key.clone(), r.epoch, at.1.clone());
                        let value = *sim.reservation_values.get(&slot).ok_or_else(|| {
                            Error::internal(format!(
                                "offline-lock: reservation {:?} has no value at {:?}",
                                r.key, at.1
                            ))
                        })?;
                        // The encoder has handed out a newer guest value here
                        // since: a newer reservation overrides this one at its
                        // first use (it may have been used already).
                        let newest = sim.locks.get(&at).map(|l| l.encoder.guest_last);
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
                    let slot = (args.property_id.clone(), r.key.clone(), r.epoch);
                    let copy = sim
                        .copies
                        .get(&slot)
                        .copied()
                        .unwrap_or(0)
                        .saturating_add(1);
                    sim.copies.insert(slot, copy);
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
        let (credentials, warnings) = self.transact(&key.property_id, |sim, changes| {
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
        self.transact(&key.property_id, |sim, changes| {
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
                if let Some(lock) = sim.locks.get_mut(&at) {
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
                let of_it = |p: &str, rk: &str| p == key.property_id && rk == r.key;
                let values: Vec<_> = sim
                    .reservation_values
                    .keys()
                    .filter(|(p, rk, _, _)| of_it(p, rk))
                    .cloned()
                    .collect();
                for slot in values {
                    sim.reservation_values.remove(&slot);
                    changes.push((state::reservation_key(&slot), None));
                }
                let copies: Vec<_> = sim
                    .copies
                    .keys()
                    .filter(|(p, rk, _)| of_it(p, rk))
                    .cloned()
                    .collect();
                for (p, rk, epoch) in copies {
                    sim.copies.remove(&(p.clone(), rk.clone(), epoch));
                    changes.push((state::copies_key(&p, &rk, epoch), None));
                }
            }
            Ok(())
        })
    }
}

/// Whether `pin` is free for `key`'s window at every lock of the key.
fn pin_is_free(sim: &Sim, key: &KeySlice, pin: &str) -> bool {
    key.entrances.iter().all(|e| {
        sim.locks
            .get(&(key.property_id.clone(), e.entrance_id.clone()))
            .is_none_or(|l| l.pins.is_free_for(pin, &key.key_id, &key.window))
    })
}
