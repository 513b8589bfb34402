//! Serves each accepted connection on a tonic server of its own, so that
//! one connection can be told to go (HTTP/2 GOAWAY, then closed once its
//! calls are done) when it has been idle for its timeout, as gRPC's own
//! servers do on MAX_CONNECTION_IDLE. tonic serves its connections with no
//! way to end one of them gracefully but its shutdown signal, which is the
//! server's: here each connection's server gets a signal of its own.
//! Everything tonic's builder sets (TLS, timeouts and the client's
//! `grpc-timeout`, HTTP/2 settings and keep-alive, max connection age, the
//! connection info of requests) applies to each connection as it did.
use std::{future::Future, io, pin::pin};

use tokio::{sync::watch, task::JoinSet};
use tokio_stream::{Stream, StreamExt};
use tonic::service::Routes;

use super::LimitedConnection;
use crate::server::GrpcServer;

/// Serves `routes` (prepared) on the connections of `incoming`, each with
/// `server`'s layers and settings, until `shutdown` resolves; then,
/// as tonic's own serve does, stops accepting (`incoming` is dropped, and
/// with it the listener), tells every connection to go and waits until
/// they have closed.
pub async fn serve_connections<I>(
    server: GrpcServer,
    routes: Routes,
    incoming: I,
    shutdown: impl Future<Output = ()>,
) where
    I: Stream<Item = io::Result<LimitedConnection>>,
{
    let (stop, stopping) = watch::channel(false);
    let mut open = JoinSet::new();
    {
        let mut incoming = pin!(incoming);
        let mut shutdown = pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = incoming.next() => match accepted {
                    Some(Ok(connection)) => {
                        let serving = serve_connection(
                            server.clone(),
                            routes.clone(),
                            connection,
                            stopping.clone(),
                        );
                        open.spawn(serving);
                    }
                    // As tonic does: an accept error is the one connection's.
                    Some(Err(error)) => tracing::debug!(%error, "accepting a connection failed"),
                    None => break,
                },
                // Forgets the connections that have closed.
                Some(_) = open.join_next(), if !open.is_empty() => {}
            }
        }
    }
    let _ = stop.send(true);
    while open.join_next().await.is_some() {}
}

/// Serves one connection until it has closed: told to go when it has been
/// idle for its timeout or the server stops.
async fn serve_connection(
    server: GrpcServer,
    routes: Routes,
    connection: LimitedConnection,
    mut stopping: watch::Receiver<bool>,
) {
    let peer = connection.peer();
    let activity = connection.activity().clone();
    let mut closed = connection.on_close();
    let told_to_go = async move {
        tokio::select! {
            () = activity.idle() => {
                tracing::debug!(%peer, "telling a connection idle past its timeout to go (GOAWAY)");
            }
            _ = stopping.wait_for(|stop| *stop) => {}
            // tonic's server waits for its signal even once its connection
            // has closed.
            _ = closed.changed() => {}
        }
    };
    // Its one connection, then nothing: a stream that ended would stop the
    // server at once.
    let incoming =
        tokio_stream::once(Ok::<_, io::Error>(connection)).chain(tokio_stream::pending());
    if let Err(error) = server
        .serve_with_incoming_shutdown(routes, incoming, told_to_go)
        .await
    {
        tracing::debug!(%peer, %error, "serving a connection failed");
    }
}
