//! Brings a data directory written by an earlier keysmith to the current
//! layout when the store opens, each step in one atomic batch.
use std::collections::{BTreeMap, BTreeSet};

use keysmith_core::{
    audit::AuditRecord,
    error::reasons,
    reservation::{Member, Reservation},
    AccessKey, Error, Result, Window,
};
use serde::Deserialize;

use crate::{
    codec::encode,
    codec::{decode, open, parts},
    journal::{self, Journal},
    kv,
    layout::{
        entries, key_path, layout_marker, ANSWER_REFERENCE, AUDIT, BY_END, BY_ENDED,
        CHANGE_REFERENCE, INDEX_ALL, INDEX_LIVE, LAYOUT, LIVE_KEY, META, RESERVATION, REVOKED_KEY,
    },
    sealing::Sealer,
    store_error, stored_key,
};

/// The property index of layout 1.
const OLD_BY_PROPERTY: &[u8] = b"p";

pub fn upgrade(db: &kv::Db, main: &kv::Tree, sealer: &Sealer, journal: &Journal) -> Result<()> {
    let layout = match main.get(layout_marker()).map_err(store_error)? {
        Some(v) => v.first().copied().unwrap_or(0),
        // A store without a marker is layout 1, or new (and then empty).
        None => 1,
    };
    if layout > LAYOUT {
        return Err(Error::unavailable(
            reasons::STORE_UNAVAILABLE,
            format!(
                "the store has layout {layout}, written by a newer keysmith; this build \
                 reads layout {LAYOUT}"
            ),
        ));
    }
    if layout < 2 {
        to_layout_2(main)?;
        db.flush().map_err(store_error)?;
    }
    if layout < 3 {
        to_layout_3(main)?;
        db.flush().map_err(store_error)?;
    }
    if layout < 4 {
        to_layout_4(main)?;
        db.flush().map_err(store_error)?;
    }
    if layout < 5 {
        to_layout_5(main)?;
        db.flush().map_err(store_error)?;
    }
    if layout < 6 {
        to_layout_6(main, sealer)?;
        db.flush().map_err(store_error)?;
    }
    if layout < 7 {
        to_layout_7(main, sealer, journal)?;
        db.flush().map_err(store_error)?;
    }
    if layout < 8 {
        to_layout_8(main, sealer)?;
        db.flush().map_err(store_error)?;
    }
    Ok(())
}

/// Layout 1 kept every key under `K` and a property index: revoked keys move
/// under `V`, and the property index goes.
fn to_layout_2(main: &kv::Tree) -> Result<()> {
    let mut batch = kv::Batch::default();
    let mut moved = 0usize;
    for entry in main.scan_prefix([LIVE_KEY]) {
        let (k, v) = entry.map_err(store_error)?;
        let key: AccessKey = decode(&v)?;
        if key.is_revoked() {
            batch.remove(k);
            batch.insert(key_path(REVOKED_KEY, &key.property_id, &key.key_id), v);
            moved += 1;
        }
    }
    let mut dropped = 0usize;
    for tag in [INDEX_ALL, INDEX_LIVE] {
        for entry in main.scan_prefix([tag]) {
            let (k, _) = entry.map_err(store_error)?;
            if parts(&k[1..]).get(1).copied() == Some(OLD_BY_PROPERTY) {
                batch.remove(k);
                dropped += 1;
            }
        }
    }
    batch.insert(layout_marker(), [2u8]);
    main.apply_batch(batch).map_err(store_error)?;
    if moved + dropped > 0 {
        tracing::info!(
            revoked_keys_moved = moved,
            index_entries_dropped = dropped,
            "upgraded the store to layout 2"
        );
    }
    Ok(())
}

/// A reservation as layout 2 stored it: its members were the keys whose
/// window had not ended when the last key joined, so ended keys had been
/// forgotten.
#[derive(Deserialize)]
struct ReservationLayout2 {
    property_id: String,
    reservation_key: String,
    epoch: u64,
    door_set: BTreeSet<String>,
    members: BTreeMap<String, Window>,
}

