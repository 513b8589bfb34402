//! OpenTelemetry trace export, end to end: the real server exports its
//! spans over OTLP/gRPC to a receiver in this process (a TraceService on
//! an ephemeral port), which hands each export to the test.
mod common;

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use common::{card, guest, pin, TestServer, DAY, PROPERTY, T0};
use keysmith_api::v1::{self as pb, access_service_client::AccessServiceClient};
use keysmith_server::{
    auth::{generate_token, hash_token},
    config::{AuthConfig, AuthMode, ReflectionAccess, TokenConfig},
};
use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        trace_service_server::{TraceService, TraceServiceServer},
        ExportTraceServiceRequest, ExportTraceServiceResponse,
    },
    common::v1::{any_value::Value, KeyValue},
    trace::v1::{span::SpanKind, status::StatusCode, Span},
};
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::{wrappers::TcpListenerStream, StreamExt};
use tonic::{metadata::MetadataValue, service::Interceptor, Code, Request, Response, Status};

/// W3C trace context a caller sends (the example of the specification).
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN_ID: &str = "00f067aa0ba902b7";
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TRACESTATE: &str = "congo=t61rcWkgMzE";

/// How long an export may take to arrive: the batch delay is short, the
/// machine may be busy.
const WAIT: Duration = Duration::from_secs(30);

/// Hands every export it receives to the test.
struct Receiver {
    exports: mpsc::UnboundedSender<ExportTraceServiceRequest>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let _ = self.exports.send(request.into_inner());
        Ok(Response::new(ExportTraceServiceResponse::default()))
    }
}

/// A receiver on an ephemeral port: its address, the exports it received
/// and the number of connections it accepted.
async fn receiver() -> (
    SocketAddr,
    mpsc::UnboundedReceiver<ExportTraceServiceRequest>,
    Arc<AtomicUsize>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    let incoming = TcpListenerStream::new(listener).map(move |accepted| {
        counted.fetch_add(1, Ordering::SeqCst);
        accepted
    });
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(Receiver { exports: tx }))
            .serve_with_incoming(incoming),
    );
    (addr, rx, connections)
}

#[derive(Clone)]
struct Headers {
    token: String,
    trace: Vec<(&'static str, &'static str)>,
}

impl Interceptor for Headers {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let bearer: MetadataValue<_> = format!("Bearer {}", self.token).parse().unwrap();
        request.metadata_mut().insert("authorization", bearer);
        for &(name, value) in &self.trace {
            request
                .metadata_mut()
                .insert(name, MetadataValue::from_static(value));
        }
        Ok(request)
    }
}

fn front_desk(token: &str) -> AuthConfig {
    AuthConfig {
        mode: AuthMode::Tokens,
        reflection: ReflectionAccess::Open,
        max_failures_per_minute: 10,
        tokens: vec![TokenConfig {
            id: "front-desk".into(),
            sha256: hash_token(token),
            properties: vec![PROPERTY.into()],
            scopes: vec![
                "keys.issue".into(),
                "keys.read".into(),
                "keys.read_secrets".into(),
            ],
            max_in_flight: 64,
            requests_per_minute: None,
        }],
    }
}

fn attribute<'a>(span: &'a Span, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a: &KeyValue| a.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn string(span: &Span, key: &str) -> String {
    match attribute(span, key) {
        Some(Value::StringValue(s)) => s.clone(),
        other => panic!("{key} is {other:?} in {span:#?}"),
    }
}

fn int(span: &Span, key: &str) -> i64 {
    match attribute(span, key) {
        Some(Value::IntValue(i)) => *i,
        other => panic!("{key} is {other:?} in {span:#?}"),
    }
}

