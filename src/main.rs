//! The keysmith binary: `keysmith serve [--config FILE]`,
//! `keysmith check-config FILE`, `keysmith token create` and
//! `keysmith encryption generate-key|status|rotate-data-key|
//! rotate-key-encryption-key`.
use std::path::PathBuf;

mod admin;
mod memory;

use clap::{Parser, Subcommand};
use keysmith_server::{auth, telemetry, Config, Source};

// glibc's malloc took about 40% of the CPU of a ListKeys load (BENCHMARKS.md);
// mimalloc, giving freed memory back when a worker goes idle (memory.rs).
#[global_allocator]
static ALLOCATOR: memory::ReturningAllocator = memory::ReturningAllocator;

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
    /// Bearer tokens for callers.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Keys for encryption at rest (rotation is online, over
    /// keysmith.v1.EncryptionService).
    #[command(subcommand)]
    Encryption(EncryptionCommand),
}

#[derive(Subcommand)]
enum EncryptionCommand {
    /// Make a new random key-encryption key in a new file (readable by its
    /// owner only) and print the [storage.encryption] entry that uses it.
    /// Keep the file apart from the data directory and its backups.
    GenerateKey {
        /// The key's name, e.g. "kek-2026-11".
        #[arg(long)]
        id: String,
        /// The file to make; an existing file is never overwritten.
        #[arg(long)]
        out: PathBuf,
    },
    /// Where a running keysmith's encryption stands.
    Status {
        #[command(flatten)]
        target: admin::Target,
    },
    /// Seal new records with a new data key at once, and every stored
    /// record again in the background; the old key is deleted once unused.
    RotateDataKey {
        #[command(flatten)]
        target: admin::Target,
        /// Report until every record is sealed with the new key.
        #[arg(long)]
        wait: bool,
    },
    /// Wrap every data key with a new key-encryption key, which keysmith
    /// reads from a file or an environment variable on its own machine.
    RotateKeyEncryptionKey {
        #[command(flatten)]
        target: admin::Target,
        /// The new key's name.
        #[arg(long)]
        key_id: String,
        /// A file on keysmith's machine holding the new key.
        #[arg(long, required_unless_present = "key_env", conflicts_with = "key_env")]
        key_file: Option<PathBuf>,
        /// Or an environment variable of keysmith's process holding it.
        #[arg(long)]
        key_env: Option<String>,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Make a new random token. Prints the token once (give it to the
    /// caller) and the [[auth.tokens]] entry with its hash (put it in the
    /// config); keysmith never stores the token itself.
    Create {
        /// Names the holder in the audit log, e.g. "front-desk".
        #[arg(long)]
        id: String,
        /// A property it may act on; repeat for several, or "*" for all.
        #[arg(long = "property", required = true)]
        properties: Vec<String>,
        /// keys.issue, keys.revoke, keys.read, keys.read_secrets or
        /// keysmith.admin; repeat for several.
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
    },
}

fn main() -> anyhow::Result<()> {
    memory::runtime()?.block_on(run(Cli::parse()))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve { config } => {
            let config = match &config {
                Some(path) => Config::load(Source::File(path))?,
                None => Config::load(Source::Embedded)?,
            };
            telemetry::init(&config.log);
            memory::set_return_after_mb(config.server.return_freed_memory_mb);
            if config.auth.mode == keysmith_server::config::AuthMode::Development {
                // On stderr as well as in the log, which a filter may hide.
                eprintln!(
                    "\n  keysmith is in DEVELOPMENT MODE on {}: no authentication, any local\n  \
                     caller may issue, read and revoke every key. For anything else set\n  \
                     auth.mode = \"tokens\" (README: Securing a deployment).\n",
                    config.server.listen
                );
            }
            let running = keysmith_server::start(config).await?;
            running.until(keysmith_server::shutdown_signal()).await
        }
        Command::CheckConfig { file } => {
            let config = Config::load(Source::File(&file))?;
            let lock = config.drivers.offline_lock.as_ref();
            let auth = match config.auth.mode {
                keysmith_server::config::AuthMode::Development => "development mode".to_owned(),
                keysmith_server::config::AuthMode::Tokens => {
                    format!("{} tokens", config.auth.tokens.len())
                }
            };
            println!(
                "{}: ok (listen {}{}, auth: {auth}, data {} sealed under key {:?}, offline-lock \
                 properties: {})",
                file.display(),
                config.server.listen,
                if config.server.tls.is_some() {
                    " with TLS"
                } else {
                    ""
                },
                config.storage.data_dir.display(),
                config.storage.encryption.key_id,
                lock.map_or(0, |l| l.properties.len())
            );
            Ok(())
        }
        Command::Encryption(EncryptionCommand::GenerateKey { id, out }) => {
            keysmith_server::encryption::write_new_key(&id, &out)?;
            println!("made the key-encryption key {id:?} in {}", out.display());
            println!();
            println!("add to the configuration:");
            println!("[storage.encryption]");
            println!("key_id = {id:?}");
            println!("key_file = {:?}", out.display().to_string());
            Ok(())
        }
        Command::Encryption(EncryptionCommand::Status { target }) => admin::status(target).await,
        Command::Encryption(EncryptionCommand::RotateDataKey { target, wait }) => {
            admin::rotate_data_key(target, wait).await
        }
        Command::Encryption(EncryptionCommand::RotateKeyEncryptionKey {
            target,
            key_id,
            key_file,
            key_env,
        }) => admin::rotate_key_encryption_key(target, key_id, key_file, key_env).await,
        Command::Token(TokenCommand::Create {
            id,
            properties,
            scopes,
        }) => {
            for scope in &scopes {
                scope
                    .parse::<auth::Scope>()
                    .map_err(|why| anyhow::anyhow!(why))?;
            }
            let token = auth::generate_token();
            let list = |v: &[String]| {
                v.iter()
                    .map(|s| format!("{s:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            println!("token (shown once; give it to the caller, keysmith keeps only its hash):");
            println!("  {token}");
            println!();
            println!("add to the configuration:");
            println!("[[auth.tokens]]");
            println!("id = {id:?}");
            println!("sha256 = {:?}", auth::hash_token(&token));
            println!("properties = [{}]", list(&properties));
            println!("scopes = [{}]", list(&scopes));
            Ok(())
        }
    }
}
