//! Signals between the keysmith processes on the database: a driver's
//! state tells the others that a topic of it changed
//! (`DriverState::signal`), and each process's listener (`listen.rs`)
//! calls whoever here waits for that topic (`DriverState::on_signal`).
//!
//! What it is for: the 3RPMS inbox of a hotel is drained by the worker of
//! the one replica that holds the hotel's lease, but an event may be
//! accepted by any replica; the accepting one signals, and the holder's
//! worker wakes at once instead of at its next round.
//!
//! A signal is a `NOTIFY` on [`CHANNEL`] sent once the change is committed
//! (after it, so that a woken process reads it). PostgreSQL delivers it to
//! every listening session, this one's included (a needless wake, which
//! costs a look). Signals sent while the listener is away are lost, so each
//! time it listens again it wakes every waiter: they look once, as they
//! would at their next round.
use std::collections::HashMap;

use deadpool_postgres::Pool;
use keysmith_core::{store::Wake, Result};
use parking_lot::Mutex;

use crate::{blocking::connection, db_error};

/// The channel of the signals. The payload is the driver state's namespace,
/// a newline and the topic: no secret.
pub(crate) const CHANNEL: &str = "keysmith_signals";

/// The waiters of this process, by payload.
#[derive(Default)]
pub(crate) struct Signals {
    waiting: Mutex<HashMap<String, Vec<Wake>>>,
}

/// What [`send`] notifies for `topic` of `namespace`, and what a waiter of
/// it is found by.
fn payload(namespace: &str, topic: &str) -> String {
    format!("{namespace}\n{topic}")
}

impl Signals {
    /// Calls `wake` whenever `topic` of `namespace` is signalled.
    pub(crate) fn register(&self, namespace: &str, topic: &str, wake: Wake) {
        self.waiting
            .lock()
            .entry(payload(namespace, topic))
            .or_default()
            .push(wake);
    }

    /// A signal arrived: wakes its topic's waiters.
    pub(crate) fn delivered(&self, payload: &str) {
        let wakes = self.waiting.lock().get(payload).cloned();
        for wake in wakes.into_iter().flatten() {
            wake();
        }
    }

    /// Signals may have been missed: wakes every waiter.
    pub(crate) fn missed(&self) {
        let wakes: Vec<Wake> = self.waiting.lock().values().flatten().cloned().collect();
        for wake in wakes {
            wake();
        }
    }
}

/// Signals `topic` of `namespace` to every listening keysmith on the
/// database: one round trip on a pooled connection.
pub(crate) async fn send(pool: &Pool, namespace: &str, topic: &str) -> Result<()> {
    let client = connection(pool).await?;
    client
        .execute(
            "SELECT pg_notify($1, $2)",
            &[&CHANNEL, &payload(namespace, topic)],
        )
        .await
        .map_err(db_error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    };

    use super::*;

    #[test]
    fn a_signal_wakes_its_topics_waiters_and_a_miss_wakes_all() {
        let signals = Signals::default();
        let (inbox, other) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let counting = |n: &Arc<AtomicUsize>| -> Wake {
            let n = n.clone();
            Arc::new(move || {
                n.fetch_add(1, Ordering::SeqCst);
            })
        };
        signals.register("3rpms", "inbox/demo-hotel", counting(&inbox));
        signals.register("3rpms", "inbox/other-hotel", counting(&other));

        signals.delivered("3rpms\ninbox/demo-hotel");
        signals.delivered("3rpms\ninbox/nobody");
        assert_eq!(
            (inbox.load(Ordering::SeqCst), other.load(Ordering::SeqCst)),
            (1, 0)
        );

        signals.missed();
        assert_eq!(
            (inbox.load(Ordering::SeqCst), other.load(Ordering::SeqCst)),
            (2, 1)
        );
    }
}
