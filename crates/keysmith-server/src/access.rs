//! keysmith.v1.AccessService over gRPC: checks the caller's property,
//! converts, records the request's identity on the RPC span, calls the
//! domain service, withholds credential data from callers without
//! keys.read_secrets, and writes the audit log.
use std::{net::SocketAddr, sync::Arc};

use keysmith_api::v1::{self as pb, access_service_server::AccessService as AccessRpc};
use keysmith_core::{request::RevokeTarget, AccessService, Error};
use tonic::{Request, Response, Status};
use tracing::Span;

use keysmith_core::audit::AuditEntry;

use crate::{
    audit::AuditLog,
    auth::{caller, Caller},
    convert,
};

pub struct AccessRpcService {
    service: Arc<AccessService>,
    audit: Arc<AuditLog>,
}

impl AccessRpcService {
    pub fn new(service: Arc<AccessService>, audit: Arc<AuditLog>) -> Self {
        Self { service, audit }
    }

    /// Converts keys for the caller: redacted without keys.read_secrets.
    /// Returns the keys and whether credential data went out.
    fn deliver(
        &self,
        caller: &Caller,
        keys: Vec<keysmith_core::AccessKey>,
    ) -> (Vec<pb::AccessKey>, bool) {
        let now = self.service.now();
        let mut secrets = false;
        let keys = keys
            .into_iter()
            .map(|k| {
                let mut key = convert::access_key(k, now);
                if caller.reads_secrets() {
                    secrets |= convert::carries_secrets(&key);
                } else {
                    convert::redact(&mut key);
                }
                key
            })
            .collect();
        (keys, secrets)
    }

    fn deliver_one(&self, caller: &Caller, key: keysmith_core::AccessKey) -> (pb::AccessKey, bool) {
        let (mut keys, secrets) = self.deliver(caller, vec![key]);
        (keys.remove(0), secrets)
    }

    /// Answers a call that issued or changed one key, after its audit record.
    async fn answer_change(
        &self,
        caller: &Caller,
        mut event: AuditEntry,
        result: Result<keysmith_core::AccessKey, Error>,
    ) -> Result<pb::AccessKey, Status> {
        match result {
            Ok(key) => {
                event.key_ids = vec![key.key_id.clone()];
                let (key, secrets) = self.deliver_one(caller, key);
                event.secrets_returned = secrets;
                self.audit.write(event).await;
                Ok(key)
            }
            Err(error) => {
                event.failed(&error);
                self.audit.write(event).await;
                Err(fail(error))
            }
        }
    }
}

/// Who and where, taken before the request is consumed.
struct Origin {
    caller: Caller,
    peer: Option<SocketAddr>,
}

fn origin<T>(request: &Request<T>) -> Result<Origin, Status> {
    Ok(Origin {
        caller: caller(request)?,
        peer: request.remote_addr(),
    })
}

impl Origin {
    fn event(&self, action: &'static str, property_id: &str) -> AuditEntry {
        let mut entry = AuditEntry::new(self.caller.token_id(), action, property_id);
        entry.peer = self.peer.map(|p| p.to_string());
        entry
    }
}

/// Fills in the fields the RPC span left empty. Never a secret.
pub(crate) fn record(property_id: &str, key_id: Option<&str>, reservation_key: Option<&str>) {
    let span = Span::current();
    span.record("property", property_id);
    if let Some(k) = key_id.filter(|k| !k.is_empty()) {
        span.record("key_id", k);
    }
    if let Some(r) = reservation_key.filter(|r| !r.is_empty()) {
        span.record("reservation_key", r);
    }
}

/// Logs the outcome of a failed call: caller mistakes quietly, our own loudly.
pub(crate) fn fail(error: Error) -> Status {
    match error.kind() {
        keysmith_core::ErrorKind::Internal | keysmith_core::ErrorKind::Unavailable => {
            tracing::error!(reason = error.reason(), error = %error, "request failed")
        }
        _ => tracing::info!(
            reason = error.reason(),
            message = error.message(),
            "request refused"
        ),
    }
    convert::status(error)
}

