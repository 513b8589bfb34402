//! Carries out a reconciliation plan: issues, updates and revokes keys
//! through keysmith's access service, writes 3RPMS, and stores the stay
//! records, in an order that makes a failure at any step harmless: keys
//! issued are recorded before 3RPMS is written to, and nothing is revoked
//! until 3RPMS and the records agree, so the next round finds whatever is
//! left to do.
use std::collections::BTreeMap;

use keysmith_core::{
    key::{CredentialData, Holder, KeyState},
    request::{EncodeKeyRequest, IssueRequest, RevokeRequest, RevokeTarget, UpdateKeyRequest},
    AccessKey, CredentialMode, Error, ErrorKind, Result, Role, Secret,
};

use super::{
    plan::{KeyToIssue, Plan, Publication, StayAction, StayPlan, WindowUpdate},
    reservation_key, HotelSync, SyncReport,
};
use crate::{
    client::{Assignment, Creation, WritePlan},
    config::PublishedKeyType,
    errors::reasons,
    model::NewKey,
    records::{Changes, StayRecord},
};

pub(super) async fn apply(hotel: &HotelSync, plan: Plan, report: &mut SyncReport) -> Result<()> {
    let Plan {
        skipped,
        removals,
        ended,
        stays,
        window_updates,
        credential_checks,
        revocations,
        deletions,
    } = plan;
    report.skipped.extend(skipped);
    let mut writes = WritePlan {
        removals,
        ..WritePlan::default()
    };
    // The stays keysmith keeps a key for after this round.
    let mut kept: BTreeMap<String, StayRecord> = BTreeMap::new();
    // Stays whose key is published to 3RPMS as a new 3RPMS key.
    let mut to_publish: Vec<String> = Vec::new();

    for StayPlan {
        stay_id,
        take_off_first,
        action,
    } in stays
    {
        if let Some(key_id) = take_off_first {
            writes.removals.push(Assignment {
                room_stay_id: stay_id.clone(),
                key_id,
            });
        }
        let (record, publication) = match action {
            StayAction::Skip { why } => {
                report.skipped.push((stay_id, why));
                continue;
            }
            StayAction::Expired => continue,
            StayAction::Keep {
                record,
                publication,
            } => (record, publication),
            StayAction::Issue { key, publication } => match issue(hotel, key, report).await? {
                Some(record) => (record, publication),
                None => continue,
            },
        };
        match publication {
            Publication::Held => {}
            Publication::Foreign { why } => report.skipped.push((stay_id.clone(), why)),
            Publication::Assign { key_id, replacing } => {
                if let Some(other) = replacing {
                    writes.removals.push(Assignment {
                        room_stay_id: stay_id.clone(),
                        key_id: other,
                    });
                }
                writes.assignments.push(Assignment {
                    room_stay_id: stay_id.clone(),
                    key_id,
                });
            }
            Publication::Create { replacing } => {
                if let Some(other) = replacing {
                    writes.removals.push(Assignment {
                        room_stay_id: stay_id.clone(),
                        key_id: other,
                    });
                }
                to_publish.push(stay_id.clone());
            }
        }
        kept.insert(stay_id, record);
    }

    for update in window_updates {
        update_window(hotel, update, report).await?;
    }

    // A credential that changed (re-encoded, by this round's window update
    // or through keysmith's API) replaces the published key.
    for stay_id in credential_checks {
        let Some(record) = kept.get_mut(&stay_id) else {
            continue;
        };
        let Some(published) = record.rpms_key_id.clone() else {
            continue;
        };
        let current = digest(&published_key(hotel, &key(hotel, &record.key_id)?)?);
        match record.published_digest {
            Some(d) if d != current => {
                writes.removals.push(Assignment {
                    room_stay_id: stay_id.clone(),
                    key_id: published.clone(),
                });
                if !writes.deletions.contains(&published) {
                    writes.deletions.push(published);
                }
                record.rpms_key_id = None;
                to_publish.push(stay_id);
            }
            Some(_) => {}
            None => record.published_digest = Some(current),
        }
    }
    for key_id in deletions {
        if !writes.deletions.contains(&key_id) {
            writes.deletions.push(key_id);
        }
    }

    let mut digests: BTreeMap<String, [u8; 32]> = BTreeMap::new();
    for stay_id in &to_publish {
        let Some(record) = kept.get(stay_id) else {
            continue;
        };
        let key = published_key(hotel, &key(hotel, &record.key_id)?)?;
        digests.insert(stay_id.clone(), digest(&key));
        writes.creations.push(Creation {
            room_stay_id: stay_id.clone(),
            key,
        });
    }

    // Keys issued this round are recorded before 3RPMS is written to, so
    // that a failed write or a crash leaves no key keysmith forgets.
    let mut issued = Changes::new();
    for record in kept.values() {
        hotel.records.put(record, &mut issued)?;
    }
    hotel.records.commit(issued).await?;

    // 3RPMS next: if the write fails, nothing is revoked in keysmith and
    // the next round finds the same differences.
    let outcome = if writes.is_empty() {
        Default::default()
    } else {
        hotel.client.write(&writes).await?
    };
    report.write_requests += outcome.requests;
    for rejected in &outcome.rejected {
        let what = rejected
            .room_stay_id
            .clone()
            .or_else(|| rejected.key_id.clone())
            .unwrap_or_default();
        report.skipped.push((
            what,
            format!("3RPMS refused the change: {}", rejected.error),
        ));
    }
    report.published += outcome.created.len() + writes.assignments.len();
    for created in outcome.created {
        if let Some(record) = kept.get_mut(&created.room_stay_id) {
            record.rpms_key_id = Some(created.key_id.clone());
            record.published_digest = digests.get(&created.room_stay_id).copied();
        }
        // A split stay shares the key it was published with.
        let key_id = kept.get(&created.room_stay_id).map(|r| r.key_id.clone());
        for r in kept.values_mut() {
            if Some(&r.key_id) == key_id.as_ref() && r.rpms_key_id.is_none() {
                r.rpms_key_id = Some(created.key_id.clone());
                r.published_digest = digests.get(&created.room_stay_id).copied();
            }
        }
    }
    let mut changes = Changes::new();
    for record in &ended {
        hotel
            .records
            .bump_generation(&record.stay_id, &mut changes)?;
        if !kept.contains_key(&record.stay_id) {
            hotel.records.remove(&record.stay_id, &mut changes);
        }
    }
    for record in kept.values() {
        hotel.records.put(record, &mut changes)?;
    }
    hotel.records.commit(changes).await?;

    for key_id in revocations {
        let result = hotel
            .service
            .revoke(RevokeRequest {
                property_id: hotel.property_id().to_owned(),
                request_id: None,
                target: RevokeTarget::Key(key_id.clone()),
                origin: hotel.origin(),
            })
            .await;
        match result {
            Ok(_) => report.revoked += 1,
            // Revoked already (a repeated event): nothing to do.
            Err(e) if e.kind() == ErrorKind::FailedPrecondition => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Issues the lock driver's key for a stay. `None` when the stay cannot
/// have one as configured (reported skipped).
async fn issue(
    hotel: &HotelSync,
    planned: KeyToIssue,
    report: &mut SyncReport,
) -> Result<Option<StayRecord>> {
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
    let issued = hotel
        .service
        .issue(IssueRequest {
            property_id: hotel.property_id().to_owned(),
            // A retry after a crash finds the key it issued.
            request_id: Some(format!("3rpms:{}:{generation}", stay.id)),
            holder: Holder {
                id: format!("3rpms-reservation:{}", stay.reservation_id),
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
        .await;
    let key = match issued {
        Ok(key) => key,
        // The stay cannot have a key as configured (a room whose
        // entrances take no PIN, say): the other stays go on.
        Err(e) if !e.is_temporary() && e.kind() != ErrorKind::Internal => {
            report
                .skipped
                .push((stay.id.clone(), format!("no key issued: {e}")));
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    report.issued += 1;
    Ok(Some(StayRecord {
        stay_id: stay.id,
        room_setup_id: stay.room_setup_id,
        arrival: stay.arrival,
        departure: stay.departure,
        key_id: key.key_id,
        rpms_key_id: None,
        published_digest: None,
    }))
}

/// Moves a key's window; a PIN or QR code is re-encoded at once.
async fn update_window(
    hotel: &HotelSync,
    WindowUpdate { key_id, window }: WindowUpdate,
    report: &mut SyncReport,
) -> Result<()> {
    let result = hotel
        .service
        .update_key(UpdateKeyRequest {
            property_id: hotel.property_id().to_owned(),
            request_id: None,
            key_id: key_id.clone(),
            window,
            origin: hotel.origin(),
        })
        .await;
    let updated = match result {
        Ok(updated) => updated,
        // One key that cannot take its stay's window must not hold up
        // every other stay of the hotel.
        Err(e) if !e.is_temporary() && e.kind() != ErrorKind::Internal => {
            report
                .skipped
                .push((key_id, format!("window not updated: {e}")));
            return Ok(());
        }
        Err(e) => return Err(e),
    };
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
                key_id,
                encoder_id: None,
                origin: hotel.origin(),
            })
            .await?;
    }
    Ok(())
}

fn key(hotel: &HotelSync, key_id: &str) -> Result<AccessKey> {
    hotel.service.get_key(hotel.property_id(), key_id)
}

/// The 3RPMS key that carries a keysmith key's credential.
fn published_key(hotel: &HotelSync, key: &AccessKey) -> Result<NewKey> {
    let key_type = hotel.config.key_type;
    let found = key
        .credentials
        .iter()
        .find_map(|c| match (&c.data, key_type) {
            (CredentialData::Pin(pin), PublishedKeyType::Pin) => {
                Some(NewKey::Pin(Secret::new(pin.expose().clone())))
            }
            (CredentialData::Qr(data), PublishedKeyType::Qr) => {
                Some(NewKey::Qr(Secret::new(data.expose().clone())))
            }
            _ => None,
        });
    found.ok_or_else(|| {
        Error::failed_precondition(
            reasons::HOTEL_NOT_CONFIGURED,
            format!(
                "key {} has no {key_type:?} credential to publish to 3RPMS: the room's entrances \
                 must take that credential mode",
                key.key_id
            ),
        )
    })
}

/// Identifies published credential data without keeping it twice.
fn digest(key: &NewKey) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    match key {
        NewKey::Pin(pin) => {
            hasher.update(b"pin:");
            hasher.update(pin.expose().as_bytes());
        }
        NewKey::KeyStorage { pin, compartment } => {
            hasher.update(b"storage:");
            hasher.update(pin.expose().as_bytes());
            hasher.update(b":");
            hasher.update(compartment.expose().as_bytes());
        }
        NewKey::Qr(data) => {
            hasher.update(b"qr:");
            hasher.update(data.expose().as_bytes());
        }
    }
    hasher.finalize().into()
}
