//! One thread writes to the engine for everybody, and makes it durable.
//!
//! A durable write costs an fsync of the engine's journal, and an fsync
//! costs the same whether it covers one change or a thousand. So requests
//! hand their changes to this thread. It takes everything queued, applies
//! it as one batch (a superset of atomic changes is still atomic), flushes
//! once, and answers every waiter the flush covered (group commit). While
//! it flushes, requests read freely and queue the next batch. (The store
//! began on sled 0.34, whose `flush_async` deadlocks when called
//! concurrently, sled issues 1308 and 1241: one flusher was a necessity
//! there, and it is still the design.)
//!
//! Drivers apply their own state without waiting (`DriverState::apply` is
//! synchronous), so such changes are also kept in an overlay that their
//! reads consult until the batch holding them is in the tree.
//!
//! After a write error (a full disk, an I/O error) the engine refuses every
//! write until it is opened again (fjall marks itself poisoned when an
//! fsync fails). The thread then refuses writes at once
//! (`STORE_UNAVAILABLE`), lets go of the store, and reopens it from its last
//! durable state every little while until a probe write goes through; then
//! writes resume, with no restart. Nothing that was not acknowledged is
//! kept: the failed batch's waiters were told, and the listing cache, which
//! may have seen it, starts again from the store.
use std::{
    collections::BTreeMap,
    ops::Bound,
    path::PathBuf,
    sync::Arc,
    thread,
    time::{Duration, Instant},
};

use keysmith_core::{
    audit::AuditRecord,
    changes::{ChangeFeed, KeyChange, PendingChange},
};
use parking_lot::{Condvar, Mutex};
use tokio::sync::oneshot;

use crate::{
    catalog::{Catalog, Change},
    changelog::{Numbering, WrittenKeys},
    codec::path,
    handle::TreeHandle,
    journal::{self, Journal, Position},
    kv,
    layout::{LIVE_KEY, META, REVOKED_KEY},
    sealing::Sealer,
    MAIN_TREE,
};

/// How the committer opens the store again after a write error.
pub struct Reopen {
    pub dir: PathBuf,
    pub memory: kv::Memory,
}

/// The first wait before reopening after a write error; it doubles up to
/// [`REOPEN_AT_MOST`] while the store still cannot be written.
const REOPEN_AFTER: Duration = Duration::from_millis(100);
const REOPEN_AT_MOST: Duration = Duration::from_secs(2);

/// Under load the thread gathers before it takes the queue: it waits until
/// as many changes are queued as its last cycle took (everyone it answered
/// has come back), for at most this long. Each cycle costs a journal
/// write and an fsync whatever it carries, so fuller cycles are cheaper per
/// change (BENCHMARKS.md).
const GATHER_FOR: Duration = Duration::from_millis(1);
/// A cycle that took fewer changes than this is not gathered for: a change
/// arriving alone is written at once.
const GATHER_AFTER: usize = 4;

/// What the committer reports through the `metrics` facade (a no-op until
/// the server installs an exporter); registered once, when the thread starts.
struct CommitMetrics {
    /// Write sets per batch: how much group commit gathers.
    batch_writes: metrics::Histogram,
    /// The engine's blocking `flush()`, which every waiter of a batch waits for.
    flush_seconds: metrics::Histogram,
    /// Batches that failed to write (the store is then reopened).
    failed_batches: metrics::Counter,
}

impl CommitMetrics {
    fn register() -> Self {
        Self {
            batch_writes: metrics::histogram!("keysmith_store_batch_writes"),
            flush_seconds: metrics::histogram!("keysmith_store_flush_seconds"),
            failed_batches: metrics::counter!("keysmith_store_failed_batches_total"),
        }
    }
}

/// A put (Some) or a delete (None) of one key of the main tree.
pub type Op = (Vec<u8>, Option<Vec<u8>>);

/// What one caller submits: applied in one cycle, in one atomic batch.
#[derive(Default)]
struct Work {
    ops: Vec<Op>,
    /// Records to seal again with the current data key, as the tree has
    /// them when the job is written (a data key rotation's work).
    reseal: Vec<Vec<u8>>,
    /// What the ops change in the listing cache.
    changes: Vec<Change>,
    /// The key changes to log: numbered and written with the ops, published
    /// once durable.
    logged: Vec<PendingChange>,
    /// The audit records of the change: appended to the journal in the
    /// same cycle (`crate::journal`).
    audit: Vec<AuditRecord>,
}

