//! Where a driver keeps what it must remember (an encoder's counters, the
//! grants it created): a private key-value space in keysmith's store, so
//! that the driver's state and keysmith's keys share one durability.
//!
//! Several keysmith processes may share one store (PostgreSQL): a driver
//! that reads its state, decides and writes does so inside a
//! [`DriverState::section`], which holds across all of them.
use async_trait::async_trait;

use crate::error::Result;

/// A put (Some) or delete (None) of one key of a driver's state.
pub type Change = (Vec<u8>, Option<Vec<u8>>);

/// A driver's private key-value space in the store.
#[async_trait]
pub trait DriverState: Send + Sync + 'static {
    /// The value under `key`, as this state's reads see it (including
    /// changes applied and not yet durable).
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Applies every put (Some) and delete (None) atomically, in order with
    /// every other change to the store. This state's reads see them at
    /// once; they are durable once [`DriverState::sync`] (or any later
    /// commit of keysmith's own changes) returns.
    fn apply(&self, changes: Vec<Change>) -> Result<()>;
    /// Every entry whose key starts with `prefix`, in key order.
    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>>;
    /// Waits until everything applied before the call is on disk.
    async fn sync(&self) -> Result<()>;
    /// Opens the critical section `name` of this driver's state, waiting
    /// until no other section of that name is open: not in this process,
    /// and not in any other keysmith process on the same store (sled's
    /// store is one process's; PostgreSQL's holds an advisory lock in a
    /// transaction). Inside it, reads see what was committed before it
    /// opened and the section's own writes; its writes are applied
    /// atomically by [`StateSection::commit`], and not at all if it is
    /// dropped instead. Their durability is [`DriverState::apply`]'s.
    ///
    /// A driver that reads, decides and writes its state (an encoder's
    /// counter, a PIN table) does all three in one section, re-reading what
    /// another process may have changed (or checking a version it keeps
    /// beside it): that is what makes its decisions hold when several
    /// replicas share the store. Sections of one name never nest; a task
    /// holds at most one at a time (several names at once are one
    /// [`DriverState::sections`]).
    fn section(&self, name: &[u8]) -> Result<Box<dyn StateSection + '_>> {
        self.sections(&[name.to_vec()])
    }
    /// Opens one section that holds every name of `names` together, as
    /// [`DriverState::section`] holds one: it waits until none of them is
    /// open elsewhere, and a section of any one of them waits for it. The
    /// names are taken in one order in every process, so two sections whose
    /// names overlap never wait on each other forever. A decision that
    /// spans several things (several doors) takes all their sections here,
    /// while decisions on other things go on beside it.
    fn sections(&self, names: &[Vec<u8>]) -> Result<Box<dyn StateSection + '_>>;

    /// Tells every other keysmith process on this store that `topic` of
    /// this state changed, so that one waiting for it (see
    /// [`DriverState::on_signal`]) looks now rather than at its next
    /// round. Call it once the change is committed. A store that one
    /// process owns (sled) has nobody else to tell: the caller wakes its
    /// own waiters, as it must in any case. A signal that fails to go out
    /// delays the others, never loses anything: they still look at their
    /// next round.
    async fn signal(&self, topic: &str) -> Result<()> {
        let _ = topic;
        Ok(())
    }

    /// Calls `wake` whenever another process signals `topic` of this state
    /// ([`DriverState::signal`]), and whenever signals may have been missed
    /// (the store lost its way of hearing them for a while). `wake` must
    /// not block. For the store's lifetime; a store one process owns never
    /// calls it.
    fn on_signal(&self, topic: &str, wake: Wake) {
        let _ = (topic, wake);
    }
}

/// What [`DriverState::on_signal`] calls: cheap, never blocking (a
/// `Notify::notify_one`).
pub type Wake = std::sync::Arc<dyn Fn() + Send + Sync>;

/// An open critical section of a [`DriverState`]; see
/// [`DriverState::section`].
pub trait StateSection: Send {
    /// The value under `key`: this section's write if it made one, else
    /// what is committed.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Every entry whose key starts with `prefix`, in key order, this
    /// section's writes included.
    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>>;
    /// Records puts and deletes, applied at [`StateSection::commit`].
    fn apply(&mut self, changes: Vec<Change>);
    /// Applies the section's writes atomically and leaves the section.
    fn commit(self: Box<Self>) -> Result<()>;
}
