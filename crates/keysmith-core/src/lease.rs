//! Background work once across replicas: a lease names one piece of work
//! (the sweeper, the key follower, one hotel's 3RPMS worker), and only the
//! replica that holds it does that work.
//!
//! The store grants leases ([`Store::leases`](crate::store::Store::leases)):
//! a store that one process owns alone grants every lease
//! ([`SoleOwner`]); a database shared by replicas grants each to one holder
//! at a time, for a time to live measured by the database's own clock.
//!
//! [`LeaseKeeper`] renews each lease in the background every third of its
//! time to live, and [`Lease::held`] says whether the work may run now.
//! What holding means, for the work: a round starts only while
//! [`Lease::held`] is true, and a round is short next to the time to live
//! (a sweep is one batch per kind; a 3RPMS worker checks between events).
//! Every mutation still runs in a store transaction under its locks, so a
//! round that overruns a lost lease cannot corrupt anything; it may only
//! repeat work the next holder does too.
use std::{collections::BTreeMap, sync::Arc, time::Duration};

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::{sync::watch, task::JoinHandle, time::Instant};

use crate::error::Result;

/// Grants named leases to holders, for a time to live.
///
/// The contract:
/// - [`Leases::hold`] takes the lease `name` for `holder` when no one holds
///   it or its holder's time ran out, or renews it when `holder` holds it,
///   and answers whether `holder` holds it now. The lease then lasts `ttl`
///   from when the store granted it, by the store's clock.
/// - The holder must stop the work once a renewal fails (refused or not
///   answered) or once `ttl` has passed since it *sent* the last
///   successful request, by its own monotonic clock: that moment comes
///   before the store's expiry, so no other holder can have taken the lease
///   while this one still works.
/// - [`Leases::release`] gives the lease up at once, when `holder` holds it
///   (and does nothing otherwise), so that another takes it without
///   waiting for the time to live.
#[async_trait]
pub trait Leases: Send + Sync {
    /// Takes or renews `name` for `holder`, for `ttl`; whether it is held.
    async fn hold(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool>;
    /// Gives `name` up, when `holder` holds it.
    async fn release(&self, name: &str, holder: &str) -> Result<()>;
}

/// The leases of a store that one process owns alone (sled locks its data
/// directory for the process that opened it): every lease is granted.
#[derive(Clone, Copy, Debug, Default)]
pub struct SoleOwner;

#[async_trait]
impl Leases for SoleOwner {
    async fn hold(&self, _name: &str, _holder: &str, _ttl: Duration) -> Result<bool> {
        Ok(true)
    }

    async fn release(&self, _name: &str, _holder: &str) -> Result<()> {
        Ok(())
    }
}

/// One lease as its work sees it: held until a moment of this process's
/// monotonic clock, or not held.
#[derive(Clone)]
pub struct Lease {
    name: Arc<str>,
    until: watch::Receiver<Option<Instant>>,
}

impl Lease {
    /// The lease's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether this replica holds the lease now: its last renewal succeeded
    /// and its time to live, counted from when that renewal was sent, has
    /// not passed.
    pub fn held(&self) -> bool {
        self.until
            .borrow()
            .is_some_and(|until| Instant::now() < until)
    }

    /// Resolves once the lease is taken (at once when it is held), or never
    /// when its keeper has stopped.
    pub async fn taken(&mut self) {
        loop {
            if self.held() {
                return;
            }
            if self.until.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }
}

impl Lease {
    /// Resolves once the lease is not held (at once when it is not): lost
    /// at a renewal, released, or past its time to live.
    pub async fn lost(&mut self) {
        loop {
            let until = *self.until.borrow_and_update();
            let Some(until) = until.filter(|at| Instant::now() < *at) else {
                return;
            };
            tokio::select! {
                _ = tokio::time::sleep_until(until) => {}
                changed = self.until.changed() => if changed.is_err() { return },
            }
        }
    }
}

/// Keeps this replica's leases: one background task per lease tries to take
/// or renew it every third of the time to live, and logs when this replica
/// takes or loses it. The holder is this process's own id, new at each
/// start, so that a restarted replica is never mistaken for its former
/// self.
pub struct LeaseKeeper {
    leases: Arc<dyn Leases>,
    holder: String,
    ttl: Duration,
    kept: Mutex<BTreeMap<String, Kept>>,
    stop: watch::Sender<bool>,
}

struct Kept {
    lease: Lease,
    task: JoinHandle<()>,
}

impl LeaseKeeper {
    /// A keeper of `leases` for a new holder, each lease lasting `ttl`.
    pub fn new(leases: Arc<dyn Leases>, ttl: Duration) -> Self {
        Self {
            leases,
            holder: format!("keysmith-{}", ulid::Ulid::new().to_string().to_lowercase()),
            ttl,
            kept: Mutex::default(),
            stop: watch::channel(false).0,
        }
    }

    /// This process's holder id.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// The lease `name`, kept from now on: the first attempt to take it is
    /// made before this returns (so a sole replica holds it at once), the
    /// next ones in the background. Asking for a lease kept already gives
    /// the same one.
    pub async fn keep(&self, name: &str) -> Lease {
        if let Some(kept) = self.kept.lock().get(name) {
            return kept.lease.clone();
        }
        let (tx, rx) = watch::channel(None);
        let lease = Lease {
            name: name.into(),
            until: rx,
        };
        let renewal = Renewal {
            leases: self.leases.clone(),
            holder: self.holder.clone(),
            name: name.to_owned(),
            ttl: self.ttl,
            until: tx,
            gauge: metrics::gauge!("keysmith_leases_held", "lease" => name.to_owned()),
        };
        renewal.attempt().await;
        let task = tokio::spawn(renewal.run(self.stop.subscribe()));
        self.kept.lock().insert(
            name.to_owned(),
            Kept {
                lease: lease.clone(),
                task,
            },
        );
        lease
    }

