//! Follows what drivers do on their own: keys issued asynchronously are
//! refreshed until their credentials are issued (or need encoding), for
//! every driver whose capability says `refresh` (Seam, plugins alike), and
//! the entrances are re-read now and then so that a door added or removed
//! at a driver is seen (and a removed one reported).
use std::{sync::Arc, time::Duration};

use tokio::sync::{mpsc, oneshot, watch};

use crate::{key::KeyState, request::ListKeysRequest, AccessService};

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
    /// that is done (at once if the follower has stopped).
    pub async fn round(&self) {
        let (done, wait) = oneshot::channel();
        if self.0.send(done).await.is_ok() {
            let _ = wait.await;
        }
    }
}

/// The background task that follows the drivers.
pub struct KeyFollower {
    service: Arc<AccessService>,
    follow: Follow,
    asked: mpsc::Receiver<oneshot::Sender<()>>,
}

impl KeyFollower {
    /// A follower at the pace `follow` asks for (keys at least every
    /// [`Follow::DEFAULT_KEYS`] when some driver refreshes), and a handle to
    /// ask it for a round at once.
    pub fn new(service: Arc<AccessService>, follow: Follow) -> (Self, FollowNow) {
        let (tx, asked) = mpsc::channel(8);
        let follow = Follow {
            keys: follow.keys.map(|d| d.max(Follow::MIN)),
            entrances: follow.entrances.map(|d| d.max(Follow::MIN)),
        };
        (
            Self {
                service,
                follow,
                asked,
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
                _ = tick(&mut keys) => self.refresh_issuing().await,
                Some(done) = self.asked.recv() => {
                    self.refresh_issuing().await;
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
    /// is asked again next round.
    pub async fn refresh_issuing(&self) {
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
                    if let Err(error) = self.service.refresh_key(property, &key.key_id).await {
                        tracing::debug!(property, key_id = %key.key_id, %error, "key not refreshed yet");
                    }
                }
                match page.next_page_token {
                    Some(next) => token = next,
                    None => break,
                }
            }
        }
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
