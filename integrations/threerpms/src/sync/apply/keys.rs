//! keysmith's side of a round: issuing, moving and revoking keys through
//! the access service, as any client would, under the sync's own name.
use keysmith_core::{
    key::{CredentialData, Holder, KeyState},
    request::{EncodeKeyRequest, IssueRequest, RevokeRequest, RevokeTarget, UpdateKeyRequest},
    CredentialMode, Result, Role,
};

use super::super::{plan::KeyToIssue, reservation_key, HotelSync, SyncReport};
use crate::{config::PublishedKeyType, records::StayRecord};

/// Issues the lock driver's key for a stay.
pub(super) async fn issue(
    hotel: &HotelSync,
    planned: KeyToIssue,
    report: &mut SyncReport,
) -> Result<StayRecord> {
    let KeyToIssue {
        stay,
        generation,
        window,
        entrance_ids,
        space_ids,
    } = planned;
    let mode = match hotel.config.key_type {
        PublishedKeyType::Pin => CredentialMode::Pin,
        PublishedKeyType::Qr => CredentialMode::Qr,
    };
    // The holder is the reservation where 3RPMS's schema links a stay to
    // it (detected), and the stay itself otherwise.
    let holder = match &stay.reservation_id {
        Some(reservation) => format!("3rpms-reservation:{reservation}"),
        None => format!("3rpms-stay:{}", stay.id),
    };
    let key = hotel
        .service
        .issue(IssueRequest {
            property_id: hotel.property_id().to_owned(),
            // A retry after a crash finds the key it issued.
            request_id: Some(format!("3rpms:{}:{generation}", stay.id)),
            holder: Holder {
                id: holder,
                name: None,
            },
            entrance_ids,
            space_ids,
            window,
            reservation_key: Some(reservation_key(&stay.id, generation)),
            role: Role::Guest,
            modes: vec![mode],
            pin: None,
            origin: hotel.origin(),
        })
        .await?;
    report.issued += 1;
    Ok(StayRecord {
        stay_id: stay.id,
        room_setup_id: stay.room_setup_id,
        arrival: stay.arrival,
        departure: stay.departure,
        key_id: key.key_id,
        rpms_key_id: None,
        published_digest: None,
    })
}

/// Moves a key's window; a PIN or QR code is re-encoded at once.
pub(super) async fn update_window(
    hotel: &HotelSync,
    key_id: &str,
    window: keysmith_core::Window,
    report: &mut SyncReport,
) -> Result<()> {
    let updated = hotel
        .service
        .update_key(UpdateKeyRequest {
            property_id: hotel.property_id().to_owned(),
            request_id: None,
            key_id: key_id.to_owned(),
            window,
            origin: hotel.origin(),
        })
        .await?;
    report.updated += 1;
    // A PIN or QR code has no card to carry to an encoder: keysmith
    // re-encodes it at once so that it opens for the new window.
    let physical = updated
        .credentials
        .iter()
        .any(|c| matches!(c.data, CredentialData::Card(_)));
    if updated.state(hotel.now()) == KeyState::EncodingRequired && !physical {
        hotel
            .service
            .encode_key(EncodeKeyRequest {
                property_id: hotel.property_id().to_owned(),
                request_id: None,
                key_id: key_id.to_owned(),
                encoder_id: None,
                origin: hotel.origin(),
            })
            .await?;
    }
    Ok(())
}

/// Revokes a key no stay holds any more. A key revoked already is answered
/// as it is; one left `REVOKING` is completed.
pub(super) async fn revoke(hotel: &HotelSync, key_id: &str) -> Result<bool> {
    let revocation = hotel
        .service
        .revoke(RevokeRequest {
            property_id: hotel.property_id().to_owned(),
            request_id: None,
            target: RevokeTarget::Key(key_id.to_owned()),
            origin: hotel.origin(),
        })
        .await?;
    Ok(revocation.keys.iter().any(|k| k.is_revoked()))
}