#[tonic::async_trait]
impl AccessRpc for AccessRpcService {
    async fn issue(
        &self,
        request: Request<pb::IssueRequest>,
    ) -> Result<Response<pb::IssueResponse>, Status> {
        let origin = origin(&request)?;
        let req = request.into_inner();
        origin.caller.property(&req.property_id).map_err(fail)?;
        let req = convert::issue_request(req).map_err(fail)?;
        record(&req.property_id, None, req.reservation_key.as_deref());
        let property_id = req.property_id.clone();
        let reservation_key = req.reservation_key.clone();
        let result = self.service.issue(req).await.inspect(|key| {
            record(&key.property_id, Some(&key.key_id), None);
            tracing::info!(entrances = key.entrances.len(), "key issued");
        });
        let mut event = origin.event("Issue", &property_id);
        event.reservation_key = reservation_key;
        let key = self.answer_change(&origin.caller, event, result).await?;
        Ok(Response::new(pb::IssueResponse { key: Some(key) }))
    }

    async fn revoke(
        &self,
        request: Request<pb::RevokeRequest>,
    ) -> Result<Response<pb::RevokeResponse>, Status> {
        let origin = origin(&request)?;
        let req = request.into_inner();
        origin.caller.property(&req.property_id).map_err(fail)?;
        let req = convert::revoke_request(req).map_err(fail)?;
        let property_id = req.property_id.clone();
        let mut event = origin.event("Revoke", &property_id);
        let target = req.target.clone();
        match &target {
            RevokeTarget::Key(id) => {
                record(&req.property_id, Some(id), None);
                event.key_ids = vec![id.clone()];
            }
            RevokeTarget::Reservation(rk) => {
                record(&req.property_id, None, Some(rk));
                event.reservation_key = Some(rk.clone());
            }
        }
        match self.service.revoke(req).await {
            Ok(revocation) => {
                tracing::info!(keys = revocation.keys.len(), "revoked");
                event.key_ids = revocation.keys.iter().map(|k| k.key_id.clone()).collect();
                let (keys, secrets) = self.deliver(&origin.caller, revocation.keys);
                event.secrets_returned = secrets;
                self.audit.write(event).await;
                Ok(Response::new(pb::RevokeResponse {
                    keys,
                    warnings: revocation.warnings.iter().map(convert::warning).collect(),
                }))
            }
            Err(error) => {
                event.failed(&error);
                self.audit.write(event).await;
                Err(fail(error))
            }
        }
    }

