//! GraphQL over HTTP to one 3RPMS hotel: one API key, batches as JSON arrays
//! in one POST, errors by category, and every request through the egress
//! limiter.
use std::{borrow::Cow, time::Duration};

use keysmith_core::{Error, Result, Secret};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::{
    errors::{self, GraphqlError},
    limiter::{Egress, Refusal},
};

/// One GraphQL operation of a request. Most documents are fixed; those
/// that depend on what 3RPMS's schema offers are built once it is known.
#[derive(Debug, Clone)]
pub struct Operation {
    pub query: Cow<'static, str>,
    pub variables: Value,
    pub mutation: bool,
}

impl Operation {
    pub fn query(query: impl Into<Cow<'static, str>>, variables: Value) -> Self {
        Self {
            query: query.into(),
            variables,
            mutation: false,
        }
    }

    pub fn mutation(query: impl Into<Cow<'static, str>>, variables: Value) -> Self {
        Self {
            query: query.into(),
            variables,
            mutation: true,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Timeouts {
    pub connect: Duration,
    pub request: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(10),
            request: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Deserialize)]
struct Answer {
    #[serde(default)]
    data: Option<Value>,
    #[serde(default)]
    errors: Vec<GraphqlError>,
}

#[derive(Clone)]
pub struct Transport {
    http: reqwest::Client,
    endpoint: String,
    api_key: Secret<String>,
    egress: Egress,
    requests: Requests,
}

/// What became of this hotel's requests (`metrics` facade, registered once
/// per hotel; the property id is bounded by the configuration).
#[derive(Clone)]
struct Requests {
    /// Answered, without errors.
    ok: metrics::Counter,
    /// Answered with an HTTP error, GraphQL errors or an unreadable answer.
    error: metrics::Counter,
    /// Not answered in time (connecting or waiting).
    timeout: metrics::Counter,
    /// 3RPMS could not be reached.
    unreachable: metrics::Counter,
    /// Not sent: a rate-limit block is suspected.
    blocked: metrics::Counter,
    seconds: metrics::Histogram,
}

impl Requests {
    fn register(property_id: &str) -> Self {
        let counter = |outcome: &'static str| {
            metrics::counter!(
                "keysmith_threerpms_requests_total",
                "property" => property_id.to_owned(),
                "outcome" => outcome,
            )
        };
        Self {
            ok: counter("ok"),
            error: counter("error"),
            timeout: counter("timeout"),
            unreachable: counter("unreachable"),
            blocked: counter("blocked"),
            seconds: metrics::histogram!(
                "keysmith_threerpms_request_seconds",
                "property" => property_id.to_owned(),
            ),
        }
    }
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("endpoint", &self.endpoint)
            .field("api_key", &self.api_key)
            .finish_non_exhaustive()
    }
}

impl Transport {
    /// The transport of the hotel `property_id` (which names its metrics).
    pub fn new(
        property_id: &str,
        endpoint: impl Into<String>,
        api_key: Secret<String>,
        egress: Egress,
        timeouts: &Timeouts,
    ) -> Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(timeouts.connect)
            .timeout(timeouts.request)
            .build()
            .map_err(|e| Error::internal(format!("3RPMS HTTP client: {e}")))?;
        Ok(Self {
            http,
            endpoint: endpoint.into(),
            api_key,
            egress,
            requests: Requests::register(property_id),
        })
    }

    pub fn egress(&self) -> &Egress {
        &self.egress
    }

    /// Sends the operations as one request (a batch when there are several)
    /// and returns each one's `data`, in order. Mutations in one request are
    /// all-or-nothing at 3RPMS, so any error fails the whole request and no
    /// returned data is trusted.
    pub async fn send(&self, operations: &[Operation]) -> Result<Vec<Value>> {
        if operations.is_empty() {
            return Ok(Vec::new());
        }
        let mutation = operations.iter().any(|o| o.mutation);
        let entries: Vec<Value> = operations
            .iter()
            .map(|o| json!({ "query": o.query, "variables": o.variables }))
            .collect();
        let body = if entries.len() == 1 {
            entries.into_iter().next().expect("one entry")
        } else {
            Value::Array(entries)
        };
        self.egress
            .acquire()
            .await
            .map_err(|refusal| match refusal {
                Refusal::Blocked { retry_after } => {
                    self.requests.blocked.increment(1);
                    errors::blocked(retry_after)
                }
                Refusal::Store(error) => error,
            })?;
        let started = std::time::Instant::now();
        let answered = self.exchange(&body).await;
        self.requests
            .seconds
            .record(started.elapsed().as_secs_f64());
        let (status, bytes) = answered?;
        let read = read_answers(status, &bytes, operations.len(), mutation);
        match &read {
            Ok(_) => self.requests.ok.increment(1),
            Err(_) => self.requests.error.increment(1),
        }
        read
    }

    /// Posts `body`; the answer's status and bytes, whatever the status.
    async fn exchange(&self, body: &Value) -> Result<(reqwest::StatusCode, axum::body::Bytes)> {
        let sent = self
            .http
            .post(&self.endpoint)
            .bearer_auth(self.api_key.expose())
            .header(reqwest::header::ACCEPT_LANGUAGE, "en")
            .json(body)
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(e) => return Err(self.failed(e)),
        };
        let status = response.status();
        let bytes = match response.bytes().await {
            Ok(bytes) => bytes,
            Err(e) => return Err(self.failed(e)),
        };
        self.egress.answered();
        Ok((status, bytes))
    }

    fn failed(&self, e: reqwest::Error) -> Error {
        // A silent block shows up as time-outs, connecting or waiting.
        if e.is_timeout() {
            self.requests.timeout.increment(1);
            return match self.egress.timed_out() {
                Some(backoff) => errors::blocked(backoff),
                None => errors::unavailable("3RPMS did not answer in time"),
            };
        }
        self.requests.unreachable.increment(1);
        errors::unavailable(format!("cannot reach 3RPMS: {}", without_url(&e)))
    }
}

/// Each operation's `data` from an answer, in order; any error fails the
/// whole request.
fn read_answers(
    status: reqwest::StatusCode,
    bytes: &[u8],
    operations: usize,
    mutation: bool,
) -> Result<Vec<Value>> {
    if !status.is_success() {
        return Err(errors::unavailable(format!("3RPMS answered HTTP {status}"))
            .with_context("http_status", status.as_u16().to_string()));
    }
    let answers: Vec<Answer> = match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Array(items)) => items
            .into_iter()
            .map(serde_json::from_value)
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| errors::bad_answer(e.to_string()))?,
        Ok(item @ Value::Object(_)) => {
            vec![serde_json::from_value(item).map_err(|e| errors::bad_answer(e.to_string()))?]
        }
        Ok(_) => return Err(errors::bad_answer("neither an object nor an array")),
        Err(e) => return Err(errors::bad_answer(e.to_string())),
    };
    if let Some(failed) = answers.iter().find(|a| !a.errors.is_empty()) {
        return Err(errors::upstream(&failed.errors, mutation));
    }
    if answers.len() != operations {
        return Err(errors::bad_answer(format!(
            "{} answers to {} operations",
            answers.len(),
            operations
        )));
    }
    answers
        .into_iter()
        .map(|a| {
            a.data
                .ok_or_else(|| errors::bad_answer("no data and no errors"))
        })
        .collect()
}

/// reqwest's errors name the URL, which is configuration, not a secret; the
/// message is kept short all the same.
fn without_url(e: &reqwest::Error) -> String {
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    let mut last = e.to_string();
    while let Some(s) = source {
        last = s.to_string();
        source = s.source();
    }
    last
}
