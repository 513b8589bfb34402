//! What a request must be, as HTTP/2 and gRPC framing, before any service
//! sees it: a gRPC content-type (every call, health and reflection
//! included), and, once the admission layer has the whole body, exactly one
//! well-formed message frame. Each refusal is INVALID_ARGUMENT with an
//! `ErrorInfo`, never tonic's INTERNAL: a malformed request is the caller's
//! mistake. What the frame holds is decoded by the services' codec
//! (`keysmith_api::codec`), which refuses undecodable bytes the same way.
use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{header::CONTENT_TYPE, HeaderMap, StatusCode};
use keysmith_core::error::{quoted, reasons};
use prost::Message;
use tonic::{body::Body, Code, Status};
use tower::{Layer, Service};

use crate::convert;

/// The gRPC frame header: a compressed flag and a big-endian length.
const FRAME_HEADER: usize = 5;

/// The content-types keysmith serves: gRPC with protobuf messages. It
/// serves no gRPC-Web (no tonic-web layer) and no other codec, so
/// `application/grpc-web*` and `application/grpc+json` are refused too.
fn is_grpc(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    // Media types are case-insensitive; parameters (`; charset=...`) may
    // follow.
    let media = value.split(';').next().unwrap_or_default().trim();
    media.eq_ignore_ascii_case("application/grpc")
        || media.eq_ignore_ascii_case("application/grpc+proto")
}

/// Refuses every request whose content-type is not gRPC's with HTTP 415,
/// as gRPC's HTTP/2 protocol document says a server should, so that no
/// other HTTP client reads the refusal as a success; the gRPC status
/// (INVALID_ARGUMENT, `UNSUPPORTED_CONTENT_TYPE`) is in its headers too.
#[derive(Clone, Copy, Debug, Default)]
pub struct ContentTypeLayer;

impl<S> Layer<S> for ContentTypeLayer {
    type Service = ContentType<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ContentType { inner }
    }
}

#[derive(Clone, Debug)]
pub struct ContentType<S> {
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, R> Service<http::Request<Body>> for ContentType<S>
where
    S: Service<http::Request<Body>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if is_grpc(request.headers()) {
            return Box::pin(self.inner.call(request));
        }
        let given = request
            .headers()
            .get(CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        tracing::info!(
            method = %quoted(request.uri().path()),
            content_type = %given.as_deref().map_or_else(|| "none".to_owned(), quoted),
            "call refused: not a gRPC content-type"
        );
        let message = match given {
            Some(given) => format!(
                "content-type {} is not application/grpc or application/grpc+proto",
                quoted(&given)
            ),
            None => "a content-type of application/grpc or application/grpc+proto is required"
                .to_owned(),
        };
        let status = convert::transport_status(
            Code::InvalidArgument,
            reasons::UNSUPPORTED_CONTENT_TYPE,
            &message,
        );
        let mut response = status.into_http::<R>();
        *response.status_mut() = StatusCode::UNSUPPORTED_MEDIA_TYPE;
        Box::pin(std::future::ready(Ok(response)))
    }
}

/// What a unary request's body must be: one message frame, whole, with a
/// compressed flag of 0 (or 1 with a `grpc-encoding` other than identity,
/// which tonic then answers itself: keysmith takes no compression, so
/// UNIMPLEMENTED). `health` also decodes the frame as a health check
/// request, whose service has tonic-health's codec rather than keysmith's.
pub fn check_unary_body(
    headers: &HeaderMap,
    data: Option<&Bytes>,
    health: bool,
) -> Result<(), Status> {
    let data = data.map(|d| &d[..]).unwrap_or_default();
    if data.is_empty() {
        return Err(malformed("the request carries no message"));
    }
    let mut rest = data;
    let mut messages = 0usize;
    let mut first = None;
    while !rest.is_empty() {
        if rest.len() < FRAME_HEADER {
            return Err(incomplete(
                "the request ends inside a message's 5-byte frame header",
            ));
        }
        let flag = rest[0];
        let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        match flag {
            0 => {}
            1 if compressed(headers) => {}
            1 => {
                return Err(malformed(
                    "the message's compressed flag is set but the request names no grpc-encoding",
                ))
            }
            other => {
                return Err(malformed(&format!(
                    "a message's compressed flag is {other}, not 0 or 1"
                )))
            }
        }
        let available = rest.len() - FRAME_HEADER;
        if available < len {
            return Err(incomplete(&format!(
                "the request ends {} bytes before the end of its message ({len} bytes)",
                len - available
            )));
        }
        first.get_or_insert((flag, &rest[FRAME_HEADER..FRAME_HEADER + len]));
        messages += 1;
        rest = &rest[FRAME_HEADER + len..];
    }
    if messages > 1 {
        return Err(malformed(&format!(
            "a unary call takes one message; the request carries {messages}"
        )));
    }
    if let (true, Some((0, message))) = (health, first) {
        tonic_health::pb::HealthCheckRequest::decode(message).map_err(|e| {
            malformed(&format!(
                "the request is not a valid message of its method: {e}"
            ))
        })?;
    }
    Ok(())
}

