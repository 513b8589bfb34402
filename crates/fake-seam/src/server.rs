//! HTTP: our own accept loop over hyper, because one fault must close a
//! connection without answering, which a framework's server cannot do.
//!
//! Every request runs on a task of its own, so a change is carried through
//! even if the client hangs up (as a real server would). The pipeline of an
//! API request: count it; apply faults (503, 429, delay); find the route
//! (404), POST only (405); authenticate the bearer key (401); require a JSON
//! content type and an object body (400); run the handler; then maybe drop
//! or withhold the answer. Every answer carries `seam-request-id`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{Map, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};

use crate::core::Core;
use crate::errors::ApiError;
use crate::faults::{After, Before};
use crate::routes::{self, Call};

/// The largest body accepted; Seam's requests are small.
const MAX_BODY: usize = 1 << 20;

/// The response header carrying the request id.
pub const REQUEST_ID_HEADER: &str = "seam-request-id";

/// How a handled request ends.
enum Outcome {
    Answer(Response<Body>),
    /// Close the connection without an answer.
    Drop,
    /// Never answer; the connection stays open until shutdown.
    Hang,
}

/// Runs the accept loop until `shutdown` turns true.
pub(crate) async fn serve(listener: TcpListener, core: Arc<Core>, shutdown: watch::Receiver<bool>) {
    let mut stop = shutdown.clone();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = crate::stopped(&mut stop) => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                tokio::spawn(connection(stream, peer, core.clone(), shutdown.clone()));
            }
            Err(e) => {
                // E.g. out of file descriptors: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    core: Arc<Core>,
    mut shutdown: watch::Receiver<bool>,
) {
    // Fired by a request whose answer is to be dropped.
    let kill = Arc::new(Notify::new());
    let service = {
        let kill = kill.clone();
        hyper::service::service_fn(move |req: Request<Incoming>| {
            let (core, kill) = (core.clone(), kill.clone());
            async move {
                let outcome = match tokio::spawn(handle(core.clone(), req)).await {
                    Ok(outcome) => outcome,
                    // A panic in a handler is the fake's bug; answer like Seam.
                    Err(e) => {
                        tracing::error!(error = %e, "request handler failed");
                        let request_id = core.next_request_id();
                        Outcome::Answer(error_response(
                            &ApiError::internal("Internal server error"),
                            &request_id,
                        ))
                    }
                };
                match outcome {
                    Outcome::Answer(resp) => Ok::<_, Infallible>(resp),
                    Outcome::Drop => {
                        kill.notify_one();
                        std::future::pending().await
                    }
                    Outcome::Hang => std::future::pending().await,
                }
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
        _ = kill.notified() => tracing::info!(%peer, "connection closed without an answer (fault)"),
        _ = crate::stopped(&mut shutdown) => {}
    }
}

fn json_response(status: u16, body: &Value, request_id: &str) -> Response<Body> {
    let mut resp = Response::new(Body::from(body.to_string()));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    add_request_id(&mut resp, request_id);
    resp
}

fn error_response(e: &ApiError, request_id: &str) -> Response<Body> {
    json_response(e.status, &e.body(request_id), request_id)
}

fn add_request_id(resp: &mut Response<Body>, request_id: &str) {
    if let Ok(v) = HeaderValue::from_str(request_id) {
        resp.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
}

/// Whether the request says its body is JSON (parameters such as charset
/// allowed).
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

/// The bearer token, if any.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Reads the body as a JSON object; an empty body is `{}`.
async fn read_object(body: Incoming) -> Result<Map<String, Value>, ApiError> {
    let bytes: Bytes = axum::body::to_bytes(Body::new(body), MAX_BODY)
        .await
        .map_err(|_| {
            ApiError::new(
                413,
                "invalid_input",
                "Request body is too large or could not be read",
            )
        })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::invalid_input(
            "Request body must be a JSON object",
        )),
        Err(e) => Err(ApiError::invalid_input(format!(
            "Request body is not valid JSON: {e}"
        ))),
    }
}

async fn handle(core: Arc<Core>, req: Request<Incoming>) -> Outcome {
    let request_id = core.next_request_id();
    let (parts, body) = req.into_parts();
    let route = parts.uri.path().to_string();
    if route.starts_with("/_fake/") {
        return Outcome::Answer(
            control(
                &core,
                &parts.method,
                &parts.headers,
                &route,
                body,
                &request_id,
            )
            .await,
        );
    }
    core.counts.request(&route);
    match core.faults.before(&route) {
        Before::Outage => {
            core.counts.fault(&route);
            tracing::info!(%route, "simulated outage: empty 503");
            let mut resp = Response::new(Body::empty());
            *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            add_request_id(&mut resp, &request_id);
            return Outcome::Answer(resp);
        }
        Before::TooManyRequests { retry_after_s } => {
            core.counts.fault(&route);
            let e = ApiError::new(
                429,
                "rate_limited",
                "Too many requests. Retry after the appropriate amount of time.",
            );
            let mut resp = error_response(&e, &request_id);
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_s));
            return Outcome::Answer(resp);
        }
        Before::Proceed { delay: Some(delay) } => {
            core.counts.fault(&route);
            let mut stop = core.shutdown.clone();
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = crate::stopped(&mut stop) => return Outcome::Hang,
            }
        }
        Before::Proceed { delay: None } => {}
    }
    let (answer, reached_handler) =
        match api(&core, &parts.method, &parts.headers, &route, body).await {
            Api::Handled(answer) => (answer, true),
            Api::Refused(e) => (Err(e), false),
        };
    let (status, body) = match answer {
        Ok(v) => (200, v),
        Err(e) => (e.status, e.body(&request_id)),
    };
    tracing::info!(method = %parts.method, %route, status, %request_id, "answered");
    // Only a request that reached its handler can have changed anything;
    // the answer is lost whatever it was, as with a real lost response.
    if reached_handler {
        match core.faults.after(&route) {
            After::Answer => {}
            After::Drop => {
                core.counts.fault(&route);
                tracing::info!(%route, "dropping the answer after commit (fault)");
                return Outcome::Drop;
            }
            After::Hang => {
                core.counts.fault(&route);
                tracing::info!(%route, "withholding the answer after commit (fault)");
                return Outcome::Hang;
            }
        }
    }
    Outcome::Answer(json_response(status, &body, &request_id))
}

