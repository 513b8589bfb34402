//! keysmith's state in PostgreSQL, behind the same [`Store`] trait as the
//! embedded sled store: keys, reservations, request_id answers, audit
//! records, each property's change log and the drivers' own state, in the
//! tables of `migrations/`, every value that may hold a secret sealed as
//! the sled store seals it (keysmith-store's sealing: the same
//! key-encryption key wraps the data keys, which live wrapped in the
//! database).
//!
//! - **Transactions**: each mutation is one database transaction, READ
//!   COMMITTED with advisory locks on its lock names; see
//!   [`transaction`](crate::transaction) for why, and for the retries of
//!   serialization failures and deadlocks.
//! - **Durability**: a commit returns once PostgreSQL committed it
//!   (`synchronous_commit` as the server is configured: on by default).
//!   `enqueue` commits before it returns too, so `sync` has nothing to wait
//!   for.
//! - **The change feed**: changes are numbered inside the transaction from
//!   a per-property head row and published after the commit, in order.
//!   Several keysmith processes may share the database: each commit
//!   notifies its properties' new heads (`NOTIFY`, sent only if it
//!   commits), and each process's listener reads the changes it did not
//!   make from the log and publishes them too, so that WatchKeys delivers
//!   every process's changes with the same numbers and a resume token
//!   from one process resumes on another (see [`listen`](crate::listen)).
//!   Listings read the database, so a key one process answered for is
//!   listed by every other at once.
//! - **Leases** on background work (`lease.rs`): one row per
//!   lease in `leases`, taken or renewed by one statement that compares
//!   expiry with the database's `now()`, so that replicas sharing the
//!   database run the sweeper, the key follower and each 3RPMS hotel once.
//! - **Known cost**: the trait's plain reads (`key`, `scan_keys`, ...) are
//!   synchronous because sled answers them from memory. Here each is a
//!   database round trip that blocks its thread (`block_in_place` on a
//!   multi-thread runtime), while every connection is driven on a runtime
//!   of the store's own (`blocking.rs` says why). There
//!   is no listing cache: listings read the database.
//! - **Connections**: plain TCP without TLS (`tokio-postgres` is built
//!   without a TLS connector): for a database on loopback or a trusted
//!   network only, for now. A transaction holds its connection until it
//!   ends, driver calls included, so the pool bounds how many mutations
//!   run at once; waiting longer than the pool's timeout for a connection
//!   fails with `STORE_UNAVAILABLE`.
//! - Tested on PostgreSQL 15. Not tested on CockroachDB or YugabyteDB:
//!   their advisory locks differ, and the design leans on them.
mod blocking;
mod driver_state;
mod lease;
mod listen;
mod migrate;
mod publish;
mod rate;
mod records;
mod rotation;
mod signals;
mod statements;
pub mod testing;
mod transaction;
mod write;

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use backon::Retryable as _;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use keysmith_core::{
    audit::{AuditIds, AuditRecord},
    budget::RateBudgets,
    changes::{ChangeFeed, KeyChange},
    lease::Leases,
    locks::Locks,
    reasons,
    reservation::Reservation,
    store::{
        DriverState, Due, IdempotencyRecord, KeyIndex, KeyScan, LockName, Store, Transaction,
        WriteSet,
    },
    AccessKey, Error, ErrorKind, ListedKey, Result, Timestamp,
};
use keysmith_store::sealing::{KeyRing, Sealer};
use tokio_postgres::{types::ToSql, NoTls};

use crate::{
    blocking::wait, driver_state::PgDriverState, lease::PgLeases, listen::Listener,
    publish::Publisher, rate::PgRateBudgets, signals::Signals, transaction::PgTransaction,
    write::Prepared,
};

pub use migrate::SCHEMA_VERSION;
pub use rotation::RESEAL_LEASE;

/// The advisory lock held while the schema is migrated and the data keys
/// are read or made (one keysmith at a time).
pub(crate) const SCHEMA_LOCK: i64 = 0x6b65_7973_6d69_7468; // "keysmith"

