//! keysmith's configuration: a TOML file (or the embedded default),
//! overridden by `KEYSMITH__SECTION__KEY` environment variables. Unknown keys
//! are errors that name the key.
use std::{net::SocketAddr, path::PathBuf};

use config::{Environment, File, FileFormat};
use keysmith_core::Secret;
use keysmith_offline_lock::OfflineLockConfig;
use keysmith_seam::SeamConfig;
use keysmith_threerpms::ThreeRpmsConfig;
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
    /// Who may call: bearer tokens, or development mode (loopback only).
    #[serde(default)]
    pub auth: AuthConfig,
    /// The Prometheus endpoint, on an address of its own.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// OpenTelemetry trace export (OTLP over gRPC): off unless enabled.
    #[serde(default)]
    pub tracing: TracingConfig,
}

/// One OpenTelemetry span per call, exported in batches over OTLP/gRPC
/// to a collector; off by default. What a span carries is in README
/// ("Traces").
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TracingConfig {
    #[serde(default)]
    pub enabled: bool,
    /// The collector's OTLP/gRPC receiver, `http://host:port`.
    #[serde(default = "default_tracing_endpoint")]
    pub endpoint: String,
    /// `service.name` of every span's resource.
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// The share of new traces kept, 0.0 to 1.0. A call that continues a
    /// trace (W3C `traceparent`) follows its caller's sampling decision.
    #[serde(default = "default_sample_ratio")]
    pub sample_ratio: f64,
    /// Ended spans wait at most this long before they are sent in a batch.
    #[serde(default = "default_batch_delay_ms")]
    pub batch_delay_ms: u64,
    /// One export (a batch sent to the collector) gives up after this.
    #[serde(default = "default_export_timeout_ms")]
    pub export_timeout_ms: u64,
}

impl Default for TracingConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            endpoint: default_tracing_endpoint(),
            service_name: default_service_name(),
            sample_ratio: default_sample_ratio(),
            batch_delay_ms: default_batch_delay_ms(),
            export_timeout_ms: default_export_timeout_ms(),
        }
    }
}

fn default_tracing_endpoint() -> String {
    "http://127.0.0.1:4317".to_owned()
}
fn default_service_name() -> String {
    "keysmith".to_owned()
}
fn default_sample_ratio() -> f64 {
    1.0
}
fn default_batch_delay_ms() -> u64 {
    5_000
}
fn default_export_timeout_ms() -> u64 {
    10_000
}

impl TracingConfig {
    /// Checked whether or not export is enabled, so that turning it on
    /// later cannot find a configuration that was wrong all along.
    fn validate(&self) -> anyhow::Result<()> {
        let endpoint = &self.endpoint;
        let uri: http::Uri = endpoint.parse().map_err(|_| {
            anyhow::anyhow!(
                "invalid configuration: tracing.endpoint {endpoint:?} is not a URL; give the \
                 collector's OTLP/gRPC receiver as http://host:port (e.g. \
                 http://127.0.0.1:4317)"
            )
        })?;
        if uri.scheme_str() != Some("http")
            || uri.host().is_none_or(str::is_empty)
            || uri.port_u16().is_none()
        {
            anyhow::bail!(
                "invalid configuration: tracing.endpoint {endpoint:?} must be \
                 http://host:port, the collector's OTLP/gRPC receiver (TLS to the collector \
                 is not supported: run it beside keysmith)"
            );
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            anyhow::bail!(
                "invalid configuration: tracing.endpoint {endpoint:?} must have no path: \
                 OTLP/gRPC's path is the service's own"
            );
        }
        if self.service_name.trim().is_empty() {
            anyhow::bail!("invalid configuration: tracing.service_name must not be empty");
        }
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            anyhow::bail!("invalid configuration: tracing.sample_ratio must be 0.0 to 1.0");
        }
        for (name, value) in [
            ("batch_delay_ms", self.batch_delay_ms),
            ("export_timeout_ms", self.export_timeout_ms),
        ] {
            if value == 0 {
                anyhow::bail!("invalid configuration: tracing.{name} must be positive");
            }
        }
        Ok(())
    }
}

