//! The client side of 3RPMS's rate limit. 3RPMS allows 200 requests per
//! minute per client IP and answers an excess by blocking connections for 20
//! minutes, silently: connections time out, there is no 429. So keysmith
//! spaces its own requests well under the limit, and after a burst of
//! time-outs assumes it is blocked and stops sending for the block period.
//!
//! Several keysmith replicas on one PostgreSQL database reach 3RPMS from
//! behind one egress too: there each request also takes its slot from a
//! budget the store shares between them ([`RateBudgets`], a row spent by
//! one statement), so that together they stay under the limit; on sled
//! (one process) the rolling minute in memory is the whole budget.
use std::{collections::VecDeque, sync::Arc, time::Duration};

use keysmith_core::{budget::RateBudgets, Error};
use parking_lot::Mutex;
use tokio::time::Instant;

#[derive(Clone, Debug)]
pub struct LimiterConfig {
    /// Requests allowed in any rolling minute, for this egress.
    pub requests_per_minute: u32,
    /// How long to stop sending once a block is suspected.
    pub block_backoff: Duration,
    /// Consecutive time-outs that are taken as a block.
    pub timeouts_before_block: u32,
}

impl Default for LimiterConfig {
    fn default() -> Self {
        Self {
            requests_per_minute: 120,
            block_backoff: Duration::from_secs(20 * 60),
            timeouts_before_block: 2,
        }
    }
}

/// Shared by every hotel that reaches 3RPMS through the same egress, since
/// 3RPMS counts per client IP, not per API key.
#[derive(Clone)]
pub struct Egress {
    config: LimiterConfig,
    state: Arc<Mutex<State>>,
    /// The budget shared with the other processes on the store, if any.
    shared: Option<Arc<dyn RateBudgets>>,
    /// Requests this egress may still send in the rolling minute, as of
    /// its last request (`metrics` facade, registered once).
    remaining: metrics::Gauge,
    /// Suspected blocks begun.
    blocks: metrics::Counter,
}

#[derive(Default)]
struct State {
    sent: VecDeque<Instant>,
    consecutive_timeouts: u32,
    blocked_until: Option<Instant>,
}

/// Why a request may not go out now.
#[derive(Debug)]
pub enum Refusal {
    /// A block is suspected; nothing is sent until then.
    Blocked { retry_after: Duration },
    /// The budget shared with the other replicas cannot be read (the
    /// store is unavailable): sending anyway could spend another's share.
    Store(Error),
}

const WINDOW: Duration = Duration::from_secs(60);

/// The shared budget's name: 3RPMS counts per client IP, and the replicas
/// are taken to share one egress.
pub const SHARED_BUDGET: &str = "3rpms";

impl Egress {
    pub fn new(config: LimiterConfig) -> Self {
        Self {
            config,
            state: Arc::default(),
            shared: None,
            remaining: metrics::gauge!("keysmith_threerpms_rate_budget_remaining"),
            blocks: metrics::counter!("keysmith_threerpms_blocks_total"),
        }
    }

    /// Spends `budgets` (the store's, shared with the other replicas) as
    /// well as this process's rolling minute.
    pub fn shared_with(mut self, budgets: Arc<dyn RateBudgets>) -> Self {
        self.shared = Some(budgets);
        self
    }

    pub fn config(&self) -> &LimiterConfig {
        &self.config
    }

    /// Waits for a slot in the rolling minute, then takes it (and one of
    /// the shared budget, when there is one). Fails at once while a block
    /// is suspected: a caller gets UNAVAILABLE with the time left, rather
    /// than waiting twenty minutes.
    pub async fn acquire(&self) -> Result<(), Refusal> {
        self.acquire_here().await?;
        let Some(shared) = &self.shared else {
            return Ok(());
        };
        let per_minute = self.config.requests_per_minute.max(1);
        while let Some(wait) = shared
            .take(SHARED_BUDGET, per_minute)
            .await
            .map_err(Refusal::Store)?
        {
            self.remaining.set(0.0);
            tokio::time::sleep(wait).await;
        }
        Ok(())
    }

