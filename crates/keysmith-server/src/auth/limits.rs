//! Abuse limits: failed authentications per peer, and requests per token
//! (per minute, and at once: the budget crate::admission takes from).
use std::{
    collections::HashMap,
    net::IpAddr,
    time::{Duration, Instant},
};

use keysmith_core::{error::reasons, Error, ErrorKind};
use parking_lot::Mutex;

use crate::admission::Budget;

/// Counts failed authentications per peer address in fixed windows; a peer
/// past the limit is refused without its token even being looked at.
pub struct PeerFailures {
    max: u32,
    window: Duration,
    peers: Mutex<HashMap<IpAddr, Window>>,
}

struct Window {
    started: Instant,
    failures: u32,
}

/// Beyond this many tracked peers, expired windows are swept.
const SWEEP_ABOVE: usize = 4096;

impl PeerFailures {
    pub fn new(max: u32, window: Duration) -> Self {
        Self {
            max,
            window,
            peers: Mutex::new(HashMap::new()),
        }
    }

    /// How long the peer must wait, if it has failed too often.
    pub fn blocked(&self, peer: IpAddr, now: Instant) -> Option<Duration> {
        let peers = self.peers.lock();
        let w = peers.get(&peer)?;
        let ends = w.started + self.window;
        (w.failures >= self.max && now < ends).then(|| ends - now)
    }

    pub fn failed(&self, peer: IpAddr, now: Instant) {
        let mut peers = self.peers.lock();
        if peers.len() > SWEEP_ABOVE {
            let window = self.window;
            peers.retain(|_, w| now < w.started + window);
        }
        let w = peers.entry(peer).or_insert(Window {
            started: now,
            failures: 0,
        });
        if now >= w.started + self.window {
            *w = Window {
                started: now,
                failures: 0,
            };
        }
        w.failures = w.failures.saturating_add(1);
    }
}

/// One token's limits.
pub struct TokenLimits {
    /// Its requests served at once, taken once a request has fully arrived
    /// (crate::admission).
    in_flight: Budget,
    per_minute: Option<Mutex<Bucket>>,
}

/// A token bucket: `capacity` requests at once, refilled evenly over a minute.
struct Bucket {
    capacity: f64,
    tokens: f64,
    refilled: Instant,
}

pub enum Refusal {
    RateLimited { retry_after: Duration },
}

fn too_many_in_flight() -> Error {
    Error::new(
        ErrorKind::ResourceExhausted,
        reasons::TOKEN_CONCURRENCY_LIMITED,
        "this token has too many requests in flight",
    )
}

impl TokenLimits {
    pub fn new(max_in_flight: usize, requests_per_minute: Option<u32>, now: Instant) -> Self {
        Self {
            in_flight: Budget::new(max_in_flight, too_many_in_flight),
            per_minute: requests_per_minute.map(|n| {
                Mutex::new(Bucket {
                    capacity: f64::from(n),
                    tokens: f64::from(n),
                    refilled: now,
                })
            }),
        }
    }

    /// Counts one request against the rate; once it passes, the request is
    /// served within the token's in-flight budget, returned.
    pub fn admit(&self, now: Instant) -> Result<Budget, Refusal> {
        if let Some(bucket) = &self.per_minute {
            let mut b = bucket.lock();
            let per_second = b.capacity / 60.0;
            let elapsed = now.saturating_duration_since(b.refilled).as_secs_f64();
            b.tokens = (b.tokens + elapsed * per_second).min(b.capacity);
            b.refilled = now;
            if b.tokens < 1.0 {
                let wait = (1.0 - b.tokens) / per_second;
                return Err(Refusal::RateLimited {
                    retry_after: Duration::from_secs_f64(wait.max(0.001)),
                });
            }
            b.tokens -= 1.0;
        }
        Ok(self.in_flight.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn a_peer_is_blocked_after_max_failures_until_the_window_ends() {
        let f = PeerFailures::new(3, Duration::from_secs(60));
        let t = Instant::now();
        for _ in 0..2 {
            f.failed(PEER, t);
        }
        assert!(f.blocked(PEER, t).is_none());
        f.failed(PEER, t);
        assert_eq!(f.blocked(PEER, t), Some(Duration::from_secs(60)));
        assert!(f.blocked(PEER, t + Duration::from_secs(61)).is_none());
        // A new window starts from zero.
        f.failed(PEER, t + Duration::from_secs(61));
        assert!(f.blocked(PEER, t + Duration::from_secs(61)).is_none());
    }

    #[test]
    fn other_peers_are_not_blocked() {
        let f = PeerFailures::new(1, Duration::from_secs(60));
        let t = Instant::now();
        f.failed(PEER, t);
        assert!(f.blocked("10.0.0.1".parse().unwrap(), t).is_none());
    }

    #[test]
    fn in_flight_requests_are_capped_and_freed_with_their_permit() {
        let t = Instant::now();
        let limits = TokenLimits::new(2, None, t);
        let budget = limits.admit(t).ok().unwrap();
        let a = budget.admit().unwrap();
        let _b = limits.admit(t).ok().unwrap().admit().unwrap();
        let refused = limits.admit(t).ok().unwrap().admit().unwrap_err();
        assert_eq!(refused.reason(), reasons::TOKEN_CONCURRENCY_LIMITED);
        drop(a);
        assert!(budget.admit().is_ok());
    }

    #[test]
    fn the_rate_refills_over_the_minute() {
        let t = Instant::now();
        let limits = TokenLimits::new(100, Some(2), t);
        assert!(limits.admit(t).is_ok());
        assert!(limits.admit(t).is_ok());
        match limits.admit(t) {
            Err(Refusal::RateLimited { retry_after }) => {
                assert_eq!(retry_after.as_secs(), 30)
            }
            _ => panic!("the third request in the same instant is limited"),
        }
        assert!(limits.admit(t + Duration::from_secs(30)).is_ok());
    }
}
