//! The storage contract. The core reads and writes through it; the sled
//! engine lives in its own crate, and another engine can be added beside it.
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use keysmith_driver::{
    section,
    state::{Change, DriverState, StateSection, Wake},
};

use crate::{
    audit::AuditRecord,
    budget::RateBudgets,
    changes::{ChangeFeed, KeyChange},
    error::Result,
    key::{AccessKey, Warning},
    lease::Leases,
    listed::ListedKey,
    reservation::Reservation,
    time::Timestamp,
};

/// The first answer to a request that carried a request_id (AIP-155).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    /// The property the request_id belongs to: request_ids are scoped by
    /// property.
    pub property_id: String,
    /// The caller's request_id.
    pub request_id: String,
    /// The name of the [`Method`](crate::service::Method) the request was
    /// for; a request_id reused for another method is refused.
    pub method: String,
    /// A digest of the request, to tell a retry from a reuse of the id.
    pub fingerprint: [u8; 32],
    /// The first answer, given back unchanged to every retry.
    pub answer: StoredAnswer,
    /// When the first answer was committed; [`Store::expire_idempotency`]
    /// forgets the record once it is older than the retention.
    pub created_at: Timestamp,
}

/// An answer kept for the retries of a request_id, in the stored form.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum StoredAnswer {
    /// The key an Issue, UpdateKey or EncodeKey answered.
    Key(Box<AccessKey>),
    /// What a Revoke answered.
    Revoked {
        /// Every key the revocation targeted, as it answered them.
        keys: Vec<AccessKey>,
        /// The revocation's warnings.
        warnings: Vec<Warning>,
    },
}

/// Which ordered index a key listing walks. Each index is ordered by key id,
/// which grows with creation time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyIndex {
    /// Every key of the property.
    Property,
    /// The keys that name this reservation_key, whatever their incarnation.
    Reservation(String),
    /// The keys of this holder id.
    Holder(String),
    /// The keys that open this entrance.
    Entrance(String),
}

/// One stretch of a walk along a [`KeyIndex`] of one property, in key id
/// order.
#[derive(Clone, Debug)]
pub struct KeyScan<'a> {
    /// The property whose index is walked.
    pub property_id: &'a str,
    /// The index to walk.
    pub index: KeyIndex,
    /// Only live keys (not revoked, not swept as expired). A walk of a
    /// property's keys reads only live records; a walk of an index skips the
    /// ended keys it still holds, which retention bounds.
    pub live_only: bool,
    /// Exclusive: the scan starts after this key id.
    pub after: Option<&'a str>,
    /// At most this many keys are returned.
    pub limit: usize,
}

/// A key the sweeper has to look at: when it became due, and which key.
/// Ordered as the store finds them, so that one is a cursor for the next page.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Due {
    /// When the key's window ended, or when the key ended.
    pub at: Timestamp,
    /// The key's property.
    pub property_id: String,
    /// The key.
    pub key_id: String,
}

/// One atomic change: everything in it is applied together or not at all.
#[derive(Debug, Default)]
pub struct WriteSet {
    /// The new version of each key, with the version it replaces (for the indexes).
    pub keys: Vec<(AccessKey, Option<AccessKey>)>,
    /// Reservations to store, each replacing its previous version whole.
    pub reservations: Vec<Reservation>,
    /// The first answers to remember for request_ids.
    pub idempotency: Vec<IdempotencyRecord>,
    /// The audit records of the change, stored with it.
    pub audit: Vec<AuditRecord>,
    /// Keys past their retention, deleted with every entry they have.
    pub purged: Vec<AccessKey>,
    /// Reservations (property, reservation_key) whose every key was purged.
    pub purged_reservations: Vec<(String, String)>,
    /// When the change was made, by the service's clock: the key changes
    /// are logged with it (`None`: each key's `updated_at`).
    pub changed_at: Option<Timestamp>,
}