/// `GET /metrics` in Prometheus's text format, on its own address, apart
/// from the gRPC port: on by default, on loopback.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Where the endpoint listens. It has no authentication: keep it on
    /// loopback or a network only the scraper reaches.
    #[serde(default = "default_metrics_listen")]
    pub listen: SocketAddr,
    /// What is measured by reading the store (keys by state, the store's
    /// size on disk) is read again at a scrape once it is this old; 0 reads
    /// it at every scrape.
    #[serde(default = "default_sample_interval_seconds")]
    pub sample_interval_seconds: u64,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: default_metrics_listen(),
            sample_interval_seconds: default_sample_interval_seconds(),
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_metrics_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9464))
}
fn default_sample_interval_seconds() -> u64 {
    15
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    #[serde(default)]
    pub mode: AuthMode,
    /// Whether server reflection needs a token.
    #[serde(default)]
    pub reflection: ReflectionAccess,
    /// Failed authentications a peer address may make per minute before it
    /// is refused for the rest of the minute.
    #[serde(default = "default_max_failures")]
    pub max_failures_per_minute: u32,
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// Every RPC but health needs a configured bearer token.
    #[default]
    Tokens,
    /// No authentication: every caller may do everything. Loopback only,
    /// announced at start.
    Development,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ReflectionAccess {
    /// Anyone may describe the API (it holds no data).
    #[default]
    Open,
    /// Any valid token, whatever its scopes.
    Authenticated,
}

/// A bearer token, stored as the SHA-256 of the token; the token itself is
/// shown once, by `keysmith token create`, and kept by its holder.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Names the holder in the audit log and in logs.
    pub id: String,
    /// Lowercase hex SHA-256 of the whole token.
    pub sha256: String,
    /// Property ids it may act on; "*" for all.
    pub properties: Vec<String>,
    /// keys.issue, keys.revoke, keys.read, keys.read_secrets, keysmith.admin.
    pub scopes: Vec<String>,
    /// Requests served at once for this token; more are refused.
    #[serde(default = "default_token_in_flight")]
    pub max_in_flight: usize,
    /// Requests per minute for this token (a token bucket of that size).
    #[serde(default)]
    pub requests_per_minute: Option<u32>,
}

