//! A [`WriteSet`] as rows: sealed once ([`Prepared::of`]), then applied in
//! a database transaction ([`apply`]), which may be tried again after a
//! serialization failure or a deadlock.
//!
//! Rows are written in one order in every transaction (keys, reservations,
//! request_id answers, audit records, and the change log last, each sorted),
//! so that two transactions rarely wait on each other's rows in a cycle; a
//! deadlock PostgreSQL finds anyway is retried.
use std::collections::BTreeMap;

use deadpool_postgres::{ClientWrapper, Object};
use keysmith_core::{
    changes::{KeyChange, PendingChange},
    store::WriteSet,
    AccessKey, Result,
};
use keysmith_store::sealing::Sealer;
use tokio_postgres::error::SqlState;

use crate::{
    listen, records,
    statements::{self, prepared, request, Request},
};

/// A key's row.
pub(crate) struct KeyRow {
    property_id: String,
    key_id: String,
    holder_id: String,
    reservation_key: Option<String>,
    window_ends_at: i64,
    ended_at: Option<i64>,
    entrances: Vec<String>,
    record: Vec<u8>,
}

impl KeyRow {
    fn of(key: &AccessKey, sealer: &Sealer) -> Result<Self> {
        let mut entrances: Vec<String> = key
            .entrances
            .iter()
            .map(|e| e.entrance_id.clone())
            .collect();
        entrances.sort();
        entrances.dedup();
        Ok(Self {
            property_id: key.property_id.clone(),
            key_id: key.key_id.clone(),
            holder_id: key.holder.id.clone(),
            reservation_key: key.reservation_key().map(str::to_owned),
            window_ends_at: key.window.ends_at.as_micros(),
            ended_at: key.ended_at().map(|t| t.as_micros()),
            entrances,
            record: records::seal(sealer, &records::key(&key.property_id, &key.key_id), key)?,
        })
    }
}

/// A write set sealed, sorted, and ready to apply as often as needed.
pub(crate) struct Prepared {
    keys: Vec<KeyRow>,
    purged: Vec<(String, String)>,
    purged_reservations: Vec<(String, String)>,
    reservations: Vec<(String, String, Vec<u8>)>,
    idempotency: Vec<(String, String, i64, Vec<u8>)>,
    audit: Vec<(String, String, Vec<u8>)>,
    /// The changes to log, by property (in the order written within one).
    changes: BTreeMap<String, Vec<PendingChange>>,
}

