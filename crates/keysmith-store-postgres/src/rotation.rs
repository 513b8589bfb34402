//! The online encryption rotations on PostgreSQL, with the same API and
//! guarantees as the sled store's (keysmith-store's `encryption.rs`), for
//! any number of keysmith processes on the database.
//!
//! - **A data key rotation** stores a new data key (wrapped by the
//!   key-encryption key) and makes it current in one transaction, then
//!   every sealed value of every table is sealed again with it, a page at
//!   a time, by whichever keysmith holds the [`RESEAL_LEASE`]. Each page is
//!   one `UPDATE` that replaces a value only if it is still the one read
//!   (a value written meanwhile is left as its writer made it), so a
//!   resealing page never waits on a request, and a request waits at most
//!   for one page. Once a whole pass finds nothing sealed with an old key,
//!   the old keys are *retired* (migration 0004: from then on the database
//!   refuses a value sealed with one), a last pass reseals what a writer
//!   still sealed with them before that, and then they are deleted. So a
//!   data key is deleted only when no value names it, whatever another
//!   keysmith does. The work is resumable: it is the database's state (more
//!   than one data key), which every keysmith reads at start.
//! - **A key-encryption key rotation** rewraps every stored data key with
//!   the new key in one transaction.
//! - **Other keysmith processes learn of both** through a notification on
//!   [`KEYS_CHANNEL`] (one connection of each process listens for it, and
//!   reads the data keys again each time it connects, since a notification
//!   sent while it was away is lost), and, sooner still, when a value names
//!   a data key they do not hold: the sealer reads the data keys again
//!   before it gives up. From then on they seal with the new key. One that
//!   hears nothing (its listening connection lost) keeps sealing with the
//!   old key until it reconnects; the resealing catches those values, and
//!   once the old key is retired such a write is refused (UNAVAILABLE, to
//!   be retried) rather than stored under a key about to be deleted.
use std::{future::poll_fn, sync::Arc, time::Duration};

use backon::{BackoffBuilder, ExponentialBuilder, Retryable as _};
use deadpool_postgres::Pool;
use keysmith_core::{
    lease::{Lease, LeaseKeeper},
    reasons,
    store::Store,
    Error, ErrorKind, Result,
};
use keysmith_store::{
    sealing::{KeyEncryptionKey, KeyLoader, Sealer},
    EncryptionStatus,
};
use parking_lot::Mutex;
use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
};
use tokio_postgres::{types::ToSql, AsyncMessage, Config, GenericClient, NoTls};

use crate::{blocking, db_error, records, write::Failure, PgStore, SCHEMA_LOCK};

/// The channel on which a rotation (or the end of one) is announced; the
/// payload is empty.
pub(crate) const KEYS_CHANNEL: &str = "keysmith_data_keys";

/// The lease under which values are sealed again, on one keysmith at a
/// time.
pub const RESEAL_LEASE: &str = "reseal";

/// The lock that retiring a data key takes exclusively and the trigger of
/// migration 0004 shared ("keysreti").
const RETIRE_LOCK: i64 = 0x6b65_7973_7265_7469;

/// Rows read per page of a table, and so values sealed again per UPDATE at
/// most: small, so that a request waits for one page at most.
const PAGE: i64 = 256;

/// The rotations' state in this process.
pub(crate) struct Rotation {
    keys: Arc<KeyState>,
    /// This process's rotations, one at a time (across processes, the
    /// schema lock orders them).
    turn: tokio::sync::Mutex<()>,
    /// Learns of the other processes' rotations.
    watcher: JoinHandle<()>,
    /// Seals values again when a rotation is under way (once started).
    resealer: Mutex<Option<JoinHandle<()>>>,
}

/// What this process knows of the stored data keys, beyond the sealer.
struct KeyState {
    /// Whether the store holds more than one data key: a data key rotation
    /// is under way (values are being sealed again).
    resealing: watch::Sender<bool>,
    /// The key-encryption key the stored data keys are wrapped with (which
    /// another process may have rotated to).
    wrapped_with: Mutex<String>,
    /// One reading of the data keys applied at a time, in the order read:
    /// an older reading applied after a newer one would say a finished
    /// rotation is under way again.
    learning: tokio::sync::Mutex<()>,
}

