//! The Store trait's plain reads are synchronous, because the embedded store
//! answers them from memory. Here they are database queries: each one
//! blocks its worker thread for a round trip, handing the thread's other
//! tasks to another worker first (`block_in_place`). This needs tokio's
//! multi-thread runtime, which the server runs; on a current-thread runtime
//! (or outside any) the read fails instead of panicking.
use std::future::Future;

use keysmith_core::{reasons, Error, Result};
use tokio::runtime::{Handle, RuntimeFlavor};

/// Runs `work` to completion from synchronous code inside the runtime.
pub(crate) fn wait<T>(work: impl Future<Output = Result<T>>) -> Result<T> {
    let handle = Handle::try_current().map_err(|_| not_here())?;
    if handle.runtime_flavor() == RuntimeFlavor::CurrentThread {
        return Err(not_here());
    }
    tokio::task::block_in_place(|| handle.block_on(work))
}

fn not_here() -> Error {
    Error::unavailable(
        reasons::STORE_UNAVAILABLE,
        "the PostgreSQL store is read from tokio's multi-thread runtime only",
    )
}
