//! One thread that makes writes durable for everybody. sled 0.34's
//! `flush_async` deadlocks when called concurrently (sled issues 1308 and
//! 1241), so it is never called: this thread runs the blocking `flush()` and
//! wakes every waiter whose writes that flush covered (group commit).
use std::{sync::Arc, thread};

use parking_lot::{Condvar, Mutex};
use tokio::sync::watch;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Flushed {
    /// Every ticket up to this one is durable.
    done: u64,
    /// The last ticket a failed flush covered, and why it failed.
    failed: Option<(u64, String)>,
}

struct Shared {
    requested: Mutex<(u64, bool)>, // (highest ticket handed out, shutting down)
    wake: Condvar,
}

pub struct GroupFlusher {
    shared: Arc<Shared>,
    flushed: watch::Receiver<Flushed>,
    thread: Mutex<Option<thread::JoinHandle<()>>>,
}

impl GroupFlusher {
    pub fn start(db: sled::Db) -> Self {
        let shared = Arc::new(Shared {
            requested: Mutex::new((0, false)),
            wake: Condvar::new(),
        });
        let (tx, rx) = watch::channel(Flushed::default());
        let worker = shared.clone();
        let thread = thread::Builder::new()
            .name("keysmith-flusher".into())
            .spawn(move || run(db, worker, tx))
            .expect("spawn the flusher thread");
        Self {
            shared,
            flushed: rx,
            thread: Mutex::new(Some(thread)),
        }
    }

    /// Waits until everything written before this call is on disk.
    pub async fn sync(&self) -> Result<(), String> {
        let ticket = {
            let mut requested = self.shared.requested.lock();
            requested.0 += 1;
            requested.0
        };
        self.shared.wake.notify_one();
        let mut rx = self.flushed.clone();
        let state = rx
            .wait_for(|f| f.done >= ticket || f.failed.as_ref().is_some_and(|(t, _)| *t >= ticket))
            .await
            .map_err(|_| "the flusher has stopped".to_owned())?
            .clone();
        if state.done >= ticket {
            Ok(())
        } else {
            Err(state.failed.map(|(_, why)| why).unwrap_or_default())
        }
    }

    /// Flushes what is pending and stops the thread.
    pub fn stop(&self) {
        {
            let mut requested = self.shared.requested.lock();
            requested.1 = true;
        }
        self.shared.wake.notify_one();
        if let Some(handle) = self.thread.lock().take() {
            let _ = handle.join();
        }
    }
}

impl Drop for GroupFlusher {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(db: sled::Db, shared: Arc<Shared>, tx: watch::Sender<Flushed>) {
    let mut done = 0u64;
    loop {
        let (target, stopping) = {
            let mut requested = shared.requested.lock();
            while requested.0 == done && !requested.1 {
                shared.wake.wait(&mut requested);
            }
            *requested
        };
        // Every write applied before `target` was handed out is covered by
        // this flush, since the flush starts after reading `target`.
        match db.flush() {
            Ok(_) => {
                done = target;
                tx.send_modify(|f| f.done = target);
            }
            Err(error) => {
                tracing::error!(%error, "flushing the store failed");
                done = target;
                tx.send_modify(|f| f.failed = Some((target, error.to_string())));
            }
        }
        if stopping && shared.requested.lock().0 == done {
            return;
        }
    }
}
