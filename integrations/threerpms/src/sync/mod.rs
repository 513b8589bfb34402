//! Keeps one 3RPMS hotel's upcoming room stays supplied with keys: every
//! stay in the window gets a key from the lock driver for its physical room,
//! published to 3RPMS on the stay. The work is reconciliation, not replay:
//! whatever the order of events, keysmith re-reads the stays concerned and
//! makes its keys and 3RPMS agree with them, so a repeated or late event does
//! no harm.
//!
//! A round reads 3RPMS and keysmith's records, decides everything in
//! [`plan`] (pure: no I/O), then carries the plan out in [`apply`].
mod apply;
pub mod plan;

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
};

use jiff::civil::Date;
use keysmith_core::{
    audit::AuditOrigin, store::DriverState, AccessService, Error, Result, Timestamp,
};

use crate::{
    calendar::Calendar,
    client::Client,
    config::HotelConfig,
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
    /// the stay, a room with no mapping, ...).
    pub skipped: Vec<(String, String)>,
}

/// One hotel's sync: its reads and writes of 3RPMS and of keysmith.
pub struct HotelSync {
    config: HotelConfig,
    calendar: Calendar,
    client: Client,
    service: Arc<AccessService>,
    state: Arc<dyn DriverState>,
    records: StayRecords,
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
        self.calendar.today(self.service.now())
    }

    /// Time from now until the next occurrence of a local time of day.
    pub fn until_local_time(&self, at: jiff::civil::Time) -> std::time::Duration {
        self.calendar.until_local_time(self.service.now(), at)
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
        let mut all = stays;
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
        self.reconcile(
            Reading {
                stays: all,
                missing,
            },
            &mut report,
        )
        .await?;
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
        self.reconcile(Reading { stays, missing }, &mut report)
            .await?;
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
        self.reconcile(
            Reading {
                stays,
                missing: Vec::new(),
            },
            &mut report,
        )
        .await?;
        Ok(report)
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
                let key = self.service.get_key(self.property_id(), &key_id)?;
                let facts = KeyFacts {
                    window: key.window,
                    revoked: key.is_revoked(),
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