    /// The names of the leases this replica holds now.
    pub fn held(&self) -> Vec<String> {
        self.kept
            .lock()
            .iter()
            .filter(|(_, k)| k.lease.held())
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// The lease `name`, when it is kept.
    pub fn lease(&self, name: &str) -> Option<Lease> {
        self.kept.lock().get(name).map(|k| k.lease.clone())
    }

    /// Stops renewing and releases every lease held. Called once the work
    /// under them has stopped: another replica may take them at once.
    pub async fn release_all(&self) {
        let _ = self.stop.send(true);
        let kept = std::mem::take(&mut *self.kept.lock());
        for (_, k) in kept {
            let _ = k.task.await;
        }
    }
}

impl Drop for LeaseKeeper {
    /// A keeper dropped without [`LeaseKeeper::release_all`] (a start that
    /// failed half way) still stops renewing, and releases what it holds.
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// The background renewal of one lease.
struct Renewal {
    leases: Arc<dyn Leases>,
    holder: String,
    name: String,
    ttl: Duration,
    until: watch::Sender<Option<Instant>>,
    gauge: metrics::Gauge,
}

impl Renewal {
    async fn run(self, mut stop: watch::Receiver<bool>) {
        let every = self.ttl / 3;
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                _ = tokio::time::sleep(every) => self.attempt().await,
            }
        }
        if self.until.borrow().is_some() {
            self.until.send_replace(None);
            self.gauge.set(0.0);
            match self.leases.release(&self.name, &self.holder).await {
                Ok(()) => tracing::info!(lease = %self.name, "lease released"),
                Err(error) => tracing::warn!(
                    lease = %self.name,
                    %error,
                    "releasing a lease failed; it ends with its time to live"
                ),
            }
        }
    }

    /// Takes or renews the lease once; a failure counts as a refusal.
    async fn attempt(&self) {
        // Counted from before the request: the store's expiry is later.
        let sent = Instant::now();
        // An answer later than the time to live is of no use: given up.
        let asked = self.leases.hold(&self.name, &self.holder, self.ttl);
        let held = match tokio::time::timeout(self.ttl, asked).await {
            Ok(Ok(held)) => held,
            Ok(Err(error)) => {
                tracing::warn!(lease = %self.name, %error, "renewing a lease failed");
                false
            }
            Err(_) => {
                tracing::warn!(lease = %self.name, "renewing a lease took its whole time to live");
                false
            }
        };
        // A late answer may come after the time to live: then it is lost.
        let until = (held && Instant::now() < sent + self.ttl).then_some(sent + self.ttl);
        self.set(until);
    }

    fn set(&self, until: Option<Instant>) {
        let was_held = self.until.borrow().is_some();
        match (was_held, until.is_some()) {
            (false, true) => {
                tracing::info!(lease = %self.name, holder = %self.holder, "lease taken");
                self.gauge.set(1.0);
            }
            (true, false) => {
                tracing::info!(lease = %self.name, "lease lost: its work stops on this replica");
                self.gauge.set(0.0);
            }
            _ => {}
        }
        self.until.send_replace(until);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    /// Grants while `granting` is true.
    #[derive(Default)]
    struct Switch(AtomicBool);

    #[async_trait]
    impl Leases for Switch {
        async fn hold(&self, _name: &str, _holder: &str, _ttl: Duration) -> Result<bool> {
            Ok(self.0.load(Ordering::SeqCst))
        }

        async fn release(&self, _name: &str, _holder: &str) -> Result<()> {
            Ok(())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_is_held_from_its_grant_and_lost_with_its_renewal() {
        let switch = Arc::new(Switch::default());
        switch.0.store(true, Ordering::SeqCst);
        let keeper = LeaseKeeper::new(switch.clone(), Duration::from_secs(3));
        let mut lease = keeper.keep("sweeper").await;
        assert!(lease.held(), "taken before keep returns");
        assert_eq!(keeper.held(), ["sweeper"]);

        switch.0.store(false, Ordering::SeqCst);
        let refused = async {
            while lease.held() {
                lease.until.changed().await.unwrap();
            }
        };
        tokio::time::timeout(Duration::from_secs(2), refused)
            .await
            .expect("lost at the next renewal, within a third of the time to live");
        assert!(keeper.held().is_empty());

        switch.0.store(true, Ordering::SeqCst);
        tokio::time::timeout(Duration::from_secs(2), lease.taken())
            .await
            .expect("taken again at the next attempt");
        keeper.release_all().await;
        assert!(!lease.held());
    }

    /// Grants once, then never answers again.
    #[derive(Default)]
    struct Hangs(AtomicBool);

    #[async_trait]
    impl Leases for Hangs {
        async fn hold(&self, _name: &str, _holder: &str, _ttl: Duration) -> Result<bool> {
            if self.0.swap(true, Ordering::SeqCst) {
                std::future::pending().await
            }
            Ok(true)
        }

        async fn release(&self, _name: &str, _holder: &str) -> Result<()> {
            Ok(())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_holder_whose_renewal_hangs_stops_when_its_time_to_live_passes() {
        let keeper = LeaseKeeper::new(Arc::new(Hangs::default()), Duration::from_secs(3));
        let lease = keeper.keep("follower").await;
        assert!(lease.held());
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(lease.held(), "within the time to live of the grant");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(!lease.held(), "past it, on this replica's clock");
    }
}