/// TLS with rustls: the server's certificate chain and key, and for mutual
/// TLS the CA that client certificates must chain to.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// PEM CA certificate(s): when set, clients must present a certificate.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Largest request accepted, in bytes.
    #[serde(default = "default_max_request_bytes")]
    pub max_request_bytes: usize,
    /// Calls a connection may have open at once (HTTP/2
    /// SETTINGS_MAX_CONCURRENT_STREAMS, health checks included); a client
    /// wanting more waits for one of its calls to end.
    #[serde(default = "default_concurrency")]
    pub concurrency_per_connection: usize,
    /// A request taking longer is answered DEADLINE_EXCEEDED.
    #[serde(default = "default_timeout")]
    pub request_timeout_seconds: u64,
    /// Connections open at once; one more is closed as soon as it is
    /// accepted.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Connections open at once from one client address; one more from it
    /// is closed as soon as it is accepted. Behind a proxy that does not
    /// keep client addresses, every connection comes from the proxy's.
    #[serde(default = "default_max_connections_per_peer")]
    pub max_connections_per_peer: usize,
    /// A connection must have sent its first request this long after it
    /// was accepted (TLS and HTTP/2 handshakes included), or it is closed.
    #[serde(default = "default_handshake_timeout_ms")]
    pub handshake_timeout_ms: u64,
    /// A connection with no call open for this long is told to go (HTTP/2
    /// GOAWAY, then closed once its calls are done), so that a call its
    /// client sends meanwhile is served or retried, never lost; HTTP/2
    /// pings do not count as calls. Clients reconnect on their next call.
    #[serde(default = "default_idle_timeout_ms")]
    pub idle_timeout_ms: u64,
    /// A request must have fully arrived this long after its headers, or it
    /// is answered DEADLINE_EXCEEDED (`REQUEST_BODY_TIMEOUT`). Until then it
    /// holds none of its token's `max_in_flight`.
    #[serde(default = "default_request_body_timeout_ms")]
    pub request_body_timeout_ms: u64,
    /// An HTTP/2 ping is sent on a connection that has been silent this
    /// long (and TCP keep-alive probes start after it), to find peers that
    /// are gone while a call is open.
    #[serde(default = "default_keepalive_interval_ms")]
    pub keepalive_interval_ms: u64,
    /// A connection whose ping is not answered within this is closed.
    #[serde(default = "default_keepalive_timeout_ms")]
    pub keepalive_timeout_ms: u64,
    /// A connection this old is asked to go (HTTP/2 GOAWAY): it takes no
    /// new call, its open calls finish, and the client connects again, so
    /// that clients behind a connection-level load balancer spread over
    /// replicas that started later. 0: connections live as long as they
    /// are used.
    #[serde(default)]
    pub max_connection_age_seconds: u64,
    /// Once this many MiB were freed, a worker thread that goes idle gives
    /// the memory its allocator holds free back to the system, so that
    /// memory a burst took is returned when the burst ends. Each return
    /// costs the worker a walk of its heap, and the pages returned are
    /// faulted in again when used: a larger value costs less under load
    /// and may keep up to about that much after a burst. 0: never.
    #[serde(default = "default_return_freed_memory_mb")]
    pub return_freed_memory_mb: u64,
    /// Health checks served at once, server-wide, apart from every other
    /// call: more are refused RESOURCE_EXHAUSTED (`HEALTH_CHECKS_LIMITED`).
    #[serde(default = "default_health_concurrency")]
    pub health_concurrency: usize,
    /// Changes a WatchKeys watcher may fall behind (its share of the
    /// property's buffer): one further behind is ended with
    /// `WATCH_BUFFER_OVERFLOW` and resumes from the change log. Issuing
    /// never waits for a watcher.
    #[serde(default = "default_watch_buffer")]
    pub watch_buffer: usize,
    /// Serve over TLS.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// Where keysmith keeps its state: `embedded` (fjall) in `data_dir` (the
    /// default), or `postgres`, a PostgreSQL database (`[storage.postgres]`).
    #[serde(default)]
    pub backend: StorageBackend,
    /// The PostgreSQL database, for `backend = "postgres"`.
    #[serde(default)]
    pub postgres: Option<PostgresConfig>,
    /// The embedded store's directory. With PostgreSQL it is still made (the development
    /// key-encryption key may live beside it) but holds no data.
    pub data_dir: PathBuf,
    /// The key-encryption key that wraps the data keys every record is
    /// sealed with. Required: keysmith stores nothing in clear.
    pub encryption: EncryptionConfig,
    /// How long a request_id is remembered: a retry within it gets the
    /// first answer; after it, the request is new (AIP-155).
    #[serde(default = "default_idempotency_hours")]
    pub idempotency_retention_hours: u64,
    /// What the embedded engine (its block cache and memtables) and the
    /// listing cache may take together, in MiB: a third for the engine, the
    /// rest for the listing cache, which holds the
    /// most recently listed properties whole (a property it does not hold is
    /// listed from disk and brought in). 0 turns the listing cache off.
    #[serde(default = "default_memory_budget_mb")]
    pub memory_budget_mb: usize,
    /// How long an ended key (revoked, or expired) is kept before it is
    /// purged with its index entries and, when its reservation has no key
    /// left, the reservation.
    #[serde(default = "default_key_retention_days")]
    pub key_retention_days: u64,
    /// How long an audit record is kept.
    #[serde(default = "default_audit_retention_days")]
    pub audit_retention_days: u64,
    /// How often the sweeper runs: it moves keys whose window ended out of
    /// the live set and purges what is past its retention.
    #[serde(default = "default_sweep_interval_seconds")]
    pub sweep_interval_seconds: u64,
    /// Keys (or audit records) per sweeper transaction: small enough that
    /// requests touching the same keys never wait long.
    #[serde(default = "default_sweep_batch")]
    pub sweep_batch: usize,
    /// How long the change log WatchKeys resumes from keeps each change: a
    /// watcher that reconnects within it receives every change it missed;
    /// an older resume token is refused (`RESUME_TOKEN_EXPIRED`). The
    /// sweeper purges older changes.
    #[serde(default = "default_change_retention_hours")]
    pub change_retention_hours: u64,
}

