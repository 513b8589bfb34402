//! keysmith.v1.PmsService over gRPC: reads of 3RPMS room access keys and the
//! operator's sync, for the hotels configured with 3RPMS.
use std::{net::SocketAddr, sync::Arc};

use keysmith_api::v1::{self as pb, pms_service_server::PmsService};
use keysmith_core::{
    error::{bounded, quoted},
    reasons,
    request::Violations,
    Error,
};
use keysmith_threerpms::{
    errors::reasons as rpms_reasons, Hotel, Hotels, ParkedItem, Replacing, RoomAccessKey,
    RoomStayKey,
};
use tonic::{Request, Response, Status};

use crate::{
    access::{fail, record},
    audit::AuditLog,
    auth::{caller, Caller},
};

pub struct PmsRpcService {
    hotels: Hotels,
    audit: Arc<AuditLog>,
}

impl PmsRpcService {
    pub fn new(hotels: Hotels, audit: Arc<AuditLog>) -> Self {
        Self { hotels, audit }
    }

    /// Records a read that returned PINs, compartments or QR data.
    fn audit_secret_read(
        &self,
        caller: &Caller,
        peer: Option<SocketAddr>,
        action: &'static str,
        property_id: &str,
        rooms: &[pb::RoomStayKey],
    ) {
        if !rooms
            .iter()
            .any(|r| r.key.as_ref().is_some_and(carries_data))
        {
            return;
        }
        let mut record = self
            .audit
            .record(&caller.audit_origin(peer), action, property_id);
        record.secrets_returned = true;
        self.audit.write(record);
    }

    fn hotel(&self, property_id: &str) -> Result<&Hotel, Error> {
        required("property_id", property_id)?;
        self.hotels.get(property_id).ok_or_else(|| {
            Error::not_found(
                reasons::PROPERTY_NOT_FOUND,
                format!(
                    "property {} has no 3RPMS hotel configured",
                    quoted(property_id)
                ),
            )
            .with_context("property_id", bounded(property_id))
        })
    }
}

/// A required identifier, by the rules every other RPC applies
/// (`Violations::id`).
fn required(field: &str, value: &str) -> Result<(), Error> {
    let mut v = Violations::default();
    v.id(field, value);
    v.finish()
}

fn staff(view: i32) -> Result<bool, Error> {
    match pb::KeyView::try_from(view) {
        Ok(pb::KeyView::Unspecified | pb::KeyView::Guest) => Ok(false),
        Ok(pb::KeyView::Staff) => Ok(true),
        Err(_) => Err(Error::invalid_field(
            reasons::FIELD_INVALID,
            "view",
            format!("{view} is not a KeyView"),
        )),
    }
}

/// The key as the caller may see it: `secrets` is whether its token has
/// keys.read_secrets.
fn room(stay: RoomStayKey, staff: bool, secrets: bool) -> pb::RoomStayKey {
    let RoomStayKey {
        room_stay_id,
        room_name,
        room_setup_id,
        key,
    } = stay;
    pb::RoomStayKey {
        room_stay_id,
        room_setup_id,
        room_name,
        key: key.map(|k| {
            let mut key = pms_key(k, staff);
            if !secrets {
                redact(&mut key);
            }
            key
        }),
    }
}

fn pms_key(key: RoomAccessKey, staff: bool) -> pb::PmsKey {
    let mut out = pb::PmsKey::default();
    match key {
        RoomAccessKey::Pin { id, pin } => {
            out.id = id;
            out.r#type = pb::PmsKeyType::Pin as i32;
            out.type_name = "RoomAccessPin".into();
            out.pin = pin.into_inner();
        }
        RoomAccessKey::KeyStorage {
            id,
            pin,
            compartment,
        } => {
            out.id = id;
            out.r#type = pb::PmsKeyType::KeyStorage as i32;
            out.type_name = "RoomAccessKeyStorage".into();
            out.pin = pin.into_inner();
            // Asked of 3RPMS only for staff; dropped here as well.
            if staff {
                out.compartment = compartment.into_inner();
            }
        }
        RoomAccessKey::Qr { id, qr_data } => {
            out.id = id;
            out.r#type = pb::PmsKeyType::Qr as i32;
            out.type_name = "RoomAccessQR".into();
            out.qr_data = qr_data.into_inner();
        }
        RoomAccessKey::Unknown { id, type_name } => {
            out.id = id;
            out.r#type = pb::PmsKeyType::Unknown as i32;
            out.type_name = type_name;
        }
    }
    out
}