    /// A slot of this process's rolling minute.
    async fn acquire_here(&self) -> Result<(), Refusal> {
        loop {
            let wait_until = {
                let mut state = self.state.lock();
                let now = Instant::now();
                if let Some(until) = state.blocked_until {
                    if now < until {
                        return Err(Refusal::Blocked {
                            retry_after: until - now,
                        });
                    }
                    state.blocked_until = None;
                }
                while state.sent.front().is_some_and(|t| now - *t >= WINDOW) {
                    state.sent.pop_front();
                }
                let limit = self.config.requests_per_minute.max(1) as usize;
                if state.sent.len() < limit {
                    state.sent.push_back(now);
                    self.remaining.set((limit - state.sent.len()) as f64);
                    return Ok(());
                }
                self.remaining.set(0.0);
                *state.sent.front().expect("the window is full") + WINDOW
            };
            tokio::time::sleep_until(wait_until).await;
        }
    }

    /// A request got an answer: the connection is not blocked.
    pub fn answered(&self) {
        self.state.lock().consecutive_timeouts = 0;
    }

    /// A request timed out (connecting or waiting). Returns the block's
    /// length if this time-out makes a suspected block.
    pub fn timed_out(&self) -> Option<Duration> {
        let mut state = self.state.lock();
        state.consecutive_timeouts += 1;
        if state.consecutive_timeouts >= self.config.timeouts_before_block.max(1) {
            state.consecutive_timeouts = 0;
            state.blocked_until = Some(Instant::now() + self.config.block_backoff);
            self.blocks.increment(1);
            tracing::warn!(
                backoff_s = self.config.block_backoff.as_secs(),
                "3RPMS connections time out: assuming a rate-limit block, not sending until it ends"
            );
            return Some(self.config.block_backoff);
        }
        None
    }

    /// Time left of a suspected block.
    pub fn blocked_for(&self) -> Option<Duration> {
        let state = self.state.lock();
        let now = Instant::now();
        state
            .blocked_until
            .filter(|until| *until > now)
            .map(|until| until - now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn egress(per_minute: u32) -> Egress {
        Egress::new(LimiterConfig {
            requests_per_minute: per_minute,
            block_backoff: Duration::from_secs(1200),
            timeouts_before_block: 2,
        })
    }

    #[tokio::test(start_paused = true)]
    async fn never_more_than_the_limit_in_any_rolling_minute() {
        let egress = egress(3);
        let start = Instant::now();
        for _ in 0..3 {
            egress.acquire().await.unwrap();
        }
        assert_eq!(Instant::now(), start, "the first three go at once");
        egress.acquire().await.unwrap();
        assert!(
            Instant::now() >= start + WINDOW,
            "the fourth waits for the first to leave the window"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_timeouts_is_a_block_and_nothing_is_sent_until_it_ends() {
        let egress = egress(100);
        assert_eq!(egress.timed_out(), None, "one time-out is not a block");
        egress.answered();
        assert_eq!(egress.timed_out(), None, "an answer resets the count");
        assert_eq!(egress.timed_out(), Some(Duration::from_secs(1200)));
        match egress.acquire().await {
            Err(Refusal::Blocked { retry_after }) => {
                assert_eq!(retry_after, Duration::from_secs(1200))
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        tokio::time::advance(Duration::from_secs(1200)).await;
        assert!(egress.acquire().await.is_ok(), "the block has ended");
    }

    /// A shared budget that has no slot for `waits` more asks, then grants.
    struct Exhausted {
        waits: Mutex<u32>,
    }

    #[async_trait::async_trait]
    impl RateBudgets for Exhausted {
        async fn take(
            &self,
            name: &str,
            per_minute: u32,
        ) -> keysmith_core::Result<Option<Duration>> {
            assert_eq!((name, per_minute), (SHARED_BUDGET, 100));
            let mut waits = self.waits.lock();
            if *waits == 0 {
                return Ok(None);
            }
            *waits -= 1;
            Ok(Some(Duration::from_secs(7)))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_shared_budget_without_a_slot_holds_the_request_back() {
        let egress = egress(100).shared_with(Arc::new(Exhausted {
            waits: Mutex::new(2),
        }));
        let start = Instant::now();
        egress.acquire().await.unwrap();
        assert_eq!(
            Instant::now(),
            start + Duration::from_secs(14),
            "this process's minute had room; the shared budget had none twice"
        );
    }
}