impl KeyState {
    fn note(&self, stored: &[(u32, Vec<u8>)]) {
        let resealing = stored.len() > 1;
        self.resealing
            .send_if_modified(|r| std::mem::replace(r, resealing) != resealing);
        if let Some((_, wrapped)) = stored.iter().max_by_key(|(id, _)| *id) {
            if let Ok(kek) = Sealer::wrapped_with(wrapped) {
                *self.wrapped_with.lock() = kek;
            }
        }
    }
}

impl Rotation {
    /// Starts learning of rotations for `sealer`: from the notifications
    /// (on a connection of its own made from `config`) and whenever a value
    /// names a data key the sealer does not hold (on `pool`).
    pub(crate) fn start(config: Config, pool: Pool, sealer: Arc<Sealer>) -> Self {
        let keys = Arc::new(KeyState {
            // The sealer holds the stored data keys, just read: more than
            // one is a rotation a restart stopped, which goes on.
            resealing: watch::Sender::new(sealer.data_keys().len() > 1),
            wrapped_with: Mutex::new(sealer.key_encryption_key_id()),
            learning: tokio::sync::Mutex::new(()),
        });
        // The sealer learns what this reads; the resealing state follows
        // at the notification, which comes with the same change.
        let loader: KeyLoader = Arc::new(move || {
            blocking::wait(async {
                let client = crate::connection(&pool).await?;
                read_keys(&**client).await
            })
        });
        sealer.load_unknown_keys_from(loader);
        let watcher = watch_keys(config, sealer, keys.clone());
        Self {
            keys,
            turn: tokio::sync::Mutex::new(()),
            watcher,
            resealer: Mutex::new(None),
        }
    }

    /// Stops listening and resealing.
    pub(crate) fn stop(&self) {
        self.watcher.abort();
        if let Some(task) = self.resealer.lock().take() {
            task.abort();
        }
    }
}

impl Drop for Rotation {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A transaction on a pooled connection.
async fn begin(client: &mut tokio_postgres::Client) -> Result<tokio_postgres::Transaction<'_>> {
    client.transaction().await.map_err(db_error)
}

/// A transaction that changes the data keys: under the schema lock, which
/// a starting keysmith holds while it reads them, so one change at a time
/// across every keysmith of the database.
async fn begin_on_keys(
    client: &mut tokio_postgres::Client,
) -> Result<tokio_postgres::Transaction<'_>> {
    let tx = begin(client).await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
        .await
        .map_err(db_error)?;
    Ok(tx)
}

/// Makes data key `id` the one that seals new values, in `tx`.
pub(crate) async fn make_current(tx: &tokio_postgres::Transaction<'_>, id: u32) -> Result<()> {
    tx.execute(
        "INSERT INTO keysmith_meta (name, value) VALUES ('current_data_key', $1) \
         ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
        &[&id.to_be_bytes().as_slice()],
    )
    .await
    .map_err(db_error)?;
    Ok(())
}

/// Commits a change of the data keys, with the notification that tells
/// every keysmith of the database to read them again (sent only if it
/// commits).
async fn commit_announced(tx: tokio_postgres::Transaction<'_>) -> Result<()> {
    tx.execute("SELECT pg_notify($1, '')", &[&KEYS_CHANNEL])
        .await
        .map_err(db_error)?;
    tx.commit().await.map_err(db_error)
}