#[tokio::test]
async fn each_call_is_a_server_span_that_continues_the_callers_trace() {
    let (collector, mut exports, _) = receiver().await;
    let token = generate_token();
    let mut s = TestServer::start_with(|c| {
        c.auth = front_desk(&token);
        c.tracing.enabled = true;
        c.tracing.endpoint = format!("http://{collector}");
        c.tracing.service_name = "keysmith-under-test".into();
        c.tracing.batch_delay_ms = 50;
    })
    .await;
    assert_eq!(
        s.running.as_ref().unwrap().trace_endpoint.as_deref(),
        Some(format!("http://{collector}").as_str())
    );
    let client = |trace: Vec<(&'static str, &'static str)>| {
        AccessServiceClient::with_interceptor(
            s.channel.clone(),
            Headers {
                token: token.clone(),
                trace,
            },
        )
    };

    // In the caller's trace.
    let mut request = guest("g1", &["room-101"], T0, T0 + DAY, "stay-1");
    request.modes.push(pb::CredentialMode::Pin as i32);
    request.pin = "48271953".into();
    let key = client(vec![
        ("traceparent", TRACEPARENT),
        ("tracestate", TRACESTATE),
    ])
    .issue(request)
    .await
    .unwrap()
    .into_inner()
    .key
    .unwrap();
    let secrets = [token.clone(), card(&key), pin(&key)];
    // A new trace, and a call that fails.
    let missing = client(vec![])
        .get_key(pb::GetKeyRequest {
            property_id: PROPERTY.into(),
            key_id: "no-such-key".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    // A malformed traceparent is ignored: a new trace, and the call is
    // served as any other.
    client(vec![("traceparent", "00-not-a-trace-01")])
        .list_keys(pb::ListKeysRequest {
            property_id: PROPERTY.into(),
            ..Default::default()
        })
        .await
        .unwrap();

    let mut spans = Vec::new();
    let mut exported = Vec::new();
    let mut wanted = ["Issue", "GetKey", "ListKeys"]
        .map(|m| format!("keysmith.v1.AccessService/{m}"))
        .to_vec();
    wanted.push("offline-lock issue".into());
    while !wanted
        .iter()
        .all(|w| spans.iter().any(|s: &Span| &s.name == w))
    {
        let export = tokio::time::timeout(WAIT, exports.recv())
            .await
            .unwrap_or_else(|_| panic!("no spans for {wanted:?} within {WAIT:?}: {spans:#?}"))
            .expect("the receiver is running");
        exported.extend(export.encode_to_vec());
        for resource in &export.resource_spans {
            let service = resource
                .resource
                .as_ref()
                .and_then(|r| r.attributes.iter().find(|a| a.key == "service.name"))
                .and_then(|a| a.value.as_ref())
                .and_then(|v| v.value.clone());
            assert_eq!(
                service,
                Some(Value::StringValue("keysmith-under-test".into()))
            );
            for scope in &resource.scope_spans {
                spans.extend(scope.spans.iter().cloned());
            }
        }
    }
    let span = |name: &str| {
        let found: Vec<&Span> = spans
            .iter()
            .filter(|s| s.name == format!("keysmith.v1.AccessService/{name}"))
            .collect();
        assert_eq!(found.len(), 1, "one span for {name}: {spans:#?}");
        found[0].clone()
    };

    let issue = span("Issue");
    assert_eq!(hex(&issue.trace_id), TRACE_ID, "the caller's trace goes on");
    assert_eq!(hex(&issue.parent_span_id), PARENT_SPAN_ID);
    assert_eq!(issue.trace_state, TRACESTATE);
    assert_eq!(issue.kind, SpanKind::Server as i32);
    assert_eq!(string(&issue, "rpc.system"), "grpc");
    assert_eq!(string(&issue, "rpc.service"), "keysmith.v1.AccessService");
    assert_eq!(string(&issue, "rpc.method"), "Issue");
    assert_eq!(int(&issue, "rpc.grpc.status_code"), 0);
    assert_eq!(string(&issue, "keysmith.caller_id"), "front-desk");
    assert_eq!(string(&issue, "keysmith.property_id"), PROPERTY);
    assert_ne!(
        issue.status.as_ref().map(|s| s.code),
        Some(StatusCode::Error as i32)
    );

    // The driver call made for it is its child.
    let driver: Vec<&Span> = spans
        .iter()
        .filter(|s| s.name == "offline-lock issue")
        .collect();
    assert_eq!(driver.len(), 1, "one driver call: {spans:#?}");
    let driver = driver[0];
    assert_eq!(driver.trace_id, issue.trace_id);
    assert_eq!(driver.parent_span_id, issue.span_id);
    assert_eq!(driver.kind, SpanKind::Internal as i32);
    assert_eq!(string(driver, "keysmith.driver"), "offline-lock");
    assert_eq!(string(driver, "keysmith.driver.operation"), "issue");
    assert_eq!(string(driver, "keysmith.driver.outcome"), "ok");

    let get = span("GetKey");
    assert_ne!(hex(&get.trace_id), TRACE_ID);
    assert!(get.parent_span_id.is_empty(), "a new trace: {get:#?}");
    assert_eq!(get.kind, SpanKind::Server as i32);
    assert_eq!(string(&get, "rpc.method"), "GetKey");
    assert_eq!(int(&get, "rpc.grpc.status_code"), Code::NotFound as i64);
    let status = get.status.clone().expect("a status");
    assert_eq!(status.code, StatusCode::Error as i32);
    assert_eq!(status.message, "NOT_FOUND");
    assert_eq!(string(&get, "keysmith.caller_id"), "front-desk");

    let list = span("ListKeys");
    assert!(list.parent_span_id.is_empty(), "a new trace: {list:#?}");
    assert_eq!(list.trace_id.len(), 16);
    assert_ne!(list.trace_id, get.trace_id);
    assert_eq!(int(&list, "rpc.grpc.status_code"), 0);

    // Nothing secret in anything exported: not the token, not the card
    // data, not the PIN.
    for secret in &secrets {
        assert!(
            !contains(&exported, secret.as_bytes()),
            "a secret was exported"
        );
    }
    s.running.take().unwrap().stop().await.unwrap();
}

#[tokio::test]
async fn with_export_off_nothing_is_exported() {
    let (collector, mut exports, connections) = receiver().await;
    let mut s = TestServer::start_with(|c| {
        assert!(!c.tracing.enabled, "off by default");
        // Pointed at the receiver, so that a span sent despite the switch
        // would arrive.
        c.tracing.endpoint = format!("http://{collector}");
        c.tracing.batch_delay_ms = 50;
    })
    .await;
    assert_eq!(s.running.as_ref().unwrap().trace_endpoint, None);
    let mut client = s.client.clone();
    let mut request = Request::new(guest("g1", &["room-101"], T0, T0 + DAY, "stay-1"));
    request
        .metadata_mut()
        .insert("traceparent", MetadataValue::from_static(TRACEPARENT));
    client.issue(request).await.unwrap();
    s.get("no-such-key").await.unwrap_err();
    // Stopping flushes whatever an exporter would hold.
    s.running.take().unwrap().stop().await.unwrap();
    assert!(exports.try_recv().is_err(), "nothing was exported");
    assert_eq!(
        connections.load(Ordering::SeqCst),
        0,
        "nothing connected to the collector"
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
