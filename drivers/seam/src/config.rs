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

impl SeamConfig {
    /// What serde cannot check: with `webhook_listen`, every workspace has a
    /// `webhook_secret`, and every secret given is a Svix secret with a key
    /// of [`crate::svix::MIN_KEY_BYTES`] random bytes or more. The message
    /// names the field, never the secret.
    pub fn validate(&self) -> Result<(), String> {
        for (i, w) in self.workspaces.iter().enumerate() {
            let field = format!("drivers.seam.workspaces[{i}].webhook_secret");
            match &w.webhook_secret {
                None if self.webhook_listen.is_some() => {
                    return Err(format!(
                        "{field} is required: drivers.seam.webhook_listen is set, and events \
                         for property {} could not be verified",
                        keysmith_core::error::quoted(&w.property_id)
                    ));
                }
                None => {}
                Some(secret) => {
                    if let Some(why) = crate::svix::secret_weakness(secret) {
                        return Err(format!(
                            "{field} (property {}) {why}; give the endpoint's signing secret \
                             as Seam shows it",
                            keysmith_core::error::quoted(&w.property_id)
                        ));
                    }
                }
            }
        }
        Ok(())
    }
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
                "webhook_secret": "whsec_c2VjcmV0LXNpZ25pbmcta2V5LXRoYXQtaXMtbG9uZw==",
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

    fn with_secret(secret: Option<&str>, listen: bool) -> SeamConfig {
        let mut config = serde_json::json!({
            "workspaces": [{ "property_id": "h", "api_key": "seam_test" }],
        });
        if let Some(secret) = secret {
            config["workspaces"][0]["webhook_secret"] = secret.into();
        }
        if listen {
            config["webhook_listen"] = "127.0.0.1:0".into();
        }
        serde_json::from_value(config).unwrap()
    }

    #[test]
    fn weak_or_missing_webhook_secrets_are_refused_naming_the_field() {
        use base64::{engine::general_purpose::STANDARD, Engine};
        let short = format!("whsec_{}", STANDARD.encode(b"sixteen bytes!!!"));
        let repeated = format!("whsec_{}", STANDARD.encode([b'a'; 32]));
        for (weak, why) in [
            ("", "not a Svix secret"),
            ("whsec_", "empty"),
            ("whsec_!!!!", "not base64"),
            (short.as_str(), "16 bytes"),
            (repeated.as_str(), "distinct"),
        ] {
            let refused = with_secret(Some(weak), true).validate().unwrap_err();
            assert!(
                refused.contains("drivers.seam.workspaces[0].webhook_secret"),
                "{refused}"
            );
            assert!(refused.contains(why), "{weak:?}: {refused}");
            if !weak.trim_start_matches("whsec_").is_empty() {
                assert!(
                    !refused.contains(weak.trim_start_matches("whsec_")),
                    "{refused}"
                );
            }
        }
        let refused = with_secret(None, true).validate().unwrap_err();
        assert!(refused.contains("is required"), "{refused}");
        with_secret(None, false).validate().unwrap();
        let strong = format!("whsec_{}", STANDARD.encode(b"a random key of 24 bytes"));
        with_secret(Some(&strong), true).validate().unwrap();
    }
}
