//! Signed webhook deliveries, with the vendor's failure handling (non-2xx,
//! 3xx included, and slow answers are failures; retries with backoff; an
//! endpoint failing for too long is disabled) and the faults tests need:
//! duplicates, reordering, bad signatures.
//!
//! Events are planned while the world is locked (which endpoints, with
//! which secret) and sent by one dispatcher task. First attempts go out in
//! queue order, group by group; retries run on their own, as in real life.
//! A `watch` counter of unfinished deliveries lets tests await idleness
//! without polling.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;
use tokio::sync::{watch, Notify};

use crate::config::FakeConfig;
use crate::model::{long_id, WebhookEndpointStatus};
use crate::schema::Core;
use crate::state::{Event, World};

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "3rpms-signature";

/// How a deliberately faulty event is signed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignatureFault {
    /// Signed with a secret that is not the endpoint's.
    WrongSecret,
    /// Correctly signed, but with a timestamp this far in the past.
    StaleTimestamp(Duration),
    /// No signature header at all.
    Missing,
}

/// How one attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// A 2xx answer.
    Delivered { status: u16 },
    /// Any other status, 3xx included: a failure.
    Rejected { status: u16 },
    /// No answer within `webhook_timeout`.
    TimedOut,
    /// Connection refused, reset, ...
    Failed { error: String },
}

/// One HTTP attempt to deliver an event, for assertions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryAttempt {
    pub event_id: String,
    pub event_type: String,
    pub object_id: String,
    pub endpoint_id: String,
    /// 1 for the first attempt of a delivery.
    pub attempt: u32,
    pub outcome: DeliveryOutcome,
    /// Sent with a deliberately bad signature.
    pub faulty_signature: bool,
}

impl DeliveryAttempt {
    pub fn succeeded(&self) -> bool {
        matches!(self.outcome, DeliveryOutcome::Delivered { .. })
    }
}

/// Where one event goes.
pub(crate) struct Target {
    endpoint_id: String,
    url: String,
    secret: String,
}

/// An event and the endpoints that receive it.
pub(crate) struct Planned {
    event: Event,
    targets: Vec<Target>,
}

#[derive(Clone, Debug)]
struct Delivery {
    hotel: String,
    endpoint_id: String,
    url: String,
    secret: String,
    event_id: String,
    event_type: &'static str,
    object_id: String,
    body: String,
    fault: Option<SignatureFault>,
    attempt: u32,
}

struct Inner {
    core: Arc<Core>,
    client: reqwest::Client,
    retry_delay: Duration,
    max_attempts: u32,
    disable_after: u32,
    stale_signature: bool,
    /// Signs the extra `signature=` entry of a simulated secret rotation.
    stale_secret: String,
    duplicate: AtomicBool,
    reorder: AtomicBool,
    held: AtomicBool,
    queue: parking_lot::Mutex<VecDeque<Delivery>>,
    wake: Notify,
    /// Deliveries queued, in flight or waiting for a retry.
    pending: watch::Sender<usize>,
    log: parking_lot::Mutex<Vec<DeliveryAttempt>>,
    shutdown: watch::Receiver<bool>,
}

#[derive(Clone)]
pub(crate) struct Webhooks {
    inner: Arc<Inner>,
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `hex(HMAC-SHA256(secret, "<t>.<body>"))`, as the vendor signs.
pub fn sign(secret: &str, timestamp: i64, body: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

fn object_kind(event_type: &str) -> &'static str {
    match event_type.split('.').next() {
        Some("room_stay") => "room_stay",
        Some("reservation") => "reservation",
        Some("room_access_key") => "room_access_key",
        _ => "unknown",
    }
}

impl Webhooks {
    /// Starts the dispatcher; it stops when `shutdown` turns true.
    pub fn start(
        core: Arc<Core>,
        config: &FakeConfig,
        shutdown: watch::Receiver<bool>,
    ) -> std::io::Result<Self> {
        let client = reqwest::Client::builder()
            // A redirect is a failed delivery, not something to follow.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.webhook_timeout)
            .user_agent("3RPMS-Webhooks (fake-3rpms)")
            .build()
            .map_err(std::io::Error::other)?;
        let inner = Arc::new(Inner {
            core,
            client,
            retry_delay: config.webhook_retry_delay,
            max_attempts: config.webhook_max_attempts.max(1),
            disable_after: config.webhook_disable_after.max(1),
            stale_signature: config.webhook_stale_signature,
            stale_secret: long_id(),
            duplicate: AtomicBool::new(config.duplicate_webhooks),
            reorder: AtomicBool::new(config.reorder_webhooks),
            held: AtomicBool::new(false),
            queue: parking_lot::Mutex::new(VecDeque::new()),
            wake: Notify::new(),
            pending: watch::channel(0).0,
            log: parking_lot::Mutex::new(Vec::new()),
            shutdown,
        });
        tokio::spawn(dispatch(inner.clone()));
        Ok(Webhooks { inner })
    }

