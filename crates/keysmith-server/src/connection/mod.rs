//! Connections cannot exhaust the server: how many may be open (overall and
//! per client address), how long one may take to send its first request,
//! and how long one may stay open with no call.
//!
//! [`LimitedIncoming`] accepts TCP connections, closes those past the
//! limits at once, and hands the rest on as [`LimitedConnection`]s (below
//! TLS, when it is on), which close their socket when their handshake
//! timeout passes with no request. [`serve_connections`] serves each on a
//! tonic server of its own and tells it to go (HTTP/2 GOAWAY) once it has
//! been idle for its timeout, so that its client knows which requests the
//! server never saw and may send them again. Whether a connection is idle
//! is a matter of its calls, not of its bytes (HTTP/2 pings keep flowing on
//! an idle connection, and a call may be silent for long):
//! [`StreamCountLayer`] counts each connection's open calls in its
//! [`Activity`].
mod activity;
mod incoming;
mod io;
mod limits;
mod serve;
mod streams;

use std::net::SocketAddr;

pub use activity::Activity;
pub use incoming::LimitedIncoming;
pub use io::LimitedConnection;
pub use limits::{Admitted, ConnectionLimits, ConnectionSettings, Refusal};
pub use serve::serve_connections;
pub use streams::{CountedBody, StreamCountLayer};
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

/// The client address of the connection a request came on, over TCP or
/// TLS.
pub fn remote_addr<B>(request: &http::Request<B>) -> Option<SocketAddr> {
    let ext = request.extensions();
    ext.get::<TcpConnectInfo>()
        .and_then(|i| i.remote_addr())
        .or_else(|| {
            ext.get::<TlsConnectInfo<TcpConnectInfo>>()
                .and_then(|i| i.get_ref().remote_addr())
        })
}