/// The storage engine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageBackend {
    /// The embedded store (fjall) in `storage.data_dir`: nothing else to
    /// run. `sled`, its name while the engine was sled, still means it: a
    /// data directory sled wrote is moved into fjall when first opened.
    #[default]
    #[serde(alias = "sled")]
    Embedded,
    /// A PostgreSQL database (tested on PostgreSQL 15), `storage.postgres`.
    Postgres,
}

/// How keysmith reaches its PostgreSQL database.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// A connection URL (`postgres://user@host:5432/db`) or key=value
    /// string. It may hold a password: give it as
    /// `KEYSMITH__STORAGE__POSTGRES__URL` rather than in the file. Never
    /// logged. No TLS: loopback or a trusted network only, for now.
    pub url: Secret<String>,
    /// Connections kept at most. A mutation holds one until it commits
    /// (its driver calls included), so this bounds the mutations in flight.
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    /// How long a call waits for a connection before it fails
    /// (UNAVAILABLE, `STORE_UNAVAILABLE`).
    #[serde(default = "default_acquire_timeout_seconds")]
    pub acquire_timeout_seconds: u64,
    /// How long a lease on background work (the sweeper, the key follower,
    /// a hotel's 3RPMS worker) lasts without renewal: its holder renews it
    /// every third of this, and a replica that dies loses it after this.
    /// Shorter hands work over sooner, at three renewals per lease per
    /// period. Every replica on one database should use the same value.
    #[serde(default = "default_lease_seconds")]
    pub lease_seconds: u64,
}

/// The largest `lease_seconds`: a dead replica's work waits this long at most.
const MAX_LEASE_SECONDS: u64 = 3600;

fn default_pool_size() -> usize {
    16
}

fn default_acquire_timeout_seconds() -> u64 {
    10
}

fn default_lease_seconds() -> u64 {
    10
}

impl StorageConfig {
    /// How long a lease on background work lasts: `storage.postgres`'s
    /// `lease_seconds`, or its default where nothing else shares the store.
    pub fn lease_seconds(&self) -> u64 {
        self.postgres
            .as_ref()
            .map_or_else(default_lease_seconds, |pg| pg.lease_seconds)
    }

    fn validate_backend(&self) -> anyhow::Result<()> {
        let Some(pg) = &self.postgres else {
            if self.backend == StorageBackend::Postgres {
                anyhow::bail!(
                    "invalid configuration: storage.backend = \"postgres\" needs \
                     [storage.postgres] with its url"
                );
            }
            return Ok(());
        };
        if !keysmith_store_postgres::is_connection_url(pg.url.expose()) {
            // The URL itself is not repeated: it may hold a password.
            anyhow::bail!(
                "invalid configuration: storage.postgres.url is not a PostgreSQL connection URL \
                 (postgres://user@host:5432/database, or key=value pairs)"
            );
        }
        if pg.pool_size < 2 {
            // One connection is kept for what a driver does inside a
            // transaction (keysmith-store-postgres's transaction turns).
            anyhow::bail!("invalid configuration: storage.postgres.pool_size must be at least 2");
        }
        if pg.acquire_timeout_seconds == 0 {
            anyhow::bail!(
                "invalid configuration: storage.postgres.acquire_timeout_seconds must be positive"
            );
        }
        if !(1..=MAX_LEASE_SECONDS).contains(&pg.lease_seconds) {
            anyhow::bail!(
                "invalid configuration: storage.postgres.lease_seconds must be between 1 and \
                 {MAX_LEASE_SECONDS}"
            );
        }
        Ok(())
    }
}

/// Where keysmith reads its key-encryption key: a file or an environment
/// variable holding the base64 of 32 random bytes (`keysmith encryption
/// generate-key` makes one). Never inside the data directory.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptionConfig {
    /// The key's name, written beside every data key it wraps, so that a
    /// store opened with another key is refused by name.
    pub key_id: String,
    /// A file holding the key.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// An environment variable holding the key.
    #[serde(default)]
    pub key_env: Option<String>,
    /// Development only: make `key_file` with a new random key when it does
    /// not exist (keysmith says so loudly). Off for anything real: a
    /// missing key must stop the start.
    #[serde(default)]
    pub generate_if_missing: bool,
    /// Earlier keys that may still wrap some data keys (a rotation done by
    /// restarting with a new key); they are rewrapped at start.
    #[serde(default)]
    pub previous: Vec<KeySource>,
}