/// Whether the request names an encoding for compressed messages.
fn compressed(headers: &HeaderMap) -> bool {
    headers
        .get("grpc-encoding")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|e| !e.trim().is_empty() && !e.trim().eq_ignore_ascii_case("identity"))
}

fn malformed(why: &str) -> Status {
    convert::transport_status(Code::InvalidArgument, reasons::MALFORMED_REQUEST, why)
}

/// A frame cut short by a request that ended: the same reason as a request
/// whose stream broke off (admission), as the caller's mistake.
fn incomplete(why: &str) -> Status {
    convert::transport_status(Code::InvalidArgument, reasons::REQUEST_INCOMPLETE, why)
}

#[cfg(test)]
mod tests {
    use tonic_types::StatusExt;

    use super::*;

    fn frame(flag: u8, message: &[u8]) -> Vec<u8> {
        let mut out = vec![flag];
        out.extend_from_slice(&(message.len() as u32).to_be_bytes());
        out.extend_from_slice(message);
        out
    }

    fn check(headers: &HeaderMap, body: &[u8]) -> Result<(), (Code, String)> {
        let body = Bytes::copy_from_slice(body);
        check_unary_body(headers, Some(&body), true).map_err(|s| {
            let info = s.get_details_error_info().expect("an ErrorInfo");
            assert_eq!(info.domain, convert::ERROR_DOMAIN);
            (s.code(), info.reason)
        })
    }

    #[test]
    fn one_whole_frame_passes_and_every_other_body_is_refused() {
        let none = HeaderMap::new();
        check(&none, &frame(0, b"")).unwrap();
        check(&none, &frame(0, b"\x0a\x03abc")).unwrap();
        let refused = |body: &[u8]| check(&none, body).unwrap_err();
        let malformed = (Code::InvalidArgument, reasons::MALFORMED_REQUEST.to_owned());
        let incomplete = (
            Code::InvalidArgument,
            reasons::REQUEST_INCOMPLETE.to_owned(),
        );
        assert_eq!(refused(b""), malformed);
        assert_eq!(refused(&frame(1, b"\x0a\x01a")), malformed);
        assert_eq!(refused(&frame(2, b"")), malformed);
        assert_eq!(refused(&[0, 0, 0]), incomplete);
        assert_eq!(refused(&frame(0, b"\x0a\x03abc")[..6]), incomplete);
        assert_eq!(refused(&[frame(0, b""), frame(0, b"")].concat()), malformed);
        // A health check request whose bytes are not one.
        assert_eq!(refused(&frame(0, b"\x0a\xff")), malformed);
        let mut gzip = HeaderMap::new();
        gzip.insert("grpc-encoding", "gzip".parse().unwrap());
        check(&gzip, &frame(1, b"\x1f\x8b")).unwrap();
        let mut identity = HeaderMap::new();
        identity.insert("grpc-encoding", "identity".parse().unwrap());
        assert_eq!(check(&identity, &frame(1, b"")).unwrap_err(), malformed);
    }

    #[test]
    fn only_grpc_with_protobuf_is_a_grpc_content_type() {
        let with = |value: &str| {
            let mut h = HeaderMap::new();
            h.insert(CONTENT_TYPE, value.parse().unwrap());
            is_grpc(&h)
        };
        assert!(with("application/grpc"));
        assert!(with("application/grpc+proto"));
        assert!(with("Application/GRPC; charset=utf-8"));
        for other in [
            "application/json",
            "text/plain",
            "application/grpc+json",
            "application/grpc-web",
            "application/grpc-web+proto",
            "application/grpcx",
            "",
        ] {
            assert!(!with(other), "{other}");
        }
        assert!(!is_grpc(&HeaderMap::new()));
    }
}
