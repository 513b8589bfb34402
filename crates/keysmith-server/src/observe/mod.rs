//! Every call, once it has ended: counted and timed by method and status
//! code ([`rpc_metrics`]), logged as one access-log line ([`access_log`]),
//! and, when trace export is on, one OpenTelemetry span ([`server_span`]).
//!
//! A call ends when its last frame has gone out: with the trailers that
//! carry its `grpc-status`, or at once when the status came in the headers
//! (a trailers-only answer, as every refusal is). A call dropped before it
//! ended (the client went away, or the request timeout cut it) counts as
//! CANCELLED.
pub mod access_log;
mod notes;
pub mod rpc_metrics;
pub mod server_span;
pub use server_span::DriverSpans;

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use http_body::{Body, Frame, SizeHint};
use tonic::Code;
use tower::{Layer, Service};

pub use notes::{note_caller, note_property, CallNotes};
use opentelemetry_sdk::trace::{SdkTracer, Span};
use rpc_metrics::RpcMetrics;
use server_span::ServerSpans;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

#[derive(Clone)]
pub struct ObserveLayer {
    rpc: Arc<RpcMetrics>,
    spans: Option<ServerSpans>,
}

impl ObserveLayer {
    /// With `tracer` when trace export is on.
    pub fn new(tracer: Option<SdkTracer>) -> Self {
        Self {
            rpc: Arc::new(RpcMetrics::new()),
            spans: tracer.map(ServerSpans::new),
        }
    }
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Observe {
            inner,
            rpc: self.rpc.clone(),
            spans: self.spans.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Observe<S> {
    inner: S,
    rpc: Arc<RpcMetrics>,
    spans: Option<ServerSpans>,
}

impl<S, B, R> Service<http::Request<B>> for Observe<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<ObservedBody<R>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let path = request.uri().path();
        let method = self.rpc.index(path);
        let notes = Arc::new(CallNotes::default());
        let mut call = Call {
            started: Instant::now(),
            rpc: self.rpc.clone(),
            method,
            path: self
                .rpc
                .is_unknown(method)
                .then(|| access_log::bounded(path)),
            span: self
                .spans
                .as_ref()
                .map(|spans| spans.start(self.rpc.at(method), request.headers(), &notes)),
            notes: notes.clone(),
            ended: false,
        };
        let answer = notes.open_for(|| self.inner.call(request));
        let answer = notes.open_while(answer);
        Box::pin(async move {
            let response = match answer.await {
                Ok(response) => response,
                Err(error) => {
                    call.end(Code::Unknown);
                    return Err(error);
                }
            };
            // A trailers-only answer: the status is in the headers.
            if let Some(status) = response.headers().get("grpc-status") {
                call.end(Code::from_bytes(status.as_bytes()));
            }
            Ok(response.map(|body| ObservedBody { body, call }))
        })
    }
}

/// One call until it has ended; reported once, when it ends or is dropped.
struct Call {
    started: Instant,
    rpc: Arc<RpcMetrics>,
    method: usize,
    /// The path of a method keysmith does not serve, bounded, for the
    /// access log.
    path: Option<String>,
    notes: Arc<CallNotes>,
    /// The call's OpenTelemetry span, when trace export is on.
    span: Option<Span>,
    ended: bool,
}

impl Call {
    fn end(&mut self, code: Code) {
        if std::mem::replace(&mut self.ended, true) {
            return;
        }
        let took = self.started.elapsed();
        let method = self.rpc.at(self.method);
        method.record(code, took);
        match &self.path {
            Some(path) => access_log::log(path, code, took, &self.notes),
            None => access_log::log(&method.full_name, code, took, &self.notes),
        }
        if let Some(span) = self.span.take() {
            server_span::end(span, code, &self.notes);
        }
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        self.end(Code::Cancelled);
    }
}

/// An answer's body, which ends its call when the trailers go out (or
/// when hyper drops it, the stream reset).
pub struct ObservedBody<B> {
    body: B,
    call: Call,
}

impl<B: Body + Unpin> Body for ObservedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let frame = Pin::new(&mut this.body).poll_frame(cx);
        match &frame {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(status) = frame.trailers_ref().and_then(|t| t.get("grpc-status")) {
                    this.call.end(Code::from_bytes(status.as_bytes()));
                }
            }
            Poll::Ready(Some(Err(_))) => this.call.end(Code::Internal),
            // Ended without trailers: no status was sent.
            Poll::Ready(None) => this.call.end(Code::Unknown),
            Poll::Pending => {}
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
