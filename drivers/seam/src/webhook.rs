//! Seam's events, received through Svix: verified, then the keys they
//! concern are refreshed before the answer, within a few seconds (Svix
//! counts a slow answer as a failure); a refresh that fails or takes longer
//! is left to the poller, and the event is acknowledged all the same.
//!
//! Which keys: Seam's `event` schema names the grant of an `access_grant.*`
//! event in `access_grant_id`, and the grants of an `access_method.*` event
//! (one method can serve several) in the arrays `access_grant_ids` and
//! `access_grant_keys`. keysmith finds its key by the grant id it stored at
//! issue, or by the grant key, which is the keysmith key id.
//!
//! No lease (`keysmith_core::lease`): with several replicas on one
//! database, whichever replica Svix's delivery reaches refreshes, inline.
//! A refresh reads the key's state at Seam and stores it under the key's
//! transaction lock, so two refreshes of one key (a redelivery, or the
//! follower meanwhile) store the same state one after the other: it is
//! idempotent, and a lease would only add a hop and a failure mode. Only
//! the follower's rounds, which would otherwise ask Seam once per replica,
//! are under a lease.
use std::{collections::BTreeMap, sync::Arc};

use axum::{
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    routing::post,
    Router,
};
use keysmith_core::{AccessService, Secret};
use serde::Deserialize;

use crate::{svix, SeamDriver};

/// How long an event's refresh may hold the answer.
const REFRESH_BUDGET: std::time::Duration = std::time::Duration::from_secs(5);

/// Seconds a delivery's timestamp may differ from now.
const TOLERANCE_SECONDS: i64 = 300;

#[derive(Clone)]
struct Receiver {
    secrets: Arc<BTreeMap<String, Secret<String>>>,
    driver: Arc<SeamDriver>,
    service: Arc<AccessService>,
    deliveries: Arc<Deliveries>,
}

/// Deliveries by what became of them (`metrics` facade, registered once).
/// Seam's events are not deduplicated: one delivered again refreshes again.
struct Deliveries {
    /// Verified and acted on.
    accepted: metrics::Counter,
    /// Refused: an unknown workspace, a bad signature, a malformed event.
    rejected: metrics::Counter,
    /// Not taken now (the store unavailable): answered 503 so that Svix
    /// delivers it again.
    retry_later: metrics::Counter,
}

impl Deliveries {
    fn register() -> Self {
        let counter = |outcome: &'static str| {
            metrics::counter!(
                "keysmith_webhook_deliveries_total",
                "source" => "seam",
                "outcome" => outcome,
            )
        };
        Self {
            accepted: counter("accepted"),
            rejected: counter("rejected"),
            retry_later: counter("retry_later"),
        }
    }
}

/// The members of an event that name access grants.
#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
pub struct Event {
    #[serde(default)]
    pub event_type: String,
    /// `access_grant.*` events.
    #[serde(default)]
    pub access_grant_id: Option<String>,
    /// `access_method.*` events.
    #[serde(default)]
    pub access_grant_ids: Vec<String>,
    /// `access_method.*` events: the grants' keys (keysmith key ids).
    #[serde(default)]
    pub access_grant_keys: Vec<String>,
}

impl Event {
    /// Every grant id the event names.
    pub fn grant_ids(&self) -> impl Iterator<Item = &String> {
        self.access_grant_id.iter().chain(&self.access_grant_ids)
    }
}

/// The keysmith keys an event concerns, each once, in the order named.
fn keys_of(
    event: &Event,
    property_id: &str,
    driver: &SeamDriver,
) -> keysmith_core::Result<Vec<String>> {
    let mut keys: Vec<String> = Vec::new();
    for grant_id in event.grant_ids() {
        if let Some(key_id) = driver.key_of_grant(property_id, grant_id)? {
            if !keys.contains(&key_id) {
                keys.push(key_id);
            }
        }
    }
    for key_id in &event.access_grant_keys {
        if !keys.contains(key_id) {
            keys.push(key_id.clone());
        }
    }
    Ok(keys)
}

/// `POST /seam/webhooks/{property_id}` for every workspace with a secret.
pub fn router(
    secrets: BTreeMap<String, Secret<String>>,
    driver: Arc<SeamDriver>,
    service: Arc<AccessService>,
) -> Router {
    Router::new()
        .route("/seam/webhooks/{property_id}", post(receive))
        .with_state(Receiver {
            secrets: Arc::new(secrets),
            driver,
            service,
            deliveries: Arc::new(Deliveries::register()),
        })
}

async fn receive(
    State(receiver): State<Receiver>,
    Path(property_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let status = act(&receiver, property_id, headers, body).await;
    let deliveries = &receiver.deliveries;
    match status {
        StatusCode::NO_CONTENT => deliveries.accepted.increment(1),
        StatusCode::SERVICE_UNAVAILABLE => deliveries.retry_later.increment(1),
        _ => deliveries.rejected.increment(1),
    }
    status
}

async fn act(
    receiver: &Receiver,
    property_id: String,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let Some(secret) = receiver.secrets.get(&property_id) else {
        return StatusCode::NOT_FOUND;
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    // Svix stamps deliveries with the wall clock.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    if let Err(why) = svix::verify(
        secret,
        header("svix-id"),
        header("svix-timestamp"),
        header("svix-signature"),
        &body,
        now,
        TOLERANCE_SECONDS,
    ) {
        tracing::warn!(property_id, %why, body_bytes = body.len(), "refused a Seam event");
        return StatusCode::UNAUTHORIZED;
    }
    let Ok(event) = serde_json::from_slice::<Event>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    // An event that names no grant of keysmith's (another type, another
    // integration's grant) is accepted and left alone.
    let key_ids = match keys_of(&event, &property_id, &receiver.driver) {
        Ok(keys) => keys,
        Err(error) => {
            tracing::warn!(property_id, %error, "Seam event: store unavailable");
            return StatusCode::SERVICE_UNAVAILABLE;
        }
    };
    let refreshes = async {
        for key_id in &key_ids {
            tracing::debug!(property_id, event = %event.event_type, %key_id, "Seam event");
            if let Err(error) = receiver.service.refresh_key(&property_id, key_id).await {
                tracing::debug!(%key_id, %error, "refresh after a Seam event failed; the poller retries");
            }
        }
    };
    if tokio::time::timeout(REFRESH_BUDGET, refreshes)
        .await
        .is_err()
    {
        tracing::debug!(
            property_id,
            "refresh after a Seam event is slow; the poller retries"
        );
    }
    StatusCode::NO_CONTENT
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As Seam's `event` schema has them: method events name their grants
    /// in arrays, grant events in `access_grant_id`.
    #[test]
    fn method_events_name_their_grants_in_arrays() {
        let method: Event = serde_json::from_str(
            r#"{"event_id":"e","event_type":"access_method.issued","access_method_id":"m",
                "access_grant_ids":["g1","g2"],"access_grant_keys":["k1"]}"#,
        )
        .unwrap();
        assert_eq!(method.grant_ids().collect::<Vec<_>>(), ["g1", "g2"]);
        assert_eq!(method.access_grant_keys, ["k1"]);
        let grant: Event = serde_json::from_str(
            r#"{"event_id":"e","event_type":"access_grant.deleted","access_grant_id":"g3"}"#,
        )
        .unwrap();
        assert_eq!(grant.grant_ids().collect::<Vec<_>>(), ["g3"]);
    }
}
