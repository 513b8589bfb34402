//! What a connection is doing, as its handshake and idle timeouts see it.
use std::{
    sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    time::Duration,
};

use tokio::time::Instant;

/// A connection's open calls, and since when it has had none.
#[derive(Debug)]
pub struct Activity {
    accepted: Instant,
    handshake_timeout: Duration,
    idle_timeout: Duration,
    open_calls: AtomicUsize,
    /// Whether a request has arrived: until one has, the handshake timeout
    /// applies instead of the idle timeout.
    served: AtomicBool,
    /// When its last call ended, in milliseconds since `accepted`.
    quiet_since_ms: AtomicU64,
}

impl Activity {
    pub fn new(accepted: Instant, handshake_timeout: Duration, idle_timeout: Duration) -> Self {
        Self {
            accepted,
            handshake_timeout,
            idle_timeout,
            open_calls: AtomicUsize::new(0),
            served: AtomicBool::new(false),
            quiet_since_ms: AtomicU64::new(0),
        }
    }

    pub fn call_opened(&self) {
        self.served.store(true, Ordering::Relaxed);
        self.open_calls.fetch_add(1, Ordering::AcqRel);
    }

    pub fn call_closed(&self, now: Instant) {
        let since = now.saturating_duration_since(self.accepted).as_millis();
        // Recorded before the count drops, so that whoever sees no call open
        // sees when the last one ended; fetch_max because calls end in any
        // order.
        self.quiet_since_ms
            .fetch_max(u64::try_from(since).unwrap_or(u64::MAX), Ordering::AcqRel);
        self.open_calls.fetch_sub(1, Ordering::AcqRel);
    }

    /// Whether a request has arrived on the connection.
    pub fn served(&self) -> bool {
        self.served.load(Ordering::Relaxed)
    }

    pub fn open_calls(&self) -> usize {
        self.open_calls.load(Ordering::Acquire)
    }

    /// When the connection is to be closed unless a call opens: its
    /// handshake timeout until a first request arrives, then its idle
    /// timeout after its last call. None while a call is open (HTTP/2
    /// keep-alive pings then find a peer that is gone).
    pub fn deadline(&self) -> Option<Instant> {
        if self.open_calls() > 0 {
            return None;
        }
        if !self.served() {
            return Some(self.accepted + self.handshake_timeout);
        }
        let quiet_since = Duration::from_millis(self.quiet_since_ms.load(Ordering::Acquire));
        Some(self.accepted + quiet_since + self.idle_timeout)
    }

    /// How long to wait before looking again while a call is open.
    pub fn recheck_after(&self) -> Duration {
        self.idle_timeout
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HANDSHAKE: Duration = Duration::from_secs(10);
    const IDLE: Duration = Duration::from_secs(300);

    #[test]
    fn a_connection_has_its_handshake_timeout_until_a_first_call() {
        let t0 = Instant::now();
        let a = Activity::new(t0, HANDSHAKE, IDLE);
        assert_eq!(a.deadline(), Some(t0 + HANDSHAKE));
        a.call_opened();
        assert_eq!(a.deadline(), None);
    }

    #[test]
    fn the_idle_timeout_runs_from_the_end_of_the_last_call() {
        let t0 = Instant::now();
        let a = Activity::new(t0, HANDSHAKE, IDLE);
        a.call_opened();
        a.call_opened();
        let t1 = t0 + Duration::from_secs(5);
        a.call_closed(t1);
        assert_eq!(a.deadline(), None, "one call is still open");
        let t2 = t0 + Duration::from_secs(7);
        a.call_closed(t2);
        assert_eq!(a.deadline(), Some(t2 + IDLE));
        // A call that ended earlier but is counted later does not bring the
        // deadline forward.
        a.call_opened();
        a.call_closed(t1);
        assert_eq!(a.deadline(), Some(t2 + IDLE));
    }
}
