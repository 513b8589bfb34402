//! Memory freed by a burst goes back to the system when the burst ends.
//!
//! mimalloc keeps the pages a thread freed and returns them to the system
//! only when that thread calls into the allocator again, a while later
//! (`purge_delay`). A server that has just shed a flood of connections is
//! idle: its worker threads park and allocate nothing, so what the flood
//! took stayed resident (BENCHMARKS.md, "Abuse": 90 to 186 MB after the
//! floods against 55 MB before them). So the allocator counts the bytes
//! freed (by any thread: a task's memory is often freed on another worker
//! than the one that allocated it), and a tokio worker that parks when more
//! than `server.return_freed_memory_mb` (8 by default, [`set_return_after_mb`])
//! were freed since it last collected collects its heap there and then
//! ([`return_freed_memory`], the runtime's `on_thread_park` hook).
//!
//! The threshold is counted in bytes, not time: the last park after a flood
//! is the one that matters, and a time-based throttle would skip it. A
//! collect walks the thread's heap, so each worker pays it at most once per
//! that many bytes freed, and not at all while it is busy and never parks
//! (measured in BENCHMARKS.md: a few percent of Issue and ListKeys). Each thread adds its frees to the shared count in steps of
//! [`FLUSH_BYTES`], so that freeing costs a thread-local add, not a
//! contended atomic.
use std::{
    alloc::{GlobalAlloc, Layout},
    cell::Cell,
    sync::atomic::{AtomicUsize, Ordering},
};

use mimalloc::MiMalloc;

/// Bytes freed (by all threads) after which a worker's next park gives
/// memory back, until the configuration says otherwise; 0: never.
const DEFAULT_RETURN_AFTER_BYTES: usize = 8 << 20;
static RETURN_AFTER_BYTES: AtomicUsize = AtomicUsize::new(DEFAULT_RETURN_AFTER_BYTES);
/// A thread's frees are added to [`FREED_TOTAL`] in steps of this size.
pub const FLUSH_BYTES: usize = 64 << 10;

/// Bytes freed by every thread, up to each thread's last step.
static FREED_TOTAL: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    // Const initializers and no destructors: safe to touch from the
    // allocator, even while the thread is being torn down.
    /// This thread's frees not yet in [`FREED_TOTAL`].
    static FREED_HERE: Cell<usize> = const { Cell::new(0) };
    /// [`FREED_TOTAL`] when this thread last collected.
    static COLLECTED_AT: Cell<usize> = const { Cell::new(0) };
}

fn count_freed(bytes: usize) {
    let _ = FREED_HERE.try_with(|here| {
        let now = here.get().saturating_add(bytes);
        if now >= FLUSH_BYTES {
            FREED_TOTAL.fetch_add(now, Ordering::Relaxed);
            here.set(0);
        } else {
            here.set(now);
        }
    });
}

/// mimalloc, counting what each thread frees.
pub struct ReturningAllocator;

// SAFETY: every call is forwarded unchanged to mimalloc, a correct global
// allocator; the count is a thread-local integer and allocates nothing.
unsafe impl GlobalAlloc for ReturningAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is passed on as is.
        unsafe { MiMalloc.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is passed on as is.
        unsafe { MiMalloc.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count_freed(layout.size());
        // SAFETY: the caller's contract is passed on as is.
        unsafe { MiMalloc.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size < layout.size() {
            count_freed(layout.size() - new_size);
        }
        // SAFETY: the caller's contract is passed on as is.
        unsafe { MiMalloc.realloc(ptr, layout, new_size) }
    }
}

/// `server.return_freed_memory_mb`: how many MiB freed make a worker's
/// next park give memory back (0: never).
pub fn set_return_after_mb(mb: u64) {
    let bytes = usize::try_from(mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
    RETURN_AFTER_BYTES.store(bytes, Ordering::Relaxed);
}

/// Gives the pages this thread's heap holds free back to the system when
/// more than `server.return_freed_memory_mb` were freed since it last did;
/// otherwise nothing. Says whether it did.
pub fn return_freed_memory() -> bool {
    let threshold = RETURN_AFTER_BYTES.load(Ordering::Relaxed);
    if threshold == 0 {
        return false;
    }
    let here = FREED_HERE.try_with(|here| here.replace(0)).unwrap_or(0);
    let total = FREED_TOTAL.fetch_add(here, Ordering::Relaxed) + here;
    let due = COLLECTED_AT
        .try_with(|at| {
            let due = total.wrapping_sub(at.get()) >= threshold;
            if due {
                at.set(total);
            }
            due
        })
        .unwrap_or(false);
    if due {
        // SAFETY: mi_collect only walks and trims the calling thread's own
        // heap and mimalloc's shared arenas; it has no preconditions.
        // `force` purges the freed pages now rather than after mimalloc's
        // purge delay, which would wait for another allocation.
        unsafe { libmimalloc_sys::mi_collect(true) };
    }
    due
}

/// The multi-threaded runtime keysmith serves on: each worker that parks
/// gives back what was freed ([`return_freed_memory`]).
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_park(|| {
            return_freed_memory();
        })
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_park_after_a_large_free_collects_and_the_next_does_not() {
        std::thread::spawn(|| {
            // The thread's first park collects whatever the process freed
            // before it; this one starts the count.
            return_freed_memory();
            let block = vec![1u8; 2 * DEFAULT_RETURN_AFTER_BYTES];
            drop(std::hint::black_box(block));
            assert!(return_freed_memory(), "16 MB freed: the park collects");
            // Other tests' threads free far less than 8 MB meanwhile.
            assert!(!return_freed_memory(), "nothing freed since: no collect");
        })
        .join()
        .unwrap();
    }
}
