//! HTTP: our own accept loop over hyper, because the vendor's rate-limit
//! block is not an HTTP answer. A blocked IP's new connections are accepted
//! and held silently; its requests on open connections hang; when the block
//! ends those connections are dropped without a byte, as a TCP-level
//! time-out looks to a client.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, Request, Response, StatusCode};
use axum::routing::post;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tower::ServiceExt as _;

use crate::batch::Engine;
use crate::counts::Counters;
use crate::errors::Lang;
use crate::rate_limit::{RateLimiter, Verdict};

/// What the HTTP side needs.
pub(crate) struct Http {
    pub engine: Engine,
    pub limiter: RateLimiter,
    pub counts: Arc<Counters>,
}

/// Runs the accept loop until `shutdown` turns true.
pub(crate) async fn serve(listener: TcpListener, http: Arc<Http>, shutdown: watch::Receiver<bool>) {
    let router = Router::new()
        .route("/graphql", post(graphql))
        .with_state(http.clone());
    let mut stop = shutdown.clone();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = crate::stopped(&mut stop) => return,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // E.g. out of file descriptors: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        if let Some(until) = http.limiter.connection(peer.ip()) {
            http.counts.update(|c| c.blocked_connections += 1);
            tracing::info!(%peer, "connection from a blocked IP held without answer");
            let mut stop = shutdown.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = tokio::time::sleep_until(until) => {}
                    _ = crate::stopped(&mut stop) => {}
                }
                drop(stream);
            });
            continue;
        }
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection(
            stream,
            peer,
            http.clone(),
            router.clone(),
            shutdown.clone(),
        ));
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    http: Arc<Http>,
    router: Router,
    mut shutdown: watch::Receiver<bool>,
) {
    // Fired by a request that hit the rate limit: the connection is then
    // dropped without an answer.
    let kill = Arc::new(Notify::new());
    let service = {
        let kill = kill.clone();
        hyper::service::service_fn(move |mut req: Request<Incoming>| {
            let (http, router, kill) = (http.clone(), router.clone(), kill.clone());
            async move {
                req.extensions_mut().insert(ConnectInfo(peer));
                Ok::<_, Infallible>(gate(http, router, peer, kill, req).await)
            }
        })
    };
    let conn =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        r = conn => {
            if let Err(e) = r {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        }
        _ = kill.notified() => tracing::info!(%peer, "connection dropped at the end of a rate-limit block"),
        _ = crate::stopped(&mut shutdown) => {}
    }
}

/// Counts the request and applies the rate limit before routing.
async fn gate(
    http: Arc<Http>,
    router: Router,
    peer: SocketAddr,
    kill: Arc<Notify>,
    req: Request<Incoming>,
) -> Response<Body> {
    http.counts.update(|c| c.http_requests += 1);
    if let Verdict::Block { until, started } = http.limiter.request(peer.ip()) {
        http.counts.update(|c| {
            c.rate_limited += 1;
            if started {
                c.blocks += 1;
            }
        });
        if started {
            tracing::warn!(%peer, "rate limit exceeded: blocking this IP");
        }
        tokio::time::sleep_until(until).await;
        kill.notify_one();
        // Never answer; the connection task drops the connection.
        return std::future::pending().await;
    }
    match router.oneshot(req).await {
        Ok(resp) => resp,
        Err(never) => match never {},
    }
}

async fn graphql(
    State(http): State<Arc<Http>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response<Body> {
    let lang = Lang::from_accept_language(
        headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok()),
    );
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let answer = http.engine.run(token, lang, &body).await;
    tracing::info!(%peer, status = answer.status, request_bytes = body.len(), "POST /graphql");
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(answer.body))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}
