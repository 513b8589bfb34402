//! A call is admitted once its request has fully arrived.
//!
//! A stream whose request headers came but whose body never ends must not
//! hold what real calls need: the layer reads the whole request first,
//! within `server.request_body_timeout_ms` and `server.max_request_bytes`,
//! and only then takes a permit from the call's [`Budget`] (its token's
//! `max_in_flight`, which the auth layer attaches, or the health checks'
//! own), held until the call has answered. A body that has arrived but is
//! not one well-formed message frame is refused before it takes a permit
//! (`edge::check_unary_body`: INVALID_ARGUMENT, as the caller's mistake).
//! Server reflection is a stream both ways: it is not read whole but held
//! to the same pace, message by message (`paced.rs`).
use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use keysmith_core::{error::reasons, Error, ErrorKind};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::{body::Body, Code};
use tonic_types::StatusExt;
use tower::{Layer, Service};

use crate::{
    auth::methods::{self, Access},
    config::ServerConfig,
    convert, edge,
    paced::PacedBody,
};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// The gRPC frame header (compression flag and length) before a message.
const FRAME_HEADER: usize = 5;

/// Calls served at once from one budget; a call past it is refused with
/// the budget's error.
#[derive(Clone)]
pub struct Budget {
    permits: Arc<Semaphore>,
    exhausted: fn() -> Error,
}

impl Budget {
    pub fn new(permits: usize, exhausted: fn() -> Error) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(permits)),
            exhausted,
        }
    }

    pub fn admit(&self) -> Result<OwnedSemaphorePermit, Error> {
        self.permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| (self.exhausted)())
    }
}

fn health_checks_limited() -> Error {
    Error::new(
        ErrorKind::ResourceExhausted,
        reasons::HEALTH_CHECKS_LIMITED,
        "too many health checks at once",
    )
    .with_retry_after(Duration::from_millis(100))
}

#[derive(Clone)]
pub struct AdmissionLayer {
    state: Arc<State>,
}

struct State {
    body_timeout: Duration,
    /// How long a streamed request may go without beginning a message.
    idle_timeout: Duration,
    max_body_bytes: usize,
    health: Budget,
}

impl AdmissionLayer {
    pub fn new(config: &ServerConfig) -> Self {
        Self {
            state: Arc::new(State {
                body_timeout: Duration::from_millis(config.request_body_timeout_ms),
                idle_timeout: Duration::from_millis(config.idle_timeout_ms),
                max_body_bytes: config.max_request_bytes.saturating_add(FRAME_HEADER),
                health: Budget::new(config.health_concurrency, health_checks_limited),
            }),
        }
    }
}

impl<S> Layer<S> for AdmissionLayer {
    type Service = Admit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Admit {
            inner,
            state: self.state.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Admit<S> {
    inner: S,
    state: Arc<State>,
}

impl<S, R> Service<http::Request<Body>> for Admit<S>
where
    S: Service<http::Request<Body>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        // The clone that was driven to readiness serves this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let access = methods::access(request.uri().path());
        let budget = match access {
            Access::Reflection => {
                let (body_timeout, idle_timeout) =
                    (self.state.body_timeout, self.state.idle_timeout);
                let paced =
                    request.map(|body| Body::new(PacedBody::new(body, body_timeout, idle_timeout)));
                return Box::pin(inner.call(paced));
            }
            Access::Open => Some(self.state.health.clone()),
            // None in development mode: no token, no token budget.
            Access::Scoped(_) => request.extensions().get::<Budget>().cloned(),
        };
        let state = self.state.clone();
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let arrived = tokio::time::timeout(
                state.body_timeout,
                Arrived::read(body, state.max_body_bytes),
            )
            .await
            .unwrap_or(Err(Incomplete::TimedOut));
            let body = match arrived {
                Ok(body) => body,
                Err(incomplete) => {
                    tracing::info!(
                        method = %parts.uri.path(),
                        reason = incomplete.reason(),
                        "call refused: its request did not arrive whole"
                    );
                    return Ok(incomplete.status().into_http());
                }
            };
            // Every call but reflection takes one message: a body that is
            // not one well-formed frame is refused here, as the caller's
            // mistake, before it takes a permit or reaches tonic (which
            // would answer INTERNAL).
            let health = access == Access::Open;
            if let Err(status) = edge::check_unary_body(&parts.headers, body.data.as_ref(), health)
            {
                tracing::info!(
                    method = %parts.uri.path(),
                    reason = ?status.get_details_error_info().map(|i| i.reason),
                    "call refused: its request is not one well-formed message"
                );
                return Ok(status.into_http());
            }
            let permit = match budget.map(|b| b.admit()).transpose() {
                Ok(permit) => permit,
                Err(error) => {
                    tracing::info!(
                        method = %parts.uri.path(),
                        reason = error.reason(),
                        "call refused: its budget is spent"
                    );
                    return Ok(convert::status(error).into_http());
                }
            };
            let response = inner
                .call(http::Request::from_parts(parts, Body::new(body)))
                .await;
            drop(permit);
            response
        })
    }
}

