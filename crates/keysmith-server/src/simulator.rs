//! keysmith.sim.v1.LockSimulatorService over gRPC, for operators and tests.
use std::sync::Arc;

use keysmith_api::sim::v1::{self as pb, lock_simulator_service_server::LockSimulatorService};
use keysmith_core::{request::Violations, Error, Timestamp};
use keysmith_offline_lock::{FlagChange, LockView, OfflineLock};
use tonic::{Request, Response, Status};

use crate::{
    auth::{caller, Caller},
    convert::{self, timestamp},
};

pub struct LockSimulatorRpcService {
    lock: Arc<OfflineLock>,
}

impl LockSimulatorRpcService {
    pub fn new(lock: Arc<OfflineLock>) -> Self {
        Self { lock }
    }
}

fn check_target(caller: &Caller, property_id: &str, entrance_id: &str) -> Result<(), Status> {
    crate::observe::note_property(property_id);
    tracing::Span::current().record("property", property_id);
    let mut v = Violations::default();
    v.id("property_id", property_id);
    v.id("entrance_id", entrance_id);
    v.finish().map_err(convert::status)?;
    caller.property(property_id).map_err(convert::status)
}

fn lock_state(view: LockView) -> pb::LockState {
    let s = view.state;
    pb::LockState {
        property_id: view.property_id,
        entrance_id: view.entrance_id,
        reservation_capable: view.reservation_capable,
        guest_sequence: u32::from(s.guest_sequence),
        look_ahead: u32::from(view.look_ahead),
        last_new_key_at: s
            .last_new_key_at
            .map(|t| timestamp(Timestamp::from_unix_seconds(t))),
        staff_sequences: s
            .staff_sequences
            .into_iter()
            .map(|(level, v)| (level, u32::from(v)))
            .collect(),
        deadbolt_engaged: s.deadbolt_engaged,
        guest_cancelled: s.guest_cancelled,
        blocked: s.blocked,
        blocked_card_ids: s.blocked_card_ids.into_iter().collect(),
        clock_skew_seconds: s.clock_skew_seconds,
        audit_events: s.audit.len() as u32,
        audit_capacity: view.audit_capacity as u32,
    }
}

fn status(e: Error) -> Status {
    convert::status(e)
}

#[tonic::async_trait]
impl LockSimulatorService for LockSimulatorRpcService {
    async fn present(
        &self,
        request: Request<pb::PresentRequest>,
    ) -> Result<Response<pb::PresentResponse>, Status> {
        let caller = caller(&request)?;
        let pb::PresentRequest {
            property_id,
            entrance_id,
            credential_data,
            at,
        } = request.into_inner();
        check_target(&caller, &property_id, &entrance_id)?;
        let now = Timestamp::now();
        let at = match at {
            Some(t) => {
                let at = convert::time("at", t).map_err(status)?;
                let mut v = Violations::default();
                v.near("at", at, now);
                v.finish().map_err(status)?;
                at
            }
            None => now,
        };
        let decision = self
            .lock
            .present(&property_id, &entrance_id, &credential_data, at)
            .await
            .map_err(status)?;
        tracing::info!(
            entrance = %entrance_id,
            granted = decision.granted,
            reason = decision.reason.as_str(),
            "credential presented"
        );
        Ok(Response::new(pb::PresentResponse {
            granted: decision.granted,
            reason: decision.reason.as_str().to_owned(),
            overrode: decision.overrode,
            lock_time: Some(timestamp(Timestamp::from_unix_seconds(decision.lock_time))),
        }))
    }

    async fn get_lock_state(
        &self,
        request: Request<pb::GetLockStateRequest>,
    ) -> Result<Response<pb::LockState>, Status> {
        let caller = caller(&request)?;
        let pb::GetLockStateRequest {
            property_id,
            entrance_id,
        } = request.into_inner();
        check_target(&caller, &property_id, &entrance_id)?;
        let view = self
            .lock
            .lock_state(&property_id, &entrance_id)
            .map_err(status)?;
        Ok(Response::new(lock_state(view)))
    }

    async fn set_clock_skew(
        &self,
        request: Request<pb::SetClockSkewRequest>,
    ) -> Result<Response<pb::LockState>, Status> {
        let caller = caller(&request)?;
        let pb::SetClockSkewRequest {
            property_id,
            entrance_id,
            skew_seconds,
        } = request.into_inner();
        check_target(&caller, &property_id, &entrance_id)?;
        let view = self
            .lock
            .set_clock_skew(&property_id, &entrance_id, skew_seconds)
            .await
            .map_err(status)?;
        Ok(Response::new(lock_state(view)))
    }

    async fn set_lock_flags(
        &self,
        request: Request<pb::SetLockFlagsRequest>,
    ) -> Result<Response<pb::LockState>, Status> {
        let caller = caller(&request)?;
        let pb::SetLockFlagsRequest {
            property_id,
            entrance_id,
            deadbolt_engaged,
            guest_cancelled,
            blocked,
            block_card_ids,
            unblock_card_ids,
        } = request.into_inner();
        check_target(&caller, &property_id, &entrance_id)?;
        let view = self
            .lock
            .set_flags(
                &property_id,
                &entrance_id,
                FlagChange {
                    deadbolt_engaged,
                    guest_cancelled,
                    blocked,
                    block_card_ids,
                    unblock_card_ids,
                },
            )
            .await
            .map_err(status)?;
        Ok(Response::new(lock_state(view)))
    }

    async fn list_audit_events(
        &self,
        request: Request<pb::ListAuditEventsRequest>,
    ) -> Result<Response<pb::ListAuditEventsResponse>, Status> {
        let caller = caller(&request)?;
        let pb::ListAuditEventsRequest {
            property_id,
            entrance_id,
        } = request.into_inner();
        check_target(&caller, &property_id, &entrance_id)?;
        let events = self
            .lock
            .audit_events(&property_id, &entrance_id)
            .map_err(status)?;
        Ok(Response::new(pb::ListAuditEventsResponse {
            events: events
                .into_iter()
                .map(|e| pb::AuditEvent {
                    lock_time: Some(timestamp(Timestamp::from_unix_seconds(e.lock_time))),
                    credential_id: e.card_id,
                    granted: e.granted,
                    reason: e.reason.as_str().to_owned(),
                    overrode: e.overrode,
                    sequence: e.sequence.map(u32::from).unwrap_or_default(),
                })
                .collect(),
        }))
    }
}
