//! Assembles keysmith: store, drivers, router and service, then the gRPC
//! server with health, reflection and the tower layers.
use std::{collections::BTreeMap, future::Future, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context as _;
use keysmith_3rpms::webhook::Inbox;
use keysmith_api::{
    sim::v1::lock_simulator_service_server::{self, LockSimulatorServiceServer},
    v1::{
        access_service_server::{self, AccessServiceServer},
        audit_service_server::{self, AuditServiceServer},
        pms_service_server::{self, PmsServiceServer},
    },
    FILE_DESCRIPTOR_SET,
};
use keysmith_core::{
    router::Router,
    service::{Clock, SystemClock},
    store::Store,
    AccessService, Driver,
};
use keysmith_offline_lock::{OfflineLock, DRIVER_NAME as OFFLINE_LOCK};
use keysmith_seam::{follower::Follower, SeamDriver, DRIVER_NAME as SEAM};
use keysmith_store::{SledStore, StoreOptions};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

use keysmith_plugin_host::PluginSpec;

use crate::{
    access::AccessRpcService,
    audit::{AuditLog, AuditRpcService},
    auth::AuthLayer,
    config::{AuthMode, Config, PluginConfig},
    layers::RpcSpanLayer,
    listing::AccessRoutes,
    pms::PmsRpcService,
    simulator::LockSimulatorRpcService,
    threerpms::ThreeRpms,
    tls,
};

/// A server running in the background.
pub struct Running {
    pub addr: SocketAddr,
    /// Where 3RPMS webhooks are received, when configured.
    pub webhook_addr: Option<SocketAddr>,
    /// Where Seam's events are received, when configured.
    pub seam_webhook_addr: Option<SocketAddr>,
    inboxes: BTreeMap<String, Arc<Inbox>>,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// Stops accepting, lets the calls in flight finish, flushes the store.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task.await.context("the server task failed")?
    }

    /// Resolves once every 3RPMS event queued for the property so far (a
    /// webhook, or a revocation of a published key) has been acted on; at
    /// once for a property without 3RPMS.
    pub async fn webhooks_processed(&self, property_id: &str) {
        if let Some(inbox) = self.inboxes.get(property_id) {
            inbox.idle().await;
        }
    }

    /// Runs until `signal` resolves, then stops gracefully.
    pub async fn until(self, signal: impl Future<Output = ()>) -> anyhow::Result<()> {
        signal.await;
        tracing::info!("shutting down: finishing calls in flight and flushing the store");
        self.stop().await
    }
}

/// Starts keysmith with the system clock.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    start_with_clock(config, Arc::new(SystemClock)).await
}