/// A key-encryption key kept for a rotation.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySource {
    pub key_id: String,
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    #[serde(default)]
    pub key_env: Option<String>,
}

impl EncryptionConfig {
    fn validate(&self) -> anyhow::Result<()> {
        let sources = std::iter::once((&self.key_id, &self.key_file, &self.key_env)).chain(
            self.previous
                .iter()
                .map(|p| (&p.key_id, &p.key_file, &p.key_env)),
        );
        let mut ids = std::collections::BTreeSet::new();
        for (id, file, env) in sources {
            if id.trim().is_empty() || id.len() > 64 {
                anyhow::bail!(
                    "invalid configuration: storage.encryption key_id must be 1 to 64 characters"
                );
            }
            if file.is_some() == env.is_some() {
                anyhow::bail!(
                    "invalid configuration: the key-encryption key {id:?} needs exactly one of \
                     key_file and key_env"
                );
            }
            if !ids.insert(id) {
                anyhow::bail!(
                    "invalid configuration: the key-encryption key id {id:?} is given twice"
                );
            }
        }
        if self.generate_if_missing && self.key_file.is_none() {
            anyhow::bail!(
                "invalid configuration: storage.encryption.generate_if_missing needs key_file"
            );
        }
        Ok(())
    }
}

fn default_key_retention_days() -> u64 {
    90
}
fn default_audit_retention_days() -> u64 {
    365
}
fn default_sweep_interval_seconds() -> u64 {
    300
}
fn default_change_retention_hours() -> u64 {
    24
}
fn default_sweep_batch() -> usize {
    256
}

fn default_memory_budget_mb() -> usize {
    keysmith_store::DEFAULT_MEMORY_BUDGET_MB
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
    100
}
fn default_max_connections() -> usize {
    4096
}
fn default_max_connections_per_peer() -> usize {
    32
}
fn default_handshake_timeout_ms() -> u64 {
    10_000
}
fn default_idle_timeout_ms() -> u64 {
    300_000
}
fn default_request_body_timeout_ms() -> u64 {
    10_000
}
fn default_keepalive_interval_ms() -> u64 {
    60_000
}
fn default_keepalive_timeout_ms() -> u64 {
    20_000
}
fn default_return_freed_memory_mb() -> u64 {
    8
}
fn default_health_concurrency() -> usize {
    32
}
fn default_watch_buffer() -> usize {
    1024
}
fn default_timeout() -> u64 {
    30
}
fn default_idempotency_hours() -> u64 {
    72
}
fn default_max_failures() -> u32 {
    10
}
fn default_token_in_flight() -> usize {
    64
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

    /// Checks what serde cannot: ranges, references, the auth rules.
    pub fn validate(&self) -> anyhow::Result<()> {
        if let Some(lock) = &self.drivers.offline_lock {
            lock.validate()
                .map_err(|why| anyhow::anyhow!("invalid configuration: {why}"))?;
        }
        if let Some(seam) = &self.drivers.seam {
            seam.validate()
                .map_err(|why| anyhow::anyhow!("invalid configuration: {why}"))?;
        }
        self.validate_auth()?;
        self.storage.encryption.validate()?;
        self.tracing.validate()?;
        self.storage.validate_backend()?;
        if self.storage.idempotency_retention_hours == 0 {
            anyhow::bail!(
                "invalid configuration: storage.idempotency_retention_hours must be positive"
            );
        }
        for (name, value) in [
            ("key_retention_days", self.storage.key_retention_days),
            ("audit_retention_days", self.storage.audit_retention_days),
            (
                "sweep_interval_seconds",
                self.storage.sweep_interval_seconds,
            ),
            ("sweep_batch", self.storage.sweep_batch as u64),
            (
                "change_retention_hours",
                self.storage.change_retention_hours,
            ),
        ] {
            if value == 0 {
                anyhow::bail!("invalid configuration: storage.{name} must be positive");
            }
        }
        for (i, plugin) in self.drivers.plugins.iter().enumerate() {
            plugin
                .validate(i)
                .map_err(|why| anyhow::anyhow!("invalid configuration: {why}"))?;
        }
        // Port 0 is two ephemeral ports, never the same one.
        if self.metrics.enabled
            && self.metrics.listen.port() != 0
            && self.metrics.listen == self.server.listen
        {
            anyhow::bail!(
                "invalid configuration: metrics.listen must differ from server.listen (the \
                 metrics endpoint has an address of its own)"
            );
        }
        if self.server.max_request_bytes < 1024 {
            anyhow::bail!("invalid configuration: server.max_request_bytes must be at least 1024");
        }
        let server = &self.server;
        for (name, value) in [
            (
                "concurrency_per_connection",
                server.concurrency_per_connection as u64,
            ),
            ("request_timeout_seconds", server.request_timeout_seconds),
            ("max_connections", server.max_connections as u64),
            (
                "max_connections_per_peer",
                server.max_connections_per_peer as u64,
            ),
            ("handshake_timeout_ms", server.handshake_timeout_ms),
            ("idle_timeout_ms", server.idle_timeout_ms),
            ("request_body_timeout_ms", server.request_body_timeout_ms),
            ("keepalive_interval_ms", server.keepalive_interval_ms),
            ("keepalive_timeout_ms", server.keepalive_timeout_ms),
            ("health_concurrency", server.health_concurrency as u64),
            ("watch_buffer", server.watch_buffer as u64),
        ] {
            if value == 0 {
                anyhow::bail!("invalid configuration: server.{name} must be positive");
            }
        }
        if server.concurrency_per_connection > u32::MAX as usize {
            anyhow::bail!("invalid configuration: server.concurrency_per_connection is too large");
        }
        if server.return_freed_memory_mb > 65_536 {
            anyhow::bail!(
                "invalid configuration: server.return_freed_memory_mb must be at most 65536 (64 \
                 GiB; 0 turns it off)"
            );
        }
        Ok(())
    }
}

