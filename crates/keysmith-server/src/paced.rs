//! A request that is a stream of messages (server reflection: the one call
//! that is a stream both ways) is held to the same pace as every other
//! request: a message that has begun must fully arrive within
//! `server.request_body_timeout_ms`, the first one included, and a stream
//! with no message begun for `server.idle_timeout_ms` is ended, as an idle
//! connection is. Unary calls are read whole by the admission layer
//! instead; without this, a client could hold a reflection stream (and so
//! its connection, which is never idle while a call is open) for ever by
//! sending half a message, or nothing.
use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use bytes::{Buf, Bytes};
use http_body::{Frame, SizeHint};
use keysmith_core::error::reasons;
use tokio::time::{Instant, Sleep};
use tonic::{body::Body, Code};

use crate::convert;

/// The gRPC frame header (compression flag and length) before a message.
const FRAME_HEADER: usize = 5;

/// Where the stream stands in its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// Between messages (none begun): the idle timeout runs.
    Between,
    /// `have` bytes of a frame header have arrived.
    Header { have: usize, length: [u8; 4] },
    /// The message's bytes still to come.
    Message { remaining: u64 },
}

impl Framing {
    /// The state after `bytes` arrived.
    fn after(mut self, mut bytes: &[u8]) -> Self {
        while !bytes.is_empty() {
            self = match self {
                Framing::Between => Framing::Header {
                    have: 0,
                    length: [0; 4],
                },
                Framing::Header {
                    mut have,
                    mut length,
                } => {
                    // Byte 0 is the compression flag; 1..5 the length.
                    if have > 0 {
                        length[have - 1] = bytes[0];
                    }
                    have += 1;
                    bytes.advance(1);
                    if have < FRAME_HEADER {
                        Framing::Header { have, length }
                    } else {
                        match u32::from_be_bytes(length) {
                            0 => Framing::Between,
                            n => Framing::Message {
                                remaining: u64::from(n),
                            },
                        }
                    }
                }
                Framing::Message { remaining } => {
                    let taken = remaining.min(bytes.len() as u64);
                    bytes.advance(taken as usize);
                    match remaining - taken {
                        0 => Framing::Between,
                        remaining => Framing::Message { remaining },
                    }
                }
            };
        }
        self
    }
}

/// A streamed request body that ends when its client falls behind the
/// pace above.
pub struct PacedBody {
    inner: Body,
    body_timeout: Duration,
    idle_timeout: Duration,
    framing: Framing,
    timer: Pin<Box<Sleep>>,
    ended: bool,
}

impl PacedBody {
    pub fn new(inner: Body, body_timeout: Duration, idle_timeout: Duration) -> Self {
        Self {
            inner,
            body_timeout,
            idle_timeout,
            framing: Framing::Between,
            // The first message is due as a unary request's body is.
            timer: Box::pin(tokio::time::sleep(body_timeout)),
            ended: false,
        }
    }

    /// Takes the bytes that arrived, and arms the timer for what is due
    /// next: the rest of a message begun now, or the next message.
    fn arrived(&mut self, data: &Bytes) {
        if data.is_empty() {
            return;
        }
        let before = self.framing;
        self.framing = before.after(data);
        let now = Instant::now();
        if self.framing == Framing::Between {
            // A message ended: the next one may take the idle timeout to begin.
            self.timer.as_mut().reset(now + self.idle_timeout);
        } else if before == Framing::Between || completed_one(before, data) {
            // A message began with these bytes: it is due whole in time.
            self.timer.as_mut().reset(now + self.body_timeout);
        }
        // Otherwise the message begun earlier keeps its deadline.
    }
}

/// Whether `data`, arriving in state `before`, completed a message (and so
/// whatever follows it began now).
fn completed_one(before: Framing, data: &Bytes) -> bool {
    let mut state = before;
    for byte in data.iter() {
        state = state.after(std::slice::from_ref(byte));
        if state == Framing::Between {
            return true;
        }
    }
    false
}

impl http_body::Body for PacedBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.arrived(data);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(other) => Poll::Ready(other),
            Poll::Pending => {
                if this.timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.ended = true;
                if this.framing == Framing::Between {
                    tracing::debug!("a streamed request idle past server.idle_timeout_ms ended");
                    // The end of the requests: the service answers what it
                    // has and ends the call.
                    Poll::Ready(None)
                } else {
                    tracing::info!(
                        reason = reasons::REQUEST_BODY_TIMEOUT,
                        "a streamed request's message did not arrive in time"
                    );
                    Poll::Ready(Some(Err(convert::transport_status(
                        Code::DeadlineExceeded,
                        reasons::REQUEST_BODY_TIMEOUT,
                        "the message did not arrive within server.request_body_timeout_ms",
                    ))))
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(message: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8];
        f.extend_from_slice(&(message.len() as u32).to_be_bytes());
        f.extend_from_slice(message);
        f
    }

    #[test]
    fn framing_follows_messages_across_chunks() {
        let whole = frame(b"hello");
        assert_eq!(Framing::Between.after(&whole), Framing::Between);
        let partial = Framing::Between.after(&whole[..3]);
        assert!(matches!(partial, Framing::Header { have: 3, .. }));
        let body = partial.after(&whole[3..7]);
        assert_eq!(body, Framing::Message { remaining: 3 });
        assert_eq!(body.after(&whole[7..]), Framing::Between);
        // Two messages and half a third in one chunk.
        let mut chunk = frame(b"a");
        chunk.extend(frame(b""));
        chunk.extend(&frame(b"xyz")[..6]);
        assert_eq!(
            Framing::Between.after(&chunk),
            Framing::Message { remaining: 2 }
        );
    }

    #[test]
    fn a_chunk_that_ends_one_message_and_begins_another_completed_one() {
        let mut chunk = frame(b"ab")[3..].to_vec();
        chunk.extend(&frame(b"cd")[..2]);
        let before = Framing::Between.after(&frame(b"ab")[..3]);
        assert!(completed_one(before, &Bytes::from(chunk)));
        assert!(!completed_one(before, &Bytes::from_static(&[0])));
    }
}
