//! keysmith.v1.AccessService over gRPC: checks the caller's property,
//! converts, records the request's identity on the RPC span, calls the
//! domain service, withholds credential data from callers without
//! keys.read_secrets, and writes the audit log.
use std::sync::Arc;

use keysmith_api::v1::{self as pb, access_service_server::AccessService as AccessRpc};
use keysmith_core::{
    audit::AuditOrigin, listed::Audience, request::RevokeTarget, service::Method, AccessKey,
    AccessService, Error,
};
use prost::Message;
use tonic::{Request, Response, Status};
use tracing::Span;

use crate::{
    audit::AuditLog,
    auth::{caller, Caller},
    convert,
    listing::{self, EncodedListKeys},
    watch::{WatchStream, Watcher},
};

pub struct AccessRpcService {
    service: Arc<AccessService>,
    audit: Arc<AuditLog>,
    /// Becomes true when keysmith stops: open watches end then.
    stopping: tokio::sync::watch::Receiver<bool>,
}

impl AccessRpcService {
    pub fn new(
        service: Arc<AccessService>,
        audit: Arc<AuditLog>,
        stopping: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        Self {
            service,
            audit,
            stopping,
        }
    }

    /// Converts keys for the caller: redacted without keys.read_secrets.
    /// Returns the keys and whether credential data went out.
    fn deliver(&self, caller: &Caller, keys: Vec<AccessKey>) -> (Vec<pb::AccessKey>, bool) {
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

    fn deliver_one(&self, caller: &Caller, key: AccessKey) -> pb::AccessKey {
        self.deliver(caller, vec![key]).0.remove(0)
    }

    /// A change's record was stored with the change; a refusal's is
    /// written here.
    fn refused(&self, origin: &Origin, method: Method, property_id: &str, error: Error) -> Status {
        let mut record = self
            .audit
            .record(&origin.audit, method.as_str(), property_id);
        record.failed(&error);
        self.audit.write(record);
        fail(error)
    }

    /// Records a read whose answer carried credential data.
    fn secrets_read(&self, origin: &Origin, action: &str, property_id: &str, key_ids: Vec<String>) {
        let mut record = self.audit.record(&origin.audit, action, property_id);
        record.key_ids = key_ids;
        record.secrets_returned = true;
        self.audit.write(record);
    }

    /// A ListKeys page, each key written from the encoding its version
    /// keeps for this caller's audience (crate::listing).
    pub(crate) fn list_keys_encoded(
        &self,
        request: Request<pb::ListKeysRequest>,
    ) -> Result<EncodedListKeys, Status> {
        let origin = origin(&request)?;
        let req = request.into_inner();
        origin.caller.property(&req.property_id).map_err(fail)?;
        let req = convert::list_keys_request(req, origin.caller.token_id()).map_err(fail)?;
        record(&req.property_id, None, req.reservation_key.as_deref());
        let page = self.service.list_keys(&req).map_err(fail)?;
        let now = self.service.now();
        let audience = if origin.caller.reads_secrets() {
            Audience::WithSecrets
        } else {
            Audience::Redacted
        };
        let keys = page
            .keys
            .iter()
            .map(|listed| {
                listed.encoding(audience, listed.state(now), |key| {
                    listing::encode_key(key, now, audience)
                })
            })
            .collect();
        if audience == Audience::WithSecrets
            && page.keys.iter().any(|k| k.carries_credential_data())
        {
            let key_ids = page.keys.iter().map(|k| k.key_id.clone()).collect();
            self.secrets_read(&origin, "ListKeys", &req.property_id, key_ids);
        }
        Ok(EncodedListKeys {
            keys,
            next_page_token: page.next_page_token.unwrap_or_default(),
        })
    }
}

/// Who and from where, taken before the request is consumed.
struct Origin {
    caller: Caller,
    audit: AuditOrigin,
}

fn origin<T>(request: &Request<T>) -> Result<Origin, Status> {
    let caller = caller(request)?;
    let audit = caller.audit_origin(request.remote_addr());
    Ok(Origin { caller, audit })
}

/// Fills in the fields the RPC span left empty. Never a secret.
pub(crate) fn record(property_id: &str, key_id: Option<&str>, reservation_key: Option<&str>) {
    crate::observe::note_property(property_id);
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

/// WatchKeys messages decoded, for the generated service's trait.
type DecodedWatchStream = std::pin::Pin<
    Box<dyn tokio_stream::Stream<Item = Result<pb::WatchKeysResponse, Status>> + Send>,
>;

impl AccessRpcService {
    /// A watch of a property's key changes, each key written from the
    /// encoding its version keeps for this caller's audience
    /// (crate::watch).
    pub(crate) fn watch_keys_encoded(
        &self,
        request: Request<pb::WatchKeysRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        let origin = origin(&request)?;
        let req = request.into_inner();
        origin.caller.property(&req.property_id).map_err(fail)?;
        let req = convert::watch_keys_request(req);
        record(&req.property_id, None, req.reservation_key.as_deref());
        let watch = self.service.watch_keys(req).map_err(fail)?;
        let watcher = Watcher {
            caller: origin.caller,
            origin: origin.audit,
            service: self.service.clone(),
            audit: self.audit.clone(),
            stopping: self.stopping.clone(),
        };
        Ok(Response::new(watcher.serve(watch)))
    }
}

#[tonic::async_trait]
impl AccessRpc for AccessRpcService {
    type WatchKeysStream = DecodedWatchStream;

    async fn watch_keys(
        &self,
        request: Request<pb::WatchKeysRequest>,
    ) -> Result<Response<DecodedWatchStream>, Status> {
        // Served by crate::watch in front of this trait; kept whole so that
        // this service is complete on its own.
        use tokio_stream::StreamExt;
        let stream = self.watch_keys_encoded(request)?.into_inner().map(|m| {
            m.and_then(|m| {
                pb::WatchKeysResponse::decode(m.encode_to_vec().as_slice())
                    .map_err(|e| Status::internal(format!("re-reading a change: {e}")))
            })
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn issue(
        &self,
        request: Request<pb::IssueRequest>,
    ) -> Result<Response<pb::IssueResponse>, Status> {
        let origin = origin(&request)?;
        let req = request.into_inner();
        origin.caller.property(&req.property_id).map_err(fail)?;
        let req = convert::issue_request(req).map_err(fail)?;
        record(&req.property_id, None, req.reservation_key.as_deref());
        let mut req = req;
        req.origin = Some(origin.audit.clone());
        let property_id = req.property_id.clone();
        let key = self
            .service
            .issue(req)
            .await
            .map_err(|e| self.refused(&origin, Method::Issue, &property_id, e))?;
        record(&key.property_id, Some(&key.key_id), None);
        tracing::info!(entrances = key.entrances.len(), "key issued");
        let key = self.deliver_one(&origin.caller, key);
        Ok(Response::new(pb::IssueResponse { key: Some(key) }))
    }

    async fn revoke(
        &self,
        request: Request<pb::RevokeRequest>,
    ) -> Result<Response<pb::RevokeResponse>, Status> {
        let origin = origin(&request)?;
        let req = request.into_inner();
        origin.caller.property(&req.property_id).map_err(fail)?;
        let mut req = convert::revoke_request(req).map_err(fail)?;
        match &req.target {
            RevokeTarget::Key(id) => record(&req.property_id, Some(id), None),
            RevokeTarget::Reservation(rk) => record(&req.property_id, None, Some(rk)),
        }
        req.origin = Some(origin.audit.clone());
        let property_id = req.property_id.clone();
        let revocation = self
            .service
            .revoke(req)
            .await
            .map_err(|e| self.refused(&origin, Method::Revoke, &property_id, e))?;
        tracing::info!(keys = revocation.keys.len(), "revoked");
        let (keys, _) = self.deliver(&origin.caller, revocation.keys);
        Ok(Response::new(pb::RevokeResponse {
            keys,
            warnings: revocation.warnings.iter().map(convert::warning).collect(),
        }))
    }

    async fn list_keys(
        &self,
        request: Request<pb::ListKeysRequest>,
    ) -> Result<Response<pb::ListKeysResponse>, Status> {
        // Served by crate::listing in front of this trait; kept whole so
        // that this service is complete on its own.
        let page = self.list_keys_encoded(request)?;
        let page = pb::ListKeysResponse::decode(page.encode_to_vec().as_slice())
            .map_err(|e| Status::internal(format!("re-reading a page: {e}")))?;
        Ok(Response::new(page))
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
        let (keys, secrets) = self.deliver(&origin.caller, vec![key]);
        if secrets {
            let key_ids = keys.iter().map(|k| k.key_id.clone()).collect();
            self.secrets_read(&origin, "GetKey", &property_id, key_ids);
        }
        let key = keys.into_iter().next().expect("one key in, one out");
        Ok(Response::new(key))
    }

    async fn update_key(
        &self,
        request: Request<pb::UpdateKeyRequest>,
    ) -> Result<Response<pb::AccessKey>, Status> {
        let origin = origin(&request)?;
        let req = request.into_inner();
        origin.caller.property(&req.property_id).map_err(fail)?;
        let mut req = convert::update_key_request(req).map_err(fail)?;
        record(&req.property_id, Some(&req.key_id), None);
        req.origin = Some(origin.audit.clone());
        let property_id = req.property_id.clone();
        let key = self
            .service
            .update_key(req)
            .await
            .map_err(|e| self.refused(&origin, Method::UpdateKey, &property_id, e))?;
        tracing::info!(state = key.stored_state.as_str(), "key updated");
        Ok(Response::new(self.deliver_one(&origin.caller, key)))
    }

    async fn encode_key(
        &self,
        request: Request<pb::EncodeKeyRequest>,
    ) -> Result<Response<pb::AccessKey>, Status> {
        let origin = origin(&request)?;
        let req = request.into_inner();
        origin.caller.property(&req.property_id).map_err(fail)?;
        let mut req = convert::encode_key_request(req);
        record(&req.property_id, Some(&req.key_id), None);
        req.origin = Some(origin.audit.clone());
        let property_id = req.property_id.clone();
        let key = self
            .service
            .encode_key(req)
            .await
            .map_err(|e| self.refused(&origin, Method::EncodeKey, &property_id, e))?;
        tracing::info!("key re-encoded");
        Ok(Response::new(self.deliver_one(&origin.caller, key)))
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
        let (keys, secrets) = self.deliver(&origin.caller, vec![key]);
        if secrets {
            let key_ids = keys.iter().map(|k| k.key_id.clone()).collect();
            self.secrets_read(&origin, "RefreshKey", &property_id, key_ids);
        }
        let key = keys.into_iter().next().expect("one key in, one out");
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

    async fn list_encoders(
        &self,
        request: Request<pb::ListEncodersRequest>,
    ) -> Result<Response<pb::ListEncodersResponse>, Status> {
        let caller = caller(&request)?;
        let pb::ListEncodersRequest { property_id } = request.into_inner();
        record(&property_id, None, None);
        caller.property(&property_id).map_err(fail)?;
        let encoders = self
            .service
            .list_encoders(&property_id)
            .await
            .map_err(fail)?;
        Ok(Response::new(pb::ListEncodersResponse {
            encoders: encoders.into_iter().map(convert::encoder).collect(),
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