struct Job {
    work: Work,
    /// Told once the job is durable, or why it is not.
    done: Option<oneshot::Sender<Result<(), String>>>,
    /// The overlay entries of this job carry this number.
    seq: u64,
}

#[derive(Default)]
struct Queue {
    jobs: Vec<Job>,
    /// Changes queued but not yet in the tree, by key: (job seq, value).
    overlay: BTreeMap<Vec<u8>, (u64, Option<Vec<u8>>)>,
    last_seq: u64,
    /// The thread sleeps until this many jobs are queued (or its deadline):
    /// a submission wakes it only then.
    want: usize,
    stopping: bool,
    /// The thread has ended: nothing more will be written.
    closed: bool,
    /// A write failed and the store is not open again yet: submissions are
    /// refused at once.
    failed: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    /// Whether writes can be made: false from a write error until reopened.
    writable: tokio::sync::watch::Sender<bool>,
}

pub struct Committer {
    shared: Arc<Shared>,
    thread: Mutex<Option<thread::JoinHandle<()>>>,
}

/// What a read of the overlay found.
pub enum Overlaid {
    /// The key has a queued put or delete: this is its value.
    Queued(Option<Vec<u8>>),
    /// Nothing queued: the tree has the answer.
    NotQueued,
}

impl Committer {
    pub fn start(
        db: kv::Db,
        tree: Arc<TreeHandle>,
        catalog: Arc<Catalog>,
        sealer: Arc<Sealer>,
        feed: Arc<ChangeFeed>,
        journal: Arc<Journal>,
        reopen: Reopen,
    ) -> Self {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            writable: tokio::sync::watch::Sender::new(true),
        });
        let worker = shared.clone();
        let thread = thread::Builder::new()
            .name("keysmith-committer".into())
            .spawn(move || {
                let context = Context {
                    handle: &tree,
                    catalog: &catalog,
                    sealer: &sealer,
                    feed: &feed,
                    journal: &journal,
                    shared: &worker,
                    reopen: &reopen,
                };
                run(db, &context)
            })
            .expect("spawn the committer thread");
        Self {
            shared,
            thread: Mutex::new(Some(thread)),
        }
    }

    /// Queues an atomic change and waits until it is applied and durable.
    pub async fn commit(&self, ops: Vec<Op>, changes: Vec<Change>) -> Result<(), String> {
        self.commit_logged(ops, changes, Vec::new(), Vec::new())
            .await
    }

    /// As [`Committer::commit`], with key changes to log and audit records
    /// to journal in the same cycle.
    pub async fn commit_logged(
        &self,
        ops: Vec<Op>,
        changes: Vec<Change>,
        logged: Vec<PendingChange>,
        audit: Vec<AuditRecord>,
    ) -> Result<(), String> {
        self.submit_and_wait(Work {
            ops,
            changes,
            logged,
            audit,
            ..Work::default()
        })
        .await
    }

    /// Queues an atomic change without waiting for it. When `overlaid`,
    /// [`Committer::overlaid`] and [`Committer::overlay_range`] show it
    /// until it is in the tree.
    pub fn enqueue(
        &self,
        ops: Vec<Op>,
        changes: Vec<Change>,
        overlaid: bool,
    ) -> Result<(), String> {
        let work = Work {
            ops,
            changes,
            ..Work::default()
        };
        self.submit(work, overlaid, None)
    }

    /// As [`Committer::enqueue`], with key changes to log and audit records
    /// to journal in the same cycle.
    pub fn enqueue_logged(
        &self,
        ops: Vec<Op>,
        changes: Vec<Change>,
        logged: Vec<PendingChange>,
        audit: Vec<AuditRecord>,
    ) -> Result<(), String> {
        let work = Work {
            ops,
            changes,
            logged,
            audit,
            ..Work::default()
        };
        self.submit(work, false, None)
    }

    /// Whether writes can be made now, and every change of it.
    pub fn writable(&self) -> tokio::sync::watch::Receiver<bool> {
        self.shared.writable.subscribe()
    }

    /// Seals the records at `paths` again with the current data key, as the
    /// tree has them when this is written, and waits until that is durable.
    /// Records sealed with the current key, or gone, are left as they are.
    pub async fn reseal(&self, paths: Vec<Vec<u8>>) -> Result<(), String> {
        self.submit_and_wait(Work {
            reseal: paths,
            ..Work::default()
        })
        .await
    }

    /// Waits until everything queued before the call is applied and durable.
    pub async fn sync(&self) -> Result<(), String> {
        self.commit(Vec::new(), Vec::new()).await
    }

    /// Queues `work` and waits until it is applied and durable.
    async fn submit_and_wait(&self, work: Work) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.submit(work, false, Some(tx))?;
        rx.await
            .map_err(|_| "the store has stopped".to_owned())
            .and_then(|r| r)
    }

    /// Queues `work`; `overlaid` as for [`Committer::enqueue`], and `done`
    /// told how its batch went.
    fn submit(
        &self,
        work: Work,
        overlaid: bool,
        done: Option<oneshot::Sender<Result<(), String>>>,
    ) -> Result<(), String> {
        let wake = {
            let mut queue = self.shared.queue.lock();
            if queue.closed {
                return Err("the store has stopped".to_owned());
            }
            if queue.failed {
                return Err(
                    "a write failed (is the disk full?): writes resume once the store could \
                     be opened again"
                        .to_owned(),
                );
            }
            queue.last_seq += 1;
            let seq = queue.last_seq;
            if overlaid {
                for (key, value) in &work.ops {
                    queue.overlay.insert(key.clone(), (seq, value.clone()));
                }
            }
            queue.jobs.push(Job { work, done, seq });
            queue.jobs.len() >= queue.want
        };
        if wake {
            self.shared.wake.notify_one();
        }
        Ok(())
    }

    /// A queued value of `key` not yet in the tree. Read this before the
    /// tree: the thread removes an entry only after the tree has it.
    pub fn overlaid(&self, key: &[u8]) -> Overlaid {
        match self.shared.queue.lock().overlay.get(key) {
            Some((_, value)) => Overlaid::Queued(value.clone()),
            None => Overlaid::NotQueued,
        }
    }

    /// The queued changes of keys starting with `prefix`. Take this before
    /// scanning the tree, for the same reason.
    pub fn overlay_range(&self, prefix: &[u8]) -> Vec<Op> {
        let queue = self.shared.queue.lock();
        queue
            .overlay
            .range::<[u8], _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, (_, v))| (k.clone(), v.clone()))
            .collect()
    }

    /// Writes and flushes what is queued, then stops the thread.
    pub fn stop(&self) {
        self.shared.queue.lock().stopping = true;
        self.shared.wake.notify_one();
        if let Some(handle) = self.thread.lock().take() {
            let _ = handle.join();
        }
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Closes the queue when the thread ends, even by a panic in the engine: the
/// waiters of jobs left behind are told, and later submissions fail at once
/// instead of waiting for a thread that is gone.
struct CloseOnExit<'a>(&'a Shared);