/// Whether an API request got to its handler.
enum Api {
    Handled(Result<Value, ApiError>),
    /// Refused before: unknown route, method, key, content type or body.
    Refused(ApiError),
}

/// An API request past the faults.
async fn api(
    core: &Arc<Core>,
    method: &Method,
    headers: &HeaderMap,
    route: &str,
    body: Incoming,
) -> Api {
    let Some(handler) = routes::lookup(route) else {
        return Api::Refused(ApiError::new(404, "not_found", format!("No route {route}")));
    };
    if method != Method::POST {
        return Api::Refused(ApiError::new(
            405,
            "method_not_allowed",
            "Use POST with a JSON body",
        ));
    }
    let Some(workspace_id) =
        bearer(headers).and_then(|key| core.read(|w| w.api_keys.get(key).cloned()))
    else {
        return Api::Refused(ApiError::unauthorized(
            "Unauthorized: missing or unknown API key",
        ));
    };
    if !is_json(headers) {
        return Api::Refused(ApiError::invalid_input(
            "Content-Type must be application/json",
        ));
    }
    let body = match read_object(body).await {
        Ok(body) => body,
        Err(e) => return Api::Refused(e),
    };
    Api::Handled(handler(
        core,
        &Call {
            workspace_id: &workspace_id,
            route,
            body: &body,
        },
    ))
}

/// A `/_fake/` control request: POST, optional JSON body, no auth.
async fn control(
    core: &Arc<Core>,
    method: &Method,
    headers: &HeaderMap,
    route: &str,
    body: Incoming,
    request_id: &str,
) -> Response<Body> {
    let answer = async {
        let handler = routes::fake::lookup(route)
            .ok_or_else(|| ApiError::new(404, "not_found", format!("No route {route}")))?;
        if method != Method::POST {
            return Err(ApiError::new(405, "method_not_allowed", "Use POST"));
        }
        if headers.contains_key(header::CONTENT_TYPE) && !is_json(headers) {
            return Err(ApiError::invalid_input(
                "Content-Type must be application/json",
            ));
        }
        let body = read_object(body).await?;
        handler(core, &body)
    }
    .await;
    match answer {
        Ok(v) => json_response(200, &v, request_id),
        Err(e) => error_response(&e, request_id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_bearer_and_json_content_type() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer seam_test_1"),
        );
        assert_eq!(bearer(&h), Some("seam_test_1"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert_eq!(bearer(&h), None);
        assert!(!is_json(&h));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        assert!(is_json(&h));
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert!(!is_json(&h));
    }
}
