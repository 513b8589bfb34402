//! Webhook deliveries as Seam makes them through Svix: a POST of the bare
//! event object with `svix-id`, `svix-timestamp` and `svix-signature:
//! v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, keyed with the
//! base64-decoded part of the endpoint's `whsec_` secret. A non-2xx answer,
//! a transport error or a time-out is retried with exponential backoff; the
//! same message keeps its `svix-id` across attempts.
//!
//! Targets are planned while the world is locked (so a delivery matches the
//! change that caused it) and sent by one dispatcher task: first attempts in
//! event order, retries on their own tasks. A `watch` counter of unfinished
//! deliveries lets tests await idleness without polling.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::{watch, Notify};

use crate::config::FakeSeamConfig;
use crate::events::Event;
use crate::model::Endpoint;
use crate::state::World;

/// How one attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// A 2xx answer.
    Delivered { status: u16 },
    /// Any other status, 3xx included.
    Rejected { status: u16 },
    /// Connection refused or reset, time-out, ...
    Failed { error: String },
}

/// One HTTP attempt to deliver an event, for assertions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryAttempt {
    pub event_id: String,
    pub event_type: String,
    /// The Svix message id, the same on every attempt of a delivery.
    pub svix_id: String,
    pub url: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    pub outcome: DeliveryOutcome,
}

impl DeliveryAttempt {
    pub fn succeeded(&self) -> bool {
        matches!(self.outcome, DeliveryOutcome::Delivered { .. })
    }
}

/// `v1,<base64 HMAC-SHA256>` of `"{svix_id}.{timestamp}.{body}"`, keyed with
/// the base64 part of a `whsec_` secret; `None` if the secret is malformed.
pub fn svix_signature(secret: &str, svix_id: &str, timestamp: i64, body: &str) -> Option<String> {
    let key = STANDARD.decode(secret.strip_prefix("whsec_")?).ok()?;
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key).ok()?;
    mac.update(format!("{svix_id}.{timestamp}.").as_bytes());
    mac.update(body.as_bytes());
    Some(format!(
        "v1,{}",
        STANDARD.encode(mac.finalize().into_bytes())
    ))
}

/// A new endpoint secret: `whsec_` and 24 random bytes in base64, as Svix.
pub(crate) fn new_secret() -> String {
    format!("whsec_{}", STANDARD.encode(rand::random::<[u8; 24]>()))
}

/// An event and the endpoints that receive it.
pub(crate) struct Planned {
    event_id: String,
    event_type: &'static str,
    body: String,
    targets: Vec<Endpoint>,
}

/// Works out who receives `events`: every endpoint of the event's workspace.
pub(crate) fn plan(world: &World, events: Vec<Event>) -> Vec<Planned> {
    events
        .into_iter()
        .filter_map(|event| {
            let targets = world.workspace(&event.workspace)?.endpoints.clone();
            (!targets.is_empty()).then(|| Planned {
                body: event.to_json().to_string(),
                event_id: event.id,
                event_type: event.event_type,
                targets,
            })
        })
        .collect()
}

#[derive(Clone)]
struct Delivery {
    endpoint: Endpoint,
    svix_id: String,
    event_id: String,
    event_type: &'static str,
    body: String,
    attempt: u32,
}

