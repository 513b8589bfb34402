//! Decides one round of reconciliation, without I/O: from the room stays
//! 3RPMS returned and the stay records keysmith keeps, which keys to issue,
//! which windows to move, which keys to revoke, and which 3RPMS keys to take
//! off, assign, create or delete.
//!
//! [`plan`] neither reads nor writes anything: what it needs of keysmith's
//! keys comes in [`Remembered`], gathered beforehand, and what only exists
//! once the plan is carried out (a key issued this round, a credential
//! re-encoded by a window update) is named in the plan, for
//! [`super::apply`] to act on.
use std::collections::{BTreeMap, BTreeSet};

use jiff::civil::Date;
use keysmith_core::{Error, Result, Timestamp, Window};

use crate::{
    calendar::Calendar, client::Assignment, config::HotelConfig, model::RoomStay,
    records::StayRecord,
};

/// What 3RPMS said this round.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reading {
    /// The room stays read: in the sync window, by id, or by reservation.
    pub stays: Vec<RoomStay>,
    /// Stays asked for by id that 3RPMS no longer returns: deleted, or,
    /// where 3RPMS's schema shows no reservation status, cancelled.
    pub missing: Vec<String>,
    /// 3RPMS's schema shows no reservation status: a stay no longer
    /// returned may be cancelled rather than deleted, and still hold its
    /// 3RPMS key.
    pub cancellation_unseen: bool,
}

/// What keysmith remembers, as far as the plan needs it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Remembered {
    /// Every stay record of the hotel, by stay id.
    pub records: BTreeMap<String, StayRecord>,
    /// How many times keysmith ended its key for each stay read; a stay not
    /// listed has generation 0.
    pub generations: BTreeMap<String, u32>,
    /// At least the keys [`keys_consulted`] names.
    pub keys: BTreeMap<String, KeyFacts>,
}

/// What the plan needs of one of keysmith's keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyFacts {
    pub window: Window,
    /// Revoked, or being revoked (`REVOKING`: a driver could not be told
    /// yet, and revoking again completes it), or gone from keysmith: the
    /// key is no use to the stay either way.
    pub revoked: bool,
}

/// One round of reconciliation, in the order [`super::apply`] carries it
/// out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Stays left alone, with why, noticed while sorting the stays (a room
    /// with no entrance mapping); the stays' own notes follow in
    /// [`StayPlan`]s.
    pub skipped: Vec<(String, String)>,
    /// keysmith's 3RPMS keys to take off stays whose record ends: the stay
    /// was cancelled, has departed (its new departure may be a minute ago),
    /// moved beyond the horizon, lost its room mapping, moved to another
    /// room, its keysmith key was revoked, or it is gone.
    pub removals: Vec<Assignment>,
    /// Stays 3RPMS no longer returns whose 3RPMS key is in `removals`: a
    /// cancelled stay may still hold it, a deleted one cannot, so 3RPMS
    /// refusing the removal is expected.
    pub gone: Vec<String>,
    /// Records that end this round: each stay's generation goes up by one,
    /// and its record goes unless the stay gets a new key this round.
    pub ended: Vec<StayRecord>,
    /// Every stay kept supplied with a key, in the order read.
    pub stays: Vec<StayPlan>,
    /// keysmith keys whose window no longer covers their stays.
    pub window_updates: Vec<WindowUpdate>,
    /// Stays that hold their published 3RPMS key, by stay id: once the
    /// windows are updated, a credential that no longer matches what was
    /// published (re-encoded) is published again, and a record published
    /// before digests were kept gets one.
    pub credential_checks: Vec<String>,
    /// keysmith keys no stay holds any more, by key id.
    pub revocations: Vec<String>,
    /// keysmith's 3RPMS keys no stay holds any more.
    pub deletions: Vec<String>,
}

/// What becomes of one stay that should have a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StayPlan {
    pub stay_id: String,
    /// keysmith's 3RPMS key of another room on the stay (a split stay moved
    /// to another room), taken off whatever else happens.
    pub take_off_first: Option<String>,
    pub action: StayAction,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StayAction {
    /// Left alone, with why: the stay holds a 3RPMS key keysmith did not
    /// create and has no record of.
    Skip { why: String },
    /// The stay keeps its key (with the stay's dates as read), or, split
    /// from another stay of the same room, shares that stay's key.
    Keep {
        record: StayRecord,
        publication: Publication,
    },
    /// The stay gets a new key; if issuing it fails for this stay alone, the
    /// publication does not happen either.
    Issue {
        key: KeyToIssue,
        publication: Publication,
    },
}

