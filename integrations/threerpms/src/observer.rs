//! Keys revoked through keysmith's API that keysmith had published to a
//! 3RPMS room stay: the revocation queues work in the hotel's inbox (durably,
//! before the caller's answer), and the worker takes the key off the stay,
//! deletes it in 3RPMS, and gives the stay a new key, since every stay in the
//! window must have one.
use std::sync::{Arc, Weak};

use keysmith_core::{service::KeyObserver, AccessKey, Result};

use crate::{
    sync::HotelSync,
    webhook::{Inbox, WebhookEvent},
};

/// The inbox event kind for a revocation made through keysmith.
pub const KEY_REVOKED: &str = "keysmith.key_revoked";

pub struct RevocationObserver {
    /// Weak: the access service holds its observers, and the hotel holds
    /// the access service; a strong reference would keep both (and the
    /// store under them) alive after the integration stops.
    hotel: Weak<HotelSync>,
    inbox: Arc<Inbox>,
}

impl RevocationObserver {
    pub fn new(hotel: &Arc<HotelSync>, inbox: Arc<Inbox>) -> Self {
        Self {
            hotel: Arc::downgrade(hotel),
            inbox,
        }
    }
}

#[async_trait::async_trait]
impl KeyObserver for RevocationObserver {
    async fn revoked(&self, key: &AccessKey) -> Result<()> {
        // Stopped: nothing keeps the stays supplied any more.
        let Some(hotel) = self.hotel.upgrade() else {
            return Ok(());
        };
        if key.property_id != hotel.property_id() {
            return Ok(());
        }
        // keysmith's own sync ends its record before revoking: such a
        // revocation finds no record and needs nothing more.
        if !hotel.records()?.values().any(|r| r.key_id == key.key_id) {
            return Ok(());
        }
        self.inbox
            .accept(WebhookEvent {
                id: format!("keysmith:revoked:{}", key.key_id),
                kind: KEY_REVOKED.to_owned(),
                created_at: hotel.now().unix_seconds(),
                endpoint_id: String::new(),
                object_id: key.key_id.clone(),
                updated_fields: None,
            })
            .await
            .map(drop)
    }
}
