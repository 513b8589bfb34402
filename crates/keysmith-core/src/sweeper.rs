//! The background task that runs [`AccessService::sweep`] now and then,
//! and on demand, and says in the logs what it purged. It sweeps only while
//! this replica holds its lease ([`SWEEPER_LEASE`]): replicas sharing a
//! database sweep it once, not once each.
use std::{sync::Arc, time::Duration};

use tokio::sync::{mpsc, oneshot, watch};

use crate::{
    lease::Lease,
    service::{Retention, SweepReport},
    AccessService,
};

/// The lease the sweeper holds while it sweeps.
pub const SWEEPER_LEASE: &str = "sweeper";

/// Asks the sweeper for one sweep now, and waits for it.
#[derive(Clone)]
pub struct SweepNow(mpsc::Sender<oneshot::Sender<SweepReport>>);

impl SweepNow {
    /// Sweeps once, now; the report, or an empty one if the sweeper has
    /// stopped, another replica holds its lease, or the sweep failed (the
    /// failure is logged).
    pub async fn sweep(&self) -> SweepReport {
        let (done, wait) = oneshot::channel();
        if self.0.send(done).await.is_err() {
            return SweepReport::default();
        }
        wait.await.unwrap_or_default()
    }
}

/// Sweeps every `every`, and whenever asked.
pub struct Sweeper {
    service: Arc<AccessService>,
    retention: Retention,
    every: Duration,
    batch: usize,
    lease: Lease,
    asked: mpsc::Receiver<oneshot::Sender<SweepReport>>,
}

impl Sweeper {
    /// A sweeper that sweeps while it holds `lease`, and the handle that
    /// asks it for a sweep at once.
    pub fn new(
        service: Arc<AccessService>,
        retention: Retention,
        every: Duration,
        batch: usize,
        lease: Lease,
    ) -> (Self, SweepNow) {
        let (tx, asked) = mpsc::channel(4);
        (
            Self {
                service,
                retention,
                every,
                batch,
                lease,
                asked,
            },
            SweepNow(tx),
        )
    }

    /// Sweeps until `stop` changes. The first sweep is one interval after
    /// the start.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut ticker = tokio::time::interval(self.every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                _ = ticker.tick() => {
                    self.sweep().await;
                }
                Some(done) = self.asked.recv() => {
                    let report = self.sweep().await;
                    let _ = done.send(report);
                }
            }
        }
    }

    async fn sweep(&self) -> SweepReport {
        if !self.lease.held() {
            tracing::debug!("another replica holds the sweeper's lease: no sweep here");
            return SweepReport::default();
        }
        let held = || self.lease.held();
        match self.service.sweep(&self.retention, self.batch, &held).await {
            Ok(report) => {
                if !report.is_empty() {
                    tracing::info!(
                        expired = report.expired,
                        purged_keys = report.purged_keys,
                        purged_reservations = report.purged_reservations,
                        purged_audit_records = report.purged_audit,
                        forgotten_request_ids = report.forgotten_request_ids,
                        purged_changes = report.purged_changes,
                        reclaimed_bytes = report.reclaimed_bytes,
                        "swept the store"
                    );
                }
                report
            }
            Err(error) => {
                tracing::error!(%error, "sweeping the store failed; the next sweep tries again");
                SweepReport::default()
            }
        }
    }
}
