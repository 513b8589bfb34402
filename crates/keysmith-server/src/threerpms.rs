//! Starts keysmith's 3RPMS connection: a sync and a worker per hotel, the
//! shared egress limiter, and the webhook receiver on its own address.
use std::{collections::BTreeMap, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;
use keysmith_threerpms::{
    config::ThreeRpmsConfig,
    observer::RevocationObserver,
    sync::HotelSync,
    webhook::{self, HotelWebhooks, Inbox, ReceiverConfig},
    worker::Worker,
    Client, Egress, Transport,
};
use keysmith_core::{router::Router, store::Store, AccessService};
use tokio::{sync::watch, task::JoinHandle};

/// The driver-state tree of the 3RPMS connection.
pub const STATE: &str = "3rpms";

pub struct ThreeRpms {
    pub hotels: BTreeMap<String, Arc<HotelSync>>,
    pub webhook_addr: Option<SocketAddr>,
    pub inboxes: BTreeMap<String, Arc<Inbox>>,
    pub webhook_public_url: Option<String>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl ThreeRpms {
    pub async fn start(
        config: &ThreeRpmsConfig,
        store: Arc<dyn Store>,
        service: Arc<AccessService>,
        router: &Router,
    ) -> anyhow::Result<Self> {
        let state = store.driver_state(STATE)?;
        // 3RPMS limits per client IP: every hotel shares one egress.
        let egress = Egress::new(config.limiter());
        let (stop, stop_rx) = watch::channel(false);
        let mut hotels = BTreeMap::new();
        let mut receivers = Vec::new();
        let mut inboxes = BTreeMap::new();
        let mut tasks = Vec::new();
        for hotel in &config.hotels {
            router
                .require_property(&hotel.property_id)
                .with_context(|| format!("threerpms hotel {:?}", hotel.property_id))?;
            let transport = Transport::new(
                config.endpoint.clone(),
                hotel.api_key.clone(),
                egress.clone(),
                &config.timeouts(),
            )?;
            let client = Client::new(transport).with_batch_limit(config.batch_limit);
            let sync = Arc::new(
                HotelSync::new(hotel.clone(), client, service.clone(), state.clone())
                    .with_context(|| format!("threerpms hotel {:?}", hotel.property_id))?,
            );
            // The inbox takes webhook events and keysmith's own revocations
            // of published keys, whether or not webhooks are received.
            let inbox = Arc::new(Inbox::new(state.clone(), &hotel.property_id)?);
            inboxes.insert(hotel.property_id.clone(), inbox.clone());
            service.observe(Arc::new(RevocationObserver::new(
                sync.clone(),
                inbox.clone(),
            )));
            if config.webhook_listen.is_some() {
                receivers.push(HotelWebhooks {
                    property_id: hotel.property_id.clone(),
                    inbox: inbox.clone(),
                    state: state.clone(),
                });
            }
            let inbox = Some(inbox);
            let worker = Worker::new(sync.clone(), inbox, config.initial_sync);
            tasks.push(tokio::spawn(worker.run(stop_rx.clone())));
            hotels.insert(hotel.property_id.clone(), sync);
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
                .with_context(|| format!("cannot listen for 3RPMS webhooks on {listen}"))?;
            let addr = listener.local_addr()?;
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
        Ok(Self {
            hotels,
            webhook_addr,
            inboxes,
            webhook_public_url: config.webhook_public_url.clone(),
            stop,
            tasks,
        })
    }

    /// Stops the workers and the receiver, letting work in flight finish.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}
