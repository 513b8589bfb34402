//! `[drivers.seam]` in keysmith's config: Seam workspaces and how keysmith
//! talks to them.
use keysmith_core::Secret;
use serde::Deserialize;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeamConfig {
    #[serde(default = "default_base_url")]
    pub base_url: String,
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Retries of an idempotent call after 429, 5xx or a transport error.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// First back-off; doubled each retry, with jitter, or Retry-After.
    #[serde(default = "default_backoff_ms")]
    pub backoff_ms: u64,
    /// How often keys still being issued are polled.
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// How often entrances are re-read.
    #[serde(default = "default_entrance_refresh_seconds")]
    pub entrance_refresh_seconds: u64,
    /// Where Seam's events (through Svix) are received; none when absent.
    #[serde(default)]
    pub webhook_listen: Option<std::net::SocketAddr>,
    pub workspaces: Vec<WorkspaceConfig>,
}

/// One Seam workspace (one API key) serving one keysmith property.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceConfig {
    pub property_id: String,
    /// `seam_...`; one workspace per key. Never logged.
    pub api_key: Secret<String>,
    /// `whsec_...`: the webhook endpoint's signing secret, for events.
    #[serde(default)]
    pub webhook_secret: Option<Secret<String>>,
}

fn default_base_url() -> String {
    "https://connect.getseam.com".into()
}
fn default_connect_timeout_ms() -> u64 {
    5_000
}
fn default_request_timeout_ms() -> u64 {
    20_000
}
fn default_max_retries() -> u32 {
    2
}
fn default_backoff_ms() -> u64 {
    500
}
fn default_poll_interval_ms() -> u64 {
    2_000
}
fn default_entrance_refresh_seconds() -> u64 {
    600
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_secrets_never_show_in_debug_output() {
        let config: SeamConfig = serde_json::from_value(serde_json::json!({
            "workspaces": [{
                "property_id": "h",
                "api_key": "seam_live_very_secret",
                "webhook_secret": "whsec_c2VjcmV0LXNpZ25pbmcta2V5",
            }],
        }))
        .unwrap();
        let shown = format!("{config:?}");
        assert!(!shown.contains("seam_live_very_secret"), "{shown}");
        assert!(!shown.contains("c2VjcmV0"), "{shown}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let refused = serde_json::from_value::<SeamConfig>(serde_json::json!({
            "workspaces": [], "base_ur1": "x",
        }));
        assert!(refused.unwrap_err().to_string().contains("base_ur1"));
    }
}