/// The stored data keys (id and wrapped form) and the current one's id.
pub(crate) async fn read_keys(
    client: &impl GenericClient,
) -> Result<(Vec<(u32, Vec<u8>)>, Option<u32>)> {
    let stored = client
        .query("SELECT id, wrapped FROM data_keys ORDER BY id", &[])
        .await
        .map_err(db_error)?
        .into_iter()
        .map(|r| (r.get::<_, i32>(0) as u32, r.get::<_, Vec<u8>>(1)))
        .collect();
    let current = client
        .query_opt(
            "SELECT value FROM keysmith_meta WHERE name = 'current_data_key'",
            &[],
        )
        .await
        .map_err(db_error)?
        .and_then(|r| <[u8; 4]>::try_from(r.get::<_, &[u8]>(0)).ok())
        .map(u32::from_be_bytes);
    Ok((stored, current))
}

/// Reads the stored data keys and brings `sealer` in line with them.
async fn learn(client: &impl GenericClient, sealer: &Sealer, keys: &KeyState) -> Result<()> {
    let _one_at_a_time = keys.learning.lock().await;
    let before = sealer.current();
    let (stored, current) = read_keys(client).await?;
    // The sealer first: once `resealing` says false, the old keys are gone.
    let changed = sealer.learn(stored.clone(), current)?;
    keys.note(&stored);
    if changed && sealer.current() != before {
        tracing::info!(
            data_key = sealer.current(),
            "a data key rotation: new values are sealed with the new data key from now on"
        );
    }
    Ok(())
}

/// Listens for [`KEYS_CHANNEL`] on a connection of its own and reads the
/// data keys again at each notification and each (re)connection.
fn watch_keys(mut config: Config, sealer: Arc<Sealer>, keys: Arc<KeyState>) -> JoinHandle<()> {
    config
        .connect_timeout(Duration::from_secs(10))
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(30))
        .keepalives_interval(Duration::from_secs(10))
        .keepalives_retries(3);
    blocking::spawn(async move {
        let mut delays = reconnect_backoff().build();
        loop {
            let ended = follow(&config, &sealer, &keys, &mut delays).await;
            let delay = delays.next().unwrap_or(Duration::from_secs(5));
            match ended {
                Ok(()) => tracing::warn!(?delay, "the data key listener's connection closed"),
                // The database gone, or a data key this process cannot
                // unwrap (the error names the key-encryption key it needs).
                Err(error) => tracing::warn!(
                    %error,
                    ?delay,
                    "the data key listener stopped: reconnecting"
                ),
            }
            tokio::time::sleep(delay).await;
        }
    })
}

fn reconnect_backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(50))
        .with_max_delay(Duration::from_secs(5))
        .without_max_times()
        .with_jitter()
}

async fn follow(
    config: &Config,
    sealer: &Sealer,
    keys: &KeyState,
    delays: &mut backon::ExponentialBackoff,
) -> Result<()> {
    let (client, mut connection) = config.connect(NoTls).await.map_err(db_error)?;
    let (told, mut notifications) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(message) = poll_fn(|cx| connection.poll_message(cx)).await {
            match message {
                Ok(AsyncMessage::Notification(n)) if n.channel() == KEYS_CHANNEL => {
                    if told.send(()).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    });
    client
        .batch_execute(&format!("LISTEN {KEYS_CHANNEL}"))
        .await
        .map_err(db_error)?;
    // Listening already: a rotation committed after this read is notified.
    learn(&client, sealer, keys).await?;
    *delays = reconnect_backoff().build();
    while notifications.recv().await.is_some() {
        while notifications.try_recv().is_ok() {}
        learn(&client, sealer, keys).await?;
    }
    Ok(())
}

/// A table's sealed column and how its rows are found and bound.
struct Table {
    name: &'static str,
    /// The primary key's columns: a text one, then `second`.
    first: &'static str,
    second: &'static str,
    kind: Kind,
    column: &'static str,
    /// Where the value lives, as its associated data says.
    path: fn(&str, &Second) -> Vec<u8>,
}

/// The type of a primary key's second column.
#[derive(Clone, Copy)]
enum Kind {
    Text,
    Int,
    Bytes,
}

impl Kind {
    fn sql(self) -> &'static str {
        match self {
            Kind::Text => "text",
            Kind::Int => "bigint",
            Kind::Bytes => "bytea",
        }
    }
}

