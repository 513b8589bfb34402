//! The built-in drivers and how each is built from keysmith's configuration.
//! Each entry builds its drivers (none when its section is absent) with
//! what they bring: background tasks, listening addresses, the pace at which
//! keysmith follows them, and any gRPC service of their own (the lock
//! simulator). Adding a built-in driver is its crate, its config section
//! and one line in [`BUILT_IN`].
use std::{future::Future, pin::Pin, sync::Arc};

use anyhow::Context as _;
use keysmith_api::sim::v1::lock_simulator_service_server::LockSimulatorServiceServer;
use keysmith_core::hosting::{Built, DriverContext};
use keysmith_offline_lock::{OfflineLock, DRIVER_NAME as OFFLINE_LOCK};
use keysmith_plugin_host::PluginSpec;
use tonic::{server::NamedService, service::Routes};

use crate::{
    config::{Config, PluginConfig},
    simulator::LockSimulatorRpcService,
};

/// Adds a driver's own gRPC service to keysmith's.
pub type AddService = Box<dyn FnOnce(Routes) -> Routes + Send>;

/// A driver as the server runs it.
pub struct Registered {
    /// The driver and what comes with it.
    pub built: Built,
    /// gRPC services of its own, by name, served beside keysmith's.
    pub grpc: Vec<(&'static str, AddService)>,
}

impl From<Built> for Registered {
    fn from(built: Built) -> Self {
        Self {
            built,
            grpc: Vec::new(),
        }
    }
}

type Building<'a> = Pin<Box<dyn Future<Output = anyhow::Result<Vec<Registered>>> + Send + 'a>>;
type Factory = for<'a> fn(&'a Config, &'a DriverContext) -> Building<'a>;

/// Every built-in driver, in the order they are built.
const BUILT_IN: [(&str, Factory); 3] = [
    ("offline lock", |config, ctx| {
        Box::pin(offline_lock(config, ctx))
    }),
    ("Seam", |config, ctx| Box::pin(seam(config, ctx))),
    ("plugins", |config, ctx| Box::pin(plugins(config, ctx))),
];

/// Builds every driver the configuration names.
pub async fn build_all(config: &Config, ctx: &DriverContext) -> anyhow::Result<Vec<Registered>> {
    let mut all = Vec::new();
    for (what, factory) in BUILT_IN {
        let built = factory(config, ctx)
            .await
            .with_context(|| format!("cannot start the {what} driver"))?;
        all.extend(built);
    }
    Ok(all)
}

async fn offline_lock(config: &Config, ctx: &DriverContext) -> anyhow::Result<Vec<Registered>> {
    let Some(lock_config) = &config.drivers.offline_lock else {
        return Ok(Vec::new());
    };
    let lock = Arc::new(OfflineLock::new(
        lock_config.clone(),
        ctx.state(OFFLINE_LOCK)?,
    )?);
    let simulator = LockSimulatorServiceServer::new(LockSimulatorRpcService::new(lock.clone()))
        .max_decoding_message_size(config.server.max_request_bytes);
    Ok(vec![Registered {
        built: Built::driver(lock),
        grpc: vec![(
            <LockSimulatorServiceServer<LockSimulatorRpcService> as NamedService>::NAME,
            Box::new(move |routes: Routes| routes.add_service(simulator)),
        )],
    }])
}

async fn seam(config: &Config, ctx: &DriverContext) -> anyhow::Result<Vec<Registered>> {
    let Some(seam_config) = &config.drivers.seam else {
        return Ok(Vec::new());
    };
    Ok(vec![keysmith_seam::build(seam_config, ctx).await?.into()])
}

async fn plugins(config: &Config, _ctx: &DriverContext) -> anyhow::Result<Vec<Registered>> {
    let mut out = Vec::with_capacity(config.drivers.plugins.len());
    for plugin in &config.drivers.plugins {
        out.push(Built::driver(load_plugin(plugin).await?).into());
    }
    Ok(out)
}

/// Loads one plugin off the async workers: reading and hashing the file,
/// loading the library and the plugin's own start-up all block.
async fn load_plugin(plugin: &PluginConfig) -> anyhow::Result<Arc<dyn keysmith_core::Driver>> {
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
