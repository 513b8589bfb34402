//! Counts each connection's open calls, from the request's headers until
//! its answer has been sent (or the stream reset), for its idle timeout.
use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use http_body::{Body, Frame, SizeHint};
use tokio::time::Instant;
use tower::{Layer, Service};

use super::{remote_addr, Activity, ConnectionLimits};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

#[derive(Clone)]
pub struct StreamCountLayer {
    limits: Arc<ConnectionLimits>,
}

impl StreamCountLayer {
    pub fn new(limits: Arc<ConnectionLimits>) -> Self {
        Self { limits }
    }
}

impl<S> Layer<S> for StreamCountLayer {
    type Service = CountStreams<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CountStreams {
            inner,
            limits: self.limits.clone(),
        }
    }
}

#[derive(Clone)]
pub struct CountStreams<S> {
    inner: S,
    limits: Arc<ConnectionLimits>,
}

/// One open call of a connection, closed when dropped.
struct OpenCall(Arc<Activity>);

impl OpenCall {
    fn open(activity: Arc<Activity>) -> Self {
        activity.call_opened();
        Self(activity)
    }
}

impl Drop for OpenCall {
    fn drop(&mut self) {
        self.0.call_closed(Instant::now());
    }
}

impl<S, B, R> Service<http::Request<B>> for CountStreams<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<CountedBody<R>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let call = remote_addr(&request)
            .and_then(|peer| self.limits.activity(peer))
            .map(OpenCall::open);
        let answer = self.inner.call(request);
        Box::pin(async move {
            let response = answer.await?;
            Ok(response.map(|body| CountedBody { body, _call: call }))
        })
    }
}

/// An answer's body, which keeps its call open until it is dropped: hyper
/// drops it once the answer has been sent or the stream was reset.
pub struct CountedBody<B> {
    body: B,
    _call: Option<OpenCall>,
}

impl<B: Body + Unpin> Body for CountedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
