//! Registering keysmith's webhook endpoint with 3RPMS. 3RPMS shows an
//! endpoint's secret once, in the answer that creates it, so the endpoint is
//! created disabled, the secret stored durably, and only then enabled: a
//! failure between the steps leaves a disabled endpoint whose secret keysmith
//! has, and running the command again enables it.
use keysmith_core::{Error, Result};

use crate::{
    errors::reasons,
    sync::HotelSync,
    webhook::{secrets, EndpointRecord},
};

/// The events keysmith acts on (the guide's list, and `reservation.created`).
pub const EVENTS: &[&str] = &[
    "room_stay.created",
    "room_stay.updated",
    "room_stay.deleted",
    "reservation.created",
    "reservation.updated",
    "room_access_key.deleted",
];

pub async fn register(hotel: &HotelSync, url: &str, replace: bool) -> Result<EndpointRecord> {
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(Error::invalid_field(
            keysmith_core::reasons::FIELD_INVALID,
            "url",
            "must be an http(s) URL",
        ));
    }
    let state = hotel.state();
    let property = hotel.property_id();
    if let Some(existing) = secrets::load(&**state, property)? {
        if !existing.enabled {
            hotel
                .client()
                .enable_webhook_endpoint(&existing.endpoint_id)
                .await?;
            let enabled = EndpointRecord {
                enabled: true,
                ..existing
            };
            secrets::store(&**state, property, &enabled).await?;
            return Ok(enabled);
        }
        if !replace {
            return Err(Error::failed_precondition(
                reasons::WEBHOOK_ALREADY_REGISTERED,
                format!(
                    "property {property:?} already has webhook endpoint {:?}; ask to replace it",
                    existing.endpoint_id
                ),
            ));
        }
    }
    let (endpoint_id, secret) = hotel.client().create_webhook_endpoint(url, EVENTS).await?;
    let mut record = EndpointRecord {
        endpoint_id,
        secret,
        enabled: false,
    };
    secrets::store(&**state, property, &record).await?;
    hotel
        .client()
        .enable_webhook_endpoint(&record.endpoint_id)
        .await?;
    record.enabled = true;
    secrets::store(&**state, property, &record).await?;
    tracing::info!(property, endpoint_id = %record.endpoint_id, "3RPMS webhook endpoint registered");
    Ok(record)
}