impl Prepared {
    /// Seals `writes`; audit records without an id must have been given
    /// one.
    pub(crate) fn of(writes: WriteSet, sealer: &Sealer) -> Result<Self> {
        let mut changes: BTreeMap<String, Vec<PendingChange>> = BTreeMap::new();
        for change in PendingChange::of(&writes.keys, writes.changed_at) {
            changes
                .entry(change.key.property_id.clone())
                .or_default()
                .push(change);
        }
        // A later write of the same key wins, as in one sled batch.
        let mut keys: BTreeMap<(String, String), &AccessKey> = BTreeMap::new();
        for (key, _) in &writes.keys {
            keys.insert((key.property_id.clone(), key.key_id.clone()), key);
        }
        let keys = keys
            .values()
            .map(|k| KeyRow::of(k, sealer))
            .collect::<Result<Vec<_>>>()?;
        let mut purged: Vec<(String, String)> = writes
            .purged
            .iter()
            .map(|k| (k.property_id.clone(), k.key_id.clone()))
            .collect();
        purged.sort();
        purged.dedup();
        let mut purged_reservations = writes.purged_reservations;
        purged_reservations.sort();
        purged_reservations.dedup();
        let mut reservations = writes
            .reservations
            .iter()
            .map(|r| {
                let at = records::reservation(&r.property_id, &r.reservation_key);
                Ok((
                    r.property_id.clone(),
                    r.reservation_key.clone(),
                    records::seal(sealer, &at, r)?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        // Stable: of two versions of one reservation, the later is applied last.
        reservations.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        let mut idempotency = writes
            .idempotency
            .iter()
            .map(|r| {
                let at = records::idempotency(&r.property_id, &r.request_id);
                Ok((
                    r.property_id.clone(),
                    r.request_id.clone(),
                    r.created_at.as_micros(),
                    records::seal(sealer, &at, r)?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        idempotency.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        let mut audit = writes
            .audit
            .iter()
            .map(|r| {
                let at = records::audit(&r.property_id, &r.id);
                Ok((
                    r.property_id.clone(),
                    r.id.clone(),
                    records::seal(sealer, &at, r)?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        audit.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        Ok(Self {
            keys,
            purged,
            purged_reservations,
            reservations,
            idempotency,
            audit,
            changes,
        })
    }
}

/// Why applying a write set failed.
pub(crate) enum Failure {
    /// The database refused or failed; maybe worth another try.
    Database(tokio_postgres::Error),
    /// Anything else (sealing a change record): never retried.
    Other(keysmith_core::Error),
}

impl Failure {
    /// A serialization failure (40001) or a deadlock (40P01): the
    /// transaction was rolled back and may be tried again as it was. So
    /// may a stale cached statement (`statements.rs`), once forgotten.
    pub(crate) fn retryable(&self) -> bool {
        match self {
            Failure::Database(e) => {
                matches!(
                    e.code(),
                    Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE
                        || *c == SqlState::T_R_DEADLOCK_DETECTED
                ) || statements::stale(e)
            }
            Failure::Other(_) => false,
        }
    }

    pub(crate) fn into_error(self) -> keysmith_core::Error {
        match self {
            Failure::Database(e) => crate::db_error(e),
            Failure::Other(e) => e,
        }
    }
}

impl From<tokio_postgres::Error> for Failure {
    fn from(e: tokio_postgres::Error) -> Self {
        Failure::Database(e)
    }
}

/// The statements of a write set, each prepared once per connection.
const UPSERT_KEY: &str = "INSERT INTO keys (property_id, key_id, holder_id, reservation_key, \
     window_ends_at, ended_at, record) VALUES ($1, $2, $3, $4, $5, $6, $7) \
     ON CONFLICT (property_id, key_id) DO UPDATE SET \
     holder_id = EXCLUDED.holder_id, reservation_key = EXCLUDED.reservation_key, \
     window_ends_at = EXCLUDED.window_ends_at, ended_at = EXCLUDED.ended_at, \
     record = EXCLUDED.record";
const DROP_ENTRANCES: &str = "DELETE FROM key_entrances WHERE property_id = $1 AND key_id = $2 \
     AND NOT (entrance_id = ANY($3))";
const ADD_ENTRANCES: &str = "INSERT INTO key_entrances (property_id, entrance_id, key_id) \
     SELECT $1, e, $2 FROM unnest($3::text[]) AS e ON CONFLICT DO NOTHING";
const PURGE_KEY: &str = "DELETE FROM keys WHERE property_id = $1 AND key_id = $2";
const PURGE_RESERVATION: &str =
    "DELETE FROM reservations WHERE property_id = $1 AND reservation_key = $2";
const UPSERT_RESERVATION: &str = "INSERT INTO reservations (property_id, reservation_key, record) \
     VALUES ($1, $2, $3) ON CONFLICT (property_id, reservation_key) \
     DO UPDATE SET record = EXCLUDED.record";
const UPSERT_IDEMPOTENCY: &str =
    "INSERT INTO idempotency (property_id, request_id, created_at, record) \
     VALUES ($1, $2, $3, $4) ON CONFLICT (property_id, request_id) \
     DO UPDATE SET created_at = EXCLUDED.created_at, record = EXCLUDED.record";
const UPSERT_AUDIT: &str = "INSERT INTO audit (property_id, id, record) VALUES ($1, $2, $3) \
     ON CONFLICT (property_id, id) DO UPDATE SET record = EXCLUDED.record";
/// The head row stays locked by this transaction until it ends: the next
/// writer of the property numbers after this one's changes. The
/// notification of the new head goes out only if the transaction commits
/// (and not if the savepoint is rolled back): every keysmith on the
/// database then reads the changes (see `listen`).
const MOVE_HEAD: &str =
    "WITH moved AS (INSERT INTO change_heads (property_id, head) VALUES ($1, $2) \
     ON CONFLICT (property_id) DO UPDATE SET head = change_heads.head + $2 \
     RETURNING head) \
     SELECT head, pg_notify($3, head::text || ' ' || $1::text) FROM moved";
const LOG_CHANGE: &str = "INSERT INTO changes (property_id, sequence, at, record) \
     VALUES ($1, $2, $3, $4)";

/// Applies `writes` inside the transaction open on `client`, numbering the
/// logged changes in their properties' sequences; returns them, to publish
/// once the transaction has committed.
///
/// Two round trips (one without changes to log): every row and the change
/// heads' moves as one pipeline, then the changes (numbered from the new
/// heads, and sealed with their numbers) as another. `before` (a
/// `SAVEPOINT`) goes ahead of the first, `after` (a `COMMIT`) behind the
/// last: should a write fail, PostgreSQL's answer to that COMMIT is a
/// rollback, and the failure is what this returns.
pub(crate) async fn apply(
    client: &Object,
    writes: &Prepared,
    sealer: &Sealer,
    before: Option<&'static str>,
    after: Option<&'static str>,
) -> std::result::Result<Vec<KeyChange>, Failure> {
    let applied = pipelined(client, writes, sealer, before, after).await;
    if let Err(Failure::Database(e)) = &applied {
        if statements::stale(e) {
            statements::forget(client);
        }
    }
    applied
}

async fn pipelined(
    client: &Object,
    writes: &Prepared,
    sealer: &Sealer,
    before: Option<&'static str>,
    after: Option<&'static str>,
) -> std::result::Result<Vec<KeyChange>, Failure> {
    let c: &ClientWrapper = client;
    let counts: Vec<i64> = writes.changes.values().map(|p| p.len() as i64).collect();
    let mut rows = Vec::new();
    if let Some(sql) = before {
        rows.push(statements::simple(c, sql));
    }
    if !writes.keys.is_empty() {
        let (upsert, drop, add) = (
            prepared(c, UPSERT_KEY).await?,
            prepared(c, DROP_ENTRANCES).await?,
            prepared(c, ADD_ENTRANCES).await?,
        );
        for k in &writes.keys {
            rows.push(request(
                c,
                &upsert,
                [
                    &k.property_id,
                    &k.key_id,
                    &k.holder_id,
                    &k.reservation_key,
                    &k.window_ends_at,
                    &k.ended_at,
                    &k.record,
                ],
            ));
            rows.push(request(c, &drop, [&k.property_id, &k.key_id, &k.entrances]));
            rows.push(request(c, &add, [&k.property_id, &k.key_id, &k.entrances]));
        }
    }
    if !writes.purged.is_empty() {
        let purge = prepared(c, PURGE_KEY).await?;
        for (property_id, key_id) in &writes.purged {
            rows.push(request(c, &purge, [property_id, key_id]));
        }
    }
    if !writes.purged_reservations.is_empty() {
        let purge = prepared(c, PURGE_RESERVATION).await?;
        for (property_id, reservation_key) in &writes.purged_reservations {
            rows.push(request(c, &purge, [property_id, reservation_key]));
        }
    }
    if !writes.reservations.is_empty() {
        let upsert = prepared(c, UPSERT_RESERVATION).await?;
        for (property_id, reservation_key, record) in &writes.reservations {
            rows.push(request(c, &upsert, [property_id, reservation_key, record]));
        }
    }
    if !writes.idempotency.is_empty() {
        let upsert = prepared(c, UPSERT_IDEMPOTENCY).await?;
        for (property_id, request_id, created_at, record) in &writes.idempotency {
            rows.push(request(
                c,
                &upsert,
                [property_id, request_id, created_at, record],
            ));
        }
    }
    if !writes.audit.is_empty() {
        let upsert = prepared(c, UPSERT_AUDIT).await?;
        for (property_id, id, record) in &writes.audit {
            rows.push(request(c, &upsert, [property_id, id, record]));
        }
    }
    if !writes.changes.is_empty() {
        let move_head = prepared(c, MOVE_HEAD).await?;
        for ((property_id, _), count) in writes.changes.iter().zip(&counts) {
            rows.push(request(
                c,
                &move_head,
                [property_id, count, &listen::CHANNEL],
            ));
        }
    }
    if writes.changes.is_empty() {
        if let Some(sql) = after {
            rows.push(statements::simple(c, sql));
        }
        statements::pipeline(rows).await?;
        return Ok(Vec::new());
    }
    let answers = statements::pipeline(rows).await?;
    // The heads' moves are the last answers of the first pipeline
    // (`after` is not in it).
    let heads = &answers[answers.len() - writes.changes.len()..];
    let mut numbered = Vec::new();
    let mut logged = Vec::new();
    for ((property_id, pending), (head, count)) in
        writes.changes.iter().zip(heads.iter().zip(&counts))
    {
        let head: i64 = head
            .first()
            .ok_or_else(|| Failure::Other(crate::db_error("the change head was not moved")))?
            .get(0);
        let first = (head - count + 1) as u64;
        for (i, change) in pending.iter().enumerate() {
            let change = change.clone().numbered(first + i as u64);
            let at = records::change(property_id, change.sequence);
            let record = records::seal(sealer, &at, &change).map_err(Failure::Other)?;
            logged.push((
                property_id,
                change.sequence as i64,
                change.at.as_micros(),
                record,
            ));
            numbered.push(change);
        }
    }
    let log = prepared(c, LOG_CHANGE).await?;
    let mut rows: Vec<Request<'_>> = logged
        .iter()
        .map(|(property_id, sequence, at, record)| {
            request(c, &log, [*property_id, sequence, at, record])
        })
        .collect();
    if let Some(sql) = after {
        rows.push(statements::simple(c, sql));
    }
    statements::pipeline(rows).await?;
    Ok(numbered)
}
