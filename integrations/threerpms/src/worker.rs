//! The background work of one hotel: the initial poll when keysmith starts,
//! the nightly sync of the coming days, and the webhook events the receiver
//! queued. Failures wait before the next try (as long as 3RPMS's block when
//! one is suspected), never a tight loop.
use std::{sync::Arc, time::Duration};

use jiff::civil::Time;
use tokio::sync::watch;

use crate::{
    observer::KEY_REVOKED,
    sync::HotelSync,
    webhook::{Inbox, WebhookEvent},
};

/// Wait before retrying after an error that gives no retry time.
const RETRY: Duration = Duration::from_secs(30);

pub struct Worker {
    hotel: Arc<HotelSync>,
    inbox: Option<Arc<Inbox>>,
    initial_sync: bool,
}

impl Worker {
    pub fn new(hotel: Arc<HotelSync>, inbox: Option<Arc<Inbox>>, initial_sync: bool) -> Self {
        Self {
            hotel,
            inbox,
            initial_sync,
        }
    }

    /// Runs until `stop` turns true.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let property = self.hotel.property_id().to_owned();
        if self.initial_sync {
            loop {
                match self.hotel.sync_window().await {
                    Ok(report) => {
                        tracing::info!(%property, ?report, "3RPMS initial sync done");
                        break;
                    }
                    Err(error) => {
                        tracing::warn!(%property, %error, "3RPMS initial sync failed");
                        if wait(&mut stop, error.retry_after().unwrap_or(RETRY)).await {
                            return;
                        }
                    }
                }
            }
        }
        // Events left queued by a stop are handled before anything new.
        while let Err(error) = self.drain_inbox().await {
            tracing::warn!(%property, %error, "3RPMS webhook events not processed yet");
            if wait(&mut stop, error.retry_after().unwrap_or(RETRY)).await {
                return;
            }
        }
        loop {
            let nightly = self.until_nightly();
            tokio::select! {
                _ = stop.changed() => return,
                _ = tokio::time::sleep(nightly) => {
                    self.forget_old_events().await;
                    match self.hotel.sync_window().await {
                        Ok(report) => tracing::info!(%property, ?report, "3RPMS nightly sync done"),
                        Err(error) => {
                            tracing::warn!(%property, %error, "3RPMS nightly sync failed");
                            if wait(&mut stop, error.retry_after().unwrap_or(RETRY)).await {
                                return;
                            }
                        }
                    }
                }
                _ = Self::work_arrived(self.inbox.as_deref()) => {
                    // The events stay queued until done: keep at it, waiting
                    // between tries, rather than until the next event.
                    while let Err(error) = self.drain_inbox().await {
                        tracing::warn!(%property, %error, "3RPMS webhook events not processed yet");
                        if wait(&mut stop, error.retry_after().unwrap_or(RETRY)).await {
                            return;
                        }
                    }
                }
            }
        }
    }

    async fn work_arrived(inbox: Option<&Inbox>) {
        match inbox {
            Some(inbox) => inbox.notified().await,
            None => std::future::pending().await,
        }
    }

    /// Processes every queued event: room stay events re-read the stays by
    /// id in one batched query, reservation events the reservations' stays,
    /// key deletions republish. Events are completed only once done.
    pub async fn drain_inbox(&self) -> keysmith_core::Result<()> {
        let Some(inbox) = &self.inbox else {
            return Ok(());
        };
        loop {
            let pending = inbox.pending()?;
            if pending.is_empty() {
                return Ok(());
            }
            let mut stays = Vec::new();
            let mut reservations = Vec::new();
            let mut deleted_keys = Vec::new();
            let mut revoked = Vec::new();
            for (_, event) in &pending {
                classify(event, &mut stays, &mut reservations, &mut deleted_keys);
                if event.kind == KEY_REVOKED {
                    revoked.push(event.object_id.clone());
                }
            }
            if !revoked.is_empty() {
                for (stay_id, record) in self.hotel.records()? {
                    if revoked.contains(&record.key_id) && !stays.contains(&stay_id) {
                        stays.push(stay_id);
                    }
                }
            }
            if !reservations.is_empty() {
                let report = self.hotel.sync_reservations(&reservations).await?;
                tracing::debug!(?reservations, ?report, "3RPMS reservations re-read");
            }
            if !stays.is_empty() {
                let report = self.hotel.sync_stays(&stays).await?;
                tracing::debug!(?stays, ?report, "3RPMS room stays re-read");
            }
            for key in &deleted_keys {
                self.hotel.key_deleted(key).await?;
            }
            let done: Vec<u64> = pending.iter().map(|(seq, _)| *seq).collect();
            inbox.complete(&done).await?;
        }
    }

    /// 3RPMS retries a delivery for days; markers older than that go.
    async fn forget_old_events(&self) {
        let Some(inbox) = &self.inbox else { return };
        let cutoff = self.hotel.now().unix_seconds()
            - i64::try_from(crate::webhook::inbox::DEDUP_RETENTION.as_secs()).unwrap_or(i64::MAX);
        if let Err(error) = inbox.forget_older_than(cutoff).await {
            tracing::warn!(property = self.hotel.property_id(), %error, "pruning webhook markers failed");
        }
    }

    fn until_nightly(&self) -> Duration {
        let at: Time = self
            .hotel
            .config()
            .nightly_at
            .parse()
            .unwrap_or(Time::constant(3, 0, 0, 0));
        self.hotel.until_local_time(at)
    }
}

fn classify(
    event: &WebhookEvent,
    stays: &mut Vec<String>,
    reservations: &mut Vec<String>,
    deleted_keys: &mut Vec<String>,
) {
    let id = event.object_id.clone();
    match event.kind.as_str() {
        "room_stay.created" | "room_stay.updated" | "room_stay.deleted" => {
            if !stays.contains(&id) {
                stays.push(id)
            }
        }
        "reservation.created" | "reservation.updated" => {
            if !reservations.contains(&id) {
                reservations.push(id)
            }
        }
        // Handled by the caller: it names a keysmith key, not a stay.
        KEY_REVOKED => {}
        "room_access_key.deleted" => {
            if !deleted_keys.contains(&id) {
                deleted_keys.push(id)
            }
        }
        // Other events are of no concern to keys; they are acknowledged.
        other => tracing::debug!(event = other, "3RPMS event ignored"),
    }
}

/// Waits, or returns true when asked to stop meanwhile.
async fn wait(stop: &mut watch::Receiver<bool>, how_long: Duration) -> bool {
    tokio::select! {
        _ = stop.changed() => true,
        _ = tokio::time::sleep(how_long) => false,
    }
}