fn parked_item(item: ParkedItem) -> pb::ParkedItem {
    let ParkedItem {
        item_id,
        event,
        attempts,
        reason,
        parked_at,
    } = item;
    pb::ParkedItem {
        item_id: item_id.to_string(),
        kind: event.kind,
        object_id: event.object_id,
        reason,
        attempts: i32::try_from(attempts).unwrap_or(i32::MAX),
        parked_at: Some(prost_types::Timestamp {
            seconds: parked_at,
            nanos: 0,
        }),
    }
}

/// Whether a key carries a PIN, compartment or QR data.
fn carries_data(key: &pb::PmsKey) -> bool {
    !key.pin.is_empty() || !key.compartment.is_empty() || !key.qr_data.is_empty()
}

fn redact(key: &mut pb::PmsKey) {
    let had = carries_data(key);
    key.pin.clear();
    key.compartment.clear();
    key.qr_data.clear();
    key.data_redacted = had;
}

#[tonic::async_trait]
impl PmsService for PmsRpcService {
    async fn get_room_stay_key(
        &self,
        request: Request<pb::GetRoomStayKeyRequest>,
    ) -> Result<Response<pb::RoomStayKey>, Status> {
        let caller = caller(&request)?;
        let peer = request.remote_addr();
        let pb::GetRoomStayKeyRequest {
            property_id,
            room_stay_id,
            view,
        } = request.into_inner();
        record(&property_id, None, None);
        caller.property(&property_id).map_err(fail)?;
        let hotel = self.hotel(&property_id).map_err(fail)?;
        required("room_stay_id", &room_stay_id).map_err(fail)?;
        let staff = staff(view).map_err(fail)?;
        let found = hotel
            .room_stay_key(&room_stay_id, staff)
            .await
            .map_err(fail)?
            .ok_or_else(|| {
                Error::not_found(
                    rpms_reasons::ROOM_STAY_NOT_FOUND,
                    format!("3RPMS has no room stay {}", quoted(&room_stay_id)),
                )
                .with_context("room_stay_id", bounded(&room_stay_id))
            })
            .map_err(fail)?;
        let found = room(found, staff, caller.reads_secrets());
        self.audit_secret_read(
            &caller,
            peer,
            "GetRoomStayKey",
            &property_id,
            std::slice::from_ref(&found),
        );
        Ok(Response::new(found))
    }

    async fn list_reservation_room_keys(
        &self,
        request: Request<pb::ListReservationRoomKeysRequest>,
    ) -> Result<Response<pb::ListReservationRoomKeysResponse>, Status> {
        let caller = caller(&request)?;
        let peer = request.remote_addr();
        let pb::ListReservationRoomKeysRequest {
            property_id,
            reservation_code,
            view,
        } = request.into_inner();
        record(&property_id, None, None);
        caller.property(&property_id).map_err(fail)?;
        let hotel = self.hotel(&property_id).map_err(fail)?;
        required("reservation_code", &reservation_code).map_err(fail)?;
        let staff = staff(view).map_err(fail)?;
        let rooms = hotel
            .reservation_room_keys(&reservation_code, staff)
            .await
            .map_err(fail)?
            .ok_or_else(|| {
                Error::not_found(
                    rpms_reasons::RESERVATION_NOT_FOUND,
                    format!(
                        "3RPMS has no reservation with code {}",
                        quoted(&reservation_code)
                    ),
                )
                .with_context("reservation_code", bounded(&reservation_code))
            })
            .map_err(fail)?;
        let rooms: Vec<_> = rooms
            .into_iter()
            .map(|r| room(r, staff, caller.reads_secrets()))
            .collect();
        self.audit_secret_read(
            &caller,
            peer,
            "ListReservationRoomKeys",
            &property_id,
            &rooms,
        );
        Ok(Response::new(pb::ListReservationRoomKeysResponse { rooms }))
    }

    async fn sync_room_stays(
        &self,
        request: Request<pb::SyncRoomStaysRequest>,
    ) -> Result<Response<pb::SyncRoomStaysResponse>, Status> {
        let caller = caller(&request)?;
        let peer = request.remote_addr();
        let pb::SyncRoomStaysRequest {
            property_id,
            room_stay_ids,
        } = request.into_inner();
        record(&property_id, None, None);
        caller.property(&property_id).map_err(fail)?;
        let hotel = self.hotel(&property_id).map_err(fail)?;
        for (i, id) in room_stay_ids.iter().enumerate() {
            required(&format!("room_stay_ids[{i}]"), id).map_err(fail)?;
        }
        let report = if room_stay_ids.is_empty() {
            hotel.sync_window().await
        } else {
            hotel.sync_stays(&room_stay_ids).await
        };
        // The sync issues, updates and revokes keys on the caller's behalf.
        // What the sync changed is recorded under its own name; this
        // records who asked for it.
        let mut record =
            self.audit
                .record(&caller.audit_origin(peer), "SyncRoomStays", &property_id);
        if let Err(error) = &report {
            record.failed(error);
        }
        self.audit.write(record);
        let report = report.map_err(fail)?;
        let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
        Ok(Response::new(pb::SyncRoomStaysResponse {
            read_requests: count(report.read_requests),
            write_requests: count(report.write_requests),
            keys_issued: count(report.issued),
            keys_updated: count(report.updated),
            keys_revoked: count(report.revoked),
            keys_published: count(report.published),
            skipped: report
                .skipped
                .into_iter()
                .map(|(room_stay_id, why)| pb::SkippedRoomStay { room_stay_id, why })
                .collect(),
            failed: report
                .failed
                .into_iter()
                .map(|f| pb::SkippedRoomStay {
                    room_stay_id: f.stay_id,
                    why: f.failure.reason,
                })
                .collect(),
        }))
    }

