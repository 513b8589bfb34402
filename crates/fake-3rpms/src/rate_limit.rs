//! The vendor's rate limit: N requests per client IP in a rolling minute;
//! the request that exceeds it starts a block during which that IP gets no
//! answers at all (the server, not this module, makes requests hang).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Allow,
    /// Hang until `until`, then drop the connection. `started` is true for
    /// the request that began the block.
    Block {
        until: Instant,
        started: bool,
    },
}

#[derive(Default)]
struct IpState {
    recent: VecDeque<Instant>,
    blocked_until: Option<Instant>,
}

pub(crate) struct RateLimiter {
    limit: u32,
    window: Duration,
    block: Duration,
    ips: parking_lot::Mutex<HashMap<IpAddr, IpState>>,
    /// Bumped whenever a block starts, so tests can await one.
    blocks: watch::Sender<u64>,
}

impl RateLimiter {
    pub fn new(limit: u32, window: Duration, block: Duration) -> Self {
        RateLimiter {
            limit,
            window,
            block,
            ips: parking_lot::Mutex::new(HashMap::new()),
            blocks: watch::channel(0).0,
        }
    }

    /// Counts one request from `ip` and judges it.
    pub fn request(&self, ip: IpAddr) -> Verdict {
        let now = Instant::now();
        let mut ips = self.ips.lock();
        let state = ips.entry(ip).or_default();
        if let Some(until) = state.blocked_until {
            if now < until {
                return Verdict::Block {
                    until,
                    started: false,
                };
            }
            state.blocked_until = None;
        }
        while state
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            state.recent.pop_front();
        }
        if state.recent.len() as u64 >= u64::from(self.limit) {
            let until = now + self.block;
            state.blocked_until = Some(until);
            // The vendor's block (20 min) outlasts the window (1 min), so
            // after it the IP starts afresh; clearing keeps that true when
            // tests shorten the block.
            state.recent.clear();
            drop(ips);
            self.blocks.send_modify(|n| *n += 1);
            return Verdict::Block {
                until,
                started: true,
            };
        }
        state.recent.push_back(now);
        Verdict::Allow
    }

    /// When a new connection from `ip` must be held unanswered, until when.
    pub fn connection(&self, ip: IpAddr) -> Option<Instant> {
        let now = Instant::now();
        self.ips
            .lock()
            .get(&ip)
            .and_then(|s| s.blocked_until)
            .filter(|until| now < *until)
    }

    pub fn is_blocked(&self) -> bool {
        self.latest_block_end().is_some()
    }

    /// The end of the latest running block, if any IP is blocked.
    pub fn latest_block_end(&self) -> Option<Instant> {
        let now = Instant::now();
        self.ips
            .lock()
            .values()
            .filter_map(|s| s.blocked_until)
            .filter(|until| now < *until)
            .max()
    }

    pub fn subscribe_blocks(&self) -> watch::Receiver<u64> {
        self.blocks.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn blocks_the_request_over_the_limit_and_resets_after() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let other: IpAddr = "127.0.0.2".parse().unwrap();
        let rl = RateLimiter::new(2, Duration::from_secs(60), Duration::ZERO);
        assert_eq!(rl.request(ip), Verdict::Allow);
        assert_eq!(rl.request(ip), Verdict::Allow);
        assert!(matches!(
            rl.request(ip),
            Verdict::Block { started: true, .. }
        ));
        // Other IPs are not affected.
        assert_eq!(rl.request(other), Verdict::Allow);
        // A zero-length block is over at once and the window starts afresh.
        assert_eq!(rl.request(ip), Verdict::Allow);
    }

    #[tokio::test]
    async fn requests_during_a_block_hang_too() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let rl = RateLimiter::new(1, Duration::from_secs(60), Duration::from_secs(3600));
        assert_eq!(rl.request(ip), Verdict::Allow);
        assert!(matches!(
            rl.request(ip),
            Verdict::Block { started: true, .. }
        ));
        assert!(matches!(
            rl.request(ip),
            Verdict::Block { started: false, .. }
        ));
        assert!(rl.connection(ip).is_some());
        assert!(rl.is_blocked());
    }
}