pub async fn start_with_clock(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Running> {
    start_with_drivers(config, clock, Vec::new()).await
}

/// Starts keysmith with more built-in drivers than its configuration names:
/// for embedding keysmith with a driver of one's own, linked in.
pub async fn start_with_drivers(
    config: Config,
    clock: Arc<dyn Clock>,
    extra_drivers: Vec<Arc<dyn Driver>>,
) -> anyhow::Result<Running> {
    // A configuration built in code is held to the same rules as a file.
    config.validate()?;
    std::fs::create_dir_all(&config.storage.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            config.storage.data_dir.display()
        )
    })?;
    // Checked before anything is opened or spawned: a bad certificate or
    // token table stops the start with its own message.
    let auth = AuthLayer::new(&config.auth)?;
    let tls = config
        .server
        .tls
        .as_ref()
        .map(tls::server_config)
        .transpose()?;
    let store = Arc::new(SledStore::open_with(
        &config.storage.data_dir,
        StoreOptions {
            listing_cache_keys: config.storage.listing_cache_keys,
        },
    )?);
    let audit = Arc::new(AuditLog::new(store.clone(), clock.clone()));

    let mut drivers: Vec<Arc<dyn Driver>> = Vec::new();
    let mut offline_lock = None;
    if let Some(lock_config) = config.drivers.offline_lock.clone() {
        let lock = Arc::new(OfflineLock::new(
            lock_config,
            store.driver_state(OFFLINE_LOCK)?,
        )?);
        drivers.push(lock.clone());
        offline_lock = Some(lock);
    }
    let mut seam_driver = None;
    if let Some(seam) = &config.drivers.seam {
        let driver = Arc::new(SeamDriver::new(seam, store.driver_state(SEAM)?)?);
        drivers.push(driver.clone());
        seam_driver = Some(driver);
    }
    for plugin in &config.drivers.plugins {
        drivers.push(load_plugin(plugin).await?);
    }
    drivers.extend(extra_drivers);
    let router = Arc::new(Router::new(drivers).await?);
    let service = Arc::new(AccessService::new(store.clone(), router.clone(), clock));
    let threerpms = match &config.threerpms {
        Some(c) => Some(ThreeRpms::start(c, store.clone(), service.clone(), &router).await?),
        None => None,
    };
    // At start, before any request: a request_id past its retention is new.
    let retention = Duration::from_secs(config.storage.idempotency_retention_hours * 3600);
    let expired = service.expire_idempotency(retention).await?;
    tracing::debug!(expired, "request_ids past their retention forgotten");
    let (stop_followers, followers_stop) = tokio::sync::watch::channel(false);
    let expiry = tokio::spawn(expire_idempotency(
        service.clone(),
        retention,
        followers_stop.clone(),
    ));
    let audit_writer = tokio::spawn(audit.clone().run(followers_stop.clone()));
    let seam_follower = config.drivers.seam.as_ref().map(|seam| {
        let follower = Follower::new(
            service.clone(),
            seam.workspaces
                .iter()
                .map(|w| w.property_id.clone())
                .collect(),
            Duration::from_millis(seam.poll_interval_ms.max(100)),
            Duration::from_secs(seam.entrance_refresh_seconds.max(1)),
        );
        tokio::spawn(follower.run(followers_stop.clone()))
    });
    let mut seam_webhook_addr = None;
    let mut seam_receiver = None;
    if let (Some(seam), Some(driver)) = (&config.drivers.seam, &seam_driver) {
        if let Some(listen) = seam.webhook_listen {
            let secrets = seam
                .workspaces
                .iter()
                .filter_map(|w| Some((w.property_id.clone(), w.webhook_secret.clone()?)))
                .collect();
            let app = keysmith_seam::webhook::router(secrets, driver.clone(), service.clone());
            let listener = TcpListener::bind(listen)
                .await
                .with_context(|| format!("cannot listen for Seam events on {listen}"))?;
            seam_webhook_addr = Some(listener.local_addr()?);
            let mut stop = followers_stop.clone();
            seam_receiver = Some(tokio::spawn(async move {
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stop.changed().await;
                    })
                    .await;
            }));
        }
    }
    let webhook_addr = threerpms.as_ref().and_then(|t| t.webhook_addr);
    let inboxes = threerpms
        .as_ref()
        .map(|t| t.inboxes.clone())
        .unwrap_or_default();

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<AccessServiceServer<AccessRpcService>>()
        .await;
    let max = config.server.max_request_bytes;
    let access = AccessRoutes::new(AccessRpcService::new(service, audit.clone()), max);
    let audit_service =
        AuditServiceServer::new(AuditRpcService::new(audit.clone())).max_decoding_message_size(max);
    let simulator = match offline_lock {
        Some(lock) => {
            health
                .set_serving::<LockSimulatorServiceServer<LockSimulatorRpcService>>()
                .await;
            Some(
                LockSimulatorServiceServer::new(LockSimulatorRpcService::new(lock))
                    .max_decoding_message_size(max),
            )
        }
        None => None,
    };

    let pms = match &threerpms {
        Some(t) => {
            health
                .set_serving::<PmsServiceServer<PmsRpcService>>()
                .await;
            Some(
                PmsServiceServer::new(PmsRpcService::new(
                    t.hotels.clone(),
                    t.webhook_public_url.clone(),
                    audit.clone(),
                ))
                .max_decoding_message_size(max),
            )
        }
        None => None,
    };

    // Reflection lists the services this configuration serves and no others:
    // a client that lists them can call each one.
    let mut served = vec![
        tonic_health::pb::health_server::SERVICE_NAME,
        access_service_server::SERVICE_NAME,
        audit_service_server::SERVICE_NAME,
    ];
    if simulator.is_some() {
        served.push(lock_simulator_service_server::SERVICE_NAME);
    }
    if pms.is_some() {
        served.push(pms_service_server::SERVICE_NAME);
    }
    let reflection_v1 = reflection(&served)
        .with_service_name(tonic_reflection::pb::v1::server_reflection_server::SERVICE_NAME)
        .build_v1()?;
    let reflection_v1alpha = reflection(&served)
        .with_service_name(tonic_reflection::pb::v1alpha::server_reflection_server::SERVICE_NAME)
        .build_v1alpha()?;

    let listener = TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.server.listen))?;
    let addr = listener.local_addr()?;
    let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();

    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        builder = builder
            .tls_config(tls)
            .context("cannot use the TLS configuration")?;
    }
    let router = builder
        .timeout(Duration::from_secs(config.server.request_timeout_seconds))
        .concurrency_limit_per_connection(config.server.concurrency_per_connection)
        .layer(RpcSpanLayer)
        .layer(auth)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(access)
        .add_service(audit_service)
        .add_optional_service(simulator)
        .add_optional_service(pms);

    // Without TCP_NODELAY small answers wait on delayed ACKs (~40 ms each).
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let task = tokio::spawn(async move {
        let served = router
            .serve_with_incoming_shutdown(incoming, async {
                let _ = shutdown_rx.await;
                health
                    .set_not_serving::<AccessServiceServer<AccessRpcService>>()
                    .await;
            })
            .await;
        let _ = stop_followers.send(true);
        for task in [
            seam_follower,
            seam_receiver,
            Some(audit_writer),
            Some(expiry),
        ]
        .into_iter()
        .flatten()
        {
            let _ = task.await;
        }
        if let Some(threerpms) = threerpms {
            threerpms.stop().await;
        }
        // Every answer given was already durable; this flushes the rest.
        store.close();
        served.context("the gRPC server failed")
    });
    tracing::info!(
        %addr,
        tls = config.server.tls.is_some(),
        data_dir = %config.storage.data_dir.display(),
        "keysmith is serving"
    );
    if config.auth.mode == AuthMode::Development {
        tracing::warn!(
            %addr,
            "DEVELOPMENT MODE: no authentication. Anyone who can reach {addr} may issue, read \
             and revoke every key. keysmith allows this on loopback only; for anything else set \
             auth.mode = \"tokens\" and add [[auth.tokens]] (README: Securing a deployment)"
        );
    }
    Ok(Running {
        addr,
        webhook_addr,
        seam_webhook_addr,
        inboxes,
        shutdown: Some(shutdown_tx),
        task,
    })
}

