//! Carries out a reconciliation plan: issues, updates and revokes keys
//! through keysmith's access service (`keys.rs`), writes 3RPMS, and stores
//! the stay records, in an order that makes a failure at any step harmless:
//! keys issued are recorded before 3RPMS is written to, so a failed write
//! or a crash leaves no key keysmith forgets; keys no stay holds any more
//! are revoked before 3RPMS is written to, since a departed guest's key must
//! not wait on 3RPMS answering (it may block keysmith for 20 minutes), and
//! the revocations are stored before they are made and retried until done;
//! the records end only once 3RPMS agrees, so a failed write leaves the next
//! round the removals to do.
//!
//! One stay's failing step never stops the round: it is reported in
//! [`SyncReport::failed`] and the other stays go on; the caller retries it
//! with back-off and parks it if it keeps failing. Only a failure of the
//! store or of a whole 3RPMS request ends the round early.
use std::collections::{BTreeMap, BTreeSet};

use keysmith_core::Result;

use super::{
    plan::{Plan, Publication, StayAction, StayPlan, WindowUpdate},
    HotelSync, SyncReport,
};
use crate::{
    client::{Assignment, Creation, WritePlan},
    records::{Changes, StayRecord},
};

mod keys;
mod publish;

pub(super) async fn apply(hotel: &HotelSync, plan: Plan, report: &mut SyncReport) -> Result<()> {
    let Plan {
        skipped,
        removals,
        gone,
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
            StayAction::Keep {
                record,
                publication,
            } => (record, publication),
            StayAction::Issue { key, publication } => match keys::issue(hotel, key, report).await {
                Ok(record) => (record, publication),
                Err(e) => {
                    report.fail(&stay_id, &e);
                    continue;
                }
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

    for WindowUpdate { key_id, window } in window_updates {
        if let Err(e) = keys::update_window(hotel, &key_id, window, report).await {
            for stay_id in stays_of(&kept, &key_id) {
                report.fail(&stay_id, &e);
            }
        }
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
        let current = match publish::credential(hotel, &record.key_id) {
            Ok(credential) => publish::digest(&credential),
            Err(e) => {
                report.fail(&stay_id, &e);
                continue;
            }
        };
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
        match publish::credential(hotel, &record.key_id) {
            Ok(key) => {
                digests.insert(stay_id.clone(), publish::digest(&key));
                writes.creations.push(Creation {
                    room_stay_id: stay_id.clone(),
                    key,
                });
            }
            Err(e) => report.fail(stay_id, &e),
        }
    }

    // Keys issued this round are recorded, and the revocations to make,
    // before anything is written to 3RPMS.
    let stay_of_key: BTreeMap<&str, &str> = ended
        .iter()
        .map(|r| (r.key_id.as_str(), r.stay_id.as_str()))
        .collect();
    let mut issued = Changes::new();
    for record in kept.values() {
        hotel.records.put(record, &mut issued)?;
    }
    for key_id in &revocations {
        let stay_id = stay_of_key
            .get(key_id.as_str())
            .copied()
            .unwrap_or_default();
        hotel
            .records
            .put_pending_revocation(key_id, stay_id, &mut issued)?;
    }
    hotel.records.commit(issued).await?;

    // Keys no stay holds go now, this round's and any an earlier round left
    // pending, whatever 3RPMS says next.
    revoke_pending(hotel, &revocations, report).await?;

    // 3RPMS next: if the write fails, the records stay as they were and
    // the next round finds the same differences.
    let outcome = if writes.is_empty() {
        Default::default()
    } else {
        hotel.client.write(&writes).await?
    };
    report.write_requests += outcome.requests;
    for rejected in &outcome.rejected {
        let removal_of_gone = rejected.key_id.is_some()
            && rejected
                .room_stay_id
                .as_ref()
                .is_some_and(|s| gone.contains(s));
        if removal_of_gone {
            // A deleted stay holds nothing: 3RPMS refuses to take the key
            // off it, which is as good as done.
            continue;
        }
        let what = rejected
            .room_stay_id
            .clone()
            .or_else(|| rejected.key_id.clone())
            .unwrap_or_default();
        report.skipped.push((
            what.clone(),
            format!("3RPMS refused the change: {}", rejected.error),
        ));
        let stay = rejected
            .room_stay_id
            .clone()
            .or_else(|| stay_holding_rpms_key(&kept, &ended, rejected.key_id.as_deref()));
        if let Some(stay) = stay {
            report.fail(&stay, &rejected.error);
        }
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

    // The records, once 3RPMS agrees.
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
    hotel.records.commit(changes).await
}

/// Revokes every key whose revocation is stored pending; each one done
/// leaves the list, each one failing is reported for its stay and stays
/// on it for the next round.
async fn revoke_pending(
    hotel: &HotelSync,
    planned: &[String],
    report: &mut SyncReport,
) -> Result<()> {
    let planned: BTreeSet<&String> = planned.iter().collect();
    let mut done = Changes::new();
    for (key_id, stay_id) in hotel.records.pending_revocations()? {
        match keys::revoke(hotel, &key_id).await {
            Ok(_) => {
                if planned.contains(&key_id) {
                    report.revoked += 1;
                }
                hotel.records.remove_pending_revocation(&key_id, &mut done);
            }
            Err(e) if e.kind() == keysmith_core::ErrorKind::NotFound => {
                // Nothing left to revoke.
                hotel.records.remove_pending_revocation(&key_id, &mut done);
            }
            Err(e) => report.fail(&stay_id, &e),
        }
    }
    hotel.records.commit(done).await
}

/// The stays that hold a keysmith key after this round.
fn stays_of(kept: &BTreeMap<String, StayRecord>, key_id: &str) -> Vec<String> {
    kept.values()
        .filter(|r| r.key_id == key_id)
        .map(|r| r.stay_id.clone())
        .collect()
}

/// The stay a refused deletion of a 3RPMS key concerns.
fn stay_holding_rpms_key(
    kept: &BTreeMap<String, StayRecord>,
    ended: &[StayRecord],
    rpms_key_id: Option<&str>,
) -> Option<String> {
    let rpms_key_id = rpms_key_id?;
    kept.values()
        .chain(ended)
        .find(|r| r.rpms_key_id.as_deref() == Some(rpms_key_id))
        .map(|r| r.stay_id.clone())
}
