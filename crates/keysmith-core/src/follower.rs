//! Follows what drivers do on their own: keys issued asynchronously are
//! refreshed until their credentials are issued (or need encoding, or a
//! driver reports they cannot be), for every driver whose capability says
//! `refresh` (Seam, plugins alike), and the entrances are re-read now and
//! then so that a door added or removed at a driver is seen (and a removed
//! one reported). A key whose refresh fails (its provider is down or asks
//! to wait) is asked again after a back-off that grows with each failure
//! ([`Backoff`]); a round asked for explicitly asks every key at once.
//!
//! Refreshing keys changes the store: it runs only while this replica holds
//! [`FOLLOWER_LEASE`], so replicas sharing a database ask each driver once.
//! Re-reading the entrances updates this replica's own router, in memory:
//! every replica does it.
use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use tokio::{
    sync::{mpsc, oneshot, watch},
    time::Instant,
};

use crate::{key::KeyState, lease::Lease, request::ListKeysRequest, AccessService};

/// The lease the follower holds while it refreshes keys.
pub const FOLLOWER_LEASE: &str = "key-follower";

/// How often to follow: each driver asks for what it needs, and the
/// follower takes the most frequent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Follow {
    /// How often to refresh this driver's keys still being issued (when
    /// its capability says `refresh`).
    pub keys: Option<Duration>,
    /// How often to re-read the entrances.
    pub entrances: Option<Duration>,
}

impl Follow {
    /// The keys of a driver that refreshes are followed this often unless
    /// it says otherwise.
    pub const DEFAULT_KEYS: Duration = Duration::from_secs(2);
    /// Never more often than this, whatever a configuration says.
    pub const MIN: Duration = Duration::from_millis(100);

    /// The most frequent of both.
    pub fn merge(self, other: Follow) -> Follow {
        let min = |a: Option<Duration>, b: Option<Duration>| match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Follow {
            keys: min(self.keys, other.keys),
            entrances: min(self.entrances, other.entrances),
        }
    }
}

/// Asks the follower for one round now, and waits for it.
#[derive(Clone)]
pub struct FollowNow(mpsc::Sender<oneshot::Sender<()>>);

impl FollowNow {
    /// Refreshes every key still being issued once, now, and returns when
    /// that is done (at once if the follower has stopped, or when another
    /// replica holds its lease).
    pub async fn round(&self) {
        let (done, wait) = oneshot::channel();
        if self.0.send(done).await.is_ok() {
            let _ = wait.await;
        }
    }
}

/// A key, as the follower tells keys apart: (property, key id).
type KeyRef = (String, String);

/// When each key whose refresh failed is asked again: after the follow
/// interval doubled for each failure in a row (at most [`Backoff::CAP`]), or
/// after the provider's Retry-After when that is longer. A key whose
/// refresh succeeds is asked at the follower's pace again.
#[derive(Debug, Default)]
pub struct Backoff {
    failing: HashMap<KeyRef, (u32, Instant)>,
}

impl Backoff {
    /// The longest wait between two attempts at one key.
    pub const CAP: Duration = Duration::from_secs(300);

    /// Whether the key may be asked at `now`.
    pub fn due(&self, key: &KeyRef, now: Instant) -> bool {
        self.failing.get(key).is_none_or(|(_, next)| *next <= now)
    }

    /// Records a failed attempt at `now`; returns the wait before the next.
    pub fn failed(
        &mut self,
        key: KeyRef,
        now: Instant,
        every: Duration,
        retry_after: Option<Duration>,
    ) -> Duration {
        let failures = self.failing.get(&key).map_or(0, |(n, _)| *n) + 1;
        let grown = every.saturating_mul(1 << failures.min(16)).min(Self::CAP);
        let wait = retry_after.map_or(grown, |after| grown.max(after.min(Self::CAP)));
        self.failing.insert(key, (failures, now + wait));
        wait
    }

    /// Records a successful attempt: back to the follower's pace.
    pub fn succeeded(&mut self, key: &KeyRef) {
        self.failing.remove(key);
    }

    /// Forgets keys no longer followed.
    pub fn retain(&mut self, followed: &HashSet<KeyRef>) {
        self.failing.retain(|k, _| followed.contains(k));
    }
}

/// The background task that follows the drivers.
pub struct KeyFollower {
    service: Arc<AccessService>,
    follow: Follow,
    lease: Lease,
    asked: mpsc::Receiver<oneshot::Sender<()>>,
    backoff: Backoff,
}

