//! The connections' IO on a thread of its own.
//!
//! The store's plain reads and the drivers' state block their worker
//! thread (`blocking.rs`), and a driver may hold a lock of its own across
//! such a call (the offline lock holds its encoder's mutex while it stores
//! the encoder's state) while other requests wait for that lock on the
//! other workers, blocking them too. With every worker blocked, a
//! connection task on the server's runtime would never be polled again and
//! the round trip everyone waits for would never end: a deadlock, seen with
//! 64 concurrent Issues on two cores (BENCHMARKS.md, "Replicas on
//! PostgreSQL"). So each connection is made and driven on a runtime of its
//! own, one thread for the process, which nothing blocks; callers on any
//! runtime talk to it through tokio-postgres's channels.
use std::sync::OnceLock;

use deadpool_postgres::Connect;
use tokio::{runtime::Handle, task::JoinHandle};
use tokio_postgres::{Client, Config, Error, NoTls};

/// The IO runtime, started at the first connection and kept for the life
/// of the process.
fn io_runtime() -> &'static Handle {
    static IO: OnceLock<Handle> = OnceLock::new();
    IO.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("the PostgreSQL IO runtime starts");
        let handle = runtime.handle().clone();
        std::thread::Builder::new()
            .name("keysmith-pg-io".into())
            .spawn(move || runtime.block_on(std::future::pending::<()>()))
            .expect("the PostgreSQL IO thread starts");
        handle
    })
}

/// deadpool's connector, connecting on the IO thread.
pub(crate) struct OnIoThread;

impl Connect for OnIoThread {
    fn connect(
        &self,
        config: &Config,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<(Client, JoinHandle<()>), Error>> + Send + '_>,
    > {
        let config = config.clone();
        let connecting = io_runtime().spawn(async move {
            let (client, connection) = config.connect(NoTls).await?;
            let driving = tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::warn!("PostgreSQL connection ended: {e}");
                }
            });
            Ok((client, driving))
        });
        Box::pin(async move {
            match connecting.await {
                Ok(connected) => connected,
                // The runtime is never shut down, so only a panic in
                // connect ends the task otherwise: pass it on.
                Err(e) => std::panic::resume_unwind(e.into_panic()),
            }
        })
    }
}
