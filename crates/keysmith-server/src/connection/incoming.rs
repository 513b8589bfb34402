//! The accept loop's stream of connections: past the limits, a connection
//! is closed as soon as it is accepted.
use std::{
    io,
    pin::Pin,
    sync::Arc,
    task::{ready, Context, Poll},
};

use tokio::{net::TcpStream, time::Instant};
use tokio_stream::Stream;

use super::{ConnectionLimits, LimitedConnection, Refusal};

/// How many connections one poll may close before it lets other tasks run.
const REFUSALS_PER_POLL: usize = 64;

pub struct LimitedIncoming<S> {
    accepted: S,
    limits: Arc<ConnectionLimits>,
}

impl<S> LimitedIncoming<S> {
    pub fn new(accepted: S, limits: Arc<ConnectionLimits>) -> Self {
        Self { accepted, limits }
    }
}

impl<S> Stream for LimitedIncoming<S>
where
    S: Stream<Item = io::Result<TcpStream>> + Unpin,
{
    type Item = io::Result<LimitedConnection>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        for _ in 0..REFUSALS_PER_POLL {
            let stream = match ready!(Pin::new(&mut this.accepted).poll_next(cx)) {
                Some(Ok(stream)) => stream,
                Some(Err(error)) => return Poll::Ready(Some(Err(error))),
                None => return Poll::Ready(None),
            };
            let Ok(peer) = stream.peer_addr() else {
                // Gone already.
                continue;
            };
            match this.limits.admit(peer, Instant::now()) {
                Ok(admitted) => {
                    return Poll::Ready(Some(Ok(LimitedConnection::new(stream, admitted))))
                }
                Err(refusal) => {
                    let why = match refusal {
                        Refusal::TooManyConnections => "server.max_connections",
                        Refusal::TooManyFromPeer => "server.max_connections_per_peer",
                    };
                    tracing::debug!(%peer, limit = why, "connection closed: at its limit");
                    drop(stream);
                }
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
