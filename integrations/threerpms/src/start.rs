//! Starts the 3RPMS integration: a sync and a worker per hotel, the egress
//! limiter they share, and the webhook receiver on its own address. The
//! [`Handle`] it returns is all the server keeps of it.
use std::{collections::BTreeMap, net::SocketAddr, sync::Arc, time::Duration};

use keysmith_core::{lease::LeaseKeeper, store::Store, AccessService, Error};
use tokio::{sync::watch, task::JoinHandle};

use crate::{
    client::Client,
    config::ThreeRpmsConfig,
    hotel::{Hotel, Hotels},
    limiter::Egress,
    observer::RevocationObserver,
    sync::HotelSync,
    transport::Transport,
    webhook::{self, HotelWebhooks, Inbox, ReceiverConfig},
    worker::{lease_name, RetryPolicy, Worker},
};

/// The driver-state tree of the 3RPMS integration: stay records, inboxes,
/// dead-letter lists and webhook secrets. Data on disk: the name stays.
pub const STATE_TREE: &str = "3rpms";

/// Why the integration did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A hotel whose property keysmith does not have, or whose time zone or
    /// times do not parse.
    #[error("threerpms hotel {property_id:?}")]
    Hotel {
        property_id: String,
        #[source]
        source: Error,
    },
    #[error("cannot listen for 3RPMS webhooks on {listen}")]
    Listen {
        listen: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The store, or the HTTP client, could not be set up.
    #[error(transparent)]
    Setup(#[from] Error),
}

/// The running integration.
pub struct Handle {
    hotels: Hotels,
    webhook_addr: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// Starts every configured hotel (each one's worker runs the initial sync
/// when configured, once it holds the hotel's lease from `leases`) and the
/// webhook receiver when `webhook_listen` is set. Every hotel's property
/// must be one of `service`'s.
pub async fn start(
    config: &ThreeRpmsConfig,
    store: &dyn Store,
    service: Arc<AccessService>,
    leases: &LeaseKeeper,
) -> Result<Handle, StartError> {
    let state = store.driver_state(STATE_TREE)?;
    // 3RPMS limits per client IP: every hotel shares one egress, and so
    // does every replica on the store.
    let mut egress = Egress::new(config.limiter());
    if let Some(budgets) = store.rate_budgets() {
        egress = egress.shared_with(budgets);
    }
    let (stop, stop_rx) = watch::channel(false);
    let mut hotels = BTreeMap::new();
    let mut receivers = Vec::new();
    let mut tasks = Vec::new();
    for hotel in &config.hotels {
        let in_hotel = |source| StartError::Hotel {
            property_id: hotel.property_id.clone(),
            source,
        };
        service
            .router()
            .require_property(&hotel.property_id)
            .map_err(in_hotel)?;
        let transport = Transport::new(
            &hotel.property_id,
            config.endpoint.clone(),
            hotel.api_key.clone(),
            egress.clone(),
            &config.timeouts(),
        )?;
        let client = Client::new(transport).with_batch_limit(config.batch_limit);
        let sync = Arc::new(
            HotelSync::new(
                hotel.clone(),
                client,
                service.clone(),
                state.clone(),
                config.detect_schema,
            )
            .map_err(in_hotel)?,
        );
        // The inbox takes webhook events, keysmith's own revocations of
        // published keys and room stays to try again, whether or not
        // webhooks are received.
        let inbox = Arc::new(Inbox::new(state.clone(), &hotel.property_id)?);
        service.observe(Arc::new(RevocationObserver::new(&sync, inbox.clone())));
        if config.webhook_listen.is_some() {
            receivers.push(HotelWebhooks {
                property_id: hotel.property_id.clone(),
                inbox: inbox.clone(),
                state: state.clone(),
            });
        }
        let worker = Worker::new(
            sync.clone(),
            inbox.clone(),
            leases.keep(&lease_name(&hotel.property_id)).await,
            config.initial_sync,
            RetryPolicy {
                first_wait: Duration::from_millis(config.retry_backoff_ms),
                park_after: config.dead_letter_after_attempts.max(1),
            },
        );
        tasks.push(tokio::spawn(worker.run(stop_rx.clone())));
        hotels.insert(
            hotel.property_id.clone(),
            Hotel::new(sync, inbox, config.webhook_public_url.clone()),
        );
    }
    let mut webhook_addr = None;
    if let Some(listen) = config.webhook_listen {
        let app = webhook::router(
            receivers,
            ReceiverConfig {
                tolerance: Duration::from_secs(config.webhook_tolerance_seconds),
                max_body_bytes: 64 * 1024,
            },
        );
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|source| StartError::Listen { listen, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| StartError::Listen { listen, source })?;
        webhook_addr = Some(addr);
        let mut stop_http = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop_http.changed().await;
                })
                .await;
            if let Err(error) = served {
                tracing::error!(%error, "the 3RPMS webhook receiver failed");
            }
        }));
        tracing::info!(%addr, "receiving 3RPMS webhooks");
    }
    Ok(Handle {
        hotels: Hotels::new(hotels),
        webhook_addr,
        stop,
        tasks,
    })
}

impl Handle {
    /// The started hotels: keysmith.v1.PmsService's backend.
    pub fn hotels(&self) -> Hotels {
        self.hotels.clone()
    }

    /// Where 3RPMS webhooks are received, when configured.
    pub fn webhook_addr(&self) -> Option<SocketAddr> {
        self.webhook_addr
    }

    /// Stops the workers and the receiver, letting work in flight finish.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use keysmith_core::{router::Router, service::SystemClock};
    use keysmith_store::EmbeddedStore;

    use super::*;

    #[tokio::test]
    async fn a_hotel_of_a_property_keysmith_lacks_stops_the_start_naming_the_hotel() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(EmbeddedStore::open_with_test_key(dir.path()).unwrap());
        let router = Arc::new(Router::new(Vec::new()).await.unwrap());
        let service = Arc::new(AccessService::new(
            store.clone(),
            router,
            Arc::new(SystemClock),
        ));
        let config: ThreeRpmsConfig = serde_json::from_value(serde_json::json!({
            "endpoint": "http://127.0.0.1:9/graphql",
            "initial_sync": false,
            "hotels": [{
                "property_id": "nowhere",
                "api_key": "api_secret_value",
                "rooms": [],
            }],
        }))
        .unwrap();

        let leases = LeaseKeeper::new(store.leases(), Duration::from_secs(10));
        let refused = start(&config, &*store, service, &leases)
            .await
            .err()
            .unwrap();

        assert!(
            matches!(&refused, StartError::Hotel { property_id, .. } if property_id == "nowhere"),
            "{refused:?}"
        );
        assert_eq!(refused.to_string(), "threerpms hotel \"nowhere\"");
        assert!(!format!("{refused:?}").contains("api_secret_value"));
    }
}
