//! Registering keysmith's webhook endpoint with 3RPMS, as 3RPMS says: HTTPS
//! only (plain http is taken for loopback addresses alone, for tests and
//! demos), and at most 5 active endpoints per hotel for an integration, so a
//! replaced endpoint is switched off rather than left delivering.
//!
//! 3RPMS shows an endpoint's secret once, in the answer that creates it.
//! Where the schema has a status keysmith can set (detected, see the
//! inventory), the endpoint is created disabled, the secret stored durably,
//! and only then enabled: a failure between the steps leaves a disabled
//! endpoint whose secret keysmith has, and running the command again
//! enables it. Otherwise it is created with the documented fields alone and
//! the secret stored at once; a delivery that arrives first is answered 503
//! and redelivered by 3RPMS.
use keysmith_core::{Error, Result};

use crate::{
    detect::EndpointFeatures,
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

/// What the operator asked for.
#[derive(Clone, Copy, Debug, Default)]
pub struct Replacing {
    /// Replace an endpoint registered already.
    pub replace: bool,
    /// The operator removed the previous endpoint in 3RPMS: needed to
    /// replace where 3RPMS's schema offers no way to switch it off.
    pub previous_removed: bool,
}

/// HTTPS, or http to a loopback address.
pub fn check_url(url: &str) -> Result<()> {
    let invalid = |why: &str| {
        Error::invalid_field(keysmith_core::reasons::FIELD_INVALID, "url", why.to_owned())
    };
    let parsed = reqwest::Url::parse(url).map_err(|_| invalid("must be an absolute URL"))?;
    let host = parsed
        .host_str()
        .ok_or_else(|| invalid("must name a host"))?;
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(host) => Ok(()),
        "http" => Err(invalid(
            "must be https: 3RPMS delivers to HTTPS only (http is taken for loopback addresses, \
             for tests and demos)",
        )),
        _ => Err(invalid("must be an https URL")),
    }
}

fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

pub async fn register(hotel: &HotelSync, url: &str, asked: Replacing) -> Result<EndpointRecord> {
    check_url(url)?;
    let detected = hotel.detected().await?;
    let features = &detected.features.endpoint;
    let state = hotel.state();
    let property = hotel.property_id();
    // A replacement that could not switch its predecessor off yet does so
    // first: the endpoint would count toward 3RPMS's limit for good.
    retire_replaced(hotel, features).await?;
    if let Some(existing) = secrets::load(&**state, property)? {
        if !existing.enabled {
            if let Some(enabled) = features
                .enabled_value
                .as_deref()
                .filter(|_| features.update_mutation)
            {
                // A registration that stopped between create and enable.
                hotel
                    .client()
                    .set_webhook_endpoint_status(&existing.endpoint_id, enabled)
                    .await?;
                let enabled = EndpointRecord {
                    enabled: true,
                    ..existing
                };
                secrets::store(&**state, property, &enabled).await?;
                return Ok(enabled);
            }
        }
        if !asked.replace {
            return Err(Error::failed_precondition(
                reasons::WEBHOOK_ALREADY_REGISTERED,
                format!(
                    "property {property:?} already has webhook endpoint {:?}; ask to replace it",
                    existing.endpoint_id
                ),
            ));
        }
        if existing.enabled && !features.can_retire() && !asked.previous_removed {
            return Err(Error::failed_precondition(
                reasons::WEBHOOK_RETIREMENT_UNSUPPORTED,
                format!(
                    "3RPMS's schema offers no way to switch webhook endpoint {:?} off \
                     (no updateWebhookEndpoint with a status), and 3RPMS allows 5 active \
                     endpoints: remove it in 3RPMS, then replace it saying the previous \
                     endpoint was removed",
                    existing.endpoint_id
                ),
            ));
        }
    }

    let create_disabled = features.can_create_disabled();
    let status = if create_disabled {
        features.disabled_value.as_deref()
    } else if features.status_required {
        Some(features.enabled_value.as_deref().ok_or_else(|| {
            Error::failed_precondition(
                reasons::HOTEL_NOT_CONFIGURED,
                "3RPMS's createWebhookEndpoint requires a status whose enabling value keysmith \
                 does not recognise",
            )
        })?)
    } else {
        None
    };
    let (endpoint_id, secret) = hotel
        .client()
        .create_webhook_endpoint(url, crate::registration::EVENTS, status)
        .await?;
    let mut record = EndpointRecord {
        endpoint_id,
        secret,
        enabled: !create_disabled,
    };
    secrets::store(&**state, property, &record).await?;
    if asked.previous_removed {
        for replaced in secrets::still_active(&**state, property)? {
            secrets::mark_inactive(&**state, property, &replaced).await?;
        }
    }
    if create_disabled {
        let enabled = features.enabled_value.as_deref().unwrap_or_default();
        hotel
            .client()
            .set_webhook_endpoint_status(&record.endpoint_id, enabled)
            .await?;
        record.enabled = true;
        secrets::store(&**state, property, &record).await?;
    }
    retire_replaced(hotel, features).await?;
    tracing::info!(property, endpoint_id = %record.endpoint_id, "3RPMS webhook endpoint registered");
    Ok(record)
}

/// Switches off, at 3RPMS, every replaced endpoint still enabled there,
/// where the schema allows it.
async fn retire_replaced(hotel: &HotelSync, features: &EndpointFeatures) -> Result<()> {
    let (Some(disabled), true) = (features.disabled_value.as_deref(), features.update_mutation)
    else {
        return Ok(());
    };
    let state = hotel.state();
    let property = hotel.property_id();
    for endpoint_id in secrets::still_active(&**state, property)? {
        hotel
            .client()
            .set_webhook_endpoint_status(&endpoint_id, disabled)
            .await?;
        secrets::mark_inactive(&**state, property, &endpoint_id).await?;
        tracing::info!(property, %endpoint_id, "replaced 3RPMS webhook endpoint switched off");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_or_loopback_http_is_taken() {
        for ok in [
            "https://keysmith.example.com/3rpms/webhooks/h",
            "http://127.0.0.1:8788/3rpms/webhooks/h",
            "http://localhost/x",
            "http://[::1]:9/x",
        ] {
            assert!(check_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://keysmith.example.com/x",
            "http://10.0.0.1/x",
            "ftp://example.com/x",
            "not a url",
            "https://",
        ] {
            let e = check_url(bad).expect_err(bad);
            assert_eq!(e.kind(), keysmith_core::ErrorKind::InvalidArgument, "{bad}");
        }
    }
}