struct Inner {
    client: reqwest::Client,
    retry_delay: Duration,
    max_attempts: u32,
    queue: parking_lot::Mutex<VecDeque<Delivery>>,
    wake: Notify,
    /// Deliveries queued, in flight or waiting for a retry.
    unfinished: watch::Sender<usize>,
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
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl Webhooks {
    /// Starts the dispatcher; it stops when `shutdown` turns true.
    pub fn start(
        config: &FakeSeamConfig,
        shutdown: watch::Receiver<bool>,
    ) -> std::io::Result<Self> {
        let client = reqwest::Client::builder()
            // Svix does not follow redirects: a 3xx is a failed attempt.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.webhook_timeout)
            .user_agent("Svix-Webhooks/1.0 (fake-seam)")
            .build()
            .map_err(std::io::Error::other)?;
        let inner = Arc::new(Inner {
            client,
            retry_delay: config.webhook_retry_delay,
            max_attempts: config.webhook_max_attempts.max(1),
            queue: parking_lot::Mutex::new(VecDeque::new()),
            wake: Notify::new(),
            unfinished: watch::channel(0).0,
            log: parking_lot::Mutex::new(Vec::new()),
            shutdown,
        });
        tokio::spawn(dispatch(inner.clone()));
        Ok(Webhooks { inner })
    }

    /// Queues planned deliveries. One event is one Svix message: every
    /// endpoint gets it with the same `svix-id`.
    pub fn enqueue(&self, planned: Vec<Planned>) {
        let mut deliveries = Vec::new();
        for p in planned {
            for endpoint in p.targets {
                deliveries.push(Delivery {
                    svix_id: format!("msg_{}", p.event_id.replace('-', "")),
                    endpoint,
                    event_id: p.event_id.clone(),
                    event_type: p.event_type,
                    body: p.body.clone(),
                    attempt: 0,
                });
            }
        }
        if deliveries.is_empty() {
            return;
        }
        // Counted before queueing so that `idle()` can never miss them.
        self.inner
            .unfinished
            .send_modify(|n| *n += deliveries.len());
        self.inner.queue.lock().extend(deliveries);
        self.inner.wake.notify_one();
    }

    /// Resolves when no delivery is queued, in flight or awaiting a retry.
    pub async fn idle(&self) {
        let mut rx = self.inner.unfinished.subscribe();
        // The sender lives in `inner`, which `self` keeps alive.
        let _ = rx.wait_for(|n| *n == 0).await;
    }

    pub fn attempts(&self) -> Vec<DeliveryAttempt> {
        self.inner.log.lock().clone()
    }
}

async fn dispatch(inner: Arc<Inner>) {
    let mut shutdown = inner.shutdown.clone();
    loop {
        tokio::select! {
            _ = inner.wake.notified() => {}
            _ = crate::stopped(&mut shutdown) => return,
        }
        loop {
            let next = inner.queue.lock().pop_front();
            let Some(delivery) = next else { break };
            first_attempt(&inner, delivery).await;
        }
    }
}

/// Tries once in line (keeping event order for first attempts) and leaves
/// retries to a task of their own.
async fn first_attempt(inner: &Arc<Inner>, mut d: Delivery) {
    if attempt(inner, &mut d).await || d.attempt >= inner.max_attempts {
        return finish(inner);
    }
    let inner = inner.clone();
    let mut shutdown = inner.shutdown.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = retry(&inner, d) => {}
            _ = crate::stopped(&mut shutdown) => {}
        }
    });
}

async fn retry(inner: &Arc<Inner>, mut d: Delivery) {
    loop {
        // Exponential backoff from `retry_delay`, capped at 64 times it.
        let factor = 1u32 << d.attempt.saturating_sub(1).min(6);
        tokio::time::sleep(inner.retry_delay.saturating_mul(factor)).await;
        if attempt(inner, &mut d).await || d.attempt >= inner.max_attempts {
            return finish(inner);
        }
    }
}

/// One signed POST; true on a 2xx answer.
async fn attempt(inner: &Inner, d: &mut Delivery) -> bool {
    d.attempt += 1;
    let timestamp = unix_now();
    let outcome = match svix_signature(&d.endpoint.secret, &d.svix_id, timestamp, &d.body) {
        None => DeliveryOutcome::Failed {
            error: "malformed endpoint secret".into(),
        },
        Some(signature) => {
            let request = inner
                .client
                .post(&d.endpoint.url)
                .header("content-type", "application/json")
                .header("svix-id", &d.svix_id)
                .header("svix-timestamp", timestamp.to_string())
                .header("svix-signature", signature)
                .body(d.body.clone());
            match request.send().await {
                Ok(resp) if resp.status().is_success() => DeliveryOutcome::Delivered {
                    status: resp.status().as_u16(),
                },
                Ok(resp) => DeliveryOutcome::Rejected {
                    status: resp.status().as_u16(),
                },
                Err(e) => DeliveryOutcome::Failed {
                    error: e.to_string(),
                },
            }
        }
    };
    tracing::debug!(event = %d.event_id, kind = d.event_type, attempt = d.attempt, ?outcome, "webhook attempt");
    let ok = matches!(outcome, DeliveryOutcome::Delivered { .. });
    inner.log.lock().push(DeliveryAttempt {
        event_id: d.event_id.clone(),
        event_type: d.event_type.to_string(),
        svix_id: d.svix_id.clone(),
        url: d.endpoint.url.clone(),
        attempt: d.attempt,
        outcome,
    });
    ok
}

fn finish(inner: &Inner) {
    inner.unfinished.send_modify(|n| *n = n.saturating_sub(1));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_svix_reference_vector() {
        // The example of Svix's documentation ("Verifying signatures manually").
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = r#"{"test": 2432232314}"#;
        let sig = svix_signature(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        assert_eq!(
            sig.as_deref(),
            Some("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        );
        assert!(svix_signature("nope", "m", 1, "b").is_none());
        assert!(new_secret().starts_with("whsec_"));
    }
}
