//! The pieces a [`DriverState`] implementation builds its sections from:
//! the writes a section buffers until it commits ([`Writes`]), and, for a
//! store only one process opens, a section that excludes within the
//! process ([`LocalSections`], [`LocalSection`]).
use std::{
    collections::{BTreeMap, HashSet},
    sync::{Condvar, Mutex},
};

use crate::{
    error::Result,
    state::{Change, DriverState, StateSection},
};

/// A section's writes, buffered until it commits; later writes of a key win.
#[derive(Default)]
pub struct Writes(BTreeMap<Vec<u8>, Option<Vec<u8>>>);

impl Writes {
    /// Records `changes`.
    pub fn record(&mut self, changes: Vec<Change>) {
        self.0.extend(changes);
    }

    /// `key`'s value as the section sees it: its own write, else `committed`.
    pub fn get(
        &self,
        key: &[u8],
        committed: impl FnOnce() -> Result<Option<Vec<u8>>>,
    ) -> Result<Option<Vec<u8>>> {
        match self.0.get(key) {
            Some(written) => Ok(written.clone()),
            None => committed(),
        }
    }

    /// `committed`, the entries under `prefix`, with the section's own writes.
    pub fn scan(
        &self,
        prefix: &[u8],
        committed: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut found: BTreeMap<_, _> = committed.into_iter().collect();
        for (k, v) in self.0.range(prefix.to_vec()..) {
            if !k.starts_with(prefix) {
                break;
            }
            match v {
                Some(v) => found.insert(k.clone(), v.clone()),
                None => found.remove(k),
            };
        }
        found.into_iter().collect()
    }

    /// The writes, in key order, to apply at commit.
    pub fn into_changes(self) -> Vec<Change> {
        self.0.into_iter().collect()
    }
}

/// The names of the sections open in this process. Waiting blocks the
/// thread: a section is held over the synchronous reads and writes of one
/// decision, never across an await.
#[derive(Default)]
pub struct LocalSections {
    open: Mutex<HashSet<Vec<u8>>>,
    closed: Condvar,
}

/// Holds names of [`LocalSections`] until dropped.
pub struct LocalGuard<'a> {
    sections: &'a LocalSections,
    names: Vec<Vec<u8>>,
}

impl LocalSections {
    /// Waits until no section named `name` is open, and opens one.
    pub fn enter(&self, name: Vec<u8>) -> LocalGuard<'_> {
        self.enter_all(vec![name])
    }

    /// Waits until none of `names` is open, and opens them all at once:
    /// taking them together (never one by one while holding others) is
    /// what keeps two overlapping sets from waiting on each other.
    pub fn enter_all(&self, mut names: Vec<Vec<u8>>) -> LocalGuard<'_> {
        names.sort();
        names.dedup();
        // A poisoned set is still a correct set: entering and leaving do
        // not panic between their changes.
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        while names.iter().any(|name| open.contains(name)) {
            open = self.closed.wait(open).unwrap_or_else(|e| e.into_inner());
        }
        open.extend(names.iter().cloned());
        LocalGuard {
            sections: self,
            names,
        }
    }
}

impl Drop for LocalGuard<'_> {
    fn drop(&mut self) {
        let mut open = self.sections.open.lock().unwrap_or_else(|e| e.into_inner());
        for name in &self.names {
            open.remove(name);
        }
        self.sections.closed.notify_all();
    }
}

/// A section of a state that one process alone opens: excluded by
/// [`LocalSections`], read through the state, its writes applied at commit
/// as one [`DriverState::apply`].
pub struct LocalSection<'a, S: DriverState + ?Sized> {
    state: &'a S,
    writes: Writes,
    _guard: LocalGuard<'a>,
}

impl<'a, S: DriverState + ?Sized> LocalSection<'a, S> {
    /// Opens the section holding `names` of `state`, whose sections
    /// `sections` keeps.
    pub fn open(state: &'a S, sections: &'a LocalSections, names: Vec<Vec<u8>>) -> Self {
        Self {
            _guard: sections.enter_all(names),
            state,
            writes: Writes::default(),
        }
    }
}

impl<S: DriverState + ?Sized> StateSection for LocalSection<'_, S> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.writes.get(key, || self.state.get(key))
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        Ok(self.writes.scan(prefix, self.state.scan_prefix(prefix)?))
    }

    fn apply(&mut self, changes: Vec<Change>) {
        self.writes.record(changes);
    }

    fn commit(self: Box<Self>) -> Result<()> {
        let this = *self;
        this.state.apply(this.writes.into_changes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sections_writes_shadow_what_is_committed_until_it_commits() {
        let mut writes = Writes::default();
        writes.record(vec![
            (b"a/1".to_vec(), Some(b"new".to_vec())),
            (b"a/2".to_vec(), None),
            (b"b/1".to_vec(), Some(b"other".to_vec())),
        ]);
        let committed = vec![
            (b"a/2".to_vec(), b"gone".to_vec()),
            (b"a/3".to_vec(), b"kept".to_vec()),
        ];
        assert_eq!(
            writes.scan(b"a/", committed),
            vec![
                (b"a/1".to_vec(), b"new".to_vec()),
                (b"a/3".to_vec(), b"kept".to_vec())
            ]
        );
        assert_eq!(writes.get(b"a/2", || unreachable!()).unwrap(), None);
        assert_eq!(
            writes.get(b"c", || Ok(Some(b"stored".to_vec()))).unwrap(),
            Some(b"stored".to_vec())
        );
    }

    #[test]
    fn a_name_is_open_once_at_a_time() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let sections = LocalSections::default();
        let first = sections.enter(b"x".to_vec());
        // Another name is not held up by it.
        drop(sections.enter(b"y".to_vec()));
        let released = AtomicBool::new(false);
        std::thread::scope(|s| {
            let waiter = s.spawn(|| {
                let _second = sections.enter(b"x".to_vec());
                assert!(released.load(Ordering::SeqCst), "entered while held");
            });
            released.store(true, Ordering::SeqCst);
            drop(first);
            waiter.join().unwrap();
        });
    }

    #[test]
    fn names_taken_together_wait_for_any_of_them_and_hold_all() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let sections = LocalSections::default();
        let first = sections.enter(b"b".to_vec());
        // Names none of which is held go in at once.
        drop(sections.enter_all(vec![b"c".to_vec(), b"a".to_vec()]));
        let released = AtomicBool::new(false);
        let again = AtomicBool::new(false);
        std::thread::scope(|s| {
            let waiter = s.spawn(|| {
                let both = sections.enter_all(vec![b"c".to_vec(), b"b".to_vec()]);
                assert!(released.load(Ordering::SeqCst), "entered while b held");
                both
            });
            released.store(true, Ordering::SeqCst);
            drop(first);
            let both = waiter.join().unwrap();
            let c = s.spawn(|| {
                let _c = sections.enter(b"c".to_vec());
                assert!(again.load(Ordering::SeqCst), "c entered while held");
            });
            again.store(true, Ordering::SeqCst);
            drop(both);
            c.join().unwrap();
        });
    }
}
