//! Seam's HTTP API: POST with JSON and a Bearer key, `{..., "ok": true}`
//! envelopes, typed errors, a time-out on every call, and retries with
//! exponential back-off and jitter (honouring Retry-After, in seconds or as
//! an HTTP date) for idempotent calls only. A create is never retried
//! blindly: the caller looks it up by its key instead.
use std::time::Duration;

use keysmith_core::{Error, Result, Secret};
use rand::Rng;
use serde_json::Value;

use crate::errors::{self, SeamError};

/// Whether a call may be sent again after a failure whose outcome is unknown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    /// Reads, updates of a window, deletes: the same call twice is harmless.
    Idempotent,
    /// Creates: a second send could create a second thing.
    Once,
}

/// The longest Retry-After a call waits out itself: a longer one is handed
/// to the caller (UNAVAILABLE with that retry delay) rather than holding
/// the request open.
pub const MAX_RETRY_AFTER_WAIT: Duration = Duration::from_secs(10);

#[derive(Clone, Debug)]
pub struct Retry {
    pub max_retries: u32,
    pub backoff: Duration,
}

#[derive(Clone)]
pub struct SeamClient {
    http: reqwest::Client,
    base_url: String,
    api_key: Secret<String>,
    retry: Retry,
}

impl std::fmt::Debug for SeamClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeamClient")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key)
            .finish_non_exhaustive()
    }
}

enum Failure {
    /// Worth another try for an idempotent call.
    Transient(Error, Option<Duration>),
    Final(Error),
}

/// How long a `Retry-After` value asks to wait at `now`: seconds, or an
/// HTTP date (RFC 9110, 10.2.3; a date already past means at once).
pub fn retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

impl SeamClient {
    pub fn new(
        base_url: &str,
        api_key: Secret<String>,
        connect_timeout: Duration,
        request_timeout: Duration,
        retry: Retry,
    ) -> Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .timeout(request_timeout)
            .build()
            .map_err(|e| Error::internal(format!("Seam HTTP client: {e}")))?;
        Ok(Self {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key,
            retry,
        })
    }

    /// POSTs `body` to `route` and returns the envelope (ok: true).
    pub async fn post(&self, route: &str, body: &Value, call: Call) -> Result<Value> {
        let mut attempt = 0;
        loop {
            match self.once(route, body).await {
                Ok(value) => return Ok(value),
                Err(Failure::Final(e)) => return Err(e),
                Err(Failure::Transient(e, retry_after)) => {
                    if call == Call::Once
                        || attempt >= self.retry.max_retries
                        || retry_after.is_some_and(|after| after > MAX_RETRY_AFTER_WAIT)
                    {
                        return Err(e);
                    }
                    let wait = retry_after.unwrap_or_else(|| self.backoff(attempt));
                    tracing::debug!(
                        route,
                        attempt,
                        wait_ms = wait.as_millis() as u64,
                        "retrying a Seam call"
                    );
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
            }
        }
    }

    /// Exponential back-off with equal jitter: a wait between half the
    /// ceiling and the ceiling, so that many clients do not retry in step
    /// yet each waits at least half of it (full jitter could retry at once).
    fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self.retry.backoff.saturating_mul(1 << attempt.min(10));
        let millis = ceiling.as_millis().max(1) as u64;
        Duration::from_millis(rand::rng().random_range(millis / 2..=millis))
    }

    async fn once(&self, route: &str, body: &Value) -> std::result::Result<Value, Failure> {
        let sent = self
            .http
            .post(format!("{}{route}", self.base_url))
            .bearer_auth(self.api_key.expose())
            .json(body)
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) => {
                let what = if e.is_timeout() {
                    "Seam did not answer in time".to_owned()
                } else {
                    "cannot reach Seam".to_owned()
                };
                return Err(Failure::Transient(errors::unavailable(what), None));
            }
        };
        let status = response.status().as_u16();
        let request_id = response
            .headers()
            .get("seam-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| retry_after(v, std::time::SystemTime::now()));
        let is_json = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        let bytes = match response.bytes().await {
            Ok(b) => b,
            Err(_) => {
                return Err(Failure::Transient(
                    errors::unavailable("Seam's answer was cut off"),
                    None,
                ))
            }
        };
        let parsed: Option<Value> = if is_json {
            serde_json::from_slice(&bytes).ok()
        } else {
            None
        };
        if (200..300).contains(&status) {
            return match parsed {
                Some(v) if v.get("ok") == Some(&Value::Bool(true)) => Ok(v),
                _ => Err(Failure::Final(errors::bad_answer(format!(
                    "{route}: not an ok envelope"
                )))),
            };
        }
        // Only a JSON body with string type and message is an API error.
        let error = parsed.and_then(|v| {
            let e = v.get("error")?;
            if e.get("type")?.is_string() && e.get("message")?.is_string() {
                serde_json::from_value::<SeamError>(e.clone()).ok()
            } else {
                None
            }
        });
        let mapped = errors::from_answer(status, error, request_id.as_deref());
        if status == 429 || status >= 500 {
            let mapped = match retry_after {
                Some(after) => mapped.with_retry_after(after),
                None => mapped,
            };
            Err(Failure::Transient(mapped, retry_after))
        } else {
            Err(Failure::Final(mapped))
        }
    }

    /// Every item of a paginated list, following `next_page_cursor`.
    pub async fn list_all(&self, route: &str, mut body: Value, field: &str) -> Result<Vec<Value>> {
        let mut items = Vec::new();
        loop {
            let page = self.post(route, &body, Call::Idempotent).await?;
            match page.get(field) {
                Some(Value::Array(list)) => items.extend(list.iter().cloned()),
                _ => return Err(errors::bad_answer(format!("{route}: no {field}"))),
            }
            let next = page
                .get("pagination")
                .filter(|p| p.get("has_next_page") == Some(&Value::Bool(true)))
                .and_then(|p| p.get("next_page_cursor"))
                .and_then(Value::as_str)
                .map(str::to_owned);
            match next {
                Some(cursor) => body["page_cursor"] = Value::String(cursor),
                None => return Ok(items),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{SystemTime, UNIX_EPOCH};

    #[test]
    fn retry_after_is_seconds_or_an_http_date() {
        // Sun, 06 Nov 1994 08:49:37 GMT, RFC 9110's example.
        let date = UNIX_EPOCH + Duration::from_secs(784_111_777);
        let now = date - Duration::from_secs(90);
        assert_eq!(retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(
            retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            retry_after(
                "Sun, 06 Nov 1994 08:49:37 GMT",
                date + Duration::from_secs(5)
            ),
            Some(Duration::ZERO),
            "a date past is now"
        );
        assert_eq!(retry_after("soon", SystemTime::now()), None);
    }
}