/// A primary key's second column.
#[derive(Clone)]
enum Second {
    Text(String),
    Int(i64),
    Bytes(Vec<u8>),
}

impl Second {
    fn read(row: &tokio_postgres::Row, kind: Kind) -> Self {
        match kind {
            Kind::Text => Second::Text(row.get(1)),
            Kind::Int => Second::Int(row.get(1)),
            Kind::Bytes => Second::Bytes(row.get(1)),
        }
    }

    fn text(&self) -> &str {
        match self {
            Second::Text(s) => s,
            _ => "",
        }
    }

    fn param(&self) -> &(dyn ToSql + Sync) {
        match self {
            Second::Text(s) => s,
            Second::Int(i) => i,
            Second::Bytes(b) => b,
        }
    }
}

/// Every table that holds sealed values.
const TABLES: &[Table] = &[
    Table {
        name: "keys",
        first: "property_id",
        second: "key_id",
        kind: Kind::Text,
        column: "record",
        path: |p, s| records::key(p, s.text()),
    },
    Table {
        name: "reservations",
        first: "property_id",
        second: "reservation_key",
        kind: Kind::Text,
        column: "record",
        path: |p, s| records::reservation(p, s.text()),
    },
    Table {
        name: "idempotency",
        first: "property_id",
        second: "request_id",
        kind: Kind::Text,
        column: "record",
        path: |p, s| records::idempotency(p, s.text()),
    },
    Table {
        name: "audit",
        first: "property_id",
        second: "id",
        kind: Kind::Text,
        column: "record",
        path: |p, s| records::audit(p, s.text()),
    },
    Table {
        name: "changes",
        first: "property_id",
        second: "sequence",
        kind: Kind::Int,
        column: "record",
        path: |p, s| match s {
            Second::Int(sequence) => records::change(p, *sequence as u64),
            _ => Vec::new(),
        },
    },
    Table {
        name: "driver_state",
        first: "namespace",
        second: "key",
        kind: Kind::Bytes,
        column: "value",
        path: |p, s| match s {
            Second::Bytes(key) => records::driver_state(p, key),
            _ => Vec::new(),
        },
    },
];

/// Values of one page to seal again: each row's key, the value read and
/// the value to write.
#[derive(Default)]
struct Resealed {
    first: Vec<String>,
    second: Vec<Second>,
    old: Vec<Vec<u8>>,
    new: Vec<Vec<u8>>,
}

impl PgStore {
    /// Where the store's encryption stands, as this process knows it: the
    /// key-encryption key the stored data keys are wrapped with, and
    /// whether a data key rotation is still sealing values again (on any
    /// keysmith of the database).
    pub fn encryption_status(&self) -> EncryptionStatus {
        EncryptionStatus {
            key_encryption_key_id: self.rotation.keys.wrapped_with.lock().clone(),
            current_data_key: self.sealer.current(),
            data_keys: self.sealer.data_keys(),
            resealing: *self.rotation.keys.resealing.borrow(),
        }
    }

    /// Resolves once no data key rotation is sealing values again, as far
    /// as this process knows.
    pub async fn resealed(&self) {
        let mut resealing = self.rotation.keys.resealing.subscribe();
        let _ = resealing.wait_for(|busy| !busy).await;
    }

    /// Wraps every stored data key with `new`, which then is the
    /// key-encryption key, in one transaction: the values need not change.
    /// Every keysmith on the database must be given `new` from its next
    /// start on; one started later with only `new` opens the store.
    pub async fn rotate_key_encryption_key(&self, new: KeyEncryptionKey) -> Result<()> {
        let _turn = self.rotation.turn.lock().await;
        let mut client = self.connection().await?;
        let tx = begin_on_keys(&mut client).await?;
        let (stored, current) = read_keys(&tx).await?;
        // A data key another process made, which this one holds too: it is
        // rewrapped from memory (the key that wraps it may be unknown here).
        self.sealer.learn(stored.clone(), current)?;
        let ids: Vec<u32> = stored.iter().map(|(id, _)| *id).collect();
        for (id, wrapped) in self.sealer.rewrap(&ids, &new)? {
            tx.execute(
                "UPDATE data_keys SET wrapped = $2 WHERE id = $1",
                &[&(id as i32), &wrapped],
            )
            .await
            .map_err(db_error)?;
        }
        commit_announced(tx).await?;
        *self.rotation.keys.wrapped_with.lock() = new.id().to_owned();
        self.sealer.use_key_encryption_key(new);
        tracing::info!("every data key is wrapped with the new key-encryption key");
        Ok(())
    }