impl Config {
    fn validate_auth(&self) -> anyhow::Result<()> {
        let auth = &self.auth;
        let listen = self.server.listen;
        match auth.mode {
            AuthMode::Development if !listen.ip().is_loopback() => anyhow::bail!(
                "refusing to serve {listen} without authentication: auth.mode is \"development\", \
                 which is for loopback only. Either listen on 127.0.0.1 (server.listen), or set \
                 auth.mode = \"tokens\" and add [[auth.tokens]] entries (`keysmith token create` \
                 makes one)"
            ),
            AuthMode::Development => {}
            AuthMode::Tokens if auth.tokens.is_empty() => anyhow::bail!(
                "invalid configuration: auth.mode is \"tokens\" but no [[auth.tokens]] are \
                 configured, so nobody could call keysmith. Add one (`keysmith token create` \
                 makes one), or set auth.mode = \"development\" to run without authentication \
                 on loopback"
            ),
            AuthMode::Tokens => {}
        }
        if auth.max_failures_per_minute == 0 {
            anyhow::bail!("invalid configuration: auth.max_failures_per_minute must be positive");
        }
        let mut ids = std::collections::BTreeSet::new();
        let mut hashes = std::collections::BTreeSet::new();
        for t in &auth.tokens {
            let fail = |why: String| {
                anyhow::anyhow!("invalid configuration: auth.tokens {:?}: {why}", t.id)
            };
            if t.id.trim().is_empty() {
                anyhow::bail!("invalid configuration: an auth.tokens entry has an empty id");
            }
            if !ids.insert(t.id.as_str()) {
                return Err(fail("the id is used twice".into()));
            }
            let hex_ok = t.sha256.len() == 64
                && t.sha256
                    .bytes()
                    .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c));
            if !hex_ok {
                return Err(fail(
                    "sha256 must be the 64 lowercase hex digits of the token's SHA-256 \
                     (not the token itself)"
                        .into(),
                ));
            }
            if !hashes.insert(t.sha256.as_str()) {
                return Err(fail("the same token is configured twice".into()));
            }
            if t.properties.is_empty() {
                return Err(fail(
                    "properties is empty: list property ids, or \"*\"".into(),
                ));
            }
            if t.scopes.is_empty() {
                return Err(fail("scopes is empty".into()));
            }
            for scope in &t.scopes {
                scope.parse::<crate::auth::Scope>().map_err(fail)?;
            }
            if t.max_in_flight == 0 || t.requests_per_minute == Some(0) {
                return Err(fail(
                    "max_in_flight and requests_per_minute must be positive".into(),
                ));
            }
        }
        if let Some(tls) = &self.server.tls {
            for (what, path) in [
                ("cert", Some(&tls.cert)),
                ("key", Some(&tls.key)),
                ("client_ca", tls.client_ca.as_ref()),
            ] {
                if let Some(path) = path {
                    if !path.is_file() {
                        anyhow::bail!(
                            "invalid configuration: server.tls.{what}: {} does not exist",
                            path.display()
                        );
                    }
                }
            }
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
    fn freed_memory_goes_back_after_8_mib_by_default_and_the_setting_is_bounded() {
        let c = Config::load_with_env(Source::Embedded, false).unwrap();
        assert_eq!(c.server.return_freed_memory_mb, 8);
        let with = |mb: u64| {
            let text = DEFAULT_CONFIG.replace(
                "[server]",
                &format!("[server]\nreturn_freed_memory_mb = {mb}"),
            );
            Config::load_with_env(Source::Text(&text), false)
        };
        assert_eq!(with(0).unwrap().server.return_freed_memory_mb, 0);
        let err = with(65_537).unwrap_err();
        assert!(
            err.to_string().contains("server.return_freed_memory_mb"),
            "{err}"
        );
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

    /// The embedded store is the default (and what `sled`, its former
    /// name, means); PostgreSQL needs its section with a URL that parses,
    /// which an error never repeats (it may hold a password).
    #[test]
    fn the_storage_backend_is_embedded_unless_postgres_is_configured_whole() {
        let c = Config::load_with_env(Source::Embedded, false).unwrap();
        assert_eq!(c.storage.backend, StorageBackend::Embedded);
        let former = DEFAULT_CONFIG.replace("backend = \"embedded\"", "backend = \"sled\"");
        assert_ne!(former, DEFAULT_CONFIG);
        let former = Config::load_with_env(Source::Text(&former), false).unwrap();
        assert_eq!(former.storage.backend, StorageBackend::Embedded);
        let with = |extra: &str| {
            let text = DEFAULT_CONFIG.replace(
                "backend = \"embedded\"",
                &format!("backend = \"postgres\"\n{extra}"),
            );
            Config::load_with_env(Source::Text(&text), false)
        };
        let err = with("").unwrap_err();
        assert!(err.to_string().contains("[storage.postgres]"), "{err}");
        let section = |url: &str, pool: usize| {
            DEFAULT_CONFIG.replace("backend = \"embedded\"", "backend = \"postgres\"")
                + &format!("\n[storage.postgres]\nurl = \"{url}\"\npool_size = {pool}\n")
        };
        let ok = Config::load_with_env(
            Source::Text(&section(
                "postgres://keysmith:hunter2@127.0.0.1:5432/keysmith",
                4,
            )),
            false,
        )
        .unwrap();
        assert_eq!(ok.storage.backend, StorageBackend::Postgres);
        let pg = ok.storage.postgres.as_ref().unwrap();
        assert_eq!(
            (pg.pool_size, pg.acquire_timeout_seconds, pg.lease_seconds),
            (4, 10, 10)
        );
        assert!(
            !format!("{ok:?}").contains("hunter2"),
            "Debug hides the URL"
        );
        let err = Config::load_with_env(
            Source::Text(&section("postgres://keysmith:hunter2@[::1", 4)),
            false,
        )
        .unwrap_err();
        assert!(err.to_string().contains("storage.postgres.url"), "{err}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
        let err = Config::load_with_env(
            Source::Text(&section("postgres://127.0.0.1/keysmith", 1)),
            false,
        )
        .unwrap_err();
        assert!(err.to_string().contains("pool_size"), "{err}");
        for lease_seconds in [0, 3601] {
            let text = section("postgres://127.0.0.1/keysmith", 4)
                + &format!("lease_seconds = {lease_seconds}\n");
            let err = Config::load_with_env(Source::Text(&text), false).unwrap_err();
            assert!(err.to_string().contains("lease_seconds"), "{err}");
        }
    }

    #[test]
    fn trace_export_is_off_by_default_and_a_malformed_endpoint_is_refused() {
        let config = Config::load_with_env(Source::Embedded, false).unwrap();
        assert!(!config.tracing.enabled);
        assert_eq!(config.tracing.endpoint, "http://127.0.0.1:4317");
        assert_eq!(config.tracing.service_name, "keysmith");
        let section = "[tracing]\nenabled = false\n";
        assert!(DEFAULT_CONFIG.contains(section));
        let with =
            |tracing: &str| DEFAULT_CONFIG.replace(section, &format!("[tracing]\n{tracing}\n"));
        let on = with("enabled = true\nendpoint = \"http://collector:4317\"\nsample_ratio = 0.25");
        let config = Config::load_with_env(Source::Text(&on), false).unwrap();
        assert!(config.tracing.enabled);
        assert_eq!(config.tracing.sample_ratio, 0.25);
        for (tracing, says) in [
            ("endpoint = \"127.0.0.1:4317\"", "must be http://host:port"),
            ("endpoint = \"not a url\"", "is not a URL"),
            (
                "endpoint = \"https://collector:4317\"",
                "TLS to the collector",
            ),
            (
                "endpoint = \"http://collector\"",
                "must be http://host:port",
            ),
            (
                "endpoint = \"http://collector:4317/v1/traces\"",
                "must have no path",
            ),
            ("sample_ratio = 1.5", "sample_ratio must be 0.0 to 1.0"),
            ("service_name = \" \"", "service_name must not be empty"),
            ("batch_delay_ms = 0", "batch_delay_ms must be positive"),
        ] {
            let err = Config::load_with_env(Source::Text(&with(tracing)), false).unwrap_err();
            let err = err.to_string();
            assert!(err.contains("tracing."), "{tracing}: {err}");
            assert!(err.contains(says), "{tracing}: {err}");
        }
    }

    #[test]
    fn every_example_config_loads() {
        for (name, text) in [
            (
                "keysmith.toml",
                include_str!("../../../examples/keysmith.toml"),
            ),
            (
                "keysmith-seam.toml",
                include_str!("../../../examples/keysmith-seam.toml"),
            ),
            (
                "keysmith-3rpms.toml",
                include_str!("../../../examples/keysmith-3rpms.toml"),
            ),
            (
                "keysmith-keypad.toml",
                include_str!("../../../examples/keysmith-keypad.toml"),
            ),
            (
                "keysmith-bench.toml",
                include_str!("../../../examples/keysmith-bench.toml"),
            ),
            (
                "keysmith-replicas.toml",
                include_str!("../../../examples/keysmith-replicas.toml"),
            ),
        ] {
            let c = Config::load_with_env(Source::Text(text), false)
                .unwrap_or_else(|e| panic!("examples/{name}: {e}"));
            assert!(c.server.listen.ip().is_loopback(), "{name}");
        }
        let secured = Config::load_with_env(
            Source::Text(include_str!("../../../examples/keysmith.toml")),
            false,
        )
        .unwrap();
        assert_eq!(secured.auth.mode, AuthMode::Tokens);
        assert_eq!(secured.auth.tokens.len(), 2);
    }

    #[test]
    fn a_token_in_place_of_its_hash_is_refused_with_the_way_out() {
        let text = include_str!("../../../examples/keysmith.toml").replacen(
            "sha256 = \"a7cffaaf5680724e8cd91289a002a5191c1e536ed3c8efd38de78c734c4a4cb5\"",
            "sha256 = \"ks_demo_front_desk_not_for_production\"",
            1,
        );
        let err = Config::load_with_env(Source::Text(&text), false).unwrap_err();
        let err = err.to_string();
        assert!(
            err.contains("front-desk") && err.contains("not the token itself"),
            "{err}"
        );
        assert!(
            !err.contains("ks_demo_front_desk"),
            "the error must not echo it: {err}"
        );
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
