//! keysmith's configuration: a TOML file (or the embedded default),
//! overridden by `KEYSMITH__SECTION__KEY` environment variables. Unknown keys
//! are errors that name the key.
use std::{net::SocketAddr, path::PathBuf};

use config::{Environment, File, FileFormat};
use keysmith_3rpms::config::ThreeRpmsConfig;
use keysmith_core::Secret;
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
    /// Third-party drivers loaded from shared libraries at start-up.
    #[serde(default)]
    pub plugins: Vec<PluginConfig>,
}

/// One driver plugin (`[[drivers.plugins]]`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// The driver's name in keysmith: in ListDrivers and on every key's
    /// entrances. One library may be listed twice under two names.
    pub name: String,
    /// The shared library. A relative path is relative to the directory
    /// keysmith runs in.
    pub path: PathBuf,
    /// The library's sha256 (hex): checked before it is loaded; a
    /// different file is refused. It guards against loading the wrong
    /// file, not against someone who can replace it between the check and
    /// the load: keep the plugin's directory writable by its operator only.
    #[serde(default)]
    pub sha256: Option<String>,
    /// The plugin's own configuration, handed to it as JSON. It may hold
    /// secrets (an API key), so Debug never shows it.
    #[serde(default = "empty_table")]
    pub config: Secret<serde_json::Value>,
}

fn empty_table() -> Secret<serde_json::Value> {
    Secret::new(serde_json::Value::Object(Default::default()))
}

impl PluginConfig {
    fn validate(&self, index: usize) -> Result<(), String> {
        let at = format!("drivers.plugins[{index}]");
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !name_ok {
            return Err(format!(
                "{at}.name must be 1 to 64 letters, digits, '-' or '_'"
            ));
        }
        if self.path.as_os_str().is_empty() {
            return Err(format!("{at}.path is required"));
        }
        if let Some(digest) = &self.sha256 {
            if digest.len() != 64 || !digest.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(format!("{at}.sha256 must be 64 hexadecimal digits"));
            }
        }
        if !self.config.expose().is_object() {
            return Err(format!("{at}.config must be a table"));
        }
        Ok(())
    }
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
        for (i, plugin) in self.drivers.plugins.iter().enumerate() {
            plugin
                .validate(i)
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
    fn a_plugin_stanza_loads_with_its_config_table_as_json() {
        let text = format!(
            "{DEFAULT_CONFIG}\n\
             [[drivers.plugins]]\n\
             name = \"keypad\"\n\
             path = \"target/release/libkeysmith_keypad_plugin.so\"\n\
             sha256 = \"{}\"\n\
             [drivers.plugins.config]\n\
             pin_length = 6\n\
             apiKey = \"kp_secret_value\"\n\
             [[drivers.plugins.config.properties]]\n\
             property_id = \"demo-hotel\"\n\
             doors = [{{ id = \"kp-1\", kind = \"room\" }}]\n",
            "ab".repeat(32)
        );
        let c = Config::load_with_env(Source::Text(&text), false).unwrap();
        let plugin = &c.drivers.plugins[0];
        assert_eq!(plugin.name, "keypad");
        assert_eq!(
            plugin.config.expose(),
            &serde_json::json!({
                "pin_length": 6,
                "apiKey": "kp_secret_value",
                "properties": [{ "property_id": "demo-hotel",
                                 "doors": [{ "id": "kp-1", "kind": "room" }] }],
            })
        );
        assert!(!format!("{c:?}").contains("kp_secret_value"));
    }

    #[test]
    fn a_plugin_stanza_is_checked() {
        for (stanza, expected) in [
            ("name = \"a b\"\npath = \"x.so\"", "drivers.plugins[0].name"),
            ("name = \"k\"\npath = \"x.so\"\nsha256 = \"abc\"", "sha256"),
            (
                "name = \"k\"\npath = \"x.so\"\nconfig = 3",
                "config must be a table",
            ),
            ("name = \"k\"\npath = \"x.so\"\ncolour = 1", "colour"),
        ] {
            let text = format!("{DEFAULT_CONFIG}\n[[drivers.plugins]]\n{stanza}\n");
            let err = Config::load_with_env(Source::Text(&text), false).unwrap_err();
            assert!(err.to_string().contains(expected), "{stanza}: {err}");
        }
    }

    #[test]
    fn the_site_secret_never_shows_in_debug() {
        let c = Config::load_with_env(Source::Embedded, false).unwrap();
        assert!(!format!("{c:?}").contains("demo-site-secret"));
    }
}
