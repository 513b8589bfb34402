//! The audit log: who issued, changed, revoked or read the secrets of which
//! key, when, and from where. Kept in keysmith's store, durable before the
//! answer, listed by administrators through keysmith.v1.AuditService.
use std::sync::Arc;

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use keysmith_api::v1::{self as pb, audit_service_server::AuditService};
use keysmith_core::{
    audit::{AuditEntry, AuditTrail},
    error::reasons,
    service::Clock,
    store::DriverState,
    Error, ErrorKind, Timestamp,
};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tonic::{Request, Response, Status};

use crate::{
    access::{fail, record},
    auth::{caller, Caller},
    convert,
};

#[derive(Serialize, Deserialize)]
struct StoredRecord {
    id: String,
    at: Timestamp,
    token_id: String,
    action: String,
    property_id: String,
    key_ids: Vec<String>,
    reservation_key: Option<String>,
    peer: Option<String>,
    outcome: String,
    reason: Option<String>,
    secrets_returned: bool,
}

pub struct AuditLog {
    space: Arc<dyn DriverState>,
    ids: Mutex<ulid::Generator>,
    clock: Arc<dyn Clock>,
}

const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 500;

impl AuditLog {
    pub fn new(space: Arc<dyn DriverState>, clock: Arc<dyn Clock>) -> Self {
        Self {
            space,
            ids: Mutex::new(ulid::Generator::new()),
            clock,
        }
    }

    /// Writes the record and waits until it is durable. A record that cannot
    /// be written is logged as an error; the call's own answer stands,
    /// because what it did has happened.
    pub async fn write(&self, event: AuditEntry) {
        let id = {
            let mut ids = self.ids.lock();
            ids.generate().unwrap_or_else(|_| ulid::Ulid::new())
        };
        let (outcome, reason) = match event.refusal {
            None => ("OK".to_owned(), None),
            Some((kind, reason)) => (code_name(kind).to_owned(), Some(reason.to_owned())),
        };
        let stored = StoredRecord {
            id: id.to_string(),
            at: self.clock.now(),
            token_id: event.actor,
            action: event.action.to_owned(),
            property_id: event.property_id.clone(),
            key_ids: event.key_ids,
            reservation_key: event.reservation_key,
            peer: event.peer,
            outcome,
            reason,
            secrets_returned: event.secrets_returned,
        };
        let written = serde_json::to_vec(&stored)
            .map_err(|e| Error::internal(format!("audit record: {e}")))
            .and_then(|bytes| {
                self.space
                    .apply(vec![(record_key(&event.property_id, &id), Some(bytes))])
            });
        let durable = match written {
            Ok(()) => self.space.sync().await,
            Err(e) => Err(e),
        };
        if let Err(error) = durable {
            tracing::error!(%error, action = event.action, "the audit record was not written");
        }
    }

    fn list(
        &self,
        caller: &Caller,
        property_id: &str,
        page_size: i32,
        page_token: &str,
    ) -> Result<pb::ListAuditRecordsResponse, Error> {
        if page_size < 0 {
            return Err(Error::invalid_field(
                reasons::INVALID_PAGE_SIZE,
                "page_size",
                "must not be negative",
            ));
        }
        let limit = match page_size as usize {
            0 => DEFAULT_PAGE,
            n => n.min(MAX_PAGE),
        };
        let binding = binding(caller, property_id);
        let after = match page_token {
            "" => None,
            token => Some(decode_token(token, &binding)?),
        };
        let prefix = record_prefix(property_id);
        let after_key = after.map(|id| record_key(property_id, &id));
        let rows = self
            .space
            .scan_page(&prefix, after_key.as_deref(), limit + 1)?;
        let more = rows.len() > limit;
        let mut records = Vec::with_capacity(limit);
        let mut last = None;
        for (_, value) in rows.into_iter().take(limit) {
            let r: StoredRecord = serde_json::from_slice(&value)
                .map_err(|e| Error::internal(format!("an audit record is unreadable: {e}")))?;
            last = Some(r.id.clone());
            records.push(pb::AuditRecord {
                id: r.id,
                time: Some(convert::timestamp(r.at)),
                token_id: r.token_id,
                action: r.action,
                property_id: r.property_id,
                key_ids: r.key_ids,
                reservation_key: r.reservation_key.unwrap_or_default(),
                peer: r.peer.unwrap_or_default(),
                outcome: r.outcome,
                reason: r.reason.unwrap_or_default(),
                secrets_returned: r.secrets_returned,
            });
        }
        let next_page_token = match (more, last) {
            (true, Some(id)) => encode_token(&id, &binding),
            _ => String::new(),
        };
        Ok(pb::ListAuditRecordsResponse {
            records,
            next_page_token,
        })
    }
}

