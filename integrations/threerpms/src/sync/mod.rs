//! Keeps one 3RPMS hotel's upcoming room stays supplied with keys: every
//! stay in the window gets a key from the lock driver for its physical room,
//! published to 3RPMS on the stay. The work is reconciliation, not replay:
//! whatever the order of events, keysmith re-reads the stays concerned and
//! makes its keys and 3RPMS agree with them, so a repeated or late event does
//! no harm.
//!
//! A round reads 3RPMS and keysmith's records, decides everything in
//! [`plan`] (pure: no I/O), then carries the plan out in [`apply`]. What
//! 3RPMS's schema offers is detected once, before the first round.
//!
//! One room stay that cannot be read or whose step fails is reported in
//! [`SyncReport::failed`]; the round goes on with every other stay.
mod apply;
pub mod plan;

use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    sync::Arc,
};

use jiff::civil::Date;
use keysmith_core::{
    audit::AuditOrigin, key::KeyState, store::DriverState, AccessService, Error, ErrorKind, Result,
    Timestamp,
};
use tokio::sync::OnceCell;

use crate::{
    calendar::Calendar,
    client::Client,
    config::HotelConfig,
    detect::{self, Detected, Features},
    failure::{self, Failure, StayFailure},
    model::RoomStay,
    records::{StayRecord, StayRecords},
};
use plan::{KeyFacts, Reading, Remembered};

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
    /// the stay, a room with no mapping, a stay beyond the horizon, ...).
    pub skipped: Vec<(String, String)>,
    /// Stays whose step failed this round (the others went on): each is
    /// retried with back-off and parked if it keeps failing.
    pub failed: Vec<StayFailure>,
}

impl SyncReport {
    /// Records that a stay's step failed; the round goes on.
    pub(crate) fn fail(&mut self, stay_id: &str, error: &Error) {
        tracing::warn!(stay_id, %error, "3RPMS sync: a room stay's step failed; the others go on");
        self.failed.push(StayFailure {
            stay_id: stay_id.to_owned(),
            failure: Failure::of(error),
        });
    }
}

/// One hotel's sync: its reads and writes of 3RPMS and of keysmith.
pub struct HotelSync {
    config: HotelConfig,
    calendar: Calendar,
    client: Client,
    service: Arc<AccessService>,
    state: Arc<dyn DriverState>,
    records: StayRecords,
    /// Whether to ask 3RPMS's schema what it offers beyond its documents.
    detect_schema: bool,
    /// What it offers, once known (asked before the first round).
    detected: OnceCell<Detected>,
    /// One reconciliation at a time per hotel: they read and write the same
    /// records.
    running: tokio::sync::Mutex<()>,
}

/// The actor the audit log names for what the sync does on its own
/// (after a webhook, at night, or when an operator asked for a sync).
pub const SYNC_ACTOR: &str = "3rpms-sync";

impl HotelSync {
    pub fn new(
        config: HotelConfig,
        client: Client,
        service: Arc<AccessService>,
        state: Arc<dyn DriverState>,
        detect_schema: bool,
    ) -> Result<Self> {
        let calendar = Calendar::of(&config)?;
        let records = StayRecords::new(state.clone(), &config.property_id);
        Ok(Self {
            config,
            calendar,
            client,
            service,
            state,
            records,
            detect_schema,
            detected: OnceCell::new(),
            running: tokio::sync::Mutex::new(()),
        })
    }

    /// What 3RPMS's schema offers beyond its documents: asked once, at the
    /// first connection. `Err` while 3RPMS cannot be asked (the caller
    /// tries again later); introspection refused gives the documented-only
    /// features, logged once with the features that are off.
    pub async fn detected(&self) -> Result<&Detected> {
        self.detected
            .get_or_try_init(|| async {
                let property = self.property_id();
                let features = if self.detect_schema {
                    detect::detect(
                        self.client.transport(),
                        self.config.cancelled_reservation_statuses.as_deref(),
                    )
                    .await?
                } else {
                    Features::default()
                };
                let off = features.off();
                if !features.introspected {
                    tracing::warn!(
                        property,
                        ?off,
                        "3RPMS schema not detected (introspection refused or switched off): keysmith \
                         uses only what 3RPMS documents; these features are off"
                    );
                } else {
                    tracing::info!(
                        property,
                        cancelled_statuses = ?features.cancelled_statuses,
                        ?off,
                        "3RPMS schema detected; features not offered are off"
                    );
                }
                Ok(Detected::new(features))
            })
            .await
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
        self.calendar.today(self.service.now())
    }

