//! keysmith's configuration: a TOML file (or the embedded default),
//! overridden by `KEYSMITH__SECTION__KEY` environment variables. Unknown keys
//! are errors that name the key.
use std::{net::SocketAddr, path::PathBuf};

use config::{Environment, File, FileFormat};
use keysmith_3rpms::config::ThreeRpmsConfig;
use keysmith_offline_lock::OfflineLockConfig;
use keysmith_seam::SeamConfig;
use serde::Deserialize;

/// The embedded default: the simulated lock with a demo hotel, on loopback.
pub const DEFAULT_CONFIG: &str = include_str!("default.toml");

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub storage: StorageConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub drivers: DriversConfig,
    /// The 3RPMS PMS: hotels whose room stays keysmith keeps supplied with keys.
    #[serde(default)]
    pub threerpms: Option<ThreeRpmsConfig>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Largest request accepted, in bytes.
    #[serde(default = "default_max_request_bytes")]
    pub max_request_bytes: usize,
    /// Requests served at once per connection.
    #[serde(default = "default_concurrency")]
    pub concurrency_per_connection: usize,
    /// A request taking longer is answered DEADLINE_EXCEEDED.
    #[serde(default = "default_timeout")]
    pub request_timeout_seconds: u64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    pub data_dir: PathBuf,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// An env-filter directive such as `info` or `keysmith=debug`; RUST_LOG wins.
    #[serde(default = "default_filter")]
    pub filter: String,
    #[serde(default)]
    pub format: LogFormat,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriversConfig {
    /// The simulated offline lock.
    pub offline_lock: Option<OfflineLockConfig>,
    /// Seam: access grants on the lock systems Seam connects.
    pub seam: Option<SeamConfig>,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            filter: default_filter(),
            format: LogFormat::Text,
        }
    }
}

fn default_filter() -> String {
    "info".into()
}
fn default_max_request_bytes() -> usize {
    1 << 20
}
fn default_concurrency() -> usize {
    256
}
fn default_timeout() -> u64 {
    30
}

/// Where the configuration comes from.
pub enum Source<'a> {
    Embedded,
    File(&'a std::path::Path),
    Text(&'a str),
}

impl Config {
    /// Loads the configuration, then applies `KEYSMITH__…` environment
    /// overrides, then checks it.
    pub fn load(source: Source<'_>) -> anyhow::Result<Self> {
        Self::load_with_env(source, true)
    }

    pub fn load_with_env(source: Source<'_>, env: bool) -> anyhow::Result<Self> {
        let builder = config::Config::builder();
        let mut builder = match source {
            Source::Embedded => {
                builder.add_source(File::from_str(DEFAULT_CONFIG, FileFormat::Toml))
            }
            Source::Text(text) => builder.add_source(File::from_str(text, FileFormat::Toml)),
            Source::File(path) => {
                if !path.is_file() {
                    anyhow::bail!("config file {} does not exist", path.display());
                }
                builder.add_source(File::from(path).format(FileFormat::Toml))
            }
        };
        if env {
            builder = builder.add_source(
                Environment::with_prefix("KEYSMITH")
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true),
            );
        }
        let config: Config = builder
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> anyhow::Result<()> {
        if let Some(lock) = &self.drivers.offline_lock {
            lock.validate()
                .map_err(|why| anyhow::anyhow!("invalid configuration: {why}"))?;
        }
        if self.server.max_request_bytes < 1024 {
            anyhow::bail!("invalid configuration: server.max_request_bytes must be at least 1024");
        }
        if self.server.concurrency_per_connection == 0 || self.server.request_timeout_seconds == 0 {
            anyhow::bail!(
                "invalid configuration: server.concurrency_per_connection and \
                 server.request_timeout_seconds must be positive"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_default_loads_and_listens_on_loopback() {
        let c = Config::load_with_env(Source::Embedded, false).unwrap();
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:50051");
        assert_eq!(c.storage.data_dir, PathBuf::from("./keysmith-data"));
        let lock = c.drivers.offline_lock.unwrap();
        assert_eq!(lock.properties[0].property_id, "demo-hotel");
    }

    #[test]
    fn unknown_keys_are_named() {
        let text = DEFAULT_CONFIG.replace("listen =", "listn = \"x\"\nlisten =");
        let err = Config::load_with_env(Source::Text(&text), false).unwrap_err();
        assert!(err.to_string().contains("listn"), "{err}");
        let text = DEFAULT_CONFIG.replace("kind = \"room\"", "kind = \"room\"\ncolour = \"red\"");
        let err = Config::load_with_env(Source::Text(&text), false).unwrap_err();
        assert!(err.to_string().contains("colour"), "{err}");
    }

    #[test]
    fn the_site_secret_never_shows_in_debug() {
        let c = Config::load_with_env(Source::Embedded, false).unwrap();
        assert!(!format!("{c:?}").contains("demo-site-secret"));
    }
}
