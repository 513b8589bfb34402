//! The keysmith binary: `keysmith serve [--config FILE]` and
//! `keysmith check-config FILE`.
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use keysmith_server::{telemetry, Config, Source};

// glibc's malloc took about 40% of the CPU of a ListKeys load (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "keysmith",
    version,
    about = "Issue, revoke and list access keys to hotel rooms and other entrances"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the gRPC API. Without --config, the embedded default: a demo
    /// hotel on the simulated offline lock, on 127.0.0.1:50051.
    Serve {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Check a configuration file (with KEYSMITH__ overrides) and exit.
    CheckConfig { file: PathBuf },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Serve { config } => {
            let config = match &config {
                Some(path) => Config::load(Source::File(path))?,
                None => Config::load(Source::Embedded)?,
            };
            telemetry::init(&config.log);
            let running = keysmith_server::start(config).await?;
            running.until(keysmith_server::shutdown_signal()).await
        }
        Command::CheckConfig { file } => {
            let config = Config::load(Source::File(&file))?;
            let lock = config.drivers.offline_lock.as_ref();
            println!(
                "{}: ok (listen {}, data {}, offline-lock properties: {})",
                file.display(),
                config.server.listen,
                config.storage.data_dir.display(),
                lock.map_or(0, |l| l.properties.len())
            );
            Ok(())
        }
    }
}
