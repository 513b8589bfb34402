//! What a connection is doing, as its handshake and idle timeouts see it.
use std::{
    sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    time::Duration,
};

use tokio::{sync::Notify, time::Instant};

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
    /// Told when its last open call ends, so that [`Activity::idle`] counts
    /// from then rather than looking again later.
    quieted: Notify,
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
            quieted: Notify::new(),
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
        if self.open_calls.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.quieted.notify_waiters();
        }
    }

    /// Whether a request has arrived on the connection.
    pub fn served(&self) -> bool {
        self.served.load(Ordering::Relaxed)
    }

    pub fn open_calls(&self) -> usize {
        self.open_calls.load(Ordering::Acquire)
    }

    /// When the connection is to be ended unless a call opens: its
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

    /// When the connection's socket is to be closed unless a call opens.
    /// Before its first request, at its handshake timeout: it may not even
    /// speak HTTP/2 yet. After, a connection idle past its timeout is told
    /// to go ([`Activity::idle`]) and closes itself once it has answered;
    /// its socket is closed only if it is still open a handshake timeout
    /// later (a client that does not answer the GOAWAY's ping).
    pub fn close_deadline(&self) -> Option<Instant> {
        let deadline = self.deadline()?;
        if self.served() {
            return Some(deadline + self.handshake_timeout);
        }
        Some(deadline)
    }

    /// How long to wait before looking again while a call is open.
    pub fn recheck_after(&self) -> Duration {
        self.idle_timeout
    }

    /// Resolves once the connection has served a request and then had no
    /// call open for its idle timeout.
    pub async fn idle(&self) {
        loop {
            // Made before looking, so that a last call ending meanwhile is
            // not missed.
            let quieted = self.quieted.notified();
            let now = Instant::now();
            match self.deadline() {
                Some(deadline) if deadline > now => tokio::time::sleep_until(deadline).await,
                Some(_) if self.served() => return,
                // A call is open; or no request came within the handshake
                // timeout, and the socket is closed (`close_deadline`)
                // unless one comes, which begins a call.
                _ => quieted.await,
            }
        }
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

    #[tokio::test(start_paused = true)]
    async fn a_connection_is_idle_its_timeout_after_its_last_call_ended() {
        let t0 = Instant::now();
        let a = Activity::new(t0, HANDSHAKE, IDLE);
        a.call_opened();
        let idle = a.idle();
        tokio::pin!(idle);
        let waited = tokio::time::timeout(IDLE * 2, &mut idle).await;
        assert!(waited.is_err(), "not idle while a call is open");
        a.call_closed(Instant::now());
        let ended = Instant::now();
        idle.await;
        assert_eq!(Instant::now(), ended + IDLE);
    }

    #[test]
    fn a_served_connection_is_closed_at_its_socket_a_handshake_timeout_after_being_told_to_go() {
        let t0 = Instant::now();
        let a = Activity::new(t0, HANDSHAKE, IDLE);
        assert_eq!(a.close_deadline(), Some(t0 + HANDSHAKE), "before a request");
        a.call_opened();
        assert_eq!(a.close_deadline(), None);
        a.call_closed(t0);
        assert_eq!(a.close_deadline(), Some(t0 + IDLE + HANDSHAKE));
    }
}
