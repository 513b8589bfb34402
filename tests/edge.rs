//! Values checked at the edge (issue 18, item 3), end to end against the
//! real server: each bad input gets a clear error that is not INTERNAL,
//! with an ErrorInfo (and a BadRequest naming the field where there is
//! one), and changes nothing. Raw HTTP/2 (h2) sends what tonic's client
//! would not: malformed frames and other content-types.
mod common;

use bytes::Bytes;
use common::*;
use keysmith_api::{sim::v1 as sim, v1 as pb};
use keysmith_server::{
    auth::hash_token,
    config::{AuthMode, TokenConfig},
};
use prost::Message;
use tonic::{Code, Status};
use tonic_types::StatusExt;

const ISSUE: &str = "/keysmith.v1.AccessService/Issue";
const LIST_KEYS: &str = "/keysmith.v1.AccessService/ListKeys";
const HEALTH_CHECK: &str = "/grpc.health.v1.Health/Check";
const REFLECTION: &str = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo";

/// Every key of the demo hotel, ended ones included: what "changes
/// nothing" is checked against.
async fn all_keys(s: &TestServer) -> Vec<pb::AccessKey> {
    s.list(pb::ListKeysRequest {
        property_id: PROPERTY.into(),
        include_revoked: true,
        page_size: 500,
        ..Default::default()
    })
    .await
    .unwrap()
    .keys
}

/// A server with one key, and that key.
async fn with_one_key() -> (TestServer, pb::AccessKey) {
    let s = TestServer::start().await;
    let key = s
        .issue(guest(
            "guest-1",
            &["room-101"],
            T0 - HOUR,
            T0 + DAY,
            "stay-1",
        ))
        .await
        .unwrap();
    (s, key)
}

fn a_second_guest() -> pb::IssueRequest {
    guest("guest-2", &["room-102"], T0 - HOUR, T0 + DAY, "stay-2")
}

/// One gRPC message frame with `flag`.
fn frame(flag: u8, message: &[u8]) -> Vec<u8> {
    let mut out = vec![flag];
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    out
}

