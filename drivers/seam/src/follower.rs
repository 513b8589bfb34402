//! Follows what Seam does asynchronously: keys still being issued are
//! polled until their access methods are issued (or need encoding), and the
//! entrances are re-read now and then so that a door added or removed in
//! Seam is seen (and a removed one reported).
use std::{sync::Arc, time::Duration};

use keysmith_core::{request::ListKeysRequest, AccessService, KeyState};
use tokio::sync::watch;

pub struct Follower {
    service: Arc<AccessService>,
    properties: Vec<String>,
    poll: Duration,
    entrance_refresh: Duration,
}

impl Follower {
    pub fn new(
        service: Arc<AccessService>,
        properties: Vec<String>,
        poll: Duration,
        entrance_refresh: Duration,
    ) -> Self {
        Self {
            service,
            properties,
            poll,
            entrance_refresh,
        }
    }

    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut poll = tokio::time::interval(self.poll);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut entrances = tokio::time::interval(self.entrance_refresh);
        entrances.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is at once; the router has just read the entrances.
        entrances.tick().await;
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                _ = poll.tick() => self.poll_issuing().await,
                _ = entrances.tick() => {
                    if let Err(error) = self.service.refresh_entrances().await {
                        tracing::warn!(%error, "refreshing entrances failed");
                    }
                }
            }
        }
    }

    /// Refreshes every key still being issued, page by page.
    pub async fn poll_issuing(&self) {
        for property in &self.properties {
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