/// What 3RPMS needs for the stay to hold keysmith's key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Publication {
    /// The stay holds keysmith's 3RPMS key already.
    Held,
    /// The stay holds a 3RPMS key keysmith did not create: it stays on, and
    /// the stay is reported skipped with why.
    Foreign { why: String },
    /// Assign keysmith's existing 3RPMS key, after taking `replacing` (one
    /// of keysmith's own) off the stay.
    Assign {
        key_id: String,
        replacing: Option<String>,
    },
    /// Publish the key's credential as a new 3RPMS key on the stay, after
    /// taking `replacing` (one of keysmith's own) off.
    Create { replacing: Option<String> },
}

/// A key to issue for a stay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyToIssue {
    pub stay: RoomStay,
    /// How many times keysmith ended a key for this stay, counting this
    /// round: part of the request id and the reservation key, so that a
    /// re-activated stay gets a new key, not the revoked one replayed.
    pub generation: u32,
    pub window: Window,
    pub entrance_ids: Vec<String>,
    pub space_ids: Vec<String>,
}

/// A keysmith key's new window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowUpdate {
    pub key_id: String,
    pub window: Window,
}

/// The keys whose [`KeyFacts`] [`plan`] may consult for this reading: the
/// keys of the stays read, and of the records whose 3RPMS key a stay read
/// holds (a split stay may share it).
pub fn keys_consulted(read: &Reading, records: &BTreeMap<String, StayRecord>) -> BTreeSet<String> {
    let held: BTreeSet<&str> = read
        .stays
        .iter()
        .filter_map(|s| s.key_id.as_deref())
        .collect();
    let mut keys: BTreeSet<String> = read
        .stays
        .iter()
        .filter_map(|s| records.get(&s.id))
        .map(|r| r.key_id.clone())
        .collect();
    keys.extend(
        records
            .values()
            .filter(|r| r.rpms_key_id.as_deref().is_some_and(|k| held.contains(k)))
            .map(|r| r.key_id.clone()),
    );
    keys
}

/// The last day of the horizon: stays arriving later get no key yet (3RPMS
/// recommends keeping the coming 7 days only).
pub fn horizon_end(today: Date, config: &HotelConfig) -> Result<Date> {
    today
        .checked_add(jiff::Span::new().days(i64::from(config.sync_days.max(1)) - 1))
        .map_err(|e| Error::internal(format!("sync horizon: {e}")))
}