    async fn register_webhook_endpoint(
        &self,
        request: Request<pb::RegisterWebhookEndpointRequest>,
    ) -> Result<Response<pb::RegisterWebhookEndpointResponse>, Status> {
        let caller = caller(&request)?;
        let pb::RegisterWebhookEndpointRequest {
            property_id,
            url,
            replace,
            previous_endpoint_removed,
        } = request.into_inner();
        record(&property_id, None, None);
        caller.property(&property_id).map_err(fail)?;
        let hotel = self.hotel(&property_id).map_err(fail)?;
        // An empty url is the configured public URL with this hotel's path.
        let endpoint = hotel
            .register_webhook(
                url,
                Replacing {
                    replace,
                    previous_removed: previous_endpoint_removed,
                },
            )
            .await
            .map_err(fail)?;
        Ok(Response::new(pb::RegisterWebhookEndpointResponse {
            endpoint_id: endpoint.endpoint_id,
            url: endpoint.url,
            enabled: endpoint.enabled,
        }))
    }

    async fn list_room_stay_links(
        &self,
        request: Request<pb::ListRoomStayLinksRequest>,
    ) -> Result<Response<pb::ListRoomStayLinksResponse>, Status> {
        let caller = caller(&request)?;
        let pb::ListRoomStayLinksRequest {
            property_id,
            key_id,
            room_stay_id,
        } = request.into_inner();
        record(&property_id, Some(&key_id), None);
        caller.property(&property_id).map_err(fail)?;
        let hotel = self.hotel(&property_id).map_err(fail)?;
        let links = hotel
            .stay_records()
            .map_err(fail)?
            .into_iter()
            .filter(|r| key_id.is_empty() || r.key_id == key_id)
            .filter(|r| room_stay_id.is_empty() || r.stay_id == room_stay_id)
            .map(|r| pb::RoomStayLink {
                room_stay_id: r.stay_id,
                room_setup_id: r.room_setup_id,
                arrival: r.arrival.to_string(),
                departure: r.departure.to_string(),
                key_id: r.key_id,
                pms_key_id: r.rpms_key_id.unwrap_or_default(),
            })
            .collect();
        Ok(Response::new(pb::ListRoomStayLinksResponse { links }))
    }

    async fn list_parked_items(
        &self,
        request: Request<pb::ListParkedItemsRequest>,
    ) -> Result<Response<pb::ListParkedItemsResponse>, Status> {
        let caller = caller(&request)?;
        let pb::ListParkedItemsRequest { property_id } = request.into_inner();
        record(&property_id, None, None);
        caller.property(&property_id).map_err(fail)?;
        let hotel = self.hotel(&property_id).map_err(fail)?;
        let items = hotel
            .parked_items()
            .map_err(fail)?
            .into_iter()
            .map(parked_item)
            .collect();
        Ok(Response::new(pb::ListParkedItemsResponse { items }))
    }

    async fn retry_parked_item(
        &self,
        request: Request<pb::RetryParkedItemRequest>,
    ) -> Result<Response<pb::RetryParkedItemResponse>, Status> {
        let caller = caller(&request)?;
        let peer = request.remote_addr();
        let pb::RetryParkedItemRequest {
            property_id,
            item_id,
        } = request.into_inner();
        record(&property_id, None, None);
        caller.property(&property_id).map_err(fail)?;
        let hotel = self.hotel(&property_id).map_err(fail)?;
        required("item_id", &item_id).map_err(fail)?;
        let retried = hotel.retry_parked(&item_id).await;
        // Who set work going again, beside what it then does under the
        // sync's name.
        let mut audit =
            self.audit
                .record(&caller.audit_origin(peer), "RetryParkedItem", &property_id);
        if let Err(error) = &retried {
            audit.failed(error);
        }
        self.audit.write(audit);
        let item = retried.map_err(fail)?;
        Ok(Response::new(pb::RetryParkedItemResponse {
            item: Some(parked_item(item)),
        }))
    }
}
