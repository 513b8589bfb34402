//! keysmith with the example keypad driver linked in as a built-in driver
//! instead of loaded as a plugin: the benchmark's twin of `keysmith serve`
//! with the keypad plugin (BENCHMARKS.md). It reads the same configuration
//! file, takes the `[[drivers.plugins]]` entry named `keypad` out of it and
//! registers that driver in-process under the same name, so that the two
//! servers differ only by the plugin boundary: encoding, the C call on a
//! blocking thread, decoding.
//!
//! ```text
//! cargo run --release --example keypad_builtin -- --config examples/keysmith-keypad.toml
//! ```
use std::{path::PathBuf, sync::Arc};

use anyhow::Context as _;
use clap::Parser;
use keysmith_core::{service::SystemClock, Driver};
use keysmith_keypad_plugin::KeypadDriver;
use keysmith_plugin::InProcess;
use keysmith_server::{telemetry, Config, Source};

// The same allocator as the keysmith binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
struct Args {
    /// A keysmith configuration with a `[[drivers.plugins]]` entry named keypad.
    #[arg(long, short)]
    config: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut config = Config::load(Source::File(&args.config))?;
    telemetry::init(&config.log);
    let index = config
        .drivers
        .plugins
        .iter()
        .position(|p| p.name == "keypad")
        .context("the configuration lists no plugin named keypad")?;
    let plugin = config.drivers.plugins.remove(index);
    let driver = KeypadDriver::from_config(&serde_json::to_vec(plugin.config.expose())?)
        .map_err(|e| anyhow::anyhow!("the keypad configuration: {e}"))?;
    let built_in: Arc<dyn Driver> = Arc::new(InProcess::named(plugin.name, driver));
    let running =
        keysmith_server::start_with_drivers(config, Arc::new(SystemClock), vec![built_in]).await?;
    running.until(keysmith_server::shutdown_signal()).await
}