impl KeyFollower {
    /// A follower at the pace `follow` asks for (keys at least every
    /// [`Follow::DEFAULT_KEYS`] when some driver refreshes), refreshing
    /// keys while it holds `lease`, and a handle to ask it for a round at
    /// once.
    pub fn new(service: Arc<AccessService>, follow: Follow, lease: Lease) -> (Self, FollowNow) {
        let (tx, asked) = mpsc::channel(8);
        let follow = Follow {
            keys: follow.keys.map(|d| d.max(Follow::MIN)),
            entrances: follow.entrances.map(|d| d.max(Follow::MIN)),
        };
        (
            Self {
                service,
                follow,
                lease,
                asked,
                backoff: Backoff::default(),
            },
            FollowNow(tx),
        )
    }

    /// Follows until `stop` changes.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut keys = self.follow.keys.map(interval);
        let mut entrances = self.follow.entrances.map(interval);
        // The router has just read the entrances: skip the first, immediate tick.
        if let Some(ticker) = entrances.as_mut() {
            ticker.tick().await;
        }
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                _ = tick(&mut keys) => self.refresh_issuing(false).await,
                Some(done) = self.asked.recv() => {
                    self.refresh_issuing(true).await;
                    let _ = done.send(());
                }
                _ = tick(&mut entrances) => {
                    if let Err(error) = self.service.refresh_entrances().await {
                        tracing::warn!(%error, "refreshing entrances failed");
                    }
                }
            }
        }
    }

    /// Refreshes every key still being issued at a driver that refreshes,
    /// page by page. A key whose driver cannot answer now stays issuing and
    /// is asked again once its back-off has passed; with `every_key`, at
    /// once (a round asked for explicitly). Nothing while another replica
    /// holds the lease.
    pub async fn refresh_issuing(&mut self, every_key: bool) {
        if !self.lease.held() {
            tracing::debug!("another replica holds the key follower's lease: no refresh here");
            return;
        }
        let every = self.follow.keys.unwrap_or(Follow::DEFAULT_KEYS);
        let mut followed = HashSet::new();
        let properties = self.service.router().properties_where(|c| c.refresh);
        for property in &properties {
            let mut token = String::new();
            loop {
                let page = match self.service.list_keys(&ListKeysRequest {
                    property_id: property.clone(),
                    page_size: 500,
                    page_token: token.clone(),
                    states: vec![KeyState::Issuing],
                    ..ListKeysRequest::default()
                }) {
                    Ok(page) => page,
                    Err(error) => {
                        tracing::warn!(property, %error, "listing keys being issued failed");
                        break;
                    }
                };
                for key in &page.keys {
                    // Lost in the middle of a round: the holder's rounds go on.
                    if !self.lease.held() {
                        return;
                    }
                    let id = (property.clone(), key.key_id.clone());
                    followed.insert(id.clone());
                    if !every_key && !self.backoff.due(&id, Instant::now()) {
                        continue;
                    }
                    match self.service.refresh_key(property, &key.key_id).await {
                        Ok(_) => self.backoff.succeeded(&id),
                        Err(error) => {
                            let wait =
                                self.backoff
                                    .failed(id, Instant::now(), every, error.retry_after());
                            tracing::debug!(
                                property,
                                key_id = %key.key_id,
                                %error,
                                next_in_ms = wait.as_millis() as u64,
                                "key not refreshed yet"
                            );
                        }
                    }
                }
                match page.next_page_token {
                    Some(next) => token = next,
                    None => break,
                }
            }
        }
        self.backoff.retain(&followed);
    }
}

fn interval(every: Duration) -> tokio::time::Interval {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker
}

/// The next tick, or never for a ticker that is not there.
async fn tick(ticker: &mut Option<tokio::time::Interval>) {
    match ticker {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> KeyRef {
        ("hotel".into(), "k1".into())
    }

    #[test]
    fn a_failing_key_waits_longer_each_time_up_to_the_cap() {
        let mut b = Backoff::default();
        let start = Instant::now();
        let every = Duration::from_secs(2);
        assert!(b.due(&key(), start));
        let first = b.failed(key(), start, every, None);
        assert_eq!(first, Duration::from_secs(4));
        assert!(!b.due(&key(), start + Duration::from_secs(3)));
        assert!(b.due(&key(), start + first));
        let second = b.failed(key(), start + first, every, None);
        assert_eq!(second, Duration::from_secs(8));
        for _ in 0..20 {
            b.failed(key(), start, every, None);
        }
        let capped = b.failed(key(), start, every, None);
        assert_eq!(capped, Backoff::CAP);
        b.succeeded(&key());
        assert!(b.due(&key(), start), "back to the follower's pace");
    }

    #[test]
    fn retry_after_is_honoured_when_longer() {
        let mut b = Backoff::default();
        let now = Instant::now();
        let wait = b.failed(
            key(),
            now,
            Duration::from_secs(1),
            Some(Duration::from_secs(60)),
        );
        assert_eq!(wait, Duration::from_secs(60));
        b.retain(&HashSet::new());
        assert!(b.due(&key(), now), "a key no longer followed is forgotten");
    }
}