impl WriteSet {
    /// Whether there is nothing to write; a transaction with nothing to write
    /// commits without touching the store.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
            && self.reservations.is_empty()
            && self.idempotency.is_empty()
            && self.audit.is_empty()
            && self.purged.is_empty()
            && self.purged_reservations.is_empty()
    }
}

/// What a transaction holds exclusively until it ends: every mutation of
/// one request_id, of one reservation and of one key runs alone.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LockName {
    /// Held by a mutation that carries a request_id: a retry waits for the
    /// first attempt to end, then finds its answer.
    Request {
        /// The property the request_id is scoped to.
        property_id: String,
        /// The caller's request_id.
        request_id: String,
    },
    /// Held by a mutation of a key that belongs, or is to belong, to the
    /// reservation: its rules are judged, and its members changed, by one
    /// mutation at a time.
    Reservation {
        /// The reservation's property.
        property_id: String,
        /// The caller's reservation_key.
        reservation_key: String,
    },
    /// Held by every change of an existing key (an update, a revocation, a
    /// refresh, the sweeper's), so that none is made from a stale read.
    Key {
        /// The key's property.
        property_id: String,
        /// The key.
        key_id: String,
    },
}

/// One mutation's unit of work: `begin` (taking its locks), reads, buffered
/// writes, `commit`. Everything written is applied atomically by `commit`
/// and is durable when it returns; a transaction dropped without a commit
/// writes nothing. The embedded store serialises with in-process locks and
/// applies a [`WriteSet`]; a database-backed store can map it onto a
/// database transaction without the core changing.
#[async_trait]
pub trait Transaction: Send {
    /// The key as committed, `None` when the property has no such key. The
    /// core reads what it needs before it writes, so a store need not show a
    /// transaction's buffered writes to its own reads.
    async fn key(&mut self, property_id: &str, key_id: &str) -> Result<Option<AccessKey>>;
    /// The reservation as committed: `None` when it was never established; a
    /// cleared one has no members and no doors.
    async fn reservation(
        &mut self,
        property_id: &str,
        reservation_key: &str,
    ) -> Result<Option<Reservation>>;
    /// The remembered first answer to `request_id` in the property, if any.
    async fn idempotency(
        &mut self,
        property_id: &str,
        request_id: &str,
    ) -> Result<Option<IdempotencyRecord>>;
    /// The ids of the keys not revoked that name `reservation_key`, any
    /// incarnation of it.
    async fn live_keys_of_reservation(
        &mut self,
        property_id: &str,
        reservation_key: &str,
    ) -> Result<Vec<String>>;
    /// The ids of every key, live or ended, that names `reservation_key`,
    /// any incarnation of it.
    async fn keys_of_reservation(
        &mut self,
        property_id: &str,
        reservation_key: &str,
    ) -> Result<Vec<String>>;
    /// A new audit record id, as [`Store::new_audit_id`].
    fn audit_id(&self, at: Timestamp) -> String;
    /// The writes made so far, to add to.
    fn writes(&mut self) -> &mut WriteSet;
    /// Applies every write atomically; durable on return.
    async fn commit(self: Box<Self>) -> Result<()>;
}