/// Decides what this round does: see [`Plan`]. `now` is the time the round
/// runs at, in keysmith's clock; the hotel's date comes from `calendar`.
///
/// A stay keeps a key while its window has not ended, it arrives within the
/// horizon and its reservation is not cancelled. When any of that stops
/// being so, its key goes at once, in keysmith and in 3RPMS: a departure
/// moved to a minute ago revokes the key now rather than at the next night
/// (a key that still opens after the guest left is the worst outcome), and
/// a departure moved earlier but still ahead shortens the key's window.
pub fn plan(
    read: &Reading,
    known: &Remembered,
    now: Timestamp,
    config: &HotelConfig,
    calendar: &Calendar,
) -> Result<Plan> {
    let today = calendar.today(now);
    let horizon = horizon_end(today, config)?;
    let facts = |key_id: &str| -> Result<&KeyFacts> {
        known
            .keys
            .get(key_id)
            .ok_or_else(|| Error::internal(format!("3RPMS sync: key {key_id} was not looked up")))
    };
    let mut records = known.records.clone();
    let mut plan = Plan::default();

    for id in &read.missing {
        if let Some(record) = records.remove(id) {
            // Deleted, and its assignment with it; or, where 3RPMS shows no
            // status, perhaps cancelled: the key is taken off in case the
            // stay still holds it.
            if let Some(k) = record
                .rpms_key_id
                .as_ref()
                .filter(|_| read.cancellation_unseen)
            {
                plan.removals.push(Assignment {
                    room_stay_id: id.clone(),
                    key_id: k.clone(),
                });
                plan.gone.push(id.clone());
            }
            plan.ended.push(record);
        }
    }

    // Stays that should have a key, with their record when it goes on and
    // the entrances and spaces of their room.
    let mut wanted = Vec::new();
    for stay in &read.stays {
        let record = records.remove(&stay.id);
        let over = calendar
            .window(stay.arrival, stay.departure)?
            .has_ended(now);
        let beyond = stay.arrival > horizon;
        let relevant = !stay.reservation_cancelled && !over && !beyond;
        let mapping = config.room(&stay.room_setup_id);
        let Some(mapping) = mapping.filter(|_| relevant) else {
            if mapping.is_none() && relevant {
                plan.skipped.push((
                    stay.id.clone(),
                    format!("room {} has no entrance mapping", stay.room_setup_id),
                ));
            }
            if beyond && !over && !stay.reservation_cancelled && record.is_none() {
                plan.skipped.push((
                    stay.id.clone(),
                    format!(
                        "arrives {}, after the sync horizon ({horizon}): keyed once within {} days",
                        stay.arrival,
                        config.sync_days.max(1)
                    ),
                ));
            }
            if let Some(record) = record {
                if let Some(k) = &record.rpms_key_id {
                    if stay.key_id.as_deref() == Some(k) {
                        plan.removals.push(Assignment {
                            room_stay_id: stay.id.clone(),
                            key_id: k.clone(),
                        });
                    }
                }
                plan.ended.push(record);
            }
            continue;
        };
        match record {
            Some(record)
                if record.room_setup_id != stay.room_setup_id || facts(&record.key_id)?.revoked =>
            {
                // Moved to another room (a reservation's door set is
                // fixed), or its key revoked through keysmith's API: the
                // old key goes and a new one comes.
                let mut stay = stay.clone();
                if let Some(k) = &record.rpms_key_id {
                    if stay.key_id.as_deref() == Some(k) {
                        plan.removals.push(Assignment {
                            room_stay_id: stay.id.clone(),
                            key_id: k.clone(),
                        });
                        stay.key_id = None;
                    }
                }
                plan.ended.push(record);
                wanted.push((stay, None, mapping));
            }
            other => wanted.push((stay.clone(), other, mapping)),
        }
    }
    // Records not concerned by this round stay as they are.
    let untouched = records;
    // The records as they were read, for telling keysmith's 3RPMS keys from
    // other integrations' keys.
    let all_known: BTreeMap<String, StayRecord> = untouched
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .chain(
            wanted
                .iter()
                .filter_map(|(s, r, _)| r.clone().map(|r| (s.id.clone(), r))),
        )
        .collect();

    // The records of keys keysmith has already, as they will be kept; keys
    // issued this round join them only once issued, and share nothing.
    let mut kept: BTreeMap<String, StayRecord> = BTreeMap::new();
    // Stays that hold their published 3RPMS key.
    let mut held: BTreeSet<String> = BTreeSet::new();
    for (stay, record, mapping) in wanted {
        let mut take_off_first = None;
        let record = match record {
            Some(mut record) => {
                record.arrival = stay.arrival;
                record.departure = stay.departure;
                Some(record)
            }
            None => {
                // A stay split from another shows up with that stay's
                // key: share keysmith's key if it opens this room.
                let shared = stay.key_id.as_ref().and_then(|k| {
                    all_known
                        .values()
                        .chain(kept.values())
                        .find(|r| r.rpms_key_id.as_ref() == Some(k))
                        .cloned()
                });
                match shared {
                    Some(owner) if owner.room_setup_id == stay.room_setup_id => Some(StayRecord {
                        stay_id: stay.id.clone(),
                        room_setup_id: stay.room_setup_id.clone(),
                        arrival: stay.arrival,
                        departure: stay.departure,
                        key_id: owner.key_id.clone(),
                        rpms_key_id: owner.rpms_key_id.clone(),
                        published_digest: owner.published_digest,
                    }),
                    Some(owner) => {
                        // keysmith's key of another room: take it off.
                        take_off_first = owner.rpms_key_id.clone();
                        None
                    }
                    None => {
                        if let Some(k) = &stay.key_id {
                            plan.stays.push(StayPlan {
                                stay_id: stay.id.clone(),
                                take_off_first,
                                action: StayAction::Skip {
                                    why: format!(
                                        "the stay holds room access key {k}, which keysmith did \
                                         not create; only its creator may remove it"
                                    ),
                                },
                            });
                            continue;
                        }
                        None
                    }
                }
            }
        };
        let stay_id = stay.id.clone();
        let ours = record.as_ref().and_then(|r| r.rpms_key_id.clone());
        // 3RPMS: the stay must hold keysmith's key.
        let publication = if ours.is_some() && ours == stay.key_id {
            Publication::Held
        } else {
            match &stay.key_id {
                // Another key is on the stay: keysmith may take it off only
                // if keysmith created it.
                Some(other)
                    if !all_known
                        .values()
                        .any(|r| r.rpms_key_id.as_deref() == Some(other.as_str())) =>
                {
                    Publication::Foreign {
                        why: format!(
                            "the stay holds room access key {other}, which keysmith did not create"
                        ),
                    }
                }
                replacing => match ours {
                    Some(key_id) => Publication::Assign {
                        key_id,
                        replacing: replacing.clone(),
                    },
                    None => Publication::Create {
                        replacing: replacing.clone(),
                    },
                },
            }
        };
        let action = match record {
            Some(record) => {
                if publication == Publication::Held {
                    held.insert(stay_id.clone());
                }
                kept.insert(stay_id.clone(), record.clone());
                StayAction::Keep {
                    record,
                    publication,
                }
            }
            None => {
                // The generation counts a key ended in this very round.
                let ended_now = plan.ended.iter().any(|r| r.stay_id == stay.id);
                let generation =
                    known.generations.get(&stay.id).copied().unwrap_or(0) + u32::from(ended_now);
                // Not ended: a stay whose window has ended is not relevant.
                let window = calendar.window(stay.arrival, stay.departure)?;
                StayAction::Issue {
                    key: KeyToIssue {
                        stay,
                        generation,
                        window,
                        entrance_ids: mapping.entrances.clone(),
                        space_ids: mapping.spaces.clone(),
                    },
                    publication,
                }
            }
        };
        plan.stays.push(StayPlan {
            stay_id,
            take_off_first,
            action,
        });
    }

    // Windows: a keysmith key covers every stay that shares it.
    let mut hulls: BTreeMap<&str, (Date, Date)> = BTreeMap::new();
    for r in untouched.values().chain(kept.values()) {
        let hull = hulls
            .entry(r.key_id.as_str())
            .or_insert((r.arrival, r.departure));
        hull.0 = hull.0.min(r.arrival);
        hull.1 = hull.1.max(r.departure);
    }
    for (key_id, (arrival, departure)) in hulls {
        if !kept.values().any(|r| r.key_id == key_id) {
            continue;
        }
        let window = calendar.window(arrival, departure)?;
        let key = facts(key_id)?;
        // Every stay holding the key is current (an ended one lost its
        // record above), so the hull has not ended; should it have (the
        // clock passed check-out during the round) the next round revokes.
        if key.window != window && !key.revoked && !window.has_ended(now) {
            plan.window_updates.push(WindowUpdate {
                key_id: key_id.to_owned(),
                window,
            });
        }
    }

    plan.credential_checks = kept
        .keys()
        .filter(|stay_id| held.contains(*stay_id))
        .cloned()
        .collect();

    // Keys and 3RPMS keys nobody holds any more.
    let in_use_keys: BTreeSet<&str> = untouched
        .values()
        .chain(kept.values())
        .map(|r| r.key_id.as_str())
        .collect();
    let in_use_rpms: BTreeSet<&str> = untouched
        .values()
        .chain(kept.values())
        .filter_map(|r| r.rpms_key_id.as_deref())
        .collect();
    let mut revocations = BTreeSet::new();
    for record in &plan.ended {
        if !in_use_keys.contains(record.key_id.as_str()) {
            revocations.insert(record.key_id.clone());
        }
        if let Some(k) = &record.rpms_key_id {
            if !in_use_rpms.contains(k.as_str()) && !plan.deletions.contains(k) {
                plan.deletions.push(k.clone());
            }
        }
    }
    plan.revocations = revocations.into_iter().collect();
    Ok(plan)
}

#[cfg(test)]
mod tests;