/// How to reach the database, and what the store needs besides.
#[derive(Clone)]
pub struct PgOptions {
    /// A libpq-style URL or key=value string. It may hold a password: it is
    /// never logged or put in an error.
    pub url: String,
    /// Connections kept at most.
    pub pool_size: usize,
    /// How long a caller waits for a free connection before failing.
    pub acquire_timeout: Duration,
    /// The key-encryption keys that unwrap the data keys.
    pub keys: KeyRing,
    /// How many changes of a property a watcher may fall behind.
    pub watch_buffer: usize,
}

impl std::fmt::Debug for PgOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgOptions")
            .field("url", &"[redacted]")
            .field("pool_size", &self.pool_size)
            .field("acquire_timeout", &self.acquire_timeout)
            .finish_non_exhaustive()
    }
}

pub struct PgStore {
    pool: Pool,
    sealer: Arc<Sealer>,
    /// The process's own waiters for a lock name queue here before they
    /// take a connection; the advisory locks hold across processes.
    locks: Locks,
    /// The in-process half of the drivers' state sections: this process's
    /// waiters for a section queue here, not on connections.
    sections: Arc<Locks>,
    audit_ids: AuditIds,
    feed: Arc<ChangeFeed>,
    publisher: Arc<Publisher>,
    /// This process's waiters for the drivers' signals (`signals.rs`).
    signals: Arc<Signals>,
    /// Publishes the other processes' commits.
    listener: Listener,
    /// The online encryption rotations (`rotation.rs`).
    rotation: rotation::Rotation,
    incarnation: String,
    /// Transactions open at once: one connection fewer than the pool. A
    /// transaction holds its connection across driver calls, and a driver
    /// call may read or write the driver's state on a connection of its
    /// own: with every connection held by a transaction, those would wait
    /// for each other until the acquire timeout. One connection always
    /// left for such short calls (which never wait for another) keeps them
    /// moving.
    transactions: Arc<tokio::sync::Semaphore>,
    /// How long a transaction waits for its turn, as for a connection.
    acquire_timeout: Duration,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("incarnation", &self.incarnation)
            .finish_non_exhaustive()
    }
}

/// A failure of the database or of the connection to it: the store is
/// unavailable for now. PostgreSQL's messages name tables, constraints and
/// ids, never a sealed value.
pub(crate) fn db_error(e: impl std::fmt::Display) -> Error {
    Error::unavailable(
        reasons::STORE_UNAVAILABLE,
        format!("store (PostgreSQL): {e}"),
    )
}

pub(crate) use blocking::connection;

