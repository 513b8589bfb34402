//! HTTP: our own accept loop over hyper, because one fault must close a
//! connection without answering, which a framework's server cannot do.
//!
//! Every request runs on a task of its own, so a change is carried through
//! even if the client hangs up (as a real server would). The pipeline of an
//! API request: count it; apply faults (503, 429, delay); find the route
//! (404) and check the method against those Seam's definition lists for it
//! (405); authenticate the bearer key (401); read the parameters (a GET's
//! query string, typed by the route's schema; any other method's JSON
//! object body, an empty body of any content type being `{}`); refuse what
//! the route's schema refuses (400 `invalid_input`); run the handler; then
//! maybe drop or withhold the answer. Every answer carries
//! `seam-request-id`. Requests, answers and events are also checked
//! strictly against the definition, and what it does not define is
//! recorded (`FakeSeam::contract_violations`).

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

use crate::contract::{Contract, Issue};
use crate::core::Core;
use crate::errors::ApiError;
use crate::faults::{After, Before, RetryAfter};
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

async fn read_bytes(body: Incoming) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(Body::new(body), MAX_BODY)
        .await
        .map_err(|_| {
            ApiError::new(
                413,
                "invalid_input",
                "Request body is too large or could not be read",
            )
        })
}

fn is_blank(bytes: &[u8]) -> bool {
    bytes.iter().all(u8::is_ascii_whitespace)
}

/// Reads the body as a JSON object; an empty body is `{}`.
async fn read_object(body: Incoming) -> Result<Map<String, Value>, ApiError> {
    let bytes = read_bytes(body).await?;
    parse_object(&bytes)
}

fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if is_blank(bytes) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(bytes) {
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
        Before::TooManyRequests { retry_after } => {
            core.counts.fault(&route);
            let e = ApiError::new(
                429,
                "rate_limited",
                "Too many requests. Retry after the appropriate amount of time.",
            );
            let mut resp = error_response(&e, &request_id);
            let value = match retry_after {
                RetryAfter::Seconds(s) => HeaderValue::from(s),
                RetryAfter::DateIn(d) => {
                    let at = std::time::SystemTime::now() + d;
                    HeaderValue::from_str(&httpdate::fmt_http_date(at))
                        .unwrap_or_else(|_| HeaderValue::from(d.as_secs()))
                }
            };
            resp.headers_mut().insert(header::RETRY_AFTER, value);
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
    let (answer, reached_handler) = match api(
        &core,
        &parts.method,
        &parts.headers,
        &route,
        parts.uri.query(),
        body,
    )
    .await
    {
        Api::Handled(answer) => (answer, true),
        Api::Refused(e) => (Err(e), false),
    };
    let (status, body) = match answer {
        Ok(v) => {
            core.record_violations(
                &format!("answer of {route}"),
                Contract::seam().check_response(&route, &v),
            );
            (200, v)
        }
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

/// A GET's query string as the JSON object its route's schema describes,
/// as Seam's SDK writes it (`@seamapi/url-search-params-serializer`): a
/// repeated name is an array (one empty value: an empty array), `a.b` is a
/// member of an object, and each value takes its member's type (number,
/// integer, boolean; anything unreadable stays a string, for the schema to
/// refuse).
fn query_object(route: &str, query: &str) -> Map<String, Value> {
    let contract = Contract::seam();
    let mut values: Vec<(String, Vec<String>)> = Vec::new();
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        match values.iter_mut().find(|(n, _)| *n == name) {
            Some((_, list)) => list.push(value.into_owned()),
            None => values.push((name.into_owned(), vec![value.into_owned()])),
        }
    }
    let mut out = Map::new();
    for (name, list) in values {
        let mut path: Vec<&str> = name.split('.').collect();
        let top = path.first().copied().unwrap_or_default();
        let schema = contract.parameter_schema(route, top);
        // Nested members are typed by their own schema when it says.
        let leaf = path.iter().skip(1).fold(schema, |s, member| {
            s.and_then(|s| s.get("properties"))
                .and_then(|p| p.get(*member))
        });
        let value = typed(leaf, list);
        let last = path.pop().unwrap_or_default();
        insert_at(&mut out, &path, last, value);
    }
    out
}

/// Inserts `value` as `last` in the object at `path` (created as needed).
fn insert_at(node: &mut Map<String, Value>, path: &[&str], last: &str, value: Value) {
    match path.split_first() {
        None => {
            node.insert(last.to_string(), value);
        }
        Some((member, rest)) => {
            let entry = node
                .entry(member.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if !entry.is_object() {
                *entry = Value::Object(Map::new());
            }
            if let Value::Object(next) = entry {
                insert_at(next, rest, last, value);
            }
        }
    }
}

/// A query value as its schema's type.
fn typed(schema: Option<&Value>, mut list: Vec<String>) -> Value {
    let kind = schema
        .and_then(|s| s.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("string");
    if kind == "array" {
        if list.len() == 1 && list[0].is_empty() {
            return Value::Array(Vec::new());
        }
        let items = schema.and_then(|s| s.get("items"));
        return Value::Array(list.into_iter().map(|v| scalar(items, v)).collect());
    }
    match list.len() {
        1 => scalar(schema, list.remove(0)),
        _ => Value::Array(list.into_iter().map(|v| scalar(schema, v)).collect()),
    }
}

fn scalar(schema: Option<&Value>, v: String) -> Value {
    let kind = schema
        .and_then(|s| s.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("string");
    let parsed = match kind {
        "number" | "integer" => serde_json::from_str::<serde_json::Number>(&v)
            .ok()
            .map(Value::Number),
        "boolean" => match v.as_str() {
            "true" => Some(Value::Bool(true)),
            "false" => Some(Value::Bool(false)),
            _ => None,
        },
        _ => None,
    };
    parsed.unwrap_or(Value::String(v))
}

/// zod's `format()` tree of schema issues, and a one-line summary.
fn refusal(issues: &[Issue]) -> ApiError {
    let mut v = crate::validate::Validator::new();
    for issue in issues {
        let path = issue
            .pointer
            .split('/')
            .skip(1)
            .map(|s| s.replace("~1", "/").replace("~0", "~"))
            .collect();
        v.issue(path, issue.message.clone());
    }
    v.finish()
        .err()
        .unwrap_or_else(|| ApiError::invalid_input("Invalid input"))
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
    query: Option<&str>,
    body: Incoming,
) -> Api {
    let Some(handler) = routes::lookup(route) else {
        return Api::Refused(ApiError::new(404, "not_found", format!("No route {route}")));
    };
    let allowed = Contract::seam().methods(route).unwrap_or_default();
    if !allowed.iter().any(|m| m == method.as_str()) {
        return Api::Refused(ApiError::new(
            405,
            "method_not_allowed",
            format!("{route} takes {}", allowed.join(" or ")),
        ));
    }
    let Some(workspace_id) =
        bearer(headers).and_then(|key| core.read(|w| w.api_keys.get(key).cloned()))
    else {
        return Api::Refused(ApiError::unauthorized(
            "Unauthorized: missing or unknown API key",
        ));
    };
    let body = if method == Method::GET {
        query_object(route, query.unwrap_or_default())
    } else {
        let bytes = match read_bytes(body).await {
            Ok(b) => b,
            Err(e) => return Api::Refused(e),
        };
        // Seam's SDK sends a call without parameters as an empty body, with
        // whatever content type its HTTP library chose.
        if !is_blank(&bytes) && !is_json(headers) {
            return Api::Refused(ApiError::invalid_input(
                "Content-Type must be application/json",
            ));
        }
        match parse_object(&bytes) {
            Ok(body) => body,
            Err(e) => return Api::Refused(e),
        }
    };
    let as_value = Value::Object(body);
    let contract = Contract::seam();
    let refused = contract.refusals(route, &as_value);
    if !refused.is_empty() {
        return Api::Refused(refusal(&refused));
    }
    core.record_violations(
        &format!("request to {route}"),
        contract.check_request(route, &as_value),
    );
    let Value::Object(body) = as_value else {
        return Api::Refused(ApiError::internal("body is not an object"));
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