    async fn list_keys(
        &self,
        request: Request<pb::ListKeysRequest>,
    ) -> Result<Response<pb::ListKeysResponse>, Status> {
        let origin = origin(&request)?;
        let req = request.into_inner();
        origin.caller.property(&req.property_id).map_err(fail)?;
        let req = convert::list_keys_request(req, origin.caller.token_id()).map_err(fail)?;
        record(&req.property_id, None, req.reservation_key.as_deref());
        let page = self.service.list_keys(&req).map_err(fail)?;
        let (keys, secrets) = self.deliver(&origin.caller, page.keys);
        if secrets {
            let mut event = origin.event("ListKeys", &req.property_id);
            event.key_ids = keys.iter().map(|k| k.key_id.clone()).collect();
            event.secrets_returned = true;
            self.audit.write(event).await;
        }
        Ok(Response::new(pb::ListKeysResponse {
            keys,
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    async fn get_key(
        &self,
        request: Request<pb::GetKeyRequest>,
    ) -> Result<Response<pb::AccessKey>, Status> {
        let origin = origin(&request)?;
        let pb::GetKeyRequest {
            property_id,
            key_id,
        } = request.into_inner();
        record(&property_id, Some(&key_id), None);
        origin.caller.property(&property_id).map_err(fail)?;
        let key = self.service.get_key(&property_id, &key_id).map_err(fail)?;
        let (key, secrets) = self.deliver_one(&origin.caller, key);
        if secrets {
            let mut event = origin.event("GetKey", &property_id);
            event.key_ids = vec![key_id];
            event.secrets_returned = true;
            self.audit.write(event).await;
        }
        Ok(Response::new(key))
    }

    async fn update_key(
        &self,
        request: Request<pb::UpdateKeyRequest>,
    ) -> Result<Response<pb::AccessKey>, Status> {
        let origin = origin(&request)?;
        let req = request.into_inner();
        origin.caller.property(&req.property_id).map_err(fail)?;
        let req = convert::update_key_request(req).map_err(fail)?;
        record(&req.property_id, Some(&req.key_id), None);
        let (property_id, key_id) = (req.property_id.clone(), req.key_id.clone());
        let mut event = origin.event("UpdateKey", &property_id);
        event.key_ids = vec![key_id];
        let result = self.service.update_key(req).await.inspect(|key| {
            tracing::info!(state = key.stored_state.as_str(), "key updated");
        });
        let key = self.answer_change(&origin.caller, event, result).await?;
        Ok(Response::new(key))
    }

    async fn encode_key(
        &self,
        request: Request<pb::EncodeKeyRequest>,
    ) -> Result<Response<pb::AccessKey>, Status> {
        let origin = origin(&request)?;
        let req = request.into_inner();
        origin.caller.property(&req.property_id).map_err(fail)?;
        let req = convert::encode_key_request(req);
        record(&req.property_id, Some(&req.key_id), None);
        let (property_id, key_id) = (req.property_id.clone(), req.key_id.clone());
        let mut event = origin.event("EncodeKey", &property_id);
        event.key_ids = vec![key_id];
        let result = self.service.encode_key(req).await.inspect(|_| {
            tracing::info!("key re-encoded");
        });
        let key = self.answer_change(&origin.caller, event, result).await?;
        Ok(Response::new(key))
    }

    async fn refresh_key(
        &self,
        request: Request<pb::RefreshKeyRequest>,
    ) -> Result<Response<pb::AccessKey>, Status> {
        let origin = origin(&request)?;
        let pb::RefreshKeyRequest {
            property_id,
            key_id,
        } = request.into_inner();
        record(&property_id, Some(&key_id), None);
        origin.caller.property(&property_id).map_err(fail)?;
        // Validates the ids and finds the key before asking any driver.
        self.service.get_key(&property_id, &key_id).map_err(fail)?;
        let key = self
            .service
            .refresh_key(&property_id, &key_id)
            .await
            .map_err(fail)?;
        let (key, secrets) = self.deliver_one(&origin.caller, key);
        if secrets {
            let mut event = origin.event("RefreshKey", &property_id);
            event.key_ids = vec![key_id];
            event.secrets_returned = true;
            self.audit.write(event).await;
        }
        Ok(Response::new(key))
    }

    async fn list_entrances(
        &self,
        request: Request<pb::ListEntrancesRequest>,
    ) -> Result<Response<pb::ListEntrancesResponse>, Status> {
        let caller = caller(&request)?;
        let pb::ListEntrancesRequest {
            property_id,
            refresh,
        } = request.into_inner();
        record(&property_id, None, None);
        caller.property(&property_id).map_err(fail)?;
        if refresh {
            self.service.refresh_entrances().await.map_err(fail)?;
        }
        let entrances = self.service.list_entrances(&property_id).map_err(fail)?;
        Ok(Response::new(pb::ListEntrancesResponse {
            entrances: entrances.iter().map(|e| convert::entrance(e)).collect(),
        }))
    }

    async fn list_driver_keys(
        &self,
        request: Request<pb::ListDriverKeysRequest>,
    ) -> Result<Response<pb::ListDriverKeysResponse>, Status> {
        let caller = caller(&request)?;
        let req = convert::list_driver_keys_request(request.into_inner());
        record(&req.property_id, None, None);
        caller.property(&req.property_id).map_err(fail)?;
        let page = self.service.list_driver_keys(&req).await.map_err(fail)?;
        Ok(Response::new(pb::ListDriverKeysResponse {
            keys: page.keys.into_iter().map(convert::driver_key).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    async fn list_drivers(
        &self,
        request: Request<pb::ListDriversRequest>,
    ) -> Result<Response<pb::ListDriversResponse>, Status> {
        let pb::ListDriversRequest {} = request.into_inner();
        Ok(Response::new(pb::ListDriversResponse {
            drivers: self
                .service
                .list_drivers()
                .iter()
                .map(convert::driver)
                .collect(),
        }))
    }
}