/// Layout 3 keeps every key a reservation has had as a member: membership
/// is rebuilt from the keys themselves (each names its reservation and
/// incarnation), for every reservation not cleared.
fn to_layout_3(main: &kv::Tree) -> Result<()> {
    type Incarnation = (String, String, u64);
    let mut keys_of: BTreeMap<Incarnation, BTreeMap<String, Member>> = BTreeMap::new();
    for tag in [LIVE_KEY, REVOKED_KEY] {
        for entry in main.scan_prefix([tag]) {
            let (_, v) = entry.map_err(store_error)?;
            let key: AccessKey = decode(&v)?;
            if let Some(r) = &key.reservation {
                keys_of
                    .entry((key.property_id.clone(), r.key.clone(), r.epoch))
                    .or_default()
                    .insert(
                        key.key_id.clone(),
                        Member {
                            window: key.window,
                            revoked: key.is_revoked(),
                        },
                    );
            }
        }
    }
    let mut batch = kv::Batch::default();
    let mut rebuilt = 0usize;
    for entry in main.scan_prefix([RESERVATION]) {
        let (k, v) = entry.map_err(store_error)?;
        let old: ReservationLayout2 = decode(&v)?;
        let mut members = BTreeMap::new();
        // A cleared reservation (no door set) has no members.
        if !old.door_set.is_empty() {
            for (key_id, window) in old.members {
                members.insert(key_id, Member::new(window));
            }
            if let Some(found) = keys_of.remove(&(
                old.property_id.clone(),
                old.reservation_key.clone(),
                old.epoch,
            )) {
                members.extend(found);
            }
        }
        let new = Reservation {
            property_id: old.property_id,
            reservation_key: old.reservation_key,
            epoch: old.epoch,
            door_set: old.door_set,
            members,
        };
        batch.insert(k, encode(&new)?);
        rebuilt += 1;
    }
    batch.insert(layout_marker(), [3u8]);
    main.apply_batch(batch).map_err(store_error)?;
    if rebuilt > 0 {
        tracing::info!(
            reservations = rebuilt,
            "upgraded the store to layout 3: reservations keep every key they have had"
        );
    }
    Ok(())
}

/// Layout 4 keeps the entries the sweeper walks: each live key by the end
/// of its window (`X`), each ended key by when it ended (`P`). The sweeper
/// then moves the expired ones out of the live set on its first run.
fn to_layout_4(main: &kv::Tree) -> Result<()> {
    let mut batch = kv::Batch::default();
    let mut added = 0usize;
    for tag in [LIVE_KEY, REVOKED_KEY] {
        for entry in main.scan_prefix([tag]) {
            let (_, v) = entry.map_err(store_error)?;
            let key: AccessKey = decode(&v)?;
            for sweeper_entry in entries(&key)
                .into_iter()
                .filter(|e| matches!(e.first(), Some(&BY_END) | Some(&BY_ENDED)))
            {
                batch.insert(sweeper_entry, Vec::<u8>::new());
                added += 1;
            }
        }
    }
    batch.insert(layout_marker(), [4u8]);
    main.apply_batch(batch).map_err(store_error)?;
    if added > 0 {
        tracing::info!(
            entries = added,
            "upgraded the store to layout 4: keys are found by when they end"
        );
    }
    Ok(())
}

/// Layout 5 drops the `L` entries, a second copy of the index for live keys
/// only: with ended keys purged after the retention, a walk of `A` skips few.
fn to_layout_5(main: &kv::Tree) -> Result<()> {
    let mut batch = kv::Batch::default();
    let mut dropped = 0usize;
    for entry in main.scan_prefix([INDEX_LIVE]) {
        let (k, _) = entry.map_err(store_error)?;
        batch.remove(k);
        dropped += 1;
    }
    batch.insert(layout_marker(), [5u8]);
    main.apply_batch(batch).map_err(store_error)?;
    if dropped > 0 {
        tracing::info!(
            entries = dropped,
            "upgraded the store to layout 5: one index for every key"
        );
    }
    Ok(())
}

/// Layout 6 seals every value (the key records with their credentials, the
/// drivers' state with its PINs and vendor secrets, and the rest): what was
/// stored in clear before is sealed in place, in batches.
fn to_layout_6(main: &kv::Tree, sealer: &Sealer) -> Result<()> {
    const BATCH: usize = 4096;
    let mut sealed = 0usize;
    let mut batch = kv::Batch::default();
    let mut in_batch = 0;
    for entry in main.iter() {
        let (k, v) = entry.map_err(store_error)?;
        // Facts about the store itself (its layout, its wrapped data keys)
        // and the index entries, which are empty, stay as they are.
        if v.is_empty() || k.first() == Some(&META) {
            continue;
        }
        // Before layout 6 nothing was sealed, so every value is in clear,
        // whatever its first byte (a driver's own bytes may start with any).
        batch.insert(k.clone(), sealer.seal(&k, &v)?);
        sealed += 1;
        in_batch += 1;
        if in_batch == BATCH {
            main.apply_batch(std::mem::take(&mut batch))
                .map_err(store_error)?;
            in_batch = 0;
        }
    }
    batch.insert(layout_marker(), [6u8]);
    if sealed > 0 {
        // The records in clear stay in the engine's files until they are
        // rewritten (`crate::rewrite`).
        batch.insert(crate::rewrite::wanted_marker(), [1u8]);
    }
    main.apply_batch(batch).map_err(store_error)?;
    if sealed > 0 {
        tracing::info!(
            records = sealed,
            "upgraded the store to layout 6: every record is sealed"
        );
    }
    Ok(())
}

