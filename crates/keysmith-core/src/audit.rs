//! The audit trail: who issued, changed, revoked or read the secrets of which
//! key. The server keeps it (durably, listed to administrators); whatever
//! changes keys on a caller's behalf, an RPC handler or a PMS sync, writes
//! to it.
use async_trait::async_trait;

use crate::error::{Error, ErrorKind};

/// One audited action.
#[derive(Clone, Debug)]
pub struct AuditEntry {
    /// A token id, or the name of the component that acted on its own
    /// (for example "3rpms-sync").
    pub actor: String,
    /// The RPC or operation: "Issue", "Revoke", "UpdateKey", ...
    pub action: &'static str,
    pub property_id: String,
    pub key_ids: Vec<String>,
    pub reservation_key: Option<String>,
    /// The caller's address, for calls that came over the network.
    pub peer: Option<String>,
    /// The refusal's kind and reason, if the action failed.
    pub refusal: Option<(ErrorKind, &'static str)>,
    /// Whether the answer carried credential data.
    pub secrets_returned: bool,
}

impl AuditEntry {
    pub fn new(actor: impl Into<String>, action: &'static str, property_id: &str) -> Self {
        Self {
            actor: actor.into(),
            action,
            property_id: property_id.to_owned(),
            key_ids: Vec::new(),
            reservation_key: None,
            peer: None,
            refusal: None,
            secrets_returned: false,
        }
    }

    pub fn failed(&mut self, error: &Error) {
        self.refusal = Some((error.kind(), error.reason()));
    }
}

#[async_trait]
pub trait AuditTrail: Send + Sync + 'static {
    /// Records durably before returning. A record that cannot be written is
    /// reported by the trail itself; the action it describes has happened.
    async fn record(&self, entry: AuditEntry);
}
