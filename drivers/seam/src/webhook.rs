//! Seam's events, received through Svix: verified, then the key they concern
//! is refreshed before the answer, within a few seconds (Svix counts a slow
//! answer as a failure); a refresh that fails or takes longer is left to the
//! poller, and the event is acknowledged all the same.
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
}

#[derive(Deserialize)]
struct Event {
    #[serde(default)]
    event_type: String,
    #[serde(default)]
    access_grant_id: Option<String>,
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
        })
}

async fn receive(
    State(receiver): State<Receiver>,
    Path(property_id): Path<String>,
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
    let Some(grant_id) = event.access_grant_id else {
        // Not about a grant (an unknown or unrelated event type): accepted.
        return StatusCode::NO_CONTENT;
    };
    let key_id = match receiver.driver.key_of_grant(&property_id, &grant_id) {
        Ok(Some(key_id)) => key_id,
        Ok(None) => return StatusCode::NO_CONTENT,
        Err(error) => {
            tracing::warn!(property_id, %error, "Seam event: store unavailable");
            return StatusCode::SERVICE_UNAVAILABLE;
        }
    };
    tracing::debug!(property_id, event = %event.event_type, %key_id, "Seam event");
    let refresh = receiver.service.refresh_key(&property_id, &key_id);
    match tokio::time::timeout(REFRESH_BUDGET, refresh).await {
        Ok(Ok(_)) => {}
        Ok(Err(error)) => {
            tracing::debug!(%key_id, %error, "refresh after a Seam event failed; the poller retries")
        }
        Err(_) => {
            tracing::debug!(%key_id, "refresh after a Seam event is slow; the poller retries")
        }
    }
    StatusCode::NO_CONTENT
}