/// Layout 7 keeps the audit log in the journal (`crate::journal`): the
/// records move there in id order, and leave the tree in the batch that
/// records where the journal ends. A stop before that batch leaves the tree
/// as it was, and the next open cuts the journal back to nothing and moves
/// them again.
fn to_layout_7(main: &kv::Tree, sealer: &Sealer, journal: &Journal) -> Result<()> {
    /// Records per frame.
    const FRAME: usize = 1024;
    let mut batch = kv::Batch::default();
    let mut records: Vec<AuditRecord> = Vec::new();
    for entry in main.scan_prefix([AUDIT]) {
        let (k, v) = entry.map_err(store_error)?;
        records.push(open(sealer, &k, &v)?);
        batch.remove(k);
    }
    records.sort_by(|a, b| a.id.cmp(&b.id));
    let mut end = None;
    for frame in records.chunks(FRAME) {
        end = Some(journal.append(sealer, frame)?);
    }
    if let Some(end) = end {
        batch.insert(journal::end_path(), end.encode());
    }
    batch.insert(layout_marker(), [7u8]);
    main.apply_batch(batch).map_err(store_error)?;
    if !records.is_empty() {
        tracing::info!(
            records = records.len(),
            "upgraded the store to layout 7: the audit log is a journal"
        );
    }
    Ok(())
}

/// What layout 7 kept in reference entries about one key's version.
#[derive(Default)]
struct Layout7References {
    /// The entries themselves, to delete.
    entries: Vec<kv::Bytes>,
    /// The request_ids whose first answer names the version.
    answered: Vec<String>,
    /// The sequences of the change records that name it (one, unless
    /// something went wrong).
    logged_by: Vec<u64>,
}

/// Layout 8 keeps the references to a key's version in the key's record
/// (`crate::stored_key`): each key's `Q` and `W` entries move into its
/// record and are deleted in the same batch, a batch per few thousand keys.
/// A stop between batches leaves keys of both kinds, which the next open
/// finishes (the layout marker goes with the last batch).
fn to_layout_8(main: &kv::Tree, sealer: &Sealer) -> Result<()> {
    /// Keys per batch.
    const BATCH: usize = 4096;
    type KeyId = (String, String);
    let mut of_key: BTreeMap<KeyId, Layout7References> = BTreeMap::new();
    let text = |part: &[u8]| String::from_utf8_lossy(part).into_owned();
    for entry in main.scan_prefix([ANSWER_REFERENCE]) {
        let (k, _) = entry.map_err(store_error)?;
        let (property, key_id, request_id) = match parts(&k[1..])[..] {
            [p, key, r] => (text(p), text(key), text(r)),
            _ => continue,
        };
        let references = of_key.entry((property, key_id)).or_default();
        references.answered.push(request_id);
        references.entries.push(k);
    }
    for entry in main.scan_prefix([CHANGE_REFERENCE]) {
        let (k, _) = entry.map_err(store_error)?;
        let (property, key_id, sequence) = match parts(&k[1..])[..] {
            [p, key, s] => match <[u8; 8]>::try_from(s) {
                Ok(s) => (text(p), text(key), u64::from_be_bytes(s)),
                Err(_) => continue,
            },
            _ => continue,
        };
        let references = of_key.entry((property, key_id)).or_default();
        references.logged_by.push(sequence);
        references.entries.push(k);
    }
    let mut batch = kv::Batch::default();
    let mut in_batch = 0;
    let (mut keys, mut dropped) = (0usize, 0usize);
    for ((property_id, key_id), mut references) in of_key {
        dropped += references.entries.len();
        for entry in references.entries {
            batch.remove(entry);
        }
        // References to a key that is gone go with nothing else.
        if let Some((at, mut stored)) = stored_key::read_at(main, sealer, &property_id, &key_id)? {
            for request_id in references.answered {
                if !stored.answered.contains(&request_id) {
                    stored.answered.push(request_id);
                }
            }
            references.logged_by.sort_unstable();
            if let Some(latest) = references.logged_by.pop() {
                stored.logged_by = Some(latest);
            }
            // The record names one change; an older one that names this
            // version too is made whole now.
            for older in references.logged_by {
                if let Some((path, value)) =
                    crate::changelog::make_whole(main, sealer, &stored.key, older)?
                {
                    match value {
                        Some(value) => batch.insert(path, value),
                        None => batch.remove(path),
                    }
                }
            }
            batch.insert(at.as_slice(), stored.record().seal(sealer, &at)?);
            keys += 1;
        }
        in_batch += 1;
        if in_batch == BATCH {
            main.apply_batch(std::mem::take(&mut batch))
                .map_err(store_error)?;
            in_batch = 0;
        }
    }
    batch.insert(layout_marker(), [8u8]);
    main.apply_batch(batch).map_err(store_error)?;
    if dropped > 0 {
        tracing::info!(
            keys,
            entries = dropped,
            "upgraded the store to layout 8: the references to a key are in its record"
        );
    }
    Ok(())
}
