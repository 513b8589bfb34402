//! What every part of a running fake shares: the locked world, the
//! configuration, the webhook dispatcher, fault switches, counters and the
//! background timers. `change` is the one way to modify the world: it runs
//! the change under the lock, then sends its events and schedules its
//! timers, so side effects always follow a committed change.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::watch;

use crate::config::FakeSeamConfig;
use crate::counts::Counters;
use crate::faults::Faults;
use crate::ids::{format_id, Kind};
use crate::state::{Timer, World};
use crate::webhooks::{self, Webhooks};

pub(crate) struct Core {
    world: parking_lot::Mutex<World>,
    pub config: FakeSeamConfig,
    /// `http://127.0.0.1:PORT`
    pub base_url: String,
    pub webhooks: Webhooks,
    pub faults: Faults,
    pub counts: Counters,
    /// Timers started and not yet fired.
    timers: watch::Sender<usize>,
    requests: AtomicU64,
    pub shutdown: watch::Receiver<bool>,
    /// What the fake's answers and events, and its clients' requests, had
    /// that Seam's definition does not define (`contract.rs`).
    violations: parking_lot::Mutex<Vec<String>>,
}

/// Decrements the timer count however a timer task ends.
struct TimerGuard(Arc<Core>);

impl Drop for TimerGuard {
    fn drop(&mut self) {
        self.0.timers.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl Core {
    pub fn new(
        config: FakeSeamConfig,
        base_url: String,
        shutdown: watch::Receiver<bool>,
    ) -> std::io::Result<Arc<Core>> {
        let webhooks = Webhooks::start(&config, shutdown.clone())?;
        let mut world = World::default();
        world.fx.base_url = base_url.clone();
        Ok(Arc::new(Core {
            world: parking_lot::Mutex::new(world),
            config,
            base_url,
            webhooks,
            faults: Faults::default(),
            counts: Counters::default(),
            timers: watch::channel(0).0,
            requests: AtomicU64::new(0),
            shutdown,
            violations: parking_lot::Mutex::new(Vec::new()),
        }))
    }

    pub fn read<T>(&self, f: impl FnOnce(&World) -> T) -> T {
        f(&self.world.lock())
    }

    /// Applies a change, then carries out its side effects.
    pub fn change<T>(self: &Arc<Self>, f: impl FnOnce(&mut World) -> T) -> T {
        let (out, planned, timers) = {
            let mut world = self.world.lock();
            let out = f(&mut world);
            let events = std::mem::take(&mut world.fx.events);
            for event in &events {
                self.record_violations(
                    &format!("event {}", event.event_type),
                    crate::contract::Contract::seam().check_event(&event.to_json()),
                );
            }
            let timers = std::mem::take(&mut world.fx.timers);
            (out, webhooks::plan(&world, events), timers)
        };
        self.webhooks.enqueue(planned);
        for timer in timers {
            self.start_timer(timer);
        }
        out
    }

    /// Runs a timer's step after its configured delay; with no delay
    /// configured the step waits for the control API.
    fn start_timer(self: &Arc<Self>, timer: Timer) {
        let delay = match timer {
            Timer::Issue { .. } => self.config.issue_delay,
            Timer::FinishDeletion { .. } => self.config.delete_delay,
            Timer::FinishEncoding { .. } => self.config.encode_delay,
        };
        let Some(delay) = delay else { return };
        // Counted before spawning so that `settled()` cannot miss it.
        self.timers.send_modify(|n| *n += 1);
        let guard = TimerGuard(self.clone());
        tokio::spawn(async move {
            let core = guard.0.clone();
            let mut shutdown = core.shutdown.clone();
            tokio::select! {
                _ = tokio::time::sleep(delay) => core.change(|w| w.fire(&timer)),
                _ = crate::stopped(&mut shutdown) => {}
            }
            drop(guard);
        });
    }

    /// Resolves when no timer is waiting.
    pub async fn settled(&self) {
        let mut rx = self.timers.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
    }

    /// Records what `what` had that Seam's definition does not allow.
    pub fn record_violations(&self, what: &str, issues: Vec<crate::contract::Issue>) {
        if issues.is_empty() {
            return;
        }
        let mut log = self.violations.lock();
        for issue in issues {
            tracing::warn!(%what, %issue, "outside Seam's API definition");
            log.push(format!("{what}: {issue}"));
        }
    }

    pub fn violations(&self) -> Vec<String> {
        self.violations.lock().clone()
    }

    /// A `seam-request-id`.
    pub fn next_request_id(&self) -> String {
        format_id(
            Kind::Request,
            self.requests.fetch_add(1, Ordering::Relaxed) + 1,
        )
    }
}