    /// Works out who receives `events`: enabled endpoints of the event's
    /// hotel that subscribed to its type. Called with the world locked so
    /// the plan matches the change that caused it.
    pub fn plan(&self, world: &World, events: Vec<Event>) -> Vec<Planned> {
        events
            .into_iter()
            .map(|event| {
                let targets = world
                    .hotel(&event.hotel)
                    .map(|hotel| {
                        hotel
                            .endpoints
                            .iter()
                            .filter(|(_, e)| {
                                e.status == WebhookEndpointStatus::Enabled
                                    && e.events.iter().any(|x| x == event.kind)
                            })
                            .map(|(_, e)| Target {
                                endpoint_id: e.id.clone(),
                                url: e.url.clone(),
                                secret: e.secret.clone(),
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                Planned { event, targets }
            })
            .collect()
    }

    /// Queues planned deliveries: one event id per event, shared by all its
    /// endpoints.
    pub fn enqueue(&self, planned: Vec<Planned>) {
        self.enqueue_with(planned, None);
    }

    /// Returns the event ids, in event order.
    fn enqueue_with(&self, planned: Vec<Planned>, fault: Option<SignatureFault>) -> Vec<String> {
        let created_at = unix_now();
        let duplicate = self.inner.duplicate.load(Ordering::SeqCst) && fault.is_none();
        let mut deliveries = Vec::new();
        let mut event_ids = Vec::new();
        for Planned { event, targets } in planned {
            let event_id = long_id();
            event_ids.push(event_id.clone());
            for target in targets {
                let body = json!({
                    "id": event_id,
                    "type": event.kind,
                    "created_at": created_at,
                    "webhook_endpoint_id": target.endpoint_id,
                    // Fields clients must tolerate without knowing them.
                    "api_version": "2024-01-01",
                    "livemode": false,
                    "data": {
                        "object": { "id": event.object_id, "object": object_kind(event.kind) },
                        "updated_fields": event.updated_fields,
                    },
                })
                .to_string();
                let delivery = Delivery {
                    hotel: event.hotel.clone(),
                    endpoint_id: target.endpoint_id,
                    url: target.url,
                    secret: target.secret,
                    event_id: event_id.clone(),
                    event_type: event.kind,
                    object_id: event.object_id.clone(),
                    body,
                    fault: fault.clone(),
                    attempt: 0,
                };
                if duplicate {
                    deliveries.push(delivery.clone());
                }
                deliveries.push(delivery);
            }
        }
        if !deliveries.is_empty() {
            // Count before queueing so `idle()` can never miss them.
            self.inner.pending.send_modify(|n| *n += deliveries.len());
            self.inner.queue.lock().extend(deliveries);
            self.inner.wake.notify_one();
        }
        event_ids
    }

    /// Sends one event with a bad signature to every enabled endpoint of
    /// the hotel subscribed to `event.kind`. Not retried.
    pub fn enqueue_faulty(&self, planned: Vec<Planned>, fault: SignatureFault) -> Vec<String> {
        self.enqueue_with(planned, Some(fault))
    }

    pub async fn idle(&self) {
        let mut rx = self.inner.pending.subscribe();
        // The sender lives as long as `inner`, which `self` keeps alive.
        let _ = rx.wait_for(|n| *n == 0).await;
    }

    pub fn attempts(&self) -> Vec<DeliveryAttempt> {
        self.inner.log.lock().clone()
    }

    pub fn clear_attempts(&self) {
        self.inner.log.lock().clear();
    }

    pub fn set_duplicate(&self, on: bool) {
        self.inner.duplicate.store(on, Ordering::SeqCst);
    }

    pub fn set_reorder(&self, on: bool) {
        self.inner.reorder.store(on, Ordering::SeqCst);
    }

    pub fn hold(&self) {
        self.inner.held.store(true, Ordering::SeqCst);
    }

    pub fn release(&self) {
        self.inner.held.store(false, Ordering::SeqCst);
        self.inner.wake.notify_one();
    }
}

async fn dispatch(inner: Arc<Inner>) {
    let mut shutdown = inner.shutdown.clone();
    loop {
        tokio::select! {
            _ = inner.wake.notified() => {}
            _ = crate::stopped(&mut shutdown) => return,
        }
        while !inner.held.load(Ordering::SeqCst) {
            let mut group: Vec<Delivery> = inner.queue.lock().drain(..).collect();
            if group.is_empty() {
                break;
            }
            if inner.reorder.load(Ordering::SeqCst) {
                group.reverse();
            }
            for delivery in group {
                first_attempt(&inner, delivery).await;
            }
        }
    }
}

/// Tries once in line (keeping queue order for first attempts) and leaves
/// retries to a task of their own.
async fn first_attempt(inner: &Arc<Inner>, mut d: Delivery) {
    match attempt(inner, &mut d).await {
        Some(true) => finish(inner, &d, true),
        None => finish_silently(inner),
        Some(false) if d.fault.is_some() || d.attempt >= inner.max_attempts => {
            finish(inner, &d, false)
        }
        Some(false) => {
            let inner = inner.clone();
            let mut shutdown = inner.shutdown.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = retry(&inner, d) => {}
                    _ = crate::stopped(&mut shutdown) => {}
                }
            });
        }
    }
}

async fn retry(inner: &Arc<Inner>, mut d: Delivery) {
    loop {
        // Exponential backoff from `retry_delay`, capped at 64x.
        let factor = 1u32 << (d.attempt.saturating_sub(1)).min(6);
        tokio::time::sleep(inner.retry_delay.saturating_mul(factor)).await;
        match attempt(inner, &mut d).await {
            Some(true) => return finish(inner, &d, true),
            None => return finish_silently(inner),
            Some(false) if d.attempt >= inner.max_attempts => return finish(inner, &d, false),
            Some(false) => {}
        }
    }
}

/// One HTTP POST. `None` when the endpoint is gone or disabled, so nothing
/// was sent.
async fn attempt(inner: &Inner, d: &mut Delivery) -> Option<bool> {
    {
        let world = inner.core.world.lock();
        let endpoint = world.hotel(&d.hotel)?.endpoints.get(&d.endpoint_id)?;
        if endpoint.status != WebhookEndpointStatus::Enabled {
            return None;
        }
    }
    d.attempt += 1;
    let now = unix_now();
    let header = match &d.fault {
        None => {
            let good = sign(&d.secret, now, &d.body);
            if inner.stale_signature {
                let stale = sign(&inner.stale_secret, now, &d.body);
                Some(format!("t={now},signature={stale},signature={good}"))
            } else {
                Some(format!("t={now},signature={good}"))
            }
        }
        Some(SignatureFault::WrongSecret) => Some(format!(
            "t={now},signature={}",
            sign(&long_id(), now, &d.body)
        )),
        Some(SignatureFault::StaleTimestamp(age)) => {
            let t = now - age.as_secs() as i64;
            Some(format!("t={t},signature={}", sign(&d.secret, t, &d.body)))
        }
        Some(SignatureFault::Missing) => None,
    };
    let mut request = inner
        .client
        .post(&d.url)
        .header("content-type", "application/json")
        .body(d.body.clone());
    if let Some(h) = header {
        request = request.header(SIGNATURE_HEADER, h);
    }
    let outcome = match request.send().await {
        Ok(resp) if resp.status().is_success() => DeliveryOutcome::Delivered {
            status: resp.status().as_u16(),
        },
        Ok(resp) => DeliveryOutcome::Rejected {
            status: resp.status().as_u16(),
        },
        Err(e) if e.is_timeout() => DeliveryOutcome::TimedOut,
        Err(e) => DeliveryOutcome::Failed {
            error: e.to_string(),
        },
    };
    tracing::debug!(event = %d.event_id, kind = d.event_type, attempt = d.attempt, ?outcome, "webhook attempt");
    let ok = matches!(outcome, DeliveryOutcome::Delivered { .. });
    inner.log.lock().push(DeliveryAttempt {
        event_id: d.event_id.clone(),
        event_type: d.event_type.to_string(),
        object_id: d.object_id.clone(),
        endpoint_id: d.endpoint_id.clone(),
        attempt: d.attempt,
        outcome,
        faulty_signature: d.fault.is_some(),
    });
    Some(ok)
}

/// Records the end of a delivery on its endpoint, disabling an endpoint
/// whose deliveries keep failing.
fn finish(inner: &Inner, d: &Delivery, ok: bool) {
    if d.fault.is_none() {
        let mut world = inner.core.world.lock();
        if let Some(e) = world
            .hotels
            .get_mut(&d.hotel)
            .and_then(|h| h.endpoints.get_mut(&d.endpoint_id))
        {
            if ok {
                e.consecutive_failures = 0;
            } else {
                e.consecutive_failures += 1;
                if e.consecutive_failures >= inner.disable_after {
                    tracing::warn!(endpoint = %e.id, "webhook endpoint disabled after repeated failures");
                    e.status = WebhookEndpointStatus::Disabled;
                }
            }
        }
    }
    finish_silently(inner);
}

fn finish_silently(inner: &Inner) {
    inner.pending.send_modify(|n| *n = n.saturating_sub(1));
}
