//! Keeps one 3RPMS hotel's upcoming room stays supplied with keys: every
//! stay in the window gets a key from the lock driver for its physical room,
//! published to 3RPMS on the stay. The work is reconciliation, not replay:
//! whatever the order of events, keysmith re-reads the stays concerned and
//! makes its keys and 3RPMS agree with them, so a repeated or late event does
//! no harm.
use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
};

use jiff::{civil::Date, tz::TimeZone};
use keysmith_core::{
    audit::AuditOrigin,
    key::KeyState,
    key::{CredentialData, Holder},
    request::{EncodeKeyRequest, IssueRequest, RevokeRequest, RevokeTarget, UpdateKeyRequest},
    store::DriverState,
    AccessKey, AccessService, CredentialMode, Error, Result, Role, Secret, Timestamp, Window,
};
use serde::{Deserialize, Serialize};

use crate::{
    client::{Assignment, Client, Creation, WritePlan},
    config::{HotelConfig, PublishedKeyType},
    errors::reasons,
    model::{NewKey, RoomStay},
};

/// What keysmith remembers of a stay it keeps a key for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StayRecord {
    pub stay_id: String,
    pub room_setup_id: String,
    pub arrival: Date,
    pub departure: Date,
    /// keysmith's key; a split stay shares its key with the stay it came from.
    pub key_id: String,
    /// The 3RPMS room access key keysmith created for it, once published.
    pub rpms_key_id: Option<String>,
    /// A digest of the credential published with it, to notice when the
    /// lock driver's credential changes (a re-encoded QR code).
    pub published_digest: Option<[u8; 32]>,
}

/// What one round of reconciliation did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub read_requests: usize,
    pub write_requests: usize,
    pub issued: usize,
    pub updated: usize,
    pub revoked: usize,
    pub published: usize,
    /// Stays keysmith left alone, with why (another integration's key on
    /// the stay, a room with no mapping, ...).
    pub skipped: Vec<(String, String)>,
}

pub struct HotelSync {
    config: HotelConfig,
    client: Client,
    service: Arc<AccessService>,
    state: Arc<dyn DriverState>,
    time_zone: TimeZone,
    check_in: jiff::civil::Time,
    check_out: jiff::civil::Time,
    /// One reconciliation at a time per hotel: they read and write the same
    /// records.
    running: tokio::sync::Mutex<()>,
}

/// The actor the audit log names for what the sync does on its own
/// (after a webhook, at night, or when an operator asked for a sync).
pub const SYNC_ACTOR: &str = "3rpms-sync";

fn config_error(field: &str, message: String) -> Error {
    Error::invalid_field(reasons::HOTEL_NOT_CONFIGURED, field, message)
}

impl HotelSync {
    pub fn new(
        config: HotelConfig,
        client: Client,
        service: Arc<AccessService>,
        state: Arc<dyn DriverState>,
    ) -> Result<Self> {
        let time_zone = TimeZone::get(&config.time_zone)
            .map_err(|e| config_error("time_zone", format!("{:?}: {e}", config.time_zone)))?;
        let check_in: jiff::civil::Time = config
            .check_in
            .parse()
            .map_err(|e| config_error("check_in", format!("{:?}: {e}", config.check_in)))?;
        let check_out: jiff::civil::Time = config
            .check_out
            .parse()
            .map_err(|e| config_error("check_out", format!("{:?}: {e}", config.check_out)))?;
        Ok(Self {
            config,
            client,
            service,
            state,
            time_zone,
            check_in,
            check_out,
            running: tokio::sync::Mutex::new(()),
        })
    }

    /// The sync's own name in the audit log, on every change it asks for.
    fn origin(&self) -> Option<AuditOrigin> {
        Some(AuditOrigin {
            actor: SYNC_ACTOR.to_owned(),
            peer: None,
            reads_secrets: false,
        })
    }

    pub fn property_id(&self) -> &str {
        &self.config.property_id
    }