    /// Time from now until the next occurrence of a local time of day.
    pub fn until_local_time(&self, at: jiff::civil::Time) -> std::time::Duration {
        self.calendar.until_local_time(self.service.now(), at)
    }

    /// The initial poll and the nightly sync: every stay from today through
    /// the horizon, and the stays keysmith keeps that the window no longer
    /// shows.
    pub async fn sync_window(&self) -> Result<SyncReport> {
        let _one = self.running.lock().await;
        let detected = self.detected().await?;
        self.window_round(detected).await
    }

    async fn window_round(&self, detected: &Detected) -> Result<SyncReport> {
        let first = self.today();
        let last = plan::horizon_end(first, &self.config)?;
        let (stays, reads) = self
            .client
            .room_stays_between(detected, first, last)
            .await?;
        let mut report = SyncReport {
            read_requests: reads,
            ..SyncReport::default()
        };
        // Stays keysmith keeps that the window no longer shows (moved out
        // of it, deleted or cancelled while no event arrived) are re-read
        // by id.
        let seen: BTreeSet<&str> = stays.iter().map(|s| s.id.as_str()).collect();
        let unseen: Vec<String> = self
            .records()?
            .into_keys()
            .filter(|id| !seen.contains(id.as_str()))
            .collect();
        let mut all = stays;
        let (found, missing) = self.read_by_ids(detected, &unseen, &mut report).await?;
        all.extend(found);
        self.reconcile(
            Reading {
                stays: all,
                missing,
                cancellation_unseen: !detected.features.reads_cancellation(),
            },
            &mut report,
        )
        .await?;
        Ok(report)
    }

    /// After webhooks: re-read these stays by id and reconcile them. A stay
    /// 3RPMS no longer returns is gone.
    pub async fn sync_stays(&self, ids: &[String]) -> Result<SyncReport> {
        let _one = self.running.lock().await;
        let detected = self.detected().await?;
        let ids: Vec<String> = ids
            .iter()
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut report = SyncReport::default();
        let (stays, missing) = self.read_by_ids(detected, &ids, &mut report).await?;
        self.reconcile(
            Reading {
                stays,
                missing,
                cancellation_unseen: !detected.features.reads_cancellation(),
            },
            &mut report,
        )
        .await?;
        Ok(report)
    }

    /// After `reservation.created` or `.updated` (cancelled or
    /// re-activated): re-read the reservations' stays where 3RPMS's schema
    /// allows reading reservations by id with their cancellation, and the
    /// whole window otherwise (the documented fallback: a cancelled stay
    /// shows by no longer being returned).
    pub async fn sync_reservations(&self, ids: &[String]) -> Result<SyncReport> {
        let _one = self.running.lock().await;
        let detected = self.detected().await?;
        let Some((stays, reads)) = self.client.reservation_stays(detected, ids).await? else {
            return self.window_round(detected).await;
        };
        let mut report = SyncReport {
            read_requests: reads,
            ..SyncReport::default()
        };
        self.reconcile(
            Reading {
                stays,
                missing: Vec::new(),
                cancellation_unseen: !detected.features.reads_cancellation(),
            },
            &mut report,
        )
        .await?;
        Ok(report)
    }

