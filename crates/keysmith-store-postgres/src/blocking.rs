//! Where the store's database I/O runs, and how synchronous code waits for
//! it.
//!
//! Every connection to PostgreSQL is made, and its socket driven, on one
//! runtime of the store's own ([`io`]), never on the caller's. The Store
//! trait's plain reads are synchronous (the embedded store answers them
//! from memory), and drivers call the store from under their own locks:
//! with the connections on the server's runtime, a few threads waiting
//! synchronously (for a read, or for a driver's lock held by one that
//! reads) left no worker to drive the sockets they waited on, and every
//! call stopped (seen with 400 concurrent Issues on two workers). On a
//! runtime of their own the sockets progress whatever the server's
//! workers are doing.
//!
//! A synchronous read blocks its thread for the round trip: on tokio's
//! multi-thread runtime its worker's other tasks move to another worker
//! first (`block_in_place`); on a current-thread runtime (an embedding)
//! the read is run on a scoped thread of its own, and that runtime's one
//! thread waits for it: under concurrency such a read can wait for a
//! connection that only the blocked thread's own tasks would give back
//! (seen: a pool timeout), so keysmith on PostgreSQL wants the
//! multi-thread runtime, as the server runs it and its tests do.
use std::{future::Future, sync::OnceLock};

use deadpool_postgres::{Object, Pool};
use keysmith_core::Result;
use tokio::runtime::{Handle, Runtime, RuntimeFlavor};

use crate::db_error;

/// The runtime that drives every PostgreSQL connection of the process: two
/// threads, which only move bytes between sockets and the clients' channels.
fn io() -> &'static Runtime {
    static IO: OnceLock<Runtime> = OnceLock::new();
    IO.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("keysmith-postgres")
            .enable_all()
            .build()
            .expect("the PostgreSQL I/O runtime starts")
    })
}

/// A connection from the pool, made (when the pool makes one) on the I/O
/// runtime, so that its socket is driven there. The client it returns may
/// be used from any runtime: it talks to its connection over a channel.
pub(crate) async fn connection(pool: &Pool) -> Result<Object> {
    let pool = pool.clone();
    io().spawn(async move { pool.get().await })
        .await
        .map_err(db_error)?
        .map_err(db_error)
}

/// Runs `task` on the I/O runtime: a task that holds a connection of its
/// own (the change listener), so that its socket is driven there too.
pub(crate) fn spawn<F>(task: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    io().spawn(task)
}

/// Runs `work` to completion from synchronous code, on the I/O runtime's
/// context, blocking this thread until it is done.
pub(crate) fn wait<T: Send>(work: impl Future<Output = Result<T>> + Send) -> Result<T> {
    let io = io().handle();
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::CurrentThread) => std::thread::scope(|scope| {
            scope
                .spawn(|| io.block_on(work))
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        }),
        Ok(_) => tokio::task::block_in_place(|| io.block_on(work)),
        // Outside any runtime: this thread may wait on the I/O runtime.
        Err(_) => io.block_on(work),
    }
}