    pub fn state(&self) -> &Arc<dyn DriverState> {
        &self.state
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn config(&self) -> &HotelConfig {
        &self.config
    }

    pub fn now(&self) -> Timestamp {
        self.service.now()
    }

    /// The hotel's date today.
    pub fn today(&self) -> Date {
        self.local(self.service.now()).date()
    }

    fn local(&self, at: Timestamp) -> jiff::Zoned {
        let ts = jiff::Timestamp::from_microsecond(at.as_micros())
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        ts.to_zoned(self.time_zone.clone())
    }

    fn instant(&self, date: Date, time: jiff::civil::Time) -> Result<Timestamp> {
        let zoned = date
            .to_datetime(time)
            .to_zoned(self.time_zone.clone())
            .map_err(|e| Error::internal(format!("3RPMS date {date}: {e}")))?;
        Ok(Timestamp::from_micros(zoned.timestamp().as_microsecond()))
    }

    fn window(&self, arrival: Date, departure: Date) -> Result<Window> {
        Ok(Window {
            starts_at: self.instant(arrival, self.check_in)?,
            ends_at: self.instant(departure, self.check_out)?,
        })
    }

    /// The initial poll and the nightly sync: every stay from today through
    /// the next `sync_days - 1` days.
    pub async fn sync_window(&self) -> Result<SyncReport> {
        let _one = self.running.lock().await;
        let first = self.today();
        let last = first
            .checked_add(jiff::Span::new().days(i64::from(self.config.sync_days.max(1)) - 1))
            .map_err(|e| Error::internal(format!("sync window: {e}")))?;
        let (stays, reads) = self.client.room_stays_between(first, last).await?;
        let mut report = SyncReport {
            read_requests: reads,
            ..SyncReport::default()
        };
        // Stays keysmith keeps that the window no longer shows (moved out
        // of it, deleted while no event arrived) are re-read by id.
        let seen: BTreeSet<&str> = stays.iter().map(|s| s.id.as_str()).collect();
        let unseen: Vec<String> = self
            .records()?
            .into_keys()
            .filter(|id| !seen.contains(id.as_str()))
            .collect();
        let mut all = stays.clone();
        let mut missing = Vec::new();
        if !unseen.is_empty() {
            let (found, reads) = self.client.room_stays_by_ids(&unseen).await?;
            report.read_requests += reads;
            let found_ids: BTreeSet<String> = found.iter().map(|s| s.id.clone()).collect();
            missing = unseen
                .into_iter()
                .filter(|id| !found_ids.contains(id))
                .collect();
            all.extend(found);
        }
        self.reconcile(all, missing, &mut report).await?;
        Ok(report)
    }

    /// After webhooks: re-read these stays by id and reconcile them. A stay
    /// 3RPMS no longer returns has been deleted.
    pub async fn sync_stays(&self, ids: &[String]) -> Result<SyncReport> {
        let _one = self.running.lock().await;
        let ids: Vec<String> = ids
            .iter()
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let (stays, reads) = self.client.room_stays_by_ids(&ids).await?;
        let found: BTreeSet<&str> = stays.iter().map(|s| s.id.as_str()).collect();
        let missing: Vec<String> = ids
            .iter()
            .filter(|id| !found.contains(id.as_str()))
            .cloned()
            .collect();
        let mut report = SyncReport {
            read_requests: reads,
            ..SyncReport::default()
        };
        self.reconcile(stays, missing, &mut report).await?;
        Ok(report)
    }

    /// After `reservation.updated` (cancelled or re-activated): re-read the
    /// reservations' stays.
    pub async fn sync_reservations(&self, ids: &[String]) -> Result<SyncReport> {
        let _one = self.running.lock().await;
        let (stays, reads) = self.client.reservation_stays(ids).await?;
        let mut report = SyncReport {
            read_requests: reads,
            ..SyncReport::default()
        };
        self.reconcile(stays, Vec::new(), &mut report).await?;
        Ok(report)
    }

    /// After `room_access_key.deleted`: the stays that held the key get a
    /// new 3RPMS key (their keysmith key is unchanged).
    pub async fn key_deleted(&self, rpms_key_id: &str) -> Result<SyncReport> {
        let stay_ids: Vec<String> = {
            let records = self.records()?;
            let mut changes = Vec::new();
            let mut ids = Vec::new();
            for (id, mut record) in records {
                if record.rpms_key_id.as_deref() == Some(rpms_key_id) {
                    record.rpms_key_id = None;
                    changes.push((record_key(self.property_id(), &id), Some(encode(&record)?)));
                    ids.push(id);
                }
            }
            self.state.apply(changes)?;
            self.state.sync().await?;
            ids
        };
        if stay_ids.is_empty() {
            return Ok(SyncReport::default());
        }
        self.sync_stays(&stay_ids).await
    }

    /// Every stay keysmith keeps a key for, by stay id.
    pub fn records(&self) -> Result<BTreeMap<String, StayRecord>> {
        let prefix = record_prefix(self.property_id());
        self.state
            .scan_prefix(&prefix)?
            .into_iter()
            .map(|(_, v)| decode::<StayRecord>(&v).map(|r| (r.stay_id.clone(), r)))
            .collect()
    }

    async fn reconcile(
        &self,
        stays: Vec<RoomStay>,
        missing: Vec<String>,
        report: &mut SyncReport,
    ) -> Result<()> {
        let today = self.today();
        let mut records = self.records()?;
        let mut plan = WritePlan::default();
        // Records to drop once the plan is done, and keys to revoke.
        let mut ended: Vec<StayRecord> = Vec::new();

        for id in &missing {
            if let Some(record) = records.remove(id) {
                // The stay is gone, and its assignment with it.
                ended.push(record);
            }
        }

        let mut wanted: Vec<(RoomStay, Option<StayRecord>)> = Vec::new();
        for stay in stays {
            let record = records.remove(&stay.id);
            let relevant = !stay.reservation_cancelled && stay.departure >= today;
            let mapped = self.config.room(&stay.room_setup_id).is_some();
            if !relevant || !mapped {
                if !mapped && relevant {
                    report.skipped.push((
                        stay.id.clone(),
                        format!("room {} has no entrance mapping", stay.room_setup_id),
                    ));
                }
                if let Some(record) = record {
                    if let Some(k) = &record.rpms_key_id {
                        if stay.key_id.as_deref() == Some(k) {
                            plan.removals.push(Assignment {
                                room_stay_id: stay.id.clone(),
                                key_id: k.clone(),
                            });
                        }
                    }
                    ended.push(record);
                }
                continue;
            }
            match record {
                Some(record)
                    if record.room_setup_id != stay.room_setup_id
                        || self.key(&record.key_id)?.is_revoked() =>
                {
                    // Moved to another room (a reservation's door set is
                    // fixed), or its key revoked through keysmith's API: the
                    // old key goes and a new one comes.
                    let mut stay = stay;
                    if let Some(k) = &record.rpms_key_id {
                        if stay.key_id.as_deref() == Some(k) {
                            plan.removals.push(Assignment {
                                room_stay_id: stay.id.clone(),
                                key_id: k.clone(),
                            });
                            stay.key_id = None;
                        }
                    }
                    ended.push(record);
                    wanted.push((stay, None));
                }
                other => wanted.push((stay, other)),
            }
        }
        // Records not concerned by this round stay as they are.
        let untouched = records;

        // Which keysmith keys stay in use after this round, for revocation
        // and for 3RPMS key deletion.
        let mut new_records: BTreeMap<String, StayRecord> = BTreeMap::new();
        let mut to_publish: Vec<String> = Vec::new();
        // The 3RPMS key each stay held when read.
        let mut holding: BTreeMap<String, Option<String>> = BTreeMap::new();
        let all_known: BTreeMap<String, StayRecord> = untouched
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .chain(
                wanted
                    .iter()
                    .filter_map(|(s, r)| r.clone().map(|r| (s.id.clone(), r))),
            )
            .collect();

        for (stay, record) in wanted {
            holding.insert(stay.id.clone(), stay.key_id.clone());
            let record = match record {
                Some(mut record) => {
                    if record.arrival != stay.arrival || record.departure != stay.departure {
                        record.arrival = stay.arrival;
                        record.departure = stay.departure;
                    }
                    record
                }
                None => {
                    // A stay split from another shows up with that stay's
                    // key: share keysmith's key if it opens this room.
                    let shared = stay.key_id.as_ref().and_then(|k| {
                        all_known
                            .values()
                            .chain(new_records.values())
                            .find(|r| r.rpms_key_id.as_ref() == Some(k))
                            .cloned()
                    });
                    match shared {
                        Some(owner) if owner.room_setup_id == stay.room_setup_id => StayRecord {
                            stay_id: stay.id.clone(),
                            room_setup_id: stay.room_setup_id.clone(),
                            arrival: stay.arrival,
                            departure: stay.departure,
                            key_id: owner.key_id.clone(),
                            rpms_key_id: owner.rpms_key_id.clone(),
                            published_digest: owner.published_digest,
                        },
                        Some(owner) => {
                            // keysmith's key of another room: take it off.
                            if let Some(k) = &owner.rpms_key_id {
                                plan.removals.push(Assignment {
                                    room_stay_id: stay.id.clone(),
                                    key_id: k.clone(),
                                });
                            }
                            let generation = self.next_generation(&stay.id, &ended)?;
                            match self.issue_for(&stay, generation, report).await? {
                                Some(r) => r,
                                None => continue,
                            }
                        }
                        None => {
                            if let Some(k) = &stay.key_id {
                                report.skipped.push((
                                    stay.id.clone(),
                                    format!(
                                        "the stay holds room access key {k}, which keysmith did \
                                         not create; only its creator may remove it"
                                    ),
                                ));
                                continue;
                            }
                            let generation = self.next_generation(&stay.id, &ended)?;
                            match self.issue_for(&stay, generation, report).await? {
                                Some(r) => r,
                                None => continue,
                            }
                        }
                    }
                }
            };
            // 3RPMS: the stay must hold keysmith's key.
            let ours = record.rpms_key_id.clone();
            if ours.is_some() && ours == stay.key_id {
                new_records.insert(stay.id.clone(), record);
                continue;
            }
            if let Some(other) = &stay.key_id {
                // Another key is on the stay: keysmith may take it off only
                // if keysmith created it.
                let known = all_known
                    .values()
                    .any(|r| r.rpms_key_id.as_deref() == Some(other.as_str()));
                if !known {
                    report.skipped.push((
                        stay.id.clone(),
                        format!(
                            "the stay holds room access key {other}, which keysmith did not create"
                        ),
                    ));
                    new_records.insert(stay.id.clone(), record);
                    continue;
                }
                plan.removals.push(Assignment {
                    room_stay_id: stay.id.clone(),
                    key_id: other.clone(),
                });
            }
            match ours {
                Some(ours) => plan.assignments.push(Assignment {
                    room_stay_id: stay.id.clone(),
                    key_id: ours,
                }),
                None => to_publish.push(stay.id.clone()),
            }
            new_records.insert(stay.id.clone(), record);
        }

        // Windows: a keysmith key covers every stay that shares it.
        let mut hulls: BTreeMap<String, (Date, Date)> = BTreeMap::new();
        for r in untouched.values().chain(new_records.values()) {
            let hull = hulls
                .entry(r.key_id.clone())
                .or_insert((r.arrival, r.departure));
            hull.0 = hull.0.min(r.arrival);
            hull.1 = hull.1.max(r.departure);
        }
        for (key_id, (arrival, departure)) in &hulls {
            if !new_records.values().any(|r| &r.key_id == key_id) {
                continue;
            }
            let window = self.window(*arrival, *departure)?;
            let key = self.key(key_id)?;
            // A window that has already ended (a departure moved to today,
            // after check-out) needs no update: the key expires on its own.
            if key.window != window && !key.is_revoked() && !window.has_ended(self.now()) {
                let result = self
                    .service
                    .update_key(UpdateKeyRequest {
                        property_id: self.property_id().to_owned(),
                        request_id: None,
                        key_id: key_id.clone(),
                        window,
                        origin: self.origin(),
                    })
                    .await;
                let updated = match result {
                    Ok(updated) => updated,
                    // One key that cannot take its stay's window must not
                    // hold up every other stay of the hotel.
                    Err(e)
                        if !e.is_temporary() && e.kind() != keysmith_core::ErrorKind::Internal =>
                    {
                        report
                            .skipped
                            .push((key_id.clone(), format!("window not updated: {e}")));
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                report.updated += 1;
                // A PIN or QR code has no card to carry to an encoder: keysmith
                // re-encodes it at once so that it opens for the new window.
                let physical = updated
                    .credentials
                    .iter()
                    .any(|c| matches!(c.data, CredentialData::Card(_)));
                if updated.state(self.service.now()) == KeyState::EncodingRequired && !physical {
                    let result = self
                        .service
                        .encode_key(EncodeKeyRequest {
                            property_id: self.property_id().to_owned(),
                            request_id: None,
                            key_id: key_id.clone(),
                            encoder_id: None,
                            origin: self.origin(),
                        })
                        .await;
                    result?;
                }
            }
        }

        // A credential that changed (re-encoded) replaces the published key.
        for (stay_id, record) in new_records.iter_mut() {
            let Some(published) = record.rpms_key_id.clone() else {
                continue;
            };
            if holding.get(stay_id).cloned().flatten().as_deref() != Some(published.as_str())
                || to_publish.contains(stay_id)
            {
                continue;
            }
            let current = digest(&self.published_key(&self.key(&record.key_id)?)?);
            match record.published_digest {
                Some(d) if d != current => {
                    plan.removals.push(Assignment {
                        room_stay_id: stay_id.clone(),
                        key_id: published.clone(),
                    });
                    if !plan.deletions.contains(&published) {
                        plan.deletions.push(published);
                    }
                    record.rpms_key_id = None;
                    to_publish.push(stay_id.clone());
                }
                Some(_) => {}
                None => record.published_digest = Some(current),
            }
        }

        // Keys and 3RPMS keys nobody holds any more.
        let in_use_keys: BTreeSet<&str> = untouched
            .values()
            .chain(new_records.values())
            .map(|r| r.key_id.as_str())
            .collect();
        let in_use_rpms: BTreeSet<&str> = untouched
            .values()
            .chain(new_records.values())
            .filter_map(|r| r.rpms_key_id.as_deref())
            .collect();
        let mut revoke: BTreeSet<String> = BTreeSet::new();
        for record in &ended {
            if !in_use_keys.contains(record.key_id.as_str()) {
                revoke.insert(record.key_id.clone());
            }
            if let Some(k) = &record.rpms_key_id {
                if !in_use_rpms.contains(k.as_str()) && !plan.deletions.contains(k) {
                    plan.deletions.push(k.clone());
                }
            }
        }
        let mut digests: BTreeMap<String, [u8; 32]> = BTreeMap::new();
        for stay_id in &to_publish {
            let Some(record) = new_records.get(stay_id) else {
                continue;
            };
            let key = self.published_key(&self.key(&record.key_id)?)?;
            digests.insert(stay_id.clone(), digest(&key));
            plan.creations.push(Creation {
                room_stay_id: stay_id.clone(),
                key,
            });
        }

        // Keys issued this round are recorded before 3RPMS is written to, so
        // that a failed write or a crash leaves no key keysmith forgets.
        let issued: Vec<_> = new_records
            .iter()
            .map(|(id, r)| Ok((record_key(self.property_id(), id), Some(encode(r)?))))
            .collect::<Result<_>>()?;
        self.state.apply(issued)?;
        self.state.sync().await?;

        // 3RPMS next: if the write fails, nothing is revoked in keysmith and
        // the next round finds the same differences.
        let outcome = if plan.is_empty() {
            Default::default()
        } else {
            self.client.write(&plan).await?
        };
        report.write_requests += outcome.requests;
        for rejected in &outcome.rejected {
            let what = rejected
                .room_stay_id
                .clone()
                .or_else(|| rejected.key_id.clone())
                .unwrap_or_default();
            report.skipped.push((
                what,
                format!("3RPMS refused the change: {}", rejected.error),
            ));
        }
        report.published += outcome.created.len() + plan.assignments.len();
        for created in outcome.created {
            if let Some(record) = new_records.get_mut(&created.room_stay_id) {
                record.rpms_key_id = Some(created.key_id.clone());
                record.published_digest = digests.get(&created.room_stay_id).copied();
            }
            // A split stay shares the key it was published with.
            let key_id = new_records
                .get(&created.room_stay_id)
                .map(|r| r.key_id.clone());
            for r in new_records.values_mut() {
                if Some(&r.key_id) == key_id.as_ref() && r.rpms_key_id.is_none() {
                    r.rpms_key_id = Some(created.key_id.clone());
                    r.published_digest = digests.get(&created.room_stay_id).copied();
                }
            }
        }
        let mut changes = Vec::new();
        for record in &ended {
            bump_generation(
                &*self.state,
                self.property_id(),
                &record.stay_id,
                &mut changes,
            )?;
            if !new_records.contains_key(&record.stay_id) {
                changes.push((record_key(self.property_id(), &record.stay_id), None));
            }
        }
        for (id, record) in &new_records {
            changes.push((record_key(self.property_id(), id), Some(encode(record)?)));
        }
        self.state.apply(changes)?;
        self.state.sync().await?;

        for key_id in revoke {
            let result = self
                .service
                .revoke(RevokeRequest {
                    property_id: self.property_id().to_owned(),
                    request_id: None,
                    target: RevokeTarget::Key(key_id.clone()),
                    origin: self.origin(),
                })
                .await;
            match result {
                Ok(_) => report.revoked += 1,
                // Revoked already (a repeated event): nothing to do.
                Err(e) if e.kind() == keysmith_core::ErrorKind::FailedPrecondition => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Issues the lock driver's key for a stay. `None` when the stay has
    /// already ended.
    /// The generation of a stay's next key: one more for each time keysmith
    /// ended its key, counting a key ended in this very round.
    fn next_generation(&self, stay_id: &str, ended: &[StayRecord]) -> Result<u32> {
        let stored = generation(&*self.state, self.property_id(), stay_id)?;
        let now = u32::from(ended.iter().any(|r| r.stay_id == stay_id));
        Ok(stored + now)
    }

    async fn issue_for(
        &self,
        stay: &RoomStay,
        generation: u32,
        report: &mut SyncReport,
    ) -> Result<Option<StayRecord>> {
        let window = self.window(stay.arrival, stay.departure)?;
        if window.has_ended(self.service.now()) {
            return Ok(None);
        }
        let Some(mapping) = self.config.room(&stay.room_setup_id) else {
            return Ok(None);
        };
        let mode = match self.config.key_type {
            PublishedKeyType::Pin => CredentialMode::Pin,
            PublishedKeyType::Qr => CredentialMode::Qr,
        };
        let issued = self
            .service
            .issue(IssueRequest {
                property_id: self.property_id().to_owned(),
                // A retry after a crash finds the key it issued.
                request_id: Some(format!("3rpms:{}:{generation}", stay.id)),
                holder: Holder {
                    id: format!("3rpms-reservation:{}", stay.reservation_id),
                    name: None,
                },
                entrance_ids: mapping.entrances.clone(),
                space_ids: mapping.spaces.clone(),
                window,
                reservation_key: Some(reservation_key(&stay.id, generation)),
                role: Role::Guest,
                modes: vec![mode],
                pin: None,
                origin: self.origin(),
            })
            .await;
        let key = match issued {
            Ok(key) => key,
            // The stay cannot have a key as configured (a room whose
            // entrances take no PIN, say): the other stays go on.
            Err(e) if !e.is_temporary() && e.kind() != keysmith_core::ErrorKind::Internal => {
                report
                    .skipped
                    .push((stay.id.clone(), format!("no key issued: {e}")));
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        report.issued += 1;
        Ok(Some(StayRecord {
            stay_id: stay.id.clone(),
            room_setup_id: stay.room_setup_id.clone(),
            arrival: stay.arrival,
            departure: stay.departure,
            key_id: key.key_id,
            rpms_key_id: None,
            published_digest: None,
        }))
    }

    fn key(&self, key_id: &str) -> Result<AccessKey> {
        self.service.get_key(self.property_id(), key_id)
    }

    /// The 3RPMS key that carries a keysmith key's credential.
    fn published_key(&self, key: &AccessKey) -> Result<NewKey> {
        let found = key
            .credentials
            .iter()
            .find_map(|c| match (&c.data, self.config.key_type) {
                (CredentialData::Pin(pin), PublishedKeyType::Pin) => {
                    Some(NewKey::Pin(Secret::new(pin.expose().clone())))
                }
                (CredentialData::Qr(data), PublishedKeyType::Qr) => {
                    Some(NewKey::Qr(Secret::new(data.expose().clone())))
                }
                _ => None,
            });
        found.ok_or_else(|| {
            Error::failed_precondition(
                reasons::HOTEL_NOT_CONFIGURED,
                format!(
                    "key {} has no {:?} credential to publish to 3RPMS: the room's entrances \
                     must take that credential mode",
                    key.key_id, self.config.key_type
                ),
            )
        })
    }
}

/// Identifies published credential data without keeping it twice.
fn digest(key: &NewKey) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    match key {
        NewKey::Pin(pin) => {
            hasher.update(b"pin:");
            hasher.update(pin.expose().as_bytes());
        }
        NewKey::KeyStorage { pin, compartment } => {
            hasher.update(b"storage:");
            hasher.update(pin.expose().as_bytes());
            hasher.update(b":");
            hasher.update(compartment.expose().as_bytes());
        }
        NewKey::Qr(data) => {
            hasher.update(b"qr:");
            hasher.update(data.expose().as_bytes());
        }
    }
    hasher.finalize().into()
}

/// keysmith's reservation for a room stay: one stay, one fixed room.
pub fn reservation_key(stay_id: &str, generation: u32) -> String {
    if generation == 0 {
        format!("3rpms-stay:{stay_id}")
    } else {
        format!("3rpms-stay:{stay_id}:{generation}")
    }
}

// The property segment ends with NUL, which no property id contains, so that
// one property's prefix never covers another's ("a" and "a/stay").
fn record_prefix(property: &str) -> Vec<u8> {
    format!("sync/{property}\0stay/").into_bytes()
}

fn record_key(property: &str, stay_id: &str) -> Vec<u8> {
    let mut k = record_prefix(property);
    k.extend_from_slice(stay_id.as_bytes());
    k
}

fn generation_key(property: &str, stay_id: &str) -> Vec<u8> {
    format!("sync/{property}\0generation/{stay_id}").into_bytes()
}

/// How many times keysmith has ended its key for a stay: a cancelled and
/// re-activated stay gets a new key, not the revoked one replayed.
fn generation(state: &dyn DriverState, property: &str, stay_id: &str) -> Result<u32> {
    Ok(state
        .get(&generation_key(property, stay_id))?
        .map(|v| decode::<u32>(&v))
        .transpose()?
        .unwrap_or(0))
}

fn bump_generation(
    state: &dyn DriverState,
    property: &str,
    stay_id: &str,
    changes: &mut Vec<(Vec<u8>, Option<Vec<u8>>)>,
) -> Result<()> {
    let next = generation(state, property, stay_id)?.saturating_add(1);
    changes.push((generation_key(property, stay_id), Some(encode(&next)?)));
    Ok(())
}

const SCHEMA: u8 = 1;

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    let mut out = vec![SCHEMA];
    out.extend(
        postcard::to_stdvec(value).map_err(|e| Error::internal(format!("3RPMS state: {e}")))?,
    );
    Ok(out)
}

fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T> {
    match bytes.split_first() {
        Some((&SCHEMA, rest)) => {
            postcard::from_bytes(rest).map_err(|e| Error::internal(format!("3RPMS state: {e}")))
        }
        _ => Err(Error::internal("3RPMS state: unknown schema version")),
    }
}

impl HotelSync {
    /// Time from now until the next occurrence of a local time of day.
    pub fn until_local_time(&self, at: jiff::civil::Time) -> std::time::Duration {
        let now = self.local(self.service.now());
        let today = now.date().to_datetime(at).to_zoned(self.time_zone.clone());
        let next = match today {
            Ok(t) if t > now => Ok(t),
            _ => now
                .date()
                .tomorrow()
                .and_then(|d| d.to_datetime(at).to_zoned(self.time_zone.clone())),
        };
        next.ok()
            .and_then(|t| {
                std::time::Duration::try_from(t.timestamp().duration_since(now.timestamp())).ok()
            })
            .unwrap_or(std::time::Duration::from_secs(24 * 3600))
    }
}