/// Where keysmith keeps its keys, reservations, request_id answers, audit
/// log and the drivers' own state.
///
/// Every mutation goes through [`Store::begin`] and a [`Transaction`]. The
/// plain reads see committed data only: they serve GetKey and the listings,
/// and the lookups the core makes before it begins a transaction (to learn
/// which reservation to lock), which it then repeats inside it.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Begins a transaction that holds `locks` until it is committed or
    /// dropped.
    async fn begin(&self, locks: Vec<LockName>) -> Result<Box<dyn Transaction + '_>>;

    /// A key as committed, outside any transaction; `None` when the property
    /// has no such key.
    fn key(&self, property_id: &str, key_id: &str) -> Result<Option<AccessKey>>;
    /// A reservation as committed, outside any transaction.
    fn reservation(&self, property_id: &str, reservation_key: &str) -> Result<Option<Reservation>>;
    /// A remembered first answer, outside any transaction.
    fn idempotency(&self, property_id: &str, request_id: &str)
        -> Result<Option<IdempotencyRecord>>;
    /// The keys a listing walks, shared: a store may keep them in memory.
    fn scan_keys(&self, scan: &KeyScan<'_>) -> Result<Vec<Arc<ListedKey>>>;
    /// A property's audit records in the order written, after the record
    /// `after` (exclusive) when given.
    fn audit_page(
        &self,
        property_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditRecord>>;

    /// Deletes the idempotency records made before `before`: a request_id
    /// is honoured for a bounded time (AIP-155), and the records would
    /// otherwise grow without end. Returns how many were deleted, once
    /// that is durable.
    async fn expire_idempotency(&self, before: Timestamp) -> Result<usize>;

    /// Live keys whose window ended before `before`, the earliest end first,
    /// after `after` (exclusive), at most `limit`: what the sweeper moves out
    /// of the live set. Found without reading the other keys.
    fn ended_live_keys(
        &self,
        before: Timestamp,
        after: Option<&Due>,
        limit: usize,
    ) -> Result<Vec<Due>>;

    /// Ended keys (revoked, or expired and swept) that ended before
    /// `before`, the earliest first, after `after` (exclusive), at most
    /// `limit`: what retention purges.
    fn purgeable_keys(
        &self,
        before: Timestamp,
        after: Option<&Due>,
        limit: usize,
    ) -> Result<Vec<Due>>;

    /// Deletes at most `limit` audit records written before `before`, and
    /// returns how many, once that is durable.
    async fn purge_audit(&self, before: Timestamp, limit: usize) -> Result<usize>;

    /// Applies atomically, in order with every other change, and returns
    /// once the change is durable.
    async fn commit(&self, writes: WriteSet) -> Result<()>;

    /// Applies atomically, in order with every other change, without
    /// waiting: readers see it a little later, and it is durable by the
    /// time any later [`Store::commit`] or [`Store::sync`] returns.
    fn enqueue(&self, writes: WriteSet) -> Result<()>;

    /// Waits until every change made before the call is applied and durable.
    async fn sync(&self) -> Result<()>;

    /// A new audit record id for a record made at `at`, in the order of
    /// this store's ids (see [`crate::audit::AuditIds`]).
    fn new_audit_id(&self, at: Timestamp) -> String;

    /// A namespace of plain bytes for one driver's own state.
    fn driver_state(&self, driver: &str) -> Result<Arc<dyn DriverState>>;

    /// Where the store publishes each change of a key once it is durable,
    /// numbered in its property's change sequence (see
    /// [`crate::changes`]). Every [`WriteSet`] key write that changes what a
    /// caller sees is logged, in the same atomic commit.
    fn change_feed(&self) -> &ChangeFeed;

    /// What tells this store's change sequences from those of another store
    /// (or of this one made anew): made when the store is created.
    fn incarnation(&self) -> &str;

    /// A property's logged changes after sequence `after` (exclusive), in
    /// order, at most `limit`; only durable ones.
    fn changes_after(&self, property_id: &str, after: u64, limit: usize) -> Result<Vec<KeyChange>>;

    /// Publishes to the change feed every change of the property that is
    /// durable in the store but not yet published, for a store that other
    /// processes write too (a resume token one of them gave may be ahead of
    /// this process's feed). A store only this process writes publishes
    /// each change as it commits it: nothing to do.
    fn catch_up_changes(&self, _property_id: &str) -> Result<()> {
        Ok(())
    }

    /// The last sequence number of the property whose change was purged
    /// (0: none): a watcher that stands before it has missed changes.
    fn changes_purged_through(&self, property_id: &str) -> Result<u64>;

    /// Deletes at most `limit` logged changes made before `before`, the
    /// oldest of each property first, and returns how many, once durable.
    async fn purge_changes(&self, before: Timestamp, limit: usize) -> Result<usize>;

    /// Gives the disk space of deleted records back where the store's
    /// engine holds on to it after the delete, and returns the bytes the
    /// data directory shrank by (0: nothing was needed). The sweeper calls
    /// it after each sweep, so that a store which deletes as much as it
    /// writes stops growing. A store whose database does this by itself
    /// (PostgreSQL's autovacuum) has nothing to do.
    async fn reclaim_space(&self) -> Result<u64> {
        Ok(0)
    }

    /// The leases under which background work runs once across the
    /// processes that share this store (see [`crate::lease`]): a store one
    /// process owns alone grants every lease.
    fn leases(&self) -> Arc<dyn Leases>;

    /// The rate budgets shared by the processes on this store (see
    /// [`crate::budget`]); None for a store one process owns alone, whose
    /// callers' limiters in memory are the whole budget.
    fn rate_budgets(&self) -> Option<Arc<dyn RateBudgets>> {
        None
    }
}

/// A [`Transaction`] over any [`Store`] whose writes are atomic batches:
/// in-process locks serialise the transactions that share a lock name,
/// reads go to the store, writes are buffered and committed as one
/// [`WriteSet`].
pub struct LockedTransaction<'a> {
    store: &'a dyn Store,
    _guards: Vec<tokio::sync::OwnedMutexGuard<()>>,
    writes: WriteSet,
}