    /// Makes a new data key the one that seals new values (on every
    /// keysmith of the database, once it learns of it), then seals every
    /// value again with it in the background, under the [`RESEAL_LEASE`],
    /// and deletes the old key once no value names it. Returns the new
    /// key's id; [`PgStore::resealed`] waits for the background work.
    pub async fn rotate_data_key(&self) -> Result<u32> {
        let _turn = self.rotation.turn.lock().await;
        let mut client = self.connection().await?;
        let tx = begin_on_keys(&mut client).await?;
        let (stored, current) = read_keys(&tx).await?;
        if stored.len() > 1 {
            return Err(Error::failed_precondition(
                reasons::ROTATION_IN_PROGRESS,
                "a data key rotation is under way: wait until its records are sealed again",
            ));
        }
        let ours = self.sealer.key_encryption_key_id();
        for (_, wrapped) in &stored {
            let theirs = Sealer::wrapped_with(wrapped)?;
            if theirs != ours {
                return Err(Error::new(
                    ErrorKind::FailedPrecondition,
                    reasons::KEY_ENCRYPTION_KEY_INVALID,
                    format!(
                        "the data keys are wrapped with the key-encryption key {theirs:?} (rotated \
                         on another keysmith), and this one was given {ours:?}: restart it with \
                         {theirs:?} as storage.encryption's key before rotating the data key here"
                    ),
                ));
            }
        }
        self.sealer.learn(stored.clone(), current)?;
        let id = stored.iter().map(|(id, _)| *id).max().map_or(1, |m| m + 1);
        let (key, wrapped) = self.sealer.make_data_key(id)?;
        tx.execute(
            "INSERT INTO data_keys (id, wrapped) VALUES ($1, $2)",
            &[&(id as i32), &wrapped],
        )
        .await
        .map_err(db_error)?;
        make_current(&tx, id).await?;
        commit_announced(tx).await?;
        self.sealer.use_data_key(id, key);
        self.rotation.keys.resealing.send_replace(true);
        tracing::info!(
            data_key = id,
            "a new data key seals new values; resealing the others"
        );
        Ok(id)
    }

    /// Starts the background work that seals values again whenever a data
    /// key rotation is under way (one made here, on another keysmith, or
    /// stopped by a restart), on the keysmith that holds the
    /// [`RESEAL_LEASE`], whose time to live is `lease_ttl`.
    pub fn start_resealing(self: &Arc<Self>, lease_ttl: Duration) {
        let task = tokio::spawn(resealing(Arc::downgrade(self), lease_ttl));
        if let Some(old) = self.rotation.resealer.lock().replace(task) {
            old.abort();
        }
    }

    /// Reads the stored data keys and brings the sealer in line.
    async fn learn_keys(&self) -> Result<()> {
        let client = self.connection().await?;
        learn(&**client, &self.sealer, &self.rotation.keys).await
    }

