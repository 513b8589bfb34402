//! What the server may ask of a started hotel: the reads, sync and webhook
//! registration behind keysmith.v1.PmsService, and waiting for its queued
//! events. Everything else (the sync's workings, the worker, the inbox)
//! stays inside the integration.
use std::{collections::BTreeMap, sync::Arc};

use keysmith_core::{Error, Result};

use crate::{
    errors::reasons,
    model::RoomStayKey,
    records::StayRecord,
    registration::{self, Replacing},
    sync::{HotelSync, SyncReport},
    webhook::{dead_letter, receiver::WEBHOOK_ROUTE, Inbox, ParkedItem},
    worker,
};

/// Every started hotel, by keysmith property id. Cheap to clone.
#[derive(Clone, Default)]
pub struct Hotels(Arc<BTreeMap<String, Hotel>>);

impl Hotels {
    pub(crate) fn new(hotels: BTreeMap<String, Hotel>) -> Self {
        Self(Arc::new(hotels))
    }

    /// The hotel kept in step with this keysmith property, if any.
    pub fn get(&self, property_id: &str) -> Option<&Hotel> {
        self.0.get(property_id)
    }

    /// Resolves once every 3RPMS event queued for the property so far (a
    /// webhook, or a revocation of a published key) has been acted on; at
    /// once for a property without 3RPMS.
    pub async fn events_processed(&self, property_id: &str) {
        if let Some(hotel) = self.get(property_id) {
            hotel.inbox.idle().await;
        }
    }
}

/// One 3RPMS hotel, started.
#[derive(Clone)]
pub struct Hotel {
    sync: Arc<HotelSync>,
    inbox: Arc<Inbox>,
    /// `threerpms.webhook_public_url`: the base of the URL registered when
    /// the operator names none.
    webhook_public_url: Option<String>,
}

/// The webhook endpoint 3RPMS now delivers to (its secret stays in
/// keysmith's store).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookRegistration {
    pub endpoint_id: String,
    pub url: String,
    pub enabled: bool,
}

impl Hotel {
    pub(crate) fn new(
        sync: Arc<HotelSync>,
        inbox: Arc<Inbox>,
        webhook_public_url: Option<String>,
    ) -> Self {
        Self {
            sync,
            inbox,
            webhook_public_url,
        }
    }

    /// One room stay and its 3RPMS key; `None` when there is no such stay.
    /// `staff` also asks for a key storage's compartment.
    pub async fn room_stay_key(
        &self,
        room_stay_id: &str,
        staff: bool,
    ) -> Result<Option<RoomStayKey>> {
        self.sync.client().room_stay_key(room_stay_id, staff).await
    }

    /// Every room of the reservation with this code, with its 3RPMS key;
    /// `None` when no reservation has the code.
    pub async fn reservation_room_keys(
        &self,
        reservation_code: &str,
        staff: bool,
    ) -> Result<Option<Vec<RoomStayKey>>> {
        self.sync
            .client()
            .reservation_room_keys(reservation_code, staff)
            .await
    }

    /// The operator's sync of the whole window (today and the coming days).
    /// Stays whose step failed are tried again in the background, as after
    /// the nightly sync.
    pub async fn sync_window(&self) -> Result<SyncReport> {
        let report = self.sync.sync_window().await?;
        worker::hand_over(&self.sync, &self.inbox, &report.failed).await;
        Ok(report)
    }

    /// The operator's sync of these room stays, re-read by id.
    pub async fn sync_stays(&self, room_stay_ids: &[String]) -> Result<SyncReport> {
        let report = self.sync.sync_stays(room_stay_ids).await?;
        worker::hand_over(&self.sync, &self.inbox, &report.failed).await;
        Ok(report)
    }

    /// The events set aside after failing again and again, oldest first.
    pub fn parked_items(&self) -> Result<Vec<ParkedItem>> {
        self.inbox.parked_items()
    }

    /// Queues a parked item again (its cause fixed, say); `item_id` as
    /// [`Hotel::parked_items`] gives it. Returns the item queued.
    pub async fn retry_parked(&self, item_id: &str) -> Result<ParkedItem> {
        let item_id = dead_letter::parse_item_id(item_id)?;
        let item = self.inbox.retry_parked(item_id).await?;
        tracing::info!(
            property = self.sync.property_id(),
            item_id,
            kind = %item.event.kind,
            object_id = %item.event.object_id,
            "parked 3RPMS event queued again"
        );
        Ok(item)
    }

    /// Registers keysmith's webhook endpoint with 3RPMS at `url`, or, when
    /// `url` is empty, at `webhook_public_url` followed by this hotel's
    /// path. `asked.replace` replaces an endpoint registered already.
    pub async fn register_webhook(
        &self,
        url: String,
        asked: Replacing,
    ) -> Result<WebhookRegistration> {
        let url = if url.is_empty() {
            let base = self.webhook_public_url.as_deref().ok_or_else(|| {
                Error::invalid_field(
                    reasons::WEBHOOK_URL_NOT_CONFIGURED,
                    "url",
                    "is required: no threerpms.webhook_public_url is configured",
                )
            })?;
            let path = WEBHOOK_ROUTE.replace("{property_id}", self.sync.property_id());
            format!("{}{path}", base.trim_end_matches('/'))
        } else {
            url
        };
        let endpoint = registration::register(&self.sync, &url, asked).await?;
        Ok(WebhookRegistration {
            endpoint_id: endpoint.endpoint_id,
            url,
            enabled: endpoint.enabled,
        })
    }

    /// Every stay keysmith keeps a key for, in stay id order: which keysmith
    /// key and which 3RPMS key each stay has.
    pub fn stay_records(&self) -> Result<Vec<StayRecord>> {
        Ok(self.sync.records()?.into_values().collect())
    }
}
