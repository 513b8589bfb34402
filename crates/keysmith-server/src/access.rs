//! keysmith.v1.AccessService over gRPC: converts, records the request's
//! identity on the RPC span, and calls the domain service.
use std::sync::Arc;

use keysmith_api::v1::{self as pb, access_service_server::AccessService as AccessRpc};
use keysmith_core::{request::RevokeTarget, AccessService, Error};
use tonic::{Request, Response, Status};
use tracing::Span;

use crate::convert;

pub struct AccessRpcService {
    service: Arc<AccessService>,
}

impl AccessRpcService {
    pub fn new(service: Arc<AccessService>) -> Self {
        Self { service }
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
        let req = convert::issue_request(request.into_inner()).map_err(fail)?;
        record(&req.property_id, None, req.reservation_key.as_deref());
        let key = self.service.issue(req).await.map_err(fail)?;
        record(&key.property_id, Some(&key.key_id), None);
        tracing::info!(entrances = key.entrances.len(), "key issued");
        Ok(Response::new(pb::IssueResponse {
            key: Some(convert::access_key(key, self.service.now())),
        }))
    }

    async fn revoke(
        &self,
        request: Request<pb::RevokeRequest>,
    ) -> Result<Response<pb::RevokeResponse>, Status> {
        let req = convert::revoke_request(request.into_inner()).map_err(fail)?;
        match &req.target {
            RevokeTarget::Key(id) => record(&req.property_id, Some(id), None),
            RevokeTarget::Reservation(rk) => record(&req.property_id, None, Some(rk)),
        }
        let revocation = self.service.revoke(req).await.map_err(fail)?;
        tracing::info!(keys = revocation.keys.len(), "revoked");
        let now = self.service.now();
        Ok(Response::new(pb::RevokeResponse {
            keys: revocation
                .keys
                .into_iter()
                .map(|k| convert::access_key(k, now))
                .collect(),
            warnings: revocation.warnings.iter().map(convert::warning).collect(),
        }))
    }

    async fn list_keys(
        &self,
        request: Request<pb::ListKeysRequest>,
    ) -> Result<Response<pb::ListKeysResponse>, Status> {
        let req = convert::list_keys_request(request.into_inner()).map_err(fail)?;
        record(&req.property_id, None, req.reservation_key.as_deref());
        let page = self.service.list_keys(&req).map_err(fail)?;
        let now = self.service.now();
        Ok(Response::new(pb::ListKeysResponse {
            keys: page
                .keys
                .into_iter()
                .map(|k| convert::access_key(k, now))
                .collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    async fn get_key(
        &self,
        request: Request<pb::GetKeyRequest>,
    ) -> Result<Response<pb::AccessKey>, Status> {
        let pb::GetKeyRequest {
            property_id,
            key_id,
        } = request.into_inner();
        record(&property_id, Some(&key_id), None);
        let key = self.service.get_key(&property_id, &key_id).map_err(fail)?;
        Ok(Response::new(convert::access_key(key, self.service.now())))
    }

    async fn update_key(
        &self,
        request: Request<pb::UpdateKeyRequest>,
    ) -> Result<Response<pb::AccessKey>, Status> {
        let req = convert::update_key_request(request.into_inner()).map_err(fail)?;
        record(&req.property_id, Some(&req.key_id), None);
        let key = self.service.update_key(req).await.map_err(fail)?;
        tracing::info!(state = key.stored_state.as_str(), "key updated");
        Ok(Response::new(convert::access_key(key, self.service.now())))
    }

    async fn encode_key(
        &self,
        request: Request<pb::EncodeKeyRequest>,
    ) -> Result<Response<pb::AccessKey>, Status> {
        let req = convert::encode_key_request(request.into_inner());
        record(&req.property_id, Some(&req.key_id), None);
        let key = self.service.encode_key(req).await.map_err(fail)?;
        tracing::info!("key re-encoded");
        Ok(Response::new(convert::access_key(key, self.service.now())))
    }

    async fn refresh_key(
        &self,
        request: Request<pb::RefreshKeyRequest>,
    ) -> Result<Response<pb::AccessKey>, Status> {
        let pb::RefreshKeyRequest {
            property_id,
            key_id,
        } = request.into_inner();
        record(&property_id, Some(&key_id), None);
        // Validates the ids and finds the key before asking any driver.
        self.service.get_key(&property_id, &key_id).map_err(fail)?;
        let key = self
            .service
            .refresh_key(&property_id, &key_id)
            .await
            .map_err(fail)?;
        Ok(Response::new(convert::access_key(key, self.service.now())))
    }

    async fn list_entrances(
        &self,
        request: Request<pb::ListEntrancesRequest>,
    ) -> Result<Response<pb::ListEntrancesResponse>, Status> {
        let pb::ListEntrancesRequest {
            property_id,
            refresh,
        } = request.into_inner();
        record(&property_id, None, None);
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
        let req = convert::list_driver_keys_request(request.into_inner());
        record(&req.property_id, None, None);
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