impl Drop for CloseOnExit<'_> {
    fn drop(&mut self) {
        let mut queue = self.0.queue.lock();
        queue.closed = true;
        queue.jobs.clear();
    }
}

/// What the committer thread works with.
struct Context<'a> {
    handle: &'a TreeHandle,
    catalog: &'a Catalog,
    sealer: &'a Sealer,
    feed: &'a ChangeFeed,
    journal: &'a Journal,
    shared: &'a Shared,
    reopen: &'a Reopen,
}

fn run(mut db: kv::Db, context: &Context<'_>) {
    let Context {
        handle,
        catalog,
        feed,
        journal,
        shared,
        reopen,
        ..
    } = *context;
    let _close = CloseOnExit(shared);
    let mut tree = match handle.get() {
        Ok(tree) => tree,
        Err(_) => return,
    };
    let metrics = CommitMetrics::register();
    let mut last_batch = 0;
    let mut numbering = Numbering::default();
    loop {
        let mut jobs = {
            let mut queue = shared.queue.lock();
            queue.want = 1;
            while queue.jobs.is_empty() && !queue.stopping {
                shared.wake.wait(&mut queue);
            }
            if last_batch >= GATHER_AFTER {
                let deadline = Instant::now() + GATHER_FOR;
                queue.want = last_batch;
                while queue.jobs.len() < last_batch && !queue.stopping {
                    if shared.wake.wait_until(&mut queue, deadline).timed_out() {
                        break;
                    }
                }
                queue.want = 1;
            }
            if queue.jobs.is_empty() {
                drop(queue);
                checkpoint(db, tree, handle);
                return;
            }
            std::mem::take(&mut queue.jobs)
        };
        last_batch = jobs.len();
        let outcome = write(&db, &tree, context, &mut numbering, &mut jobs, &metrics);
        metrics.batch_writes.record(jobs.len() as f64);
        let failed = outcome.is_err();
        let outcome = match outcome {
            // Published before the waiters are told: a client that watches
            // and then issues sees its own change on its watch.
            Ok(logged) => {
                feed.publish(logged);
                Ok(())
            }
            Err(error) => {
                numbering.forget();
                Err(error)
            }
        };
        if let Err(error) = &outcome {
            metrics.failed_batches.increment(1);
            tracing::error!(%error, "writing to the store failed; writes are refused until it is reopened");
            shared.queue.lock().failed = true;
            shared.writable.send_replace(false);
        }
        answer(shared, jobs, &outcome);
        if failed {
            refuse_queued(shared, &outcome);
            catalog.reset();
            drop(tree);
            handle.release();
            match reopen_until_writable(db, handle, journal, shared, reopen) {
                Some((new_db, new_tree)) => {
                    db = new_db;
                    tree = new_tree;
                    shared.queue.lock().failed = false;
                    shared.writable.send_replace(true);
                    tracing::info!("the store is open again: writes resume");
                }
                None => return,
            }
        }
    }
}

