//! The HTTP endpoint 3RPMS delivers webhooks to:
//! `POST /3rpms/webhooks/{property_id}`.
//!
//! The handler only authenticates, parses and queues: 3RPMS counts a slow
//! answer as a failure, so the room-stay work happens in the worker that
//! drains the [`Inbox`]. The status codes steer 3RPMS's retries:
//! - 200: the event is on disk (or was already); never sent any earlier.
//! - 401: not signed by a secret of the property's endpoint, or stale.
//!   Nothing is written, so a forger cannot even fill the dedup markers.
//! - 400: authentic but not an event; 413: body over the limit.
//! - an unknown property is answered as a bad signature is (401, the same
//!   body), so property ids cannot be probed without a secret.
//! - 503: no usable endpoint registration yet, or the store failing: 3RPMS
//!   retries, and the delivery succeeds once the cause is gone.
use std::{collections::HashMap, sync::Arc, time::Duration};

use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, DefaultBodyLimit, Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
    Router,
};
use keysmith_core::{store::DriverState, ErrorKind};

use super::{
    event::WebhookEvent,
    inbox::{Accepted, Inbox},
    secrets,
    signature::{self, SignatureError, DEFAULT_TOLERANCE, SIGNATURE_HEADER},
};

/// The route, in axum's syntax.
pub const WEBHOOK_ROUTE: &str = "/3rpms/webhooks/{property_id}";

/// What the receiver needs of one hotel.
#[derive(Clone)]
pub struct HotelWebhooks {
    pub property_id: String,
    pub inbox: Arc<Inbox>,
    /// Where the hotel's endpoint registration (its secrets) is kept.
    pub state: Arc<dyn DriverState>,
}

impl std::fmt::Debug for HotelWebhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HotelWebhooks")
            .field("property_id", &self.property_id)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Debug)]
pub struct ReceiverConfig {
    /// How far a delivery's signed timestamp may be from the local clock.
    pub tolerance: Duration,
    /// Larger bodies are refused with 413 before any verification. Events
    /// carry ids only, so the default is generous.
    pub max_body_bytes: usize,
}

impl Default for ReceiverConfig {
    fn default() -> Self {
        Self {
            tolerance: DEFAULT_TOLERANCE,
            max_body_bytes: 64 * 1024,
        }
    }
}

struct Shared {
    hotels: HashMap<String, HotelWebhooks>,
    tolerance: Duration,
    deliveries: Deliveries,
}

/// Deliveries by what became of them (`metrics` facade, registered once).
struct Deliveries {
    /// Verified and queued.
    accepted: metrics::Counter,
    /// Verified, and already queued before (answered OK, queued once).
    duplicate: metrics::Counter,
    /// Refused: an unknown property, a bad signature, a malformed event, a
    /// body too large.
    rejected: metrics::Counter,
    /// Not taken now (no endpoint registered, the store unavailable):
    /// answered 503 so that 3RPMS delivers it again.
    retry_later: metrics::Counter,
}

impl Deliveries {
    fn register() -> Self {
        let counter = |outcome: &'static str| {
            metrics::counter!(
                "keysmith_webhook_deliveries_total",
                "source" => "threerpms",
                "outcome" => outcome,
            )
        };
        Self {
            accepted: counter("accepted"),
            duplicate: counter("duplicate"),
            rejected: counter("rejected"),
            retry_later: counter("retry_later"),
        }
    }
}

/// The webhook routes for `hotels`. Should two entries share a property id,
/// the later one is used.
pub fn router(hotels: Vec<HotelWebhooks>, config: ReceiverConfig) -> Router {
    let shared = Arc::new(Shared {
        hotels: hotels
            .into_iter()
            .inspect(|hotel| {
                if hotel.inbox.property_id() != hotel.property_id {
                    // Its events would be queued for another property.
                    tracing::error!(
                        property_id = %hotel.property_id,
                        inbox = %hotel.inbox.property_id(),
                        "3RPMS webhook receiver given another property's inbox"
                    );
                }
            })
            .map(|hotel| (hotel.property_id.clone(), hotel))
            .collect(),
        tolerance: config.tolerance,
        deliveries: Deliveries::register(),
    });
    Router::new()
        .route(WEBHOOK_ROUTE, post(receive))
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .with_state(shared)
}