/// A server reflection builder that describes every keysmith type, google.rpc's
/// error details and health, and lists `served`. Each version adds its own
/// reflection service.
fn reflection(served: &[&str]) -> tonic_reflection::server::Builder<'static> {
    served.iter().fold(
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET),
        |builder, service| builder.with_service_name(*service),
    )
}

/// Loads one plugin off the async workers: reading and hashing the file,
/// loading the library and the plugin's own start-up all block.
async fn load_plugin(plugin: &PluginConfig) -> anyhow::Result<Arc<dyn Driver>> {
    let spec = PluginSpec {
        name: plugin.name.clone(),
        path: plugin.path.clone(),
        sha256: plugin.sha256.clone(),
        config: serde_json::to_vec(plugin.config.expose())?,
    };
    let driver = tokio::task::spawn_blocking(move || keysmith_plugin_host::load(&spec))
        .await
        .context("loading a driver plugin failed")??;
    Ok(driver)
}

/// Forgets request_ids past their retention, hourly, until `stop`.
async fn expire_idempotency(
    service: Arc<AccessService>,
    retention: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut hourly = tokio::time::interval(Duration::from_secs(3600));
    hourly.tick().await; // the first tick is now, and start did that one
    loop {
        tokio::select! {
            _ = hourly.tick() => match service.expire_idempotency(retention).await {
                Ok(expired) => tracing::debug!(expired, "request_ids past their retention forgotten"),
                Err(error) => tracing::error!(%error, "expiring request_ids failed"),
            },
            _ = stop.changed() => break,
        }
    }
}

/// Resolves on ctrl-c or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