/// Writes the engine's memtables to its tables once the store is stopping
/// with nothing queued, so that the next start has no journal to replay
/// (after a crash there is no stop, and the next start replays at most the
/// engine's write buffer), then lets go of the store.
fn checkpoint(db: kv::Db, tree: kv::Tree, handle: &TreeHandle) {
    if let Err(error) = db.checkpoint() {
        tracing::warn!(%error, "the store's memtables were not written at stop: the next start replays its journal");
    }
    drop(tree);
    handle.release();
    drop(db);
}

/// Tells the waiters of `jobs` how their batch went, and drops their
/// overlay entries: the tree has them now (or never will).
fn answer(shared: &Shared, jobs: Vec<Job>, outcome: &Result<(), String>) {
    let covered = jobs.last().map_or(0, |j| j.seq);
    shared
        .queue
        .lock()
        .overlay
        .retain(|_, (seq, _)| *seq > covered);
    for job in jobs {
        if let Some(done) = job.done {
            let _ = done.send(outcome.clone());
        }
    }
}

/// Refuses what was queued behind a failed batch: it was never written.
fn refuse_queued(shared: &Shared, outcome: &Result<(), String>) {
    let jobs = std::mem::take(&mut shared.queue.lock().jobs);
    answer(shared, jobs, outcome);
}

/// Lets go of the store, then opens it again every little while until a
/// probe write goes through; None once the store is stopping.
fn reopen_until_writable(
    db: kv::Db,
    handle: &TreeHandle,
    journal: &Journal,
    shared: &Shared,
    reopen: &Reopen,
) -> Option<(kv::Db, kv::Tree)> {
    drop(db);
    let mut wait = REOPEN_AFTER;
    loop {
        {
            let mut queue = shared.queue.lock();
            if queue.stopping {
                return None;
            }
            // Sleeps here wake early for a stop.
            let _ = shared.wake.wait_for(&mut queue, wait);
            if queue.stopping {
                return None;
            }
            // Whatever was submitted meanwhile was refused at submission.
        }
        // The journal is cut back to what the reopened store says was
        // committed: a frame of the failed cycle goes with its batch.
        let reopened = reopen_and_probe(reopen).and_then(|(db, tree)| {
            journal
                .recover(journal_end(&tree).map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
            Ok((db, tree))
        });
        match reopened {
            Ok((db, tree)) => {
                handle.install(tree.clone());
                return Some((db, tree));
            }
            Err(error) => {
                tracing::warn!(%error, "the store cannot be written yet; trying again");
                wait = (wait * 2).min(REOPEN_AT_MOST);
            }
        }
    }
}

fn reopen_and_probe(reopen: &Reopen) -> Result<(kv::Db, kv::Tree), String> {
    let db = crate::open_db(&reopen.dir, reopen.memory).map_err(|e| e.to_string())?;
    let tree = db.open_tree(MAIN_TREE).map_err(|e| e.to_string())?;
    // A probe: a write and a flush must go through before writes resume.
    tree.insert(path(META, &[b"probe"]), &[1u8][..])
        .map_err(|e| e.to_string())?;
    db.flush().map_err(|e| e.to_string())?;
    Ok((db, tree))
}

/// Where the journal's committed part ends, as `tree` says.
pub fn journal_end(tree: &kv::Tree) -> keysmith_core::Result<Option<Position>> {
    Ok(tree
        .get(journal::end_path())
        .map_err(crate::store_error)?
        .and_then(|v| Position::decode(&v)))
}

/// The key records the jobs write, each with the last value it is given:
/// the committer names in them the changes it logs.
fn key_records(jobs: &[Job]) -> WrittenKeys<'_> {
    let mut written = WrittenKeys::new();
    for (path, value) in jobs.iter().flat_map(|j| &j.work.ops) {
        if matches!(path.first(), Some(&LIVE_KEY) | Some(&REVOKED_KEY)) {
            written.insert(path.as_slice(), value.as_deref());
        }
    }
    written
}