    /// Seals every value again with the current data key, retires the old
    /// keys, seals again what was sealed with them meanwhile, and deletes
    /// them. Whether it finished (false: the lease was lost on the way).
    async fn reseal(&self, lease: &Lease) -> Result<bool> {
        self.learn_keys().await?;
        if self.sealer.data_keys().len() < 2 {
            // Finished already, by the keysmith that held the lease before.
            return Ok(true);
        }
        let current = self.sealer.current();
        let Some(mut resealed) = self.passes(current, lease).await? else {
            return Ok(false);
        };
        while !self.retire(current).await? {
            if !lease.held() {
                return Ok(false);
            }
        }
        // What a writer sealed with an old key before it was retired; none
        // can be written from now on.
        let Some(last) = self.passes(current, lease).await? else {
            return Ok(false);
        };
        resealed += last;
        let mut client = self.connection().await?;
        let tx = begin_on_keys(&mut client).await?;
        let deleted = tx
            .execute(
                "DELETE FROM data_keys WHERE retired AND id <> $1",
                &[&(current as i32)],
            )
            .await
            .map_err(db_error)?;
        commit_announced(tx).await?;
        drop(client);
        self.learn_keys().await?;
        tracing::info!(
            records = resealed,
            data_keys_deleted = deleted,
            "every value is sealed with the current data key; older data keys are gone"
        );
        Ok(true)
    }

    /// Marks every data key but `current` retired, once the writers that
    /// checked a key before have committed: false when they took too long
    /// (tried again, so that no request waits long behind it).
    async fn retire(&self, current: u32) -> Result<bool> {
        let mut client = self.connection().await?;
        let tx = begin(&mut client).await?;
        tx.batch_execute("SET LOCAL lock_timeout = '500ms'")
            .await
            .map_err(db_error)?;
        match tx
            .execute("SELECT pg_advisory_xact_lock($1)", &[&RETIRE_LOCK])
            .await
        {
            Ok(_) => {}
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE) => {
                return Ok(false)
            }
            Err(e) => return Err(db_error(e)),
        }
        tx.execute(
            "UPDATE data_keys SET retired = true WHERE id <> $1",
            &[&(current as i32)],
        )
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(true)
    }

    /// Passes over every table until one finds nothing to seal again (a
    /// value written with an old key during a pass is caught by the next):
    /// how many values they sealed again; None when the lease was lost.
    async fn passes(&self, current: u32, lease: &Lease) -> Result<Option<usize>> {
        let mut resealed = 0;
        loop {
            match self.pass(current, lease).await? {
                None => return Ok(None),
                Some(0) => return Ok(Some(resealed)),
                Some(found) => resealed += found,
            }
        }
    }

    /// One pass over every table: how many values it sealed again; None
    /// when the lease was lost on the way.
    async fn pass(&self, current: u32, lease: &Lease) -> Result<Option<usize>> {
        let mut found = 0;
        for table in TABLES {
            match self.reseal_table(table, current, lease).await? {
                Some(n) => found += n,
                None => return Ok(None),
            }
        }
        Ok(Some(found))
    }

    /// Seals again every value of `table` that another key than `current`
    /// sealed, a page at a time, while the lease is held.
    async fn reseal_table(
        &self,
        table: &Table,
        current: u32,
        lease: &Lease,
    ) -> Result<Option<usize>> {
        let Table {
            name,
            first,
            second,
            kind,
            column,
            path,
        } = table;
        // The value only when it is not sealed with the current key.
        let sealed_now = [
            &[keysmith_store::sealing::SEALED][..],
            &current.to_be_bytes(),
        ]
        .concat();
        let select = format!(
            "SELECT {first}, {second}, CASE WHEN substring({column} from 1 for 5) <> $1 \
             THEN {column} END FROM {name} WHERE ({first}, {second}) > ($2, $3) \
             ORDER BY {first}, {second} LIMIT $4"
        );
        let select_first = format!(
            "SELECT {first}, {second}, CASE WHEN substring({column} from 1 for 5) <> $1 \
             THEN {column} END FROM {name} ORDER BY {first}, {second} LIMIT $2"
        );
        let update = format!(
            "UPDATE {name} AS t SET {column} = u.new \
             FROM unnest($1::text[], $2::{}[], $3::bytea[], $4::bytea[]) AS u(a, b, old, new) \
             WHERE t.{first} = u.a AND t.{second} = u.b AND t.{column} = u.old",
            kind.sql()
        );
        let mut after: Option<(String, Second)> = None;
        let mut found = 0;
        loop {
            if !lease.held() {
                return Ok(None);
            }
            let client = self.connection().await?;
            let rows = match &after {
                None => client
                    .query(select_first.as_str(), &[&sealed_now, &PAGE])
                    .await
                    .map_err(db_error)?,
                Some((a, b)) => client
                    .query(select.as_str(), &[&sealed_now, a, b.param(), &PAGE])
                    .await
                    .map_err(db_error)?,
            };
            let Some(last) = rows.last() else {
                return Ok(Some(found));
            };
            after = Some((last.get(0), Second::read(last, *kind)));
            let mut page = Resealed::default();
            for row in &rows {
                let Some(old) = row.get::<_, Option<Vec<u8>>>(2) else {
                    continue;
                };
                // A plain value (none on PostgreSQL) names no key.
                if Sealer::key_of(&old).is_none_or(|id| id == current) {
                    continue;
                }
                let a: String = row.get(0);
                let b = Second::read(row, *kind);
                let at = path(&a, &b);
                let new = self.sealer.seal(&at, &self.sealer.open(&at, &old)?)?;
                page.first.push(a);
                page.second.push(b);
                page.old.push(old);
                page.new.push(new);
            }
            if page.old.is_empty() {
                continue;
            }
            found += page.old.len();
            let second_param: Box<dyn ToSql + Sync + Send> = match kind {
                Kind::Text => Box::new(
                    page.second
                        .iter()
                        .map(|s| s.text().to_owned())
                        .collect::<Vec<_>>(),
                ),
                Kind::Int => Box::new(
                    page.second
                        .iter()
                        .map(|s| match s {
                            Second::Int(i) => *i,
                            _ => 0,
                        })
                        .collect::<Vec<_>>(),
                ),
                Kind::Bytes => Box::new(
                    page.second
                        .iter()
                        .map(|s| match s {
                            Second::Bytes(b) => b.clone(),
                            _ => Vec::new(),
                        })
                        .collect::<Vec<_>>(),
                ),
            };
            let (client, update, page, second_param) =
                (&client, update.as_str(), &page, &*second_param);
            // One statement, its own transaction; a deadlock with a request
            // (which PostgreSQL breaks) is tried again.
            let attempt = move || async move {
                client
                    .execute(update, &[&page.first, second_param, &page.old, &page.new])
                    .await
                    .map_err(Failure::from)
            };
            attempt
                .retry(crate::transaction::backoff())
                .when(Failure::retryable)
                .await
                .map_err(Failure::into_error)?;
        }
    }
}