impl<'a> LockedTransaction<'a> {
    /// Waits for the stripes of `names` in `locks`, then begins a transaction
    /// over `store` that holds them until it is committed or dropped.
    pub async fn begin(
        store: &'a dyn Store,
        locks: &crate::locks::Locks,
        names: &[LockName],
    ) -> LockedTransaction<'a> {
        Self {
            store,
            _guards: locks.acquire(names).await,
            writes: WriteSet::default(),
        }
    }
}

#[async_trait]
impl Transaction for LockedTransaction<'_> {
    async fn key(&mut self, property_id: &str, key_id: &str) -> Result<Option<AccessKey>> {
        self.store.key(property_id, key_id)
    }

    async fn reservation(
        &mut self,
        property_id: &str,
        reservation_key: &str,
    ) -> Result<Option<Reservation>> {
        self.store.reservation(property_id, reservation_key)
    }

    async fn idempotency(
        &mut self,
        property_id: &str,
        request_id: &str,
    ) -> Result<Option<IdempotencyRecord>> {
        self.store.idempotency(property_id, request_id)
    }

    async fn live_keys_of_reservation(
        &mut self,
        property_id: &str,
        reservation_key: &str,
    ) -> Result<Vec<String>> {
        reservation_index(self.store, property_id, reservation_key, true)
    }

    async fn keys_of_reservation(
        &mut self,
        property_id: &str,
        reservation_key: &str,
    ) -> Result<Vec<String>> {
        reservation_index(self.store, property_id, reservation_key, false)
    }

    fn audit_id(&self, at: Timestamp) -> String {
        self.store.new_audit_id(at)
    }

    fn writes(&mut self) -> &mut WriteSet {
        &mut self.writes
    }

    async fn commit(self: Box<Self>) -> Result<()> {
        let writes = self.writes;
        if writes.is_empty() {
            return Ok(());
        }
        self.store.commit(writes).await
    }
}

/// The ids of the keys the reservation index names for `reservation_key`:
/// live ones only, or every key.
fn reservation_index(
    store: &dyn Store,
    property_id: &str,
    reservation_key: &str,
    live_only: bool,
) -> Result<Vec<String>> {
    let mut ids = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let chunk = store.scan_keys(&KeyScan {
            property_id,
            index: KeyIndex::Reservation(reservation_key.to_owned()),
            live_only,
            after: after.as_deref(),
            limit: 256,
        })?;
        let Some(last) = chunk.last() else {
            return Ok(ids);
        };
        after = Some(last.key_id.clone());
        ids.extend(
            chunk
                .iter()
                .filter(|k| k.key().reservation_key() == Some(reservation_key))
                .map(|k| k.key_id.clone()),
        );
    }
}
