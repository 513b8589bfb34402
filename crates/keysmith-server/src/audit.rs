//! The audit log at the edge: records of refused calls and of reads that
//! returned credential data, and keysmith.v1.AuditService, which lists a
//! property's records to administrators. The record of a change is written
//! by the core, atomically with the change.
use std::sync::Arc;

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use keysmith_api::v1::{self as pb, audit_service_server::AuditService};
use keysmith_core::{
    audit::{AuditOrigin, AuditRecord},
    error::reasons,
    service::Clock,
    store::{Store, WriteSet},
    Error,
};
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use tonic::{Request, Response, Status};

use crate::{
    access::{fail, record},
    auth::{caller, Caller},
    convert,
};

/// Writes the records of refusals and of reads that returned credential
/// data (a change's record is written with the change, by the core), and
/// lists a property's records.
///
/// Those records change nothing, so they do not hold their answer back for
/// a flush: they are gathered and queued for the store together, a few
/// milliseconds after the first of them (a store write per read cost
/// ListKeys 60% of its throughput), and are durable with the store's next
/// group commit. A crash can lose the last such records of a few
/// milliseconds, never a change's record.
pub struct AuditLog {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    pending: Mutex<Vec<AuditRecord>>,
    /// Held from taking the pending records until the store has them, so
    /// that a listing's own flush waits for a batch another flush took
    /// (on PostgreSQL its commit is a round trip): a record queued before
    /// a listing is always listed.
    flushing: Mutex<()>,
    /// Wakes the writer when the first record of a batch is queued.
    queued: tokio::sync::Notify,
}

const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 500;
/// Pending records written at once, without waiting for the next tick.
const PENDING_BATCH: usize = 256;
/// How often pending records are written.
const PENDING_INTERVAL: std::time::Duration = std::time::Duration::from_millis(5);

impl AuditLog {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            clock,
            pending: Mutex::new(Vec::new()),
            flushing: Mutex::new(()),
            queued: tokio::sync::Notify::new(),
        }
    }

    /// A new record, its id given now, so that the log shows records in
    /// the order they were made even though this one is written a little
    /// later.
    pub fn record(&self, origin: &AuditOrigin, action: &str, property_id: &str) -> AuditRecord {
        let now = self.clock.now();
        let mut record = AuditRecord::new(origin, action, property_id, now);
        record.id = self.store.new_audit_id(now);
        record
    }

    /// Queues a record of something that changed nothing (a refusal, a read).
    pub fn write(&self, record: AuditRecord) {
        let (first, full) = {
            let mut pending = self.pending.lock();
            pending.push(record);
            (pending.len() == 1, pending.len() >= PENDING_BATCH)
        };
        if full {
            self.flush_pending();
        } else if first {
            self.queued.notify_one();
        }
    }

    /// Writes every queued record to the store in one batch.
    pub fn flush_pending(&self) {
        let _flushing = self.flushing.lock();
        let audit = std::mem::take(&mut *self.pending.lock());
        if audit.is_empty() {
            return;
        }
        let writes = WriteSet {
            audit,
            ..WriteSet::default()
        };
        if let Err(error) = self.store.enqueue(writes) {
            tracing::error!(%error, "audit records were not written");
        }
    }

    /// Writes queued records [`PENDING_INTERVAL`] after the first of a
    /// batch arrives (idle, it sleeps), until `stop` turns true; then
    /// writes the last ones.
    pub async fn run(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = self.queued.notified() => {}
                _ = stop.changed() => break,
            }
            tokio::select! {
                _ = tokio::time::sleep(PENDING_INTERVAL) => {}
                _ = stop.changed() => break,
            }
            self.flush_pending();
        }
        self.flush_pending();
    }

    async fn list(
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
        // What was queued so far is listed too.
        self.flush_pending();
        self.store.sync().await?;
        let rows = self
            .store
            .audit_page(property_id, after.as_deref(), limit + 1)?;
        let more = rows.len() > limit;
        let mut records = Vec::with_capacity(limit);
        let mut last = None;
        for r in rows.into_iter().take(limit) {
            last = Some(r.id.clone());
            records.push(pb::AuditRecord {
                id: r.id,
                time: Some(convert::timestamp(r.at)),
                token_id: r.actor,
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
            .await
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