async fn receive(
    State(shared): State<Arc<Shared>>,
    Path(property_id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let deliveries = &shared.deliveries;
    let (response, delivery) = judge(&shared, property_id, headers, body).await;
    let counter = match delivery {
        Delivery::Accepted => &deliveries.accepted,
        Delivery::Duplicate => &deliveries.duplicate,
        Delivery::Rejected => &deliveries.rejected,
        Delivery::RetryLater => &deliveries.retry_later,
    };
    counter.increment(1);
    response
}

/// What became of a delivery.
enum Delivery {
    Accepted,
    Duplicate,
    Rejected,
    RetryLater,
}

async fn judge(
    shared: &Shared,
    property_id: String,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> (Response, Delivery) {
    // The raw bytes, never a re-serialisation: they are what was signed.
    // Read before the property is looked up, so that a body refused (too
    // large, say) is refused alike whether the property exists or not.
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            tracing::warn!(
                status = %rejection.status(),
                "3RPMS webhook body not read"
            );
            return (rejection.into_response(), Delivery::Rejected);
        }
    };
    let Some(hotel) = shared.hotels.get(&property_id) else {
        // Answered as a delivery with a bad signature is: whoever has no
        // secret must not learn which property ids keysmith serves.
        tracing::debug!(
            property_id = %keysmith_core::error::bounded(&property_id),
            "3RPMS webhook for an unknown property"
        );
        return (invalid_signature(), Delivery::Rejected);
    };
    let now = jiff::Timestamp::now().as_second();

    let secrets = match secrets::verifying_secrets(&*hotel.state, &hotel.property_id, now) {
        Ok(Some(secrets)) => secrets,
        Ok(None) => {
            tracing::warn!(
                property_id = %hotel.property_id,
                "3RPMS webhook delivered but no enabled endpoint is registered; answered 503 so that it is retried"
            );
            return (
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "webhook endpoint not registered",
                )
                    .into_response(),
                Delivery::RetryLater,
            );
        }
        Err(error) => {
            tracing::error!(
                property_id = %hotel.property_id,
                %error,
                "cannot read the 3RPMS webhook endpoint registration"
            );
            return (unavailable(), Delivery::RetryLater);
        }
    };

    let verified = match headers.get(SIGNATURE_HEADER) {
        None => Err(SignatureError::Missing),
        // Only visible ASCII can be a valid header; anything else is noise.
        Some(value) => match value.to_str() {
            Ok(header) => signature::verify(header, &body, &secrets, now, shared.tolerance),
            Err(_) => Err(SignatureError::Malformed),
        },
    };
    if let Err(why) = verified {
        // Neither the body, nor the signature, nor anything of a secret.
        tracing::warn!(
            property_id = %hotel.property_id,
            reason = %why,
            body_bytes = body.len(),
            "refused a 3RPMS webhook delivery"
        );
        return (invalid_signature(), Delivery::Rejected);
    }

    let event = match WebhookEvent::parse(&body) {
        Ok(event) => event,
        Err(error) => {
            tracing::warn!(
                property_id = %hotel.property_id,
                %error,
                "a signed 3RPMS webhook body is not an event"
            );
            return (
                (StatusCode::BAD_REQUEST, "malformed event").into_response(),
                Delivery::Rejected,
            );
        }
    };

    let (event_id, kind) = (event.id.clone(), event.kind.clone());
    match hotel.inbox.accept(event).await {
        Ok(accepted) => {
            tracing::debug!(
                property_id = %hotel.property_id,
                event_id,
                kind,
                duplicate = accepted == Accepted::Duplicate,
                "3RPMS webhook accepted"
            );
            let delivery = match accepted {
                Accepted::New => Delivery::Accepted,
                Accepted::Duplicate => Delivery::Duplicate,
            };
            ((StatusCode::OK, "ok").into_response(), delivery)
        }
        Err(error) if error.kind() == ErrorKind::InvalidArgument => {
            tracing::warn!(property_id = %hotel.property_id, %error, "3RPMS webhook event refused");
            (
                (StatusCode::BAD_REQUEST, "malformed event").into_response(),
                Delivery::Rejected,
            )
        }
        Err(error) => {
            tracing::error!(
                property_id = %hotel.property_id,
                event_id,
                %error,
                "cannot queue a 3RPMS webhook event; answered 503 so that it is retried"
            );
            (unavailable(), Delivery::RetryLater)
        }
    }
}