/// What a raw HTTP/2 call was answered: the HTTP status and the gRPC
/// status (from the headers of an answer without a body, else the
/// trailers).
async fn raw_call(
    addr: std::net::SocketAddr,
    path: &str,
    content_type: Option<&str>,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (http::StatusCode, Status) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.expect("HTTP/2 handshake");
    let connection = tokio::spawn(connection);
    let mut request =
        http::Request::post(format!("http://keysmith{path}")).header("te", "trailers");
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut client = client.ready().await.expect("a stream");
    let (response, mut send) = client
        .send_request(request.body(()).unwrap(), body.is_empty())
        .expect("the request is sent");
    if !body.is_empty() {
        // The server may answer (and end the stream) from the headers alone,
        // a refused content-type for one, before the body goes out: then
        // sending it fails, and the answer below is what the test checks.
        let _ = send.send_data(Bytes::from(body), true);
    }
    let response = response.await.expect("response headers");
    let http_status = response.status();
    let status = match Status::from_header_map(response.headers()) {
        Some(status) => status,
        None => {
            let mut body = response.into_body();
            while let Some(chunk) = body.data().await {
                let chunk = chunk.expect("the answer's body");
                let _ = body.flow_control().release_capacity(chunk.len());
            }
            let trailers = body.trailers().await.expect("trailers").expect("trailers");
            Status::from_header_map(&trailers).expect("a grpc-status")
        }
    };
    connection.abort();
    (http_status, status)
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_frames_and_undecodable_messages_are_invalid_argument_and_change_nothing() {
    let (s, _key) = with_one_key().await;
    let before = all_keys(&s).await;
    let addr = s.running.as_ref().unwrap().addr;
    let issue = a_second_guest().encode_to_vec();
    let mut truncated = frame(0, &issue);
    truncated.truncate(truncated.len() - 3);
    let two = [frame(0, &issue), frame(0, &issue)].concat();
    // What, the path, extra headers, the body, the reason expected.
    type Case = (
        &'static str,
        &'static str,
        Vec<(&'static str, &'static str)>,
        Vec<u8>,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        // A length-delimited field 1 whose length runs past the end.
        (
            "bad protobuf bytes",
            ISSUE,
            vec![],
            frame(0, b"\x0a\xff\xff\x01abc"),
            "MALFORMED_REQUEST",
        ),
        // Wire type 7 does not exist.
        (
            "an invalid wire type",
            LIST_KEYS,
            vec![],
            frame(0, b"\x0f"),
            "MALFORMED_REQUEST",
        ),
        // holder_id (field 3) that is not UTF-8.
        (
            "a string that is not UTF-8",
            ISSUE,
            vec![],
            frame(0, b"\x1a\x02\xff\xfe"),
            "MALFORMED_REQUEST",
        ),
        (
            "a compressed flag without grpc-encoding",
            ISSUE,
            vec![],
            frame(1, &issue),
            "MALFORMED_REQUEST",
        ),
        (
            "a compressed flag with the identity encoding",
            ISSUE,
            vec![("grpc-encoding", "identity")],
            frame(1, &issue),
            "MALFORMED_REQUEST",
        ),
        (
            "a flag that is neither 0 nor 1",
            ISSUE,
            vec![],
            frame(7, &issue),
            "MALFORMED_REQUEST",
        ),
        (
            "a truncated frame",
            ISSUE,
            vec![],
            truncated,
            "REQUEST_INCOMPLETE",
        ),
        (
            "half a frame header",
            ISSUE,
            vec![],
            vec![0, 0, 0],
            "REQUEST_INCOMPLETE",
        ),
        ("an empty body", ISSUE, vec![], vec![], "MALFORMED_REQUEST"),
        ("two messages", ISSUE, vec![], two, "MALFORMED_REQUEST"),
        (
            "an empty health check body",
            HEALTH_CHECK,
            vec![],
            vec![],
            "MALFORMED_REQUEST",
        ),
        (
            "a health check that is not one",
            HEALTH_CHECK,
            vec![],
            frame(0, b"\x0a\xff"),
            "MALFORMED_REQUEST",
        ),
    ];
    for (what, path, headers, body, want) in cases {
        let (http_status, status) =
            raw_call(addr, path, Some("application/grpc"), &headers, body).await;
        assert_eq!(http_status, http::StatusCode::OK, "{what}");
        assert_eq!(
            reason(&status),
            (Code::InvalidArgument, want.to_owned()),
            "{what}: {status:?}"
        );
    }
    // Reflection is a stream both ways and is not read whole first:
    // tonic-reflection ends its stream at a request it cannot decode. Not
    // an error with an ErrorInfo, but never INTERNAL either.
    for body in [frame(0, b"\x0a\xff"), vec![0, 0, 0], frame(1, b"")] {
        let (http_status, status) =
            raw_call(addr, REFLECTION, Some("application/grpc"), &[], body).await;
        assert_eq!(http_status, http::StatusCode::OK);
        assert_ne!(status.code(), Code::Internal, "{status:?}");
    }
    assert_eq!(all_keys(&s).await, before);
    // The same connection-less path still serves a well-formed call.
    let (_, ok) = raw_call(
        addr,
        HEALTH_CHECK,
        Some("application/grpc+proto"),
        &[],
        frame(0, b""),
    )
    .await;
    assert_eq!(ok.code(), Code::Ok, "{ok:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn other_content_types_are_refused_with_415_for_every_service() {
    let (s, _key) = with_one_key().await;
    let before = all_keys(&s).await;
    let addr = s.running.as_ref().unwrap().addr;
    let issue = frame(0, &a_second_guest().encode_to_vec());
    let reflection = frame(
        0,
        &tonic_reflection::pb::v1::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(
                tonic_reflection::pb::v1::server_reflection_request::MessageRequest::ListServices(
                    String::new(),
                ),
            ),
        }
        .encode_to_vec(),
    );
    for content_type in [
        Some("application/json"),
        Some("text/plain"),
        Some("application/grpc+json"),
        Some("application/grpc-web"),
        Some("application/grpc-web+proto"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        for (path, body) in [
            (ISSUE, issue.clone()),
            (HEALTH_CHECK, frame(0, b"")),
            (REFLECTION, reflection.clone()),
        ] {
            let (http_status, status) = raw_call(addr, path, content_type, &[], body).await;
            assert_eq!(
                http_status,
                http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "{content_type:?} {path}"
            );
            assert_eq!(
                reason(&status),
                (Code::InvalidArgument, "UNSUPPORTED_CONTENT_TYPE".to_owned()),
                "{content_type:?} {path}"
            );
        }
    }
    assert_eq!(all_keys(&s).await, before);
    let (http_status, ok) = raw_call(addr, ISSUE, Some("application/grpc+proto"), &[], issue).await;
    assert_eq!((http_status, ok.code()), (http::StatusCode::OK, Code::Ok));
}

#[tokio::test(flavor = "multi_thread")]
async fn timestamps_outside_the_protobuf_range_or_the_horizon_are_refused_naming_the_field() {
    let (mut s, key) = with_one_key().await;
    let before = all_keys(&s).await;
    // 10000-01-01T00:00:00Z, and one second before 0001-01-01.
    const YEAR_10000: i64 = 253_402_300_800;
    const BEFORE_YEAR_1: i64 = -62_135_596_801;
    const ELEVEN_YEARS: i64 = 11 * 366 * DAY;
    let with = |start: i64, end: i64| {
        let mut r = a_second_guest();
        r.starts_at = Some(ts(start));
        r.ends_at = Some(ts(end));
        r
    };
    for (what, req, field, want) in [
        (
            "ends in year 10000",
            with(T0, YEAR_10000),
            "ends_at",
            "FIELD_INVALID",
        ),
        (
            "starts before year 1",
            with(BEFORE_YEAR_1, T0 + DAY),
            "starts_at",
            "FIELD_INVALID",
        ),
        (
            "ends past the horizon",
            with(T0, T0 + ELEVEN_YEARS),
            "ends_at",
            "INVALID_TIME_WINDOW",
        ),
    ] {
        let err = s.issue(req).await.unwrap_err();
        assert_eq!(
            reason(&err),
            (Code::InvalidArgument, want.to_owned()),
            "{what}"
        );
        assert_eq!(violations(&err), [field], "{what}");
    }
    for (end, want) in [
        (YEAR_10000, "FIELD_INVALID"),
        (T0 + ELEVEN_YEARS, "INVALID_TIME_WINDOW"),
    ] {
        let err = s.update_window(&key.key_id, T0, end).await.unwrap_err();
        assert_eq!(reason(&err), (Code::InvalidArgument, want.to_owned()));
        assert_eq!(violations(&err), ["ends_at"]);
    }
    assert_eq!(all_keys(&s).await, before);

    let card = card(&key);
    let lock_before = s.lock_state("room-101").await;
    for at in [YEAR_10000, BEFORE_YEAR_1, T0 + 20 * 366 * DAY] {
        let err = s
            .sim
            .present(sim::PresentRequest {
                property_id: PROPERTY.into(),
                entrance_id: "room-101".into(),
                credential_data: card.clone(),
                at: Some(ts(at)),
            })
            .await
            .unwrap_err();
        assert_eq!(
            reason(&err),
            (Code::InvalidArgument, "FIELD_INVALID".to_owned()),
            "{at}"
        );
        assert_eq!(violations(&err), ["at"]);
    }
    assert_eq!(s.lock_state("room-101").await, lock_before);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_clock_skew_of_i64_min_is_refused_and_the_lock_keeps_its_clock() {
    let (mut s, _key) = with_one_key().await;
    let before = s.lock_state("room-101").await;
    for skew in [i64::MIN, i64::MAX, -(10 * 366 * DAY)] {
        let err = s
            .sim
            .set_clock_skew(sim::SetClockSkewRequest {
                property_id: PROPERTY.into(),
                entrance_id: "room-101".into(),
                skew_seconds: skew,
            })
            .await
            .unwrap_err();
        assert_eq!(
            reason(&err),
            (Code::InvalidArgument, "FIELD_INVALID".to_owned()),
            "{skew}"
        );
        assert_eq!(violations(&err), ["skew_seconds"]);
    }
    assert_eq!(s.lock_state("room-101").await, before);
}

#[tokio::test(flavor = "multi_thread")]
async fn invisible_and_direction_changing_characters_in_ids_are_refused_naming_the_field() {
    let (mut s, _key) = with_one_key().await;
    let before = all_keys(&s).await;
    for bad in [
        "guest\u{202E}1",
        "guest\u{200B}1",
        "\u{FEFF}guest",
        "gu\u{2066}est",
    ] {
        let mut req = a_second_guest();
        req.request_id = format!("req-{bad}");
        req.holder_id = bad.into();
        req.reservation_key = format!("stay-{bad}");
        let err = s.issue(req).await.unwrap_err();
        assert_eq!(
            reason(&err),
            (Code::InvalidArgument, "FIELD_INVALID".to_owned()),
            "{bad:?}"
        );
        assert_eq!(
            violations(&err),
            ["request_id", "holder_id", "reservation_key"],
            "{bad:?}"
        );
        // What the caller sent is never printed as it is.
        assert!(!err.message().contains(bad), "{:?}", err.message());

        let err = s
            .list(pb::ListKeysRequest {
                property_id: PROPERTY.into(),
                holder_id: bad.into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(violations(&err), ["holder_id"]);
        let err = s
            .client
            .get_key(pb::GetKeyRequest {
                property_id: PROPERTY.into(),
                key_id: bad.into(),
            })
            .await
            .unwrap_err();
        assert_eq!(violations(&err), ["key_id"]);
    }
    assert_eq!(all_keys(&s).await, before);
}

/// A token for the demo hotel only, with every scope.
fn secured(c: &mut keysmith_server::Config) {
    c.auth.mode = AuthMode::Tokens;
    c.auth.tokens = vec![TokenConfig {
        id: "front-desk".into(),
        sha256: hash_token(TOKEN),
        properties: vec![PROPERTY.into()],
        scopes: ["keys.issue", "keys.revoke", "keys.read", "keysmith.admin"]
            .map(String::from)
            .to_vec(),
        max_in_flight: 64,
        requests_per_minute: None,
    }];
}

const TOKEN: &str = "ks_test_edge_checks_token";

fn authorized<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    request
}

/// Issue 18: a 70 KB property_id was echoed into 52 KB of trailers, and the
/// client saw RESOURCE_EXHAUSTED instead of NOT_FOUND.
#[tokio::test(flavor = "multi_thread")]
async fn errors_quote_a_short_escaped_prefix_of_what_the_caller_sent() {
    let mut s = TestServer::start_with(secured).await;
    let huge = "p".repeat(70_000);
    let err = s
        .client
        .get_key(authorized(pb::GetKeyRequest {
            property_id: huge.clone(),
            key_id: "k".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(
        reason(&err),
        (Code::NotFound, "PROPERTY_NOT_FOUND".to_owned())
    );
    assert!(err.message().len() < 200, "{}", err.message().len());
    assert!(err.message().contains(&format!("\"{}\"…", "p".repeat(64))));
    let info = err.get_error_details().error_info().cloned().unwrap();
    assert!(info.metadata["property_id"].chars().count() <= 65);

    // A property the token was not given, with a bidi override: escaped.
    let err = s
        .client
        .list_keys(authorized(pb::ListKeysRequest {
            property_id: "other\u{202E}hotel".into(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(
        reason(&err),
        (Code::NotFound, "PROPERTY_NOT_FOUND".to_owned())
    );
    assert!(!err.message().contains('\u{202E}'), "{}", err.message());
    assert!(err.message().contains("\\u{202e}"), "{}", err.message());
}