impl PgStore {
    /// Connects, brings the schema up to date, and opens the data keys with
    /// `options.keys` (refused, naming the key, when they do not open).
    pub async fn open(options: PgOptions) -> Result<Self> {
        let config: tokio_postgres::Config = options.url.parse().map_err(|_| {
            Error::new(
                ErrorKind::FailedPrecondition,
                reasons::STORE_UNAVAILABLE,
                "storage.postgres.url is not a PostgreSQL connection URL",
            )
        })?;
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(2))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(options.acquire_timeout))
            .create_timeout(Some(options.acquire_timeout))
            .build()
            .map_err(db_error)?;
        let mut client = connection(&pool).await?;
        let applied = migrate::migrate(&mut client).await?;
        if !applied.is_empty() {
            tracing::info!(?applied, "PostgreSQL schema migrations applied");
        }
        let (sealer, incarnation) = open_keys(&mut client, options.keys).await?;
        // Other keysmith processes on the database may rotate the data key.
        let rotation = rotation::Rotation::start(config.clone(), pool.clone(), sealer.clone());
        let feed = Arc::new(ChangeFeed::new(options.watch_buffer));
        for row in client
            .query("SELECT property_id, head FROM change_heads", &[])
            .await
            .map_err(db_error)?
        {
            let head: i64 = row.get(1);
            feed.set_head(row.get(0), head as u64);
        }
        drop(client);
        let publisher = Arc::new(Publisher::new(feed.clone()));
        let signals = Arc::new(Signals::default());
        let listener = Listener::start(config, sealer.clone(), publisher.clone(), signals.clone());
        Ok(Self {
            pool,
            sealer,
            locks: Locks::default(),
            sections: Arc::default(),
            audit_ids: AuditIds::default(),
            publisher,
            listener,
            signals,
            rotation,
            feed,
            incarnation,
            transactions: Arc::new(tokio::sync::Semaphore::new(options.pool_size.max(2) - 1)),
            acquire_timeout: options.acquire_timeout,
        })
    }

    /// A turn to hold a transaction open, waited for no longer than a
    /// connection is.
    pub(crate) async fn transaction_turn(&self) -> Result<tokio::sync::OwnedSemaphorePermit> {
        tokio::time::timeout(
            self.acquire_timeout,
            self.transactions.clone().acquire_owned(),
        )
        .await
        .map_err(|_| db_error("every connection is held by a transaction: waited too long"))?
        .map_err(db_error)
    }

    /// Closes the pool and stops the listener: every later call fails with
    /// `STORE_UNAVAILABLE`.
    pub fn close(&self) {
        self.listener.stop();
        self.rotation.stop();
        self.pool.close();
    }

    /// The key-encryption key's id and the data keys, as the encryption
    /// service reports them.
    pub fn sealer(&self) -> &Sealer {
        &self.sealer
    }

    async fn connection(&self) -> Result<Object> {
        connection(&self.pool).await
    }

    /// Gives audit records their ids and seals the writes.
    fn prepare(&self, mut writes: WriteSet) -> Result<Prepared> {
        for record in writes.audit.iter_mut().filter(|r| r.id.is_empty()) {
            record.id = self.audit_ids.next(record.at);
        }
        Prepared::of(writes, &self.sealer)
    }

    /// One query's rows, on a pooled connection, waited for.
    fn rows(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<tokio_postgres::Row>> {
        wait(async {
            let client = self.connection().await?;
            statements::query(&client, sql, params)
                .await
                .map_err(db_error)
        })
    }

    async fn read_key(
        &self,
        client: &Object,
        property_id: &str,
        key_id: &str,
    ) -> Result<Option<AccessKey>> {
        let row = statements::query_opt(
            client,
            "SELECT record FROM keys WHERE property_id = $1 AND key_id = $2",
            &[&property_id, &key_id],
        )
        .await
        .map_err(db_error)?;
        row.map(|r| self.open_key(property_id, key_id, r.get(0)))
            .transpose()
    }

    fn open_key(&self, property_id: &str, key_id: &str, sealed: &[u8]) -> Result<AccessKey> {
        records::open(&self.sealer, &records::key(property_id, key_id), sealed)
    }

    async fn read_reservation(
        &self,
        client: &Object,
        property_id: &str,
        reservation_key: &str,
    ) -> Result<Option<Reservation>> {
        let row = statements::query_opt(
            client,
            "SELECT record FROM reservations WHERE property_id = $1 AND reservation_key = $2",
            &[&property_id, &reservation_key],
        )
        .await
        .map_err(db_error)?;
        row.map(|r| {
            records::open(
                &self.sealer,
                &records::reservation(property_id, reservation_key),
                r.get(0),
            )
        })
        .transpose()
    }

    async fn read_idempotency(
        &self,
        client: &Object,
        property_id: &str,
        request_id: &str,
    ) -> Result<Option<IdempotencyRecord>> {
        let row = statements::query_opt(
            client,
            "SELECT record FROM idempotency WHERE property_id = $1 AND request_id = $2",
            &[&property_id, &request_id],
        )
        .await
        .map_err(db_error)?;
        row.map(|r| {
            records::open(
                &self.sealer,
                &records::idempotency(property_id, request_id),
                r.get(0),
            )
        })
        .transpose()
    }

    async fn reservation_key_ids(
        &self,
        client: &Object,
        property_id: &str,
        reservation_key: &str,
        live_only: bool,
    ) -> Result<Vec<String>> {
        let rows = statements::query(
            client,
            "SELECT key_id FROM keys WHERE property_id = $1 AND reservation_key = $2 \
             AND (NOT $3 OR ended_at IS NULL) ORDER BY key_id",
            &[&property_id, &reservation_key, &live_only],
        )
        .await
        .map_err(db_error)?;
        Ok(rows.into_iter().map(|r| r.get(0)).collect())
    }

    /// A sweeper walk: keys by `column` (an instant), before `before`,
    /// after the cursor.
    fn due(
        &self,
        live: bool,
        before: Timestamp,
        after: Option<&Due>,
        limit: usize,
    ) -> Result<Vec<Due>> {
        let sql = if live {
            "SELECT window_ends_at, property_id, key_id FROM keys \
             WHERE ended_at IS NULL AND window_ends_at < $1 \
             AND (window_ends_at, property_id, key_id) > ($2, $3, $4) \
             ORDER BY window_ends_at, property_id, key_id LIMIT $5"
        } else {
            "SELECT ended_at, property_id, key_id FROM keys \
             WHERE ended_at IS NOT NULL AND ended_at < $1 \
             AND (ended_at, property_id, key_id) > ($2, $3, $4) \
             ORDER BY ended_at, property_id, key_id LIMIT $5"
        };
        let (at, property, key) = match after {
            Some(d) => (d.at.as_micros(), d.property_id.as_str(), d.key_id.as_str()),
            None => (i64::MIN, "", ""),
        };
        let rows = self.rows(
            sql,
            &[&before.as_micros(), &at, &property, &key, &limit_of(limit)],
        )?;
        Ok(rows
            .into_iter()
            .map(|r| Due {
                at: Timestamp::from_micros(r.get(0)),
                property_id: r.get(1),
                key_id: r.get(2),
            })
            .collect())
    }

    /// Commits `writes` in a transaction of its own, tried again whole on a
    /// serialization failure or deadlock.
    async fn commit_alone(&self, writes: WriteSet) -> Result<()> {
        if writes.is_empty() {
            return Ok(());
        }
        let prepared = self.prepare(writes)?;
        let client = self.connection().await?;
        let (client, prepared, sealer) = (&client, &prepared, &*self.sealer);
        let attempt = move || async move {
            // BEGIN alone: writes sent behind a BEGIN that failed would each
            // commit on their own. COMMIT goes out with the last writes.
            client.batch_execute("BEGIN").await?;
            match write::apply(client, prepared, sealer, None, Some("COMMIT")).await {
                Ok(changes) => Ok(changes),
                Err(failure) => {
                    let _ = client.batch_execute("ROLLBACK").await;
                    Err(failure)
                }
            }
        };
        let changes = attempt
            .retry(transaction::backoff())
            .when(write::Failure::retryable)
            .await
            .map_err(write::Failure::into_error)?;
        self.publisher.committed(changes);
        Ok(())
    }
}