    /// Room stays by id: those found, and those 3RPMS no longer returns. An
    /// id whose read 3RPMS refuses on its own is reported failed (neither
    /// found nor missing: its record is left as it is), and the others are
    /// read all the same; a refusal of every read (3RPMS unreachable) ends
    /// the round.
    async fn read_by_ids(
        &self,
        detected: &Detected,
        ids: &[String],
        report: &mut SyncReport,
    ) -> Result<(Vec<RoomStay>, Vec<String>)> {
        let mut found = Vec::new();
        let mut missing = Vec::new();
        let mut work: VecDeque<Vec<String>> = VecDeque::new();
        if !ids.is_empty() {
            work.push_back(ids.to_vec());
        }
        while let Some(group) = work.pop_front() {
            match self.client.room_stays_by_ids(detected, &group).await {
                Ok((stays, reads)) => {
                    report.read_requests += reads;
                    let returned: BTreeSet<&str> = stays.iter().map(|s| s.id.as_str()).collect();
                    missing.extend(
                        group
                            .iter()
                            .filter(|id| !returned.contains(id.as_str()))
                            .cloned(),
                    );
                    found.extend(stays);
                }
                Err(e) if failure::hotel_wide(&e) => return Err(e),
                Err(e) => {
                    report.read_requests += 1;
                    if group.len() > 1 {
                        let (a, b) = group.split_at(group.len() / 2);
                        work.push_front(b.to_vec());
                        work.push_front(a.to_vec());
                    } else {
                        report.fail(&group[0], &e);
                    }
                }
            }
        }
        Ok((found, missing))
    }

    /// After `room_access_key.deleted`: the stays that held the key get a
    /// new 3RPMS key (their keysmith key is unchanged).
    pub async fn key_deleted(&self, rpms_key_id: &str) -> Result<SyncReport> {
        let stay_ids = self.records.forget_published_key(rpms_key_id).await?;
        if stay_ids.is_empty() {
            return Ok(SyncReport::default());
        }
        self.sync_stays(&stay_ids).await
    }

    /// Whether the sync itself is revoking this key (it stored the
    /// revocation before making it).
    pub fn revoking(&self, key_id: &str) -> Result<bool> {
        Ok(self
            .records
            .pending_revocations()?
            .iter()
            .any(|(k, _)| k == key_id))
    }

    /// Every stay keysmith keeps a key for, by stay id.
    pub fn records(&self) -> Result<BTreeMap<String, StayRecord>> {
        self.records.all()
    }

    /// One round: what 3RPMS says, what keysmith remembers, the plan, and
    /// the plan carried out.
    async fn reconcile(&self, read: Reading, report: &mut SyncReport) -> Result<()> {
        let known = self.remember(&read)?;
        let plan = plan::plan(&read, &known, self.now(), &self.config, &self.calendar)?;
        apply::apply(self, plan, report).await
    }

    /// What the plan needs of keysmith's records and keys for this reading.
    fn remember(&self, read: &Reading) -> Result<Remembered> {
        let records = self.records.all()?;
        let generations = read
            .stays
            .iter()
            .map(|s| Ok((s.id.clone(), self.records.generation(&s.id)?)))
            .collect::<Result<_>>()?;
        let keys = plan::keys_consulted(read, &records)
            .into_iter()
            .map(|key_id| {
                let facts = match self.service.get_key(self.property_id(), &key_id) {
                    Ok(key) => KeyFacts {
                        window: key.window,
                        // Being revoked is as good as revoked for a guest:
                        // the stay gets a new key, and revoking again
                        // completes the old one's revocation.
                        revoked: matches!(key.stored_state, KeyState::Revoked | KeyState::Revoking),
                    },
                    // Gone from keysmith: the stay needs a new one.
                    Err(e) if e.kind() == ErrorKind::NotFound => KeyFacts {
                        window: keysmith_core::Window {
                            starts_at: Timestamp::from_micros(0),
                            ends_at: Timestamp::from_micros(1),
                        },
                        revoked: true,
                    },
                    Err(e) => return Err(e),
                };
                Ok((key_id, facts))
            })
            .collect::<Result<_>>()?;
        Ok(Remembered {
            records,
            generations,
            keys,
        })
    }
}

/// keysmith's reservation for a room stay: one stay, one fixed room.
pub fn reservation_key(stay_id: &str, generation: u32) -> String {
    if generation == 0 {
        format!("3rpms-stay:{stay_id}")
    } else {
        format!("3rpms-stay:{stay_id}:{generation}")
    }
}
