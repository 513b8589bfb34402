//! An accepted TCP connection that closes its socket once its handshake
//! timeout has passed with no request (or, once told to go when idle, it
//! has not closed in time), and gives its place in the limits back when
//! dropped.
use std::{
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
    sync::watch,
    time::{Instant, Sleep},
};
use tonic::transport::server::{Connected, TcpConnectInfo};

use super::{Activity, Admitted};

pub struct LimitedConnection {
    stream: TcpStream,
    admitted: Admitted,
    timer: Pin<Box<Sleep>>,
    /// Once set, every read is the end of the stream.
    expired: bool,
    /// Dropped with the connection: tells whoever serves it that it closed.
    open: watch::Sender<()>,
}

impl LimitedConnection {
    pub fn new(stream: TcpStream, admitted: Admitted) -> Self {
        let first = admitted
            .activity()
            .close_deadline()
            .unwrap_or_else(|| Instant::now() + admitted.activity().recheck_after());
        Self {
            stream,
            admitted,
            timer: Box::pin(tokio::time::sleep_until(first)),
            expired: false,
            open: watch::Sender::new(()),
        }
    }

    pub fn peer(&self) -> SocketAddr {
        self.admitted.peer()
    }

    pub fn activity(&self) -> &Arc<Activity> {
        self.admitted.activity()
    }

    /// A receiver whose `changed()` fails once the connection has closed.
    pub fn on_close(&self) -> watch::Receiver<()> {
        self.open.subscribe()
    }

    /// Whether the connection's close deadline has passed with no call
    /// open. While it has not, the timer is armed for it and wakes the task
    /// that polled.
    ///
    /// Checked only when the socket has nothing to read: the server always
    /// waits to read (HTTP/2 frames, or the TLS handshake), so that is where
    /// a connection waits when nothing happens.
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> bool {
        if self.expired {
            return true;
        }
        loop {
            let activity = self.admitted.activity();
            let now = Instant::now();
            let wake_at = match activity.close_deadline() {
                Some(deadline) if deadline <= now => {
                    let peer = self.admitted.peer();
                    if activity.served() {
                        tracing::debug!(%peer, "closing a connection that did not go when told");
                    } else {
                        tracing::debug!(%peer, "closing a connection that sent no request in time");
                    }
                    self.expired = true;
                    return true;
                }
                Some(deadline) => deadline,
                // A call is open; look again later, unless already armed.
                None if self.timer.deadline() > now => self.timer.deadline(),
                None => now + activity.recheck_after(),
            };
            if self.timer.deadline() != wake_at {
                self.timer.as_mut().reset(wake_at);
            }
            if self.timer.as_mut().poll(cx).is_pending() {
                return false;
            }
        }
    }
}

impl AsyncRead for LimitedConnection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.expired {
            return Poll::Ready(Ok(()));
        }
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            // The end of the stream: the server closes the connection.
            Poll::Pending if this.poll_expired(cx) => Poll::Ready(Ok(())),
            other => other,
        }
    }
}

impl AsyncWrite for LimitedConnection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// The TCP stream's own connection info, so that request extensions (and
/// `tonic::Request::remote_addr`) are as without the limits.
impl Connected for LimitedConnection {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}