/// A property's logged changes after `after`, in order, at most `limit`.
pub(crate) async fn changes_after(
    client: &tokio_postgres::Client,
    sealer: &Sealer,
    property_id: &str,
    after: u64,
    limit: usize,
) -> Result<Vec<KeyChange>> {
    let after = i64::try_from(after).unwrap_or(i64::MAX);
    let rows = client
        .query(
            "SELECT sequence, record FROM changes WHERE property_id = $1 AND sequence > $2 \
             ORDER BY sequence LIMIT $3",
            &[&property_id, &after, &limit_of(limit)],
        )
        .await
        .map_err(db_error)?;
    rows.into_iter()
        .map(|r| {
            let sequence: i64 = r.get(0);
            records::open(
                sealer,
                &records::change(property_id, sequence as u64),
                r.get(1),
            )
        })
        .collect()
}

/// A limit as PostgreSQL takes it.
fn limit_of(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// Reads (or makes, for a new database) the wrapped data keys and the
/// store's incarnation, under the schema lock.
async fn open_keys(
    client: &mut tokio_postgres::Client,
    ring: KeyRing,
) -> Result<(Arc<Sealer>, String)> {
    let tx = client.transaction().await.map_err(db_error)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
        .await
        .map_err(db_error)?;
    let (stored, current) = rotation::read_keys(&tx).await?;
    let opened = Sealer::open_keys(stored, current, ring)?;
    for (id, wrapped) in opened.rewrapped.iter().chain(&opened.created) {
        tx.execute(
            "INSERT INTO data_keys (id, wrapped) VALUES ($1, $2) \
             ON CONFLICT (id) DO UPDATE SET wrapped = EXCLUDED.wrapped",
            &[&(*id as i32), wrapped],
        )
        .await
        .map_err(db_error)?;
    }
    if let Some((id, _)) = &opened.created {
        rotation::make_current(&tx, *id).await?;
    }
    let made = format!("{:032x}", rand::random::<u128>());
    tx.execute(
        "INSERT INTO keysmith_meta (name, value) VALUES ('incarnation', $1) \
         ON CONFLICT (name) DO NOTHING",
        &[&made.as_bytes()],
    )
    .await
    .map_err(db_error)?;
    let incarnation: Vec<u8> = tx
        .query_one(
            "SELECT value FROM keysmith_meta WHERE name = 'incarnation'",
            &[],
        )
        .await
        .map_err(db_error)?
        .get(0);
    tx.commit().await.map_err(db_error)?;
    if !opened.rewrapped.is_empty() {
        tracing::info!(
            rewrapped = opened.rewrapped.len(),
            "data keys wrapped with the current key-encryption key"
        );
    }
    Ok((
        opened.sealer,
        String::from_utf8_lossy(&incarnation).into_owned(),
    ))
}

#[async_trait]
impl Store for PgStore {
    async fn begin(&self, locks: Vec<LockName>) -> Result<Box<dyn Transaction + '_>> {
        Ok(Box::new(PgTransaction::begin(self, &locks).await?))
    }

    fn key(&self, property_id: &str, key_id: &str) -> Result<Option<AccessKey>> {
        wait(async {
            let client = self.connection().await?;
            self.read_key(&client, property_id, key_id).await
        })
    }

    fn reservation(&self, property_id: &str, reservation_key: &str) -> Result<Option<Reservation>> {
        wait(async {
            let client = self.connection().await?;
            self.read_reservation(&client, property_id, reservation_key)
                .await
        })
    }

    fn idempotency(
        &self,
        property_id: &str,
        request_id: &str,
    ) -> Result<Option<IdempotencyRecord>> {
        wait(async {
            let client = self.connection().await?;
            self.read_idempotency(&client, property_id, request_id)
                .await
        })
    }

    fn scan_keys(&self, scan: &KeyScan<'_>) -> Result<Vec<Arc<ListedKey>>> {
        let after = scan.after.unwrap_or("");
        let limit = limit_of(scan.limit);
        const LIVE: &str = "AND ($3 = false OR k.ended_at IS NULL)";
        let rows = match &scan.index {
            KeyIndex::Property => self.rows(
                &format!(
                    "SELECT k.key_id, k.record FROM keys k WHERE k.property_id = $1 \
                     AND k.key_id > $2 {LIVE} ORDER BY k.key_id LIMIT $4"
                ),
                &[&scan.property_id, &after, &scan.live_only, &limit],
            )?,
            KeyIndex::Holder(holder) => self.rows(
                &format!(
                    "SELECT k.key_id, k.record FROM keys k WHERE k.property_id = $1 \
                     AND k.key_id > $2 {LIVE} AND k.holder_id = $5 ORDER BY k.key_id LIMIT $4"
                ),
                &[&scan.property_id, &after, &scan.live_only, &limit, holder],
            )?,
            KeyIndex::Reservation(rk) => self.rows(
                &format!(
                    "SELECT k.key_id, k.record FROM keys k WHERE k.property_id = $1 \
                     AND k.key_id > $2 {LIVE} AND k.reservation_key = $5 \
                     ORDER BY k.key_id LIMIT $4"
                ),
                &[&scan.property_id, &after, &scan.live_only, &limit, rk],
            )?,
            KeyIndex::Entrance(entrance) => self.rows(
                &format!(
                    "SELECT k.key_id, k.record FROM key_entrances e JOIN keys k \
                     ON k.property_id = e.property_id AND k.key_id = e.key_id \
                     WHERE e.property_id = $1 AND e.entrance_id = $5 AND e.key_id > $2 \
                     {LIVE} ORDER BY e.key_id LIMIT $4"
                ),
                &[&scan.property_id, &after, &scan.live_only, &limit, entrance],
            )?,
        };
        rows.into_iter()
            .map(|r| {
                let key_id: &str = r.get(0);
                Ok(ListedKey::new(self.open_key(
                    scan.property_id,
                    key_id,
                    r.get(1),
                )?))
            })
            .collect()
    }

    fn audit_page(
        &self,
        property_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditRecord>> {
        let rows = self.rows(
            "SELECT id, record FROM audit WHERE property_id = $1 AND id > $2 \
             ORDER BY id LIMIT $3",
            &[&property_id, &after.unwrap_or(""), &limit_of(limit)],
        )?;
        rows.into_iter()
            .map(|r| {
                let id: &str = r.get(0);
                records::open(&self.sealer, &records::audit(property_id, id), r.get(1))
            })
            .collect()
    }

    async fn expire_idempotency(&self, before: Timestamp) -> Result<usize> {
        let client = self.connection().await?;
        let statement =
            statements::prepared(&client, "DELETE FROM idempotency WHERE created_at < $1")
                .await
                .map_err(db_error)?;
        let deleted = client
            .execute(&statement, &[&before.as_micros()])
            .await
            .map_err(db_error)?;
        Ok(deleted as usize)
    }

    fn ended_live_keys(
        &self,
        before: Timestamp,
        after: Option<&Due>,
        limit: usize,
    ) -> Result<Vec<Due>> {
        self.due(true, before, after, limit)
    }

    fn purgeable_keys(
        &self,
        before: Timestamp,
        after: Option<&Due>,
        limit: usize,
    ) -> Result<Vec<Due>> {
        self.due(false, before, after, limit)
    }

    async fn purge_audit(&self, before: Timestamp, limit: usize) -> Result<usize> {
        // Audit ids are ULIDs, which sort by the time they were made.
        let cutoff =
            ulid::Ulid::from_parts(before.as_micros().max(0) as u64 / 1_000, 0).to_string();
        let client = self.connection().await?;
        let statement = statements::prepared(
            &client,
            "DELETE FROM audit WHERE (property_id, id) IN \
             (SELECT property_id, id FROM audit WHERE id < $1 ORDER BY id LIMIT $2)",
        )
        .await
        .map_err(db_error)?;
        let deleted = client
            .execute(&statement, &[&cutoff, &limit_of(limit)])
            .await
            .map_err(db_error)?;
        Ok(deleted as usize)
    }

    async fn commit(&self, writes: WriteSet) -> Result<()> {
        self.commit_alone(writes).await
    }

    fn enqueue(&self, writes: WriteSet) -> Result<()> {
        // Committed before it returns: simpler than a queue, and as the
        // trait allows (durable by the next commit or sync, and sooner).
        wait(self.commit_alone(writes))
    }

    async fn sync(&self) -> Result<()> {
        // Every commit and enqueue was durable when it returned.
        Ok(())
    }

    fn new_audit_id(&self, at: Timestamp) -> String {
        self.audit_ids.next(at)
    }

    fn driver_state(&self, driver: &str) -> Result<Arc<dyn DriverState>> {
        Ok(Arc::new(PgDriverState {
            namespace: driver.to_owned(),
            pool: self.pool.clone(),
            sealer: self.sealer.clone(),
            sections: self.sections.clone(),
            signals: self.signals.clone(),
        }))
    }

    fn change_feed(&self) -> &ChangeFeed {
        &self.feed
    }

    fn incarnation(&self) -> &str {
        &self.incarnation
    }

    fn changes_after(&self, property_id: &str, after: u64, limit: usize) -> Result<Vec<KeyChange>> {
        wait(async {
            let client = self.connection().await?;
            changes_after(&client, &self.sealer, property_id, after, limit).await
        })
    }

    fn catch_up_changes(&self, property_id: &str) -> Result<()> {
        wait(async {
            let client = self.connection().await?;
            let head = statements::query_opt(
                &client,
                "SELECT head FROM change_heads WHERE property_id = $1",
                &[&property_id],
            )
            .await
            .map_err(db_error)?
            .map_or(0, |r| r.get::<_, i64>(0) as u64);
            listen::catch_up(&client, &self.sealer, &self.publisher, property_id, head).await
        })
    }

    fn changes_purged_through(&self, property_id: &str) -> Result<u64> {
        let rows = self.rows(
            "SELECT purged_through FROM change_heads WHERE property_id = $1",
            &[&property_id],
        )?;
        Ok(rows.first().map_or(0, |r| r.get::<_, i64>(0) as u64))
    }

    async fn purge_changes(&self, before: Timestamp, limit: usize) -> Result<usize> {
        let mut client = self.connection().await?;
        // Each statement cached on the connection (`statements.rs`).
        let tx = client.transaction().await.map_err(db_error)?;
        let properties: Vec<String> = tx
            .query(
                &tx.prepare_cached("SELECT property_id FROM change_heads ORDER BY property_id")
                    .await
                    .map_err(db_error)?,
                &[],
            )
            .await
            .map_err(db_error)?
            .into_iter()
            .map(|r| r.get(0))
            .collect();
        let mut purged = 0;
        for property_id in properties {
            if purged >= limit {
                break;
            }
            // A property's records are in the order they were made: the
            // purge stops at the first one that is recent enough.
            let rows = tx
                .query(
                    &tx.prepare_cached(
                        "SELECT sequence, at FROM changes WHERE property_id = $1 \
                     ORDER BY sequence LIMIT $2",
                    )
                    .await
                    .map_err(db_error)?,
                    &[&property_id, &limit_of(limit - purged)],
                )
                .await
                .map_err(db_error)?;
            let mut last = None;
            for row in rows {
                let (sequence, at): (i64, i64) = (row.get(0), row.get(1));
                if at >= before.as_micros() {
                    break;
                }
                last = Some(sequence);
                purged += 1;
            }
            if let Some(last) = last {
                tx.execute(
                    &tx.prepare_cached(
                        "DELETE FROM changes WHERE property_id = $1 AND sequence <= $2",
                    )
                    .await
                    .map_err(db_error)?,
                    &[&property_id, &last],
                )
                .await
                .map_err(db_error)?;
                tx.execute(
                    &tx.prepare_cached(
                        "UPDATE change_heads SET purged_through = greatest(purged_through, $2) \
                     WHERE property_id = $1",
                    )
                    .await
                    .map_err(db_error)?,
                    &[&property_id, &last],
                )
                .await
                .map_err(db_error)?;
            }
        }
        tx.commit().await.map_err(db_error)?;
        Ok(purged)
    }

    fn rate_budgets(&self) -> Option<Arc<dyn RateBudgets>> {
        Some(Arc::new(PgRateBudgets {
            pool: self.pool.clone(),
        }))
    }

    fn leases(&self) -> Arc<dyn Leases> {
        Arc::new(PgLeases {
            pool: self.pool.clone(),
        })
    }
}

/// Whether `url` is a PostgreSQL connection URL (or key=value string) that
/// names a host: what the configuration check asks.
pub fn is_connection_url(url: &str) -> bool {
    url.parse::<tokio_postgres::Config>()
        .is_ok_and(|c| !c.get_hosts().is_empty())
}