fn record_prefix(property_id: &str) -> Vec<u8> {
    let mut k = property_id.as_bytes().to_vec();
    k.push(0);
    k
}

fn record_key(property_id: &str, id: &impl ToString) -> Vec<u8> {
    let mut k = record_prefix(property_id);
    k.extend_from_slice(id.to_string().as_bytes());
    k
}

/// Binds page tokens to the property and the token that listed, so that
/// one cannot be replayed by another caller or for another property.
fn binding(caller: &Caller, property_id: &str) -> [u8; 8] {
    let digest = Sha256::new()
        .chain_update(caller.token_id().as_bytes())
        .chain_update([0])
        .chain_update(property_id.as_bytes())
        .finalize();
    let mut out = [0u8; 8];
    out.copy_from_slice(&digest[..8]);
    out
}

fn encode_token(id: &str, binding: &[u8; 8]) -> String {
    let mut bytes = binding.to_vec();
    bytes.extend_from_slice(id.as_bytes());
    URL_SAFE_NO_PAD.encode(bytes)
}

fn decode_token(token: &str, binding: &[u8; 8]) -> Result<String, Error> {
    let invalid =
        |why: &str| Error::invalid_field(reasons::INVALID_PAGE_TOKEN, "page_token", why.to_owned());
    let bytes = URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| invalid("is not a page token of this service"))?;
    if bytes.len() < 8 || bytes[..8] != binding[..] {
        return Err(invalid(
            "belongs to another listing: keep the property and token of the first page",
        ));
    }
    let id = std::str::from_utf8(&bytes[8..])
        .ok()
        .and_then(|s| ulid::Ulid::from_string(s).ok())
        .ok_or_else(|| invalid("is not a page token of this service"))?;
    Ok(id.to_string())
}

fn code_name(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidArgument => "INVALID_ARGUMENT",
        ErrorKind::NotFound => "NOT_FOUND",
        ErrorKind::AlreadyExists => "ALREADY_EXISTS",
        ErrorKind::FailedPrecondition | ErrorKind::Unsupported => "FAILED_PRECONDITION",
        ErrorKind::PermissionDenied => "PERMISSION_DENIED",
        ErrorKind::Unauthenticated => "UNAUTHENTICATED",
        ErrorKind::Unavailable => "UNAVAILABLE",
        ErrorKind::ResourceExhausted => "RESOURCE_EXHAUSTED",
        _ => "INTERNAL",
    }
}

#[async_trait::async_trait]
impl AuditTrail for AuditLog {
    async fn record(&self, entry: AuditEntry) {
        self.write(entry).await
    }
}

pub struct AuditRpcService {
    log: Arc<AuditLog>,
}

impl AuditRpcService {
    pub fn new(log: Arc<AuditLog>) -> Self {
        Self { log }
    }
}

#[tonic::async_trait]
impl AuditService for AuditRpcService {
    async fn list_audit_records(
        &self,
        request: Request<pb::ListAuditRecordsRequest>,
    ) -> Result<Response<pb::ListAuditRecordsResponse>, Status> {
        let caller = caller(&request)?;
        let pb::ListAuditRecordsRequest {
            property_id,
            page_size,
            page_token,
        } = request.into_inner();
        record(&property_id, None, None);
        caller.property(&property_id).map_err(fail)?;
        self.log
            .list(&caller, &property_id, page_size, &page_token)
            .map(Response::new)
            .map_err(fail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Properties, Scope};

    fn caller(id: &str) -> Caller {
        Caller::new(id.into(), Properties::All, [Scope::Admin].into())
    }

    #[test]
    fn a_page_token_is_bound_to_the_caller_and_the_property() {
        let id = ulid::Ulid::new().to_string();
        let token = encode_token(&id, &binding(&caller("a"), "hotel"));
        assert_eq!(
            decode_token(&token, &binding(&caller("a"), "hotel")).unwrap(),
            id
        );
        for other in [
            binding(&caller("b"), "hotel"),
            binding(&caller("a"), "other"),
        ] {
            let err = decode_token(&token, &other).unwrap_err();
            assert_eq!(err.reason(), reasons::INVALID_PAGE_TOKEN);
        }
        assert!(decode_token("!!", &binding(&caller("a"), "hotel")).is_err());
    }
}
