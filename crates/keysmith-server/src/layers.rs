//! Tower layers around every RPC.
use std::task::{Context, Poll};

use tower::{Layer, Service};
use tracing::{field::Empty, instrument::Instrumented, Instrument};

/// Opens a span per RPC. The handlers fill in the property, key id and
/// reservation key once they have decoded the request.
#[derive(Clone, Copy, Debug, Default)]
pub struct RpcSpanLayer;

impl<S> Layer<S> for RpcSpanLayer {
    type Service = RpcSpan<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcSpan { inner }
    }
}

#[derive(Clone, Debug)]
pub struct RpcSpan<S> {
    inner: S,
}

impl<S, B> Service<http::Request<B>> for RpcSpan<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Instrumented<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let span = tracing::info_span!(
            "rpc",
            method = %request.uri().path(),
            property = Empty,
            key_id = Empty,
            reservation_key = Empty,
        );
        let future = {
            let _entered = span.enter();
            self.inner.call(request)
        };
        future.instrument(span)
    }
}