/// A delivery not signed by a secret of the property's endpoint, and a
/// delivery for a property keysmith does not serve: one answer for both.
fn invalid_signature() -> Response {
    (StatusCode::UNAUTHORIZED, "invalid signature").into_response()
}

fn unavailable() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, "temporarily unavailable").into_response()
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use keysmith_core::{store::Store, Secret};
    use keysmith_store::EmbeddedStore;
    use serde_json::json;
    use tempfile::TempDir;

    use super::*;
    use crate::webhook::{secrets::EndpointRecord, signature::sign};

    const SECRET: &str = "whsec_hotel_5f9c2e7d1b3a8640";

    struct Server {
        addr: SocketAddr,
        http: reqwest::Client,
        state: Arc<dyn DriverState>,
        inbox: Arc<Inbox>,
        task: tokio::task::JoinHandle<()>,
        _store: EmbeddedStore,
        _dir: TempDir,
    }

    impl Drop for Server {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    impl Server {
        /// A receiver for the hotels `hotel` (registered with [`SECRET`]
        /// when `registered`) and `other` (registered with its own secret).
        async fn start(registered: bool, config: ReceiverConfig) -> Self {
            let dir = tempfile::tempdir().unwrap();
            let store = EmbeddedStore::open_with_test_key(dir.path()).unwrap();
            let state = store.driver_state("3rpms").unwrap();
            if registered {
                secrets::store(&*state, "hotel", &endpoint(SECRET))
                    .await
                    .unwrap();
            }
            secrets::store(&*state, "other", &endpoint("whsec_other_5f9c2e7d1b3a8640"))
                .await
                .unwrap();
            let inbox = Arc::new(Inbox::new(state.clone(), "hotel").unwrap());
            let hotels = vec![
                HotelWebhooks {
                    property_id: "hotel".into(),
                    inbox: inbox.clone(),
                    state: state.clone(),
                },
                HotelWebhooks {
                    property_id: "other".into(),
                    inbox: Arc::new(Inbox::new(state.clone(), "other").unwrap()),
                    state: state.clone(),
                },
            ];
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let app = router(hotels, config);
            let task = tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            });
            Self {
                addr,
                http: reqwest::Client::new(),
                state,
                inbox,
                task,
                _store: store,
                _dir: dir,
            }
        }

        async fn post(&self, property: &str, signature: Option<String>, body: &[u8]) -> StatusCode {
            let mut request = self
                .http
                .post(format!("http://{}/3rpms/webhooks/{property}", self.addr))
                .header("content-type", "application/json")
                .body(body.to_vec());
            if let Some(signature) = signature {
                request = request.header(SIGNATURE_HEADER, signature);
            }
            request.send().await.unwrap().status()
        }

        /// Sends `body` signed now with `secret`.
        async fn deliver(&self, property: &str, secret: &str, body: &[u8]) -> StatusCode {
            self.post(property, Some(header(secret, now(), body)), body)
                .await
        }

        /// Everything the webhook code keeps, to show that nothing changed.
        fn snapshot(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
            self.state.scan_prefix(b"wh/").unwrap()
        }

        fn queued(&self) -> Vec<WebhookEvent> {
            self.inbox
                .pending()
                .unwrap()
                .into_iter()
                .map(|q| q.event)
                .collect()
        }
    }

    fn endpoint(secret: &str) -> EndpointRecord {
        EndpointRecord {
            endpoint_id: "we_1".into(),
            secret: Secret::new(secret.into()),
            enabled: true,
        }
    }

    fn now() -> i64 {
        jiff::Timestamp::now().as_second()
    }

    fn header(secret: &str, t: i64, body: &[u8]) -> String {
        format!("t={t},signature={}", sign(secret, t, body))
    }

    fn event_body(id: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "id": id,
            "type": "room_stay.updated",
            "created_at": 1_767_225_600,
            "webhook_endpoint_id": "we_1",
            "data": {"object": {"id": "rs_1"}, "updated_fields": ["room_setup"]}
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn a_valid_event_is_queued() {
        let server = Server::start(true, ReceiverConfig::default()).await;
        let status = server.deliver("hotel", SECRET, &event_body("evt_1")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            server.queued(),
            [WebhookEvent {
                id: "evt_1".into(),
                kind: "room_stay.updated".into(),
                created_at: 1_767_225_600,
                endpoint_id: "we_1".into(),
                object_id: "rs_1".into(),
                updated_fields: Some(vec!["room_setup".into()]),
            }]
        );
    }

    #[tokio::test]
    async fn a_duplicate_is_answered_ok_and_not_queued_twice() {
        let server = Server::start(true, ReceiverConfig::default()).await;
        let body = event_body("evt_1");
        assert_eq!(server.deliver("hotel", SECRET, &body).await, StatusCode::OK);
        assert_eq!(server.deliver("hotel", SECRET, &body).await, StatusCode::OK);
        assert_eq!(server.queued().len(), 1);
    }

    #[tokio::test]
    async fn bad_signatures_are_refused_and_change_nothing() {
        let server = Server::start(true, ReceiverConfig::default()).await;
        let body = event_body("evt_1");
        let before = server.snapshot();
        let mut tampered = body.clone();
        tampered[10] ^= 1;
        for (signature, sent) in [
            (
                Some(header("whsec_wrong_5f9c2e7d1b3a8640", now(), &body)),
                &body,
            ),
            (Some(header(SECRET, now(), &body)), &tampered),
            (Some("t=1,signature=zz".to_string()), &body),
            (Some(String::new()), &body),
            (None, &body),
        ] {
            assert_eq!(
                server.post("hotel", signature, sent).await,
                StatusCode::UNAUTHORIZED
            );
        }
        assert_eq!(server.snapshot(), before);
    }

    #[tokio::test]
    async fn another_hotels_secret_is_refused() {
        let server = Server::start(true, ReceiverConfig::default()).await;
        let before = server.snapshot();
        let status = server
            .deliver(
                "hotel",
                "whsec_other_5f9c2e7d1b3a8640",
                &event_body("evt_1"),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(server.snapshot(), before);
    }

    #[tokio::test]
    async fn a_stale_delivery_is_refused_and_changes_nothing() {
        let server = Server::start(true, ReceiverConfig::default()).await;
        let body = event_body("evt_1");
        let before = server.snapshot();
        let stale = header(SECRET, now() - 3_600, &body);
        assert_eq!(
            server.post("hotel", Some(stale), &body).await,
            StatusCode::UNAUTHORIZED
        );
        let future = header(SECRET, now() + 3_600, &body);
        assert_eq!(
            server.post("hotel", Some(future), &body).await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(server.snapshot(), before);
    }

    /// The status and body of a POST, as a prober sees them.
    async fn answer(
        server: &Server,
        property: &str,
        signature: Option<String>,
        body: &[u8],
    ) -> (StatusCode, String) {
        let mut request = server
            .http
            .post(format!("http://{}/3rpms/webhooks/{property}", server.addr))
            .header("content-type", "application/json")
            .body(body.to_vec());
        if let Some(signature) = signature {
            request = request.header(SIGNATURE_HEADER, signature);
        }
        let response = request.send().await.unwrap();
        (response.status(), response.text().await.unwrap())
    }

    /// Without a secret, an unknown property and a configured one answer
    /// alike (issue 18: 404 against 401 told which property ids exist).
    #[tokio::test]
    async fn an_unknown_property_is_answered_as_a_bad_signature_is() {
        let server = Server::start(true, ReceiverConfig::default()).await;
        let before = server.snapshot();
        let body = event_body("evt_1");
        let forged = || Some(header("whsec_forged_5f9c2e7d1b3a8640", now(), &body));
        let configured = answer(&server, "hotel", forged(), &body).await;
        assert_eq!(
            configured,
            (StatusCode::UNAUTHORIZED, "invalid signature".to_owned())
        );
        assert_eq!(
            answer(&server, "elsewhere", forged(), &body).await,
            configured
        );
        // Signed with the hotel's own secret, but for another property.
        let signed = Some(header(SECRET, now(), &body));
        assert_eq!(
            answer(&server, "elsewhere", signed, &body).await,
            configured
        );
        assert_eq!(
            answer(&server, "elsewhere", None, &body).await,
            answer(&server, "hotel", None, &body).await
        );
        assert_eq!(server.snapshot(), before);
        assert!(server.queued().is_empty());
    }

    #[tokio::test]
    async fn an_oversized_body_is_refused_alike_for_any_property() {
        let config = ReceiverConfig {
            max_body_bytes: 1024,
            ..ReceiverConfig::default()
        };
        let server = Server::start(true, config).await;
        let body = vec![b'x'; 4096];
        let known = answer(&server, "hotel", None, &body).await;
        assert_eq!(known.0, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(answer(&server, "elsewhere", None, &body).await, known);
    }

    #[tokio::test]
    async fn unknown_event_types_and_fields_are_accepted() {
        let server = Server::start(true, ReceiverConfig::default()).await;
        let body = serde_json::to_vec(&json!({
            "id": "evt_new_kind",
            "type": "guest_folder.archived",
            "created_at": 1_767_225_600,
            "webhook_endpoint_id": "we_1",
            "api_version": "2026-01",
            "data": {"object": {"id": "gf_1", "extra": [1, 2]}, "previous_attributes": {}}
        }))
        .unwrap();
        assert_eq!(server.deliver("hotel", SECRET, &body).await, StatusCode::OK);
        let queued = server.queued();
        assert_eq!(queued.len(), 1);
        assert_eq!(queued[0].kind, "guest_folder.archived");
        assert_eq!(queued[0].updated_fields, None);
    }

    #[tokio::test]
    async fn an_oversized_body_is_refused() {
        let config = ReceiverConfig {
            max_body_bytes: 1024,
            ..ReceiverConfig::default()
        };
        let server = Server::start(true, config).await;
        let before = server.snapshot();
        let mut value: serde_json::Value = serde_json::from_slice(&event_body("evt_1")).unwrap();
        value["padding"] = json!("x".repeat(4096));
        let body = serde_json::to_vec(&value).unwrap();
        assert_eq!(
            server.deliver("hotel", SECRET, &body).await,
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(server.snapshot(), before);
    }

    #[tokio::test]
    async fn without_a_registered_endpoint_the_delivery_is_retried_later() {
        let server = Server::start(false, ReceiverConfig::default()).await;
        let before = server.snapshot();
        let status = server.deliver("hotel", SECRET, &event_body("evt_1")).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(server.snapshot(), before);
    }

    #[tokio::test]
    async fn a_disabled_endpoint_is_retried_later() {
        let server = Server::start(true, ReceiverConfig::default()).await;
        let mut disabled = endpoint(SECRET);
        disabled.enabled = false;
        secrets::store(&*server.state, "hotel", &disabled)
            .await
            .unwrap();
        let status = server.deliver("hotel", SECRET, &event_body("evt_1")).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(server.queued().is_empty());
    }

    #[tokio::test]
    async fn a_delivery_signed_before_a_rotation_still_verifies() {
        let server = Server::start(true, ReceiverConfig::default()).await;
        secrets::store(
            &*server.state,
            "hotel",
            &endpoint("whsec_rotated_5f9c2e7d1b3a8640"),
        )
        .await
        .unwrap();
        let old = server.deliver("hotel", SECRET, &event_body("evt_1")).await;
        let new = server
            .deliver(
                "hotel",
                "whsec_rotated_5f9c2e7d1b3a8640",
                &event_body("evt_2"),
            )
            .await;
        assert_eq!((old, new), (StatusCode::OK, StatusCode::OK));
        assert_eq!(server.queued().len(), 2);
    }

    #[tokio::test]
    async fn a_signed_body_that_is_not_an_event_is_a_bad_request() {
        let server = Server::start(true, ReceiverConfig::default()).await;
        let before = server.snapshot();
        for body in [
            &b"not json"[..],
            br#"{"id":"","type":"x"}"#,
            br#"{"id":""}"#,
        ] {
            assert_eq!(
                server.deliver("hotel", SECRET, body).await,
                StatusCode::BAD_REQUEST
            );
        }
        assert_eq!(server.snapshot(), before);
    }

    #[tokio::test]
    async fn other_methods_are_not_routed() {
        let server = Server::start(true, ReceiverConfig::default()).await;
        let status = server
            .http
            .get(format!("http://{}/3rpms/webhooks/hotel", server.addr))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    }
}
