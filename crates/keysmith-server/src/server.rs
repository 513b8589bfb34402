//! Assembles keysmith: store, drivers, router and service, then the gRPC
//! server with health, reflection and the tower layers.
use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context as _;
use keysmith_api::{
    v1::{
        access_service_server::{self, AccessServiceServer},
        audit_service_server::{self, AuditServiceServer},
        encryption_service_server::{self, EncryptionServiceServer},
        pms_service_server::{self, PmsServiceServer},
    },
    FILE_DESCRIPTOR_SET,
};
use keysmith_core::{
    follower::{Follow, FollowNow, KeyFollower, FOLLOWER_LEASE},
    hosting::{Built, DriverContext},
    lease::LeaseKeeper,
    router::Router,
    service::{Clock, Retention, SweepReport, SystemClock},
    sweeper::{SweepNow, Sweeper, SWEEPER_LEASE},
    AccessService, Driver,
};
use keysmith_threerpms::Hotels;
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use tonic::service::Routes;
use tower::layer::util::{Identity, Stack};

use crate::{
    access::AccessRpcService,
    admission::AdmissionLayer,
    audit::{AuditLog, AuditRpcService},
    auth::AuthLayer,
    config::{AuthMode, Config},
    connection::{
        serve_connections, ConnectionLimits, ConnectionSettings, LimitedIncoming, StreamCountLayer,
    },
    edge::ContentTypeLayer,
    encryption::{self, EncryptionRpcService},
    exporter::{self, sampled::Sampler, traces::TraceExport},
    layers::RpcSpanLayer,
    listing::AccessRoutes,
    observe::{DriverSpans, ObserveLayer},
    pms::PmsRpcService,
    registry,
    storage::Storage,
    tls,
};

/// keysmith's gRPC server, with its tower layers, outermost first: calls
/// counted per connection, each call measured and logged once it ended,
/// spans, the content-type (gRPC's only, HTTP 415 otherwise),
/// authentication, admission once the request has arrived (which also
/// refuses a body that is not one well-formed message).
pub type GrpcServer = tonic::transport::Server<
    Stack<
        AdmissionLayer,
        Stack<
            AuthLayer,
            Stack<
                ContentTypeLayer,
                Stack<RpcSpanLayer, Stack<ObserveLayer, Stack<StreamCountLayer, Identity>>>,
            >,
        >,
    >,
>;