/// Writes the jobs as one batch and flushes it; the key changes it logged,
/// numbered, to publish. The cycle's audit records are appended to the
/// journal and synced first, and the batch records where the journal ends
/// now: the frame counts only once the batch is durable.
fn write(
    db: &kv::Db,
    tree: &kv::Tree,
    context: &Context<'_>,
    numbering: &mut Numbering,
    jobs: &mut [Job],
    metrics: &CommitMetrics,
) -> Result<Vec<KeyChange>, String> {
    let Context {
        catalog,
        sealer,
        journal,
        ..
    } = *context;
    let mut batch = kv::Batch::default();
    let mut any = false;
    let audit: Vec<AuditRecord> = jobs
        .iter_mut()
        .flat_map(|j| std::mem::take(&mut j.work.audit))
        .collect();
    if !audit.is_empty() {
        let end = journal.append(sealer, &audit).map_err(|e| e.to_string())?;
        batch.insert(journal::end_path(), end.encode());
        any = true;
    }
    // Resealed first: a job of this cycle that writes the same record wins.
    let current = sealer.current();
    for path in jobs.iter().flat_map(|j| &j.work.reseal) {
        let Some(value) = tree.get(path).map_err(|e| e.to_string())? else {
            continue;
        };
        if Sealer::key_of(&value).is_some_and(|k| k != current) {
            let plain = sealer.open(path, &value).map_err(|e| e.to_string())?;
            let sealed = sealer.seal(path, &plain).map_err(|e| e.to_string())?;
            batch.insert(path.as_slice(), sealed);
            any = true;
        }
    }
    for (key, value) in jobs.iter().flat_map(|j| &j.work.ops) {
        any = true;
        match value {
            Some(value) => batch.insert(key.as_slice(), value.as_slice()),
            None => batch.remove(key.as_slice()),
        }
    }
    // Numbered in job order, after the job's own ops: the log follows the
    // order in which the changes were queued.
    let pending: Vec<PendingChange> = jobs
        .iter_mut()
        .flat_map(|j| std::mem::take(&mut j.work.logged))
        .collect();
    let (records, logged) = numbering
        .number(tree, sealer, pending, &key_records(jobs))
        .map_err(|e| e.to_string())?;
    for (path, value) in records {
        any = true;
        match value {
            Some(value) => batch.insert(path, value),
            None => batch.remove(path),
        }
    }
    if any {
        tree.apply_batch(batch).map_err(|e| e.to_string())?;
    }
    // The tree has the batch: the listing cache follows, before anyone is
    // told it is durable (read-your-writes holds for listings too).
    catalog.apply(
        jobs.iter_mut()
            .flat_map(|j| std::mem::take(&mut j.work.changes)),
    );
    let flushing = Instant::now();
    let flushed = db.flush();
    metrics
        .flush_seconds
        .record(flushing.elapsed().as_secs_f64());
    flushed.map_err(|e| e.to_string())?;
    Ok(logged)
}