/// Why a request did not arrive whole.
#[derive(Debug, PartialEq, Eq)]
enum Incomplete {
    TimedOut,
    TooLarge,
    /// The client reset the stream, or the connection failed.
    Broken,
}

impl Incomplete {
    fn reason(&self) -> &'static str {
        match self {
            Incomplete::TimedOut => reasons::REQUEST_BODY_TIMEOUT,
            Incomplete::TooLarge => reasons::REQUEST_TOO_LARGE,
            Incomplete::Broken => reasons::REQUEST_INCOMPLETE,
        }
    }

    fn status(&self) -> tonic::Status {
        let (code, message) = match self {
            Incomplete::TimedOut => (
                Code::DeadlineExceeded,
                "the request did not arrive within server.request_body_timeout_ms",
            ),
            Incomplete::TooLarge => (
                Code::OutOfRange,
                "the request is larger than server.max_request_bytes",
            ),
            Incomplete::Broken => (Code::Cancelled, "the request stopped before its end"),
        };
        convert::transport_status(code, self.reason(), message)
    }
}

/// A request body that has fully arrived.
#[derive(Debug, Default)]
struct Arrived {
    data: Option<Bytes>,
    trailers: Option<http::HeaderMap>,
}

impl Arrived {
    /// Reads `body` to its end, refusing more than `max` bytes.
    async fn read(mut body: Body, max: usize) -> Result<Self, Incomplete> {
        let mut chunks: Vec<Bytes> = Vec::new();
        let mut len = 0usize;
        let mut trailers = None;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| Incomplete::Broken)?;
            match frame.into_data() {
                Ok(data) => {
                    len = len.saturating_add(data.len());
                    if len > max {
                        return Err(Incomplete::TooLarge);
                    }
                    chunks.push(data);
                }
                Err(frame) => {
                    if let Ok(t) = frame.into_trailers() {
                        trailers = Some(t);
                    }
                }
            }
        }
        let data = match chunks.len() {
            0 => None,
            1 => chunks.pop(),
            _ => {
                let mut whole = BytesMut::with_capacity(len);
                for chunk in chunks {
                    whole.extend_from_slice(&chunk);
                }
                Some(whole.freeze())
            }
        };
        Ok(Self { data, trailers })
    }
}

impl http_body::Body for Arrived {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        let frame = match this.data.take() {
            Some(data) => Some(Frame::data(data)),
            None => this.trailers.take().map(Frame::trailers),
        };
        Poll::Ready(frame.map(Ok))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.data.as_ref().map_or(0, |d| d.len() as u64))
    }
}

#[cfg(test)]
mod tests {
    use http_body::Body as _;

    use super::*;

    #[tokio::test]
    async fn a_body_is_read_whole_and_given_back_unchanged() {
        let sent = Body::new(http_body_util::Full::new(Bytes::from_static(b"abc")));
        let mut arrived = Arrived::read(sent, 10).await.unwrap();
        assert_eq!(arrived.size_hint().exact(), Some(3));
        let again = arrived.frame().await.unwrap().unwrap();
        assert_eq!(again.into_data().unwrap(), Bytes::from_static(b"abc"));
        assert!(arrived.is_end_stream());
    }

    #[tokio::test]
    async fn a_body_past_the_limit_is_refused() {
        let sent = Body::new(http_body_util::Full::new(Bytes::from_static(b"abcdef")));
        assert_eq!(
            Arrived::read(sent, 5).await.unwrap_err(),
            Incomplete::TooLarge
        );
    }

    #[test]
    fn a_spent_budget_refuses_until_a_permit_is_back() {
        let budget = Budget::new(1, health_checks_limited);
        let permit = budget.admit().unwrap();
        let refused = budget.admit().unwrap_err();
        assert_eq!(refused.reason(), reasons::HEALTH_CHECKS_LIMITED);
        drop(permit);
        assert!(budget.admit().is_ok());
    }
}