/// Waits for a data key rotation to be under way, then takes part in the
/// race for the [`RESEAL_LEASE`]: the holder seals the values again; the
/// others wait until it is done (or take over when it stops).
async fn resealing(store: std::sync::Weak<PgStore>, lease_ttl: Duration) {
    let Some(mut pending) = store
        .upgrade()
        .map(|s| s.rotation.keys.resealing.subscribe())
    else {
        return;
    };
    let mut delays = ExponentialBuilder::default()
        .with_min_delay(Duration::from_secs(1))
        .with_max_delay(Duration::from_secs(60))
        .without_max_times()
        .build();
    loop {
        if pending.wait_for(|busy| *busy).await.is_err() {
            return;
        }
        let Some(leases) = store.upgrade().map(|s| s.leases()) else {
            return;
        };
        let keeper = LeaseKeeper::new(leases, lease_ttl);
        let mut lease = keeper.keep(RESEAL_LEASE).await;
        let taken = tokio::select! {
            _ = lease.taken() => true,
            // Finished by another keysmith.
            _ = pending.wait_for(|busy| !busy) => false,
        };
        let failed = match (taken, store.upgrade()) {
            (false, _) => false,
            (true, None) => return,
            (true, Some(store)) => match store.reseal(&lease).await {
                Ok(_) => false,
                Err(error) => {
                    tracing::error!(%error, "resealing stopped; it is tried again");
                    true
                }
            },
        };
        keeper.release_all().await;
        if failed {
            tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(60))).await;
        }
    }
}