/// A server running in the background.
pub struct Running {
    pub addr: SocketAddr,
    /// Where 3RPMS webhooks are received, when configured.
    pub webhook_addr: Option<SocketAddr>,
    /// Where Seam's events are received, when configured.
    pub seam_webhook_addr: Option<SocketAddr>,
    /// Where `GET /metrics` is served, unless metrics are disabled.
    pub metrics_addr: Option<SocketAddr>,
    /// The collector spans are exported to, when trace export is on.
    pub trace_endpoint: Option<String>,
    /// The 3RPMS hotels (none without 3RPMS), for waiting on their events.
    threerpms_hotels: Hotels,
    follow_now: FollowNow,
    sweep_now: SweepNow,
    leases: Arc<LeaseKeeper>,
    store: Arc<Storage>,
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
        self.threerpms_hotels.events_processed(property_id).await;
    }

    /// Refreshes every key still being issued at a driver that issues
    /// asynchronously, once, now, as the key follower does on its own every
    /// few seconds; returns when that is done (at once, doing nothing, when
    /// another replica holds the key follower's lease).
    pub async fn follow_keys_now(&self) {
        self.follow_now.round().await;
    }

    /// Resolves once no data key rotation is sealing records again.
    pub async fn resealed(&self) {
        self.store.resealed().await;
    }

    /// Sweeps the store once, now, as the sweeper does on its own every
    /// `storage.sweep_interval_seconds`: keys whose window ended leave the
    /// live set, and what is past its retention is purged. Nothing (an
    /// empty report) when another replica holds the sweeper's lease.
    pub async fn sweep_now(&self) -> SweepReport {
        self.sweep_now.sweep().await
    }

    /// The leases on background work this replica holds now (see
    /// `keysmith_core::lease`): every one with the embedded store, which one process owns.
    pub fn leases_held(&self) -> Vec<String> {
        self.leases.held()
    }

    /// Resolves once this replica holds the lease `name` (at once when it
    /// does); never for a lease it does not keep.
    pub async fn lease_taken(&self, name: &str) {
        match self.leases.lease(name) {
            Some(mut lease) => lease.taken().await,
            None => std::future::pending().await,
        }
    }

    /// Resolves once this replica no longer holds the lease `name` (at
    /// once when it does not).
    pub async fn lease_lost(&self, name: &str) {
        if let Some(mut lease) = self.leases.lease(name) {
            lease.lost().await;
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
///
/// The start reads as: configuration -> store -> drivers (the registry) ->
/// router -> service -> background work -> gRPC services and layers ->
/// serve.
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
    // Before the store opens: the committer and the listing cache take
    // their metric handles when they start.
    let metrics = match &config.metrics {
        m if m.enabled => {
            let handle = exporter::install()?;
            let listener = TcpListener::bind(m.listen)
                .await
                .with_context(|| format!("cannot listen on {} for metrics", m.listen))?;
            Some((handle, listener))
        }
        _ => None,
    };
    // Checked before anything is opened or spawned: a bad certificate or
    // token table stops the start with its own message.
    let auth = AuthLayer::new(&config.auth)?;
    let tls = config
        .server
        .tls
        .as_ref()
        .map(tls::server_config)
        .transpose()?;
    let keys = encryption::key_ring(&config.storage)?;
    let storage = Arc::new(Storage::open(&config, keys).await?);
    let store = storage.store();
    let audit = Arc::new(AuditLog::new(store.clone(), clock.clone()));
    // Background work that changes the store runs under a lease, once
    // across the replicas that share a database.
    let leases = Arc::new(LeaseKeeper::new(
        store.leases(),
        Duration::from_secs(config.storage.lease_seconds()),
    ));

    let mut registered = registry::build_all(&config, &DriverContext::new(store.clone())).await?;
    registered.extend(extra_drivers.into_iter().map(|d| Built::driver(d).into()));
    let router =
        Arc::new(Router::new(registered.iter().map(|r| r.built.driver.clone()).collect()).await?);
    let service = Arc::new(AccessService::new(store.clone(), router, clock));
    if config.tracing.enabled {
        // Each driver call becomes a span of the call it was made for.
        service.watch_driver_calls(Arc::new(DriverSpans));
    }
    let threerpms = match &config.threerpms {
        Some(c) => Some(keysmith_threerpms::start(c, &*store, service.clone(), &leases).await?),
        None => None,
    };

    // At start, before any request: a request_id past its retention is new.
    let retention = Duration::from_secs(config.storage.idempotency_retention_hours * 3600);
    let expired = service.expire_idempotency(retention).await?;
    tracing::debug!(expired, "request_ids past their retention forgotten");
    let (stop_background, stopping) = tokio::sync::watch::channel(false);
    let (sweeper, sweep_now) = Sweeper::new(
        service.clone(),
        Retention {
            keys: days(config.storage.key_retention_days),
            audit: days(config.storage.audit_retention_days),
            request_ids: retention,
            changes: Duration::from_secs(config.storage.change_retention_hours * 3600),
        },
        Duration::from_secs(config.storage.sweep_interval_seconds),
        config.storage.sweep_batch,
        leases.keep(SWEEPER_LEASE).await,
    );
    let mut background = vec![
        tokio::spawn(sweeper.run(stopping.clone())),
        // Not under a lease: it writes the audit records of this replica's
        // own calls, which no other replica has.
        tokio::spawn(audit.clone().run(stopping.clone())),
    ];
    let metrics_addr = match metrics {
        Some((handle, listener)) => {
            let addr = listener.local_addr()?;
            let sampler = Sampler::new(
                storage.clone(),
                service.clone(),
                Duration::from_secs(config.metrics.sample_interval_seconds),
            );
            background.push(tokio::spawn(exporter::endpoint::serve(
                listener,
                handle,
                Arc::new(sampler),
                stopping.clone(),
            )));
            tracing::info!(%addr, "metrics are served at http://{addr}/metrics");
            Some(addr)
        }
        None => None,
    };
    let follow = registered
        .iter()
        .fold(Follow::default(), |pace, r| pace.merge(r.built.follow));
    let (follower, follow_now) =
        KeyFollower::new(service.clone(), follow, leases.keep(FOLLOWER_LEASE).await);
    background.push(tokio::spawn(follower.run(stopping.clone())));
    let mut listening = Vec::new();
    let mut grpc = Vec::new();
    for r in registered {
        listening.extend(r.built.listening);
        grpc.extend(r.grpc);
        // A driver's tasks run on every replica: Seam's is a webhook
        // receiver, whose events any replica may take (drivers/seam's
        // webhook.rs says why that needs no lease).
        for task in r.built.tasks {
            background.push(tokio::spawn(task(service.clone(), stopping.clone())));
        }
    }
    let seam_webhook_addr = listening
        .iter()
        .find(|(what, _)| *what == keysmith_seam::EVENTS)
        .map(|(_, addr)| *addr);
    let webhook_addr = threerpms.as_ref().and_then(|t| t.webhook_addr());
    let threerpms_hotels = threerpms.as_ref().map(|t| t.hotels()).unwrap_or_default();

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<AccessServiceServer<AccessRpcService>>()
        .await;
    background.push(tokio::spawn(report_writes(
        storage.writable(),
        health.clone(),
        stopping.clone(),
    )));
    let max = config.server.max_request_bytes;
    // Watches never end on their own: told when keysmith stops, they end
    // at once (UNAVAILABLE, resume later) instead of holding the shutdown.
    let (stop_watches, watches_stopping) = tokio::sync::watch::channel(false);
    let access = AccessRoutes::new(
        AccessRpcService::new(service, audit.clone(), watches_stopping),
        max,
    );
    let audit_service =
        AuditServiceServer::new(AuditRpcService::new(audit.clone())).max_decoding_message_size(max);
    let encryption_service =
        EncryptionServiceServer::new(EncryptionRpcService::new(storage.clone()))
            .max_decoding_message_size(max);
    let pms = match &threerpms {
        Some(t) => {
            health
                .set_serving::<PmsServiceServer<PmsRpcService>>()
                .await;
            Some(
                PmsServiceServer::new(PmsRpcService::new(t.hotels(), audit.clone()))
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
        encryption_service_server::SERVICE_NAME,
    ];
    served.extend(grpc.iter().map(|(name, _)| *name));
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
    // Its batch task runs until the server has stopped, then flushes.
    // Started last, when nothing can fail before the server task owns it.
    let traces = match &config.tracing {
        t if t.enabled => Some(TraceExport::start(t)?),
        _ => None,
    };
    let server = &config.server;
    let connections = ConnectionLimits::new(ConnectionSettings::from(server));
    let keepalive = Duration::from_millis(server.keepalive_interval_ms);
    let builder = match server.max_connection_age_seconds {
        0 => builder,
        // Graceful (GOAWAY, then the open calls finish): tonic forces the
        // close only when a grace period is also set, and it sets none here.
        age => builder.max_connection_age(Duration::from_secs(age)),
    };
    // hyper's own bounds stay as they are: 20 streams reset before being
    // served, 1,024 streams it had to reset itself, 16 KB of headers.
    let grpc_server: GrpcServer = builder
        .timeout(Duration::from_secs(server.request_timeout_seconds))
        // Validated to fit.
        .max_concurrent_streams(u32::try_from(server.concurrency_per_connection).ok())
        .http2_keepalive_interval(Some(keepalive))
        .http2_keepalive_timeout(Some(Duration::from_millis(server.keepalive_timeout_ms)))
        .layer(StreamCountLayer::new(connections.clone()))
        .layer(ObserveLayer::new(traces.as_ref().map(TraceExport::tracer)))
        .layer(RpcSpanLayer)
        .layer(ContentTypeLayer)
        .layer(auth)
        .layer(AdmissionLayer::new(server));
    let mut routes = Routes::new(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(access)
        .add_service(audit_service)
        .add_service(encryption_service);
    if let Some(pms) = pms {
        routes = routes.add_service(pms);
    }
    for (name, add) in grpc {
        health
            .set_service_status(name, tonic_health::ServingStatus::Serving)
            .await;
        routes = add(routes);
    }
    // Prepared once for every connection: axum builds its routes again
    // when preparing them, which tonic's Router does at each serve (here, a
    // serve per connection: 5 KB more per connection, measured).
    let routes = routes.prepare();

    // Without TCP_NODELAY small answers wait on delayed ACKs (~40 ms each).
    let accepted = tonic::transport::server::TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(Some(keepalive));
    // TLS, when configured, is applied by tonic on top of each connection.
    // Each connection is served on a tonic server of its own, which is told
    // to go (GOAWAY) when its connection has been idle for its timeout.
    let incoming = LimitedIncoming::new(accepted, connections);
    let grace = Duration::from_secs(config.server.request_timeout_seconds);
    let running_store = storage.clone();
    let running_leases = leases.clone();
    let task = tokio::spawn(async move {
        let stopping_calls = tokio::sync::Notify::new();
        let serve = serve_connections(grpc_server, routes, incoming, async {
            let _ = shutdown_rx.await;
            let _ = stop_watches.send(true);
            health
                .set_not_serving::<AccessServiceServer<AccessRpcService>>()
                .await;
            stopping_calls.notify_one();
        });
        // Calls in flight may finish, for as long as a call may take; a
        // stream that never ends (a health Watch) must not hold the
        // shutdown forever.
        tokio::select! {
            () = serve => {}
            () = async {
                stopping_calls.notified().await;
                tokio::time::sleep(grace).await;
            } => {
                tracing::warn!("calls still open after the shutdown grace period are dropped");
            }
        }
        let _ = stop_background.send(true);
        for task in background {
            let _ = task.await;
        }
        if let Some(threerpms) = threerpms {
            threerpms.stop().await;
        }
        // The work under the leases has stopped: another replica may take
        // them now rather than when they expire.
        leases.release_all().await;
        // Every answer given was already durable; this flushes the rest.
        storage.close();
        // Every call has ended, and with it its span.
        if let Some(traces) = traces {
            traces.shutdown().await;
        }
        Ok(())
    });
    let trace_endpoint = config
        .tracing
        .enabled
        .then(|| config.tracing.endpoint.clone());
    if let Some(endpoint) = &trace_endpoint {
        tracing::info!(%endpoint, "traces are exported over OTLP/gRPC to {endpoint}");
    }
    tracing::info!(
        %addr,
        tls = config.server.tls.is_some(),
        backend = ?config.storage.backend,
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
        metrics_addr,
        trace_endpoint,
        threerpms_hotels,
        follow_now,
        sweep_now,
        leases: running_leases,
        store: running_store,
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

/// The health service name that says whether keysmith can write: NOT_SERVING
/// from a storage write error (a full disk) until the store has been
/// reopened and writes go through again. Reads go on meanwhile.
pub const WRITES_HEALTH: &str = "keysmith.writes";

/// Keeps [`WRITES_HEALTH`] in step with the store, until `stop`.
async fn report_writes(
    mut writable: tokio::sync::watch::Receiver<bool>,
    health: tonic_health::server::HealthReporter,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let status = if *writable.borrow_and_update() {
            tonic_health::ServingStatus::Serving
        } else {
            tonic_health::ServingStatus::NotServing
        };
        health.set_service_status(WRITES_HEALTH, status).await;
        tokio::select! {
            changed = writable.changed() => if changed.is_err() { return },
            _ = stop.changed() => return,
        }
    }
}

fn days(n: u64) -> Duration {
    Duration::from_secs(n.saturating_mul(86_400))
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
