//! Connections cannot exhaust the server: connections that never send a
//! request are closed, those that stay without a call are sent away
//! (GOAWAY) so that no call is lost with them, the connection limits refuse
//! connections past them and take new ones once others close, a token is
//! not locked out by its own unfinished requests, and health checks answer
//! while the calls of a token are held at its limit.
//!
//! Every test runs on loopback, with timeouts of a fraction of a second,
//! and waits on the event itself (the server closing the connection, an
//! answer); `GUARD` only stops a test that would otherwise hang.
mod common;

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use async_trait::async_trait;
use bytes::Bytes;
use common::*;
use keysmith_api::v1 as pb;
use keysmith_core::{
    driver::{EncodeArgs, EncodeReply, IssueArgs, IssueReply, RevokeArgs, RevokeReply},
    driver::{UpdateArgs, UpdateReply},
    service::SystemClock,
    Driver, DriverInfo, EntranceSpec,
};
use keysmith_server::{
    auth::{generate_token, hash_token},
    config::{AuthMode, TlsConfig, TokenConfig},
    Config, Running,
};
use prost::Message;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
    sync::Semaphore,
    task::JoinHandle,
};
use tonic::{Code, Status};

/// Stops a test that would hang; every event below takes well under a
/// second.
const GUARD: Duration = Duration::from_secs(20);
const HEALTH_CHECK: &str = "/grpc.health.v1.Health/Check";
const LIST_KEYS: &str = "/keysmith.v1.AccessService/ListKeys";

/// A server of the embedded default, changed by `edit`, with `extra`
/// drivers, and no connection of its own.
async fn start(
    edit: impl FnOnce(&mut Config),
    extra: Vec<Arc<dyn Driver>>,
) -> (Running, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    // Long enough never to end a test's call by itself.
    c.server.request_timeout_seconds = 600;
    edit(&mut c);
    let running = keysmith_server::start_with_drivers(c, Arc::new(SystemClock), extra)
        .await
        .expect("server starts");
    (running, dir)
}

/// A TCP connection from `local` (any address of 127.0.0.0/8).
async fn tcp_from(local: &str, server: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(local.parse::<IpAddr>().unwrap(), 0))
        .unwrap();
    socket.connect(server).await.unwrap()
}

/// Resolves once the server has closed the connection (the end of the
/// stream, or a reset), reading and dropping whatever it sent before.
async fn closed_by_server(stream: &mut TcpStream) {
    let mut buf = [0u8; 4096];
    tokio::time::timeout(GUARD, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await
    .expect("the server closes the connection");
}

/// An HTTP/2 connection made by hand, to send requests that tonic's client
/// would not (headers without the end of their body).
struct H2 {
    client: h2::client::SendRequest<Bytes>,
    /// Ends when the connection does.
    connection: JoinHandle<Result<(), h2::Error>>,
}

impl H2 {
    async fn connect(local: &str, server: SocketAddr) -> Self {
        let (client, connection) = h2::client::handshake(tcp_from(local, server).await)
            .await
            .expect("HTTP/2 handshake");
        Self {
            client,
            connection: tokio::spawn(connection),
        }
    }

    /// Starts a gRPC call: its headers and `body`, ending the request only
    /// if `end`.
    async fn start(
        &mut self,
        path: &str,
        token: Option<&str>,
        body: Bytes,
        end: bool,
    ) -> (h2::client::ResponseFuture, h2::SendStream<Bytes>) {
        let mut request = http::Request::post(format!("http://keysmith{path}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers");
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let mut client = self.client.clone().ready().await.expect("a stream");
        let (response, mut send) = client
            .send_request(request.body(()).unwrap(), false)
            .expect("the request is sent");
        send.send_data(body, end).expect("the body is sent");
        (response, send)
    }

    /// A whole unary call; its status.
    async fn call(&mut self, path: &str, token: Option<&str>, message: Bytes) -> Status {
        let (response, _send) = self.start(path, token, grpc_frame(message), true).await;
        tokio::time::timeout(GUARD, answer(response))
            .await
            .expect("an answer")
    }

    async fn health_check(&mut self) -> Status {
        self.call(HEALTH_CHECK, None, Bytes::new()).await
    }

    /// A health check that may be refused: the error the client got, if it
    /// got no answer.
    async fn try_health_check(&mut self) -> Result<Status, h2::Error> {
        let request = http::Request::post(format!("http://keysmith{HEALTH_CHECK}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .unwrap();
        let mut client = self.client.clone().ready().await?;
        let (response, mut send) = client.send_request(request, false)?;
        send.send_data(grpc_frame(Bytes::new()), true)?;
        let response = tokio::time::timeout(GUARD, response)
            .await
            .expect("an answer")?;
        if let Some(status) = Status::from_header_map(response.headers()) {
            return Ok(status);
        }
        let mut body = response.into_body();
        while let Some(chunk) = body.data().await {
            let _ = body.flow_control().release_capacity(chunk?.len());
        }
        let trailers = body.trailers().await?.expect("trailers");
        Ok(Status::from_header_map(&trailers).expect("a grpc-status"))
    }

    /// Closes the connection from the client's side.
    fn close(self) {
        self.connection.abort();
    }
}

/// The gRPC status of an answer, from its trailers (or its headers, for an
/// answer without a body).
async fn answer(response: h2::client::ResponseFuture) -> Status {
    let response = response.await.expect("response headers");
    if let Some(status) = Status::from_header_map(response.headers()) {
        return status;
    }
    let mut body = response.into_body();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.expect("the answer's body");
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    let trailers = body.trailers().await.expect("trailers").expect("trailers");
    Status::from_header_map(&trailers).expect("a grpc-status")
}

/// One uncompressed gRPC message frame.
fn grpc_frame(message: Bytes) -> Bytes {
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(&message);
    frame.into()
}

fn list_keys() -> Bytes {
    pb::ListKeysRequest {
        property_id: PROPERTY.into(),
        ..Default::default()
    }
    .encode_to_vec()
    .into()
}

fn quick_timeouts(c: &mut Config) {
    c.server.handshake_timeout_ms = 200;
    c.server.idle_timeout_ms = 200;
}

#[tokio::test]
async fn a_connection_that_sends_nothing_or_half_a_preface_is_closed() {
    let (running, _dir) = start(quick_timeouts, vec![]).await;
    let mut silent = tcp_from("127.0.0.1", running.addr).await;
    let mut half = tcp_from("127.0.0.1", running.addr).await;
    half.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    closed_by_server(&mut silent).await;
    closed_by_server(&mut half).await;
    running.stop().await.unwrap();
}

fn tls_fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tls")
        .join(name)
}

/// [`quick_timeouts`], served over TLS with the test certificate.
fn quick_timeouts_over_tls(c: &mut Config) {
    quick_timeouts(c);
    c.server.tls = Some(TlsConfig {
        cert: tls_fixture("server.pem"),
        key: tls_fixture("server.key"),
        client_ca: None,
    });
}

#[tokio::test]
async fn a_connection_that_never_finishes_its_tls_handshake_is_closed() {
    let (running, _dir) = start(quick_timeouts_over_tls, vec![]).await;
    let mut silent = tcp_from("127.0.0.1", running.addr).await;
    closed_by_server(&mut silent).await;
    running.stop().await.unwrap();
}

#[tokio::test]
async fn a_connection_without_a_call_for_the_idle_timeout_is_closed() {
    let (running, _dir) = start(quick_timeouts, vec![]).await;
    let mut h2 = H2::connect("127.0.0.1", running.addr).await;
    assert_eq!(h2.health_check().await.code(), Code::Ok);
    // The client keeps the connection; the server ends it.
    let ended = tokio::time::timeout(GUARD, h2.connection).await;
    assert!(ended.is_ok(), "the server closes the idle connection");
    running.stop().await.unwrap();
}

/// An idle connection that finished its HTTP/2 handshake is told to go
/// (GOAWAY) before it is closed: its client then knows that the server saw
/// none of the requests it sends from then on, and may send them again on
/// a new connection.
#[tokio::test]
async fn a_connection_without_a_call_for_the_idle_timeout_is_sent_away() {
    let (running, _dir) = start(quick_timeouts, vec![]).await;
    let mut h2 = H2::connect("127.0.0.1", running.addr).await;
    assert_eq!(h2.health_check().await.code(), Code::Ok);
    let ended = tokio::time::timeout(GUARD, &mut h2.connection)
        .await
        .expect("the server ends the idle connection");
    assert!(
        matches!(ended, Ok(Ok(()))),
        "a graceful end (GOAWAY), not an error: {ended:?}"
    );
    let refused = h2
        .try_health_check()
        .await
        .expect_err("no call on a connection sent away");
    assert!(
        refused.is_go_away() && refused.is_remote(),
        "refused by the server's GOAWAY: {refused:?}"
    );
    running.stop().await.unwrap();
}

/// A call sent as the idle timeout passes is either served or refused in a
/// way that says the server never saw it (the GOAWAY's last stream, or
/// REFUSED_STREAM), so that a gRPC client sends it again transparently;
/// never lost with a closed socket.
#[tokio::test]
async fn a_call_racing_the_idle_timeout_is_served_or_refused_for_a_retry() {
    let (running, _dir) = start(quick_timeouts, vec![]).await;
    let addr = running.addr;
    let racing = (0..20u64).map(|i| {
        tokio::spawn(async move {
            let mut h2 = H2::connect(&format!("127.0.0.{}", 10 + i), addr).await;
            assert_eq!(h2.health_check().await.code(), Code::Ok);
            // From 20 ms before the idle timeout (200 ms) to 20 ms after.
            tokio::time::sleep(Duration::from_millis(180 + 2 * i)).await;
            match h2.try_health_check().await {
                Ok(status) => assert_eq!(status.code(), Code::Ok, "served"),
                Err(refused) => assert!(
                    refused.is_go_away() || refused.reason() == Some(h2::Reason::REFUSED_STREAM),
                    "a call {}ms after the last one is refused for a retry, not lost: {refused:?}",
                    180 + 2 * i
                ),
            }
        })
    });
    for call in racing.collect::<Vec<_>>() {
        call.await.unwrap();
    }
    running.stop().await.unwrap();
}

/// The same over TLS: tonic's TLS is below each connection's HTTP/2.
#[tokio::test]
async fn a_tls_connection_without_a_call_for_the_idle_timeout_is_sent_away() {
    use tokio_rustls::rustls::{
        pki_types::{pem::PemObject, CertificateDer, ServerName},
        ClientConfig, RootCertStore,
    };
    let (running, _dir) = start(quick_timeouts_over_tls, vec![]).await;
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(tls_fixture("ca.pem")).unwrap())
        .unwrap();
    let mut tls = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tcp_from("127.0.0.1", running.addr).await;
    let stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake");
    let (client, connection) = h2::client::handshake(stream)
        .await
        .expect("HTTP/2 handshake");
    let mut h2 = H2 {
        client,
        connection: tokio::spawn(connection),
    };
    assert_eq!(h2.health_check().await.code(), Code::Ok);
    let ended = tokio::time::timeout(GUARD, &mut h2.connection)
        .await
        .expect("the server ends the idle connection");
    assert!(
        matches!(ended, Ok(Ok(()))),
        "a graceful end (GOAWAY), not an error: {ended:?}"
    );
    let refused = h2.try_health_check().await.expect_err("sent away");
    assert!(refused.is_go_away() && refused.is_remote(), "{refused:?}");
    running.stop().await.unwrap();
}

#[tokio::test]
async fn connections_past_the_limit_per_client_address_are_closed_until_one_closes() {
    let (running, _dir) = start(|c| c.server.max_connections_per_peer = 2, vec![]).await;
    let addr = running.addr;
    let mut first = H2::connect("127.0.0.1", addr).await;
    let mut second = H2::connect("127.0.0.1", addr).await;
    assert_eq!(first.health_check().await.code(), Code::Ok);
    assert_eq!(second.health_check().await.code(), Code::Ok);

    let mut third = tcp_from("127.0.0.1", addr).await;
    closed_by_server(&mut third).await;
    // Another client address has its own connections.
    let mut other = H2::connect("127.0.0.2", addr).await;
    assert_eq!(other.health_check().await.code(), Code::Ok);

    first.close();
    admitted_again("127.0.0.1", addr).await;
    running.stop().await.unwrap();
}

#[tokio::test]
async fn connections_past_the_overall_limit_are_closed_until_one_closes() {
    let (running, _dir) = start(|c| c.server.max_connections = 2, vec![]).await;
    let addr = running.addr;
    let mut first = H2::connect("127.0.0.1", addr).await;
    let mut second = H2::connect("127.0.0.2", addr).await;
    assert_eq!(first.health_check().await.code(), Code::Ok);
    assert_eq!(second.health_check().await.code(), Code::Ok);

    let mut third = tcp_from("127.0.0.3", addr).await;
    closed_by_server(&mut third).await;

    first.close();
    admitted_again("127.0.0.3", addr).await;
    running.stop().await.unwrap();
}

/// Waits until a connection from `local` is served again: the server
/// learns that a connection closed when it reads the end of it, a moment
/// after the client closed it.
async fn admitted_again(local: &str, addr: SocketAddr) {
    tokio::time::timeout(GUARD, async {
        loop {
            let stream = tcp_from(local, addr).await;
            if let Ok((client, connection)) = h2::client::handshake(stream).await {
                let connection = tokio::spawn(connection);
                let mut h2 = H2 { client, connection };
                let (response, _send) = h2
                    .start(HEALTH_CHECK, None, grpc_frame(Bytes::new()), true)
                    .await;
                if let Ok(response) = response.await {
                    assert_eq!(response.status(), http::StatusCode::OK);
                    return;
                }
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("a new connection is served once another closed");
}

/// A token with every scope for the demo hotel, `max_in_flight` at once.
fn secured(token: &str, max_in_flight: usize) -> impl FnOnce(&mut Config) {
    let hash = hash_token(token);
    move |c| {
        c.auth.mode = AuthMode::Tokens;
        c.auth.tokens = vec![TokenConfig {
            id: "front-desk".into(),
            sha256: hash,
            properties: vec![PROPERTY.into()],
            scopes: ["keys.issue", "keys.revoke", "keys.read", "keysmith.admin"]
                .map(String::from)
                .to_vec(),
            max_in_flight,
            requests_per_minute: None,
        }];
    }
}

#[tokio::test]
async fn unfinished_requests_do_not_lock_their_token_out() {
    let token = generate_token();
    let (running, _dir) = start(secured(&token, 2), vec![]).await;
    let mut h2 = H2::connect("127.0.0.1", running.addr).await;
    // Twice the token's max_in_flight: headers and half a message each,
    // never the end.
    let half = grpc_frame(list_keys()).slice(..3);
    let mut unfinished = Vec::new();
    for _ in 0..4 {
        unfinished.push(h2.start(LIST_KEYS, Some(&token), half.clone(), false).await);
    }
    let status = h2.call(LIST_KEYS, Some(&token), list_keys()).await;
    assert_eq!(status.code(), Code::Ok, "{status:?}");
    // Stopping waits for calls in flight: the unfinished ones end with
    // their connection.
    drop(unfinished);
    h2.close();
    running.stop().await.unwrap();
}

#[tokio::test]
async fn a_request_that_does_not_arrive_in_time_is_answered_deadline_exceeded() {
    let token = generate_token();
    let (running, _dir) = start(
        |c| {
            secured(&token, 2)(c);
            c.server.request_body_timeout_ms = 200;
        },
        vec![],
    )
    .await;
    let mut h2 = H2::connect("127.0.0.1", running.addr).await;
    let half = grpc_frame(list_keys()).slice(..3);
    let (response, _send) = h2.start(LIST_KEYS, Some(&token), half, false).await;
    let status = tokio::time::timeout(GUARD, answer(response))
        .await
        .expect("an answer before the request ends");
    assert_eq!(
        reason(&status),
        (Code::DeadlineExceeded, "REQUEST_BODY_TIMEOUT".into())
    );
    running.stop().await.unwrap();
}

/// A driver whose `issue` waits at a gate: the calls it holds stay in
/// flight until the test opens it.
struct Gated {
    inner: Arc<dyn Driver>,
    /// One permit per call that reached the gate.
    arrived: Arc<Semaphore>,
    gate: Arc<Semaphore>,
}

#[async_trait]
impl Driver for Gated {
    fn info(&self) -> DriverInfo {
        self.inner.info()
    }
    async fn entrances(&self) -> keysmith_core::Result<Vec<EntranceSpec>> {
        self.inner.entrances().await
    }
    async fn issue(&self, args: IssueArgs) -> keysmith_core::Result<IssueReply> {
        self.arrived.add_permits(1);
        let _passed = self.gate.acquire().await;
        self.inner.issue(args).await
    }
    async fn revoke(&self, args: RevokeArgs) -> keysmith_core::Result<RevokeReply> {
        self.inner.revoke(args).await
    }
    async fn update(&self, args: UpdateArgs) -> keysmith_core::Result<UpdateReply> {
        self.inner.update(args).await
    }
    async fn encode(&self, args: EncodeArgs) -> keysmith_core::Result<EncodeReply> {
        self.inner.encode(args).await
    }
}

fn gated_keypad() -> Gated {
    let config = serde_json::json!({
        "pin_length": 6,
        "properties": [{
            "property_id": PROPERTY,
            "doors": [{ "id": "garden-gate", "name": "Garden gate", "kind": "common" }],
        }],
    });
    let driver =
        keysmith_keypad_plugin::KeypadDriver::from_config(&serde_json::to_vec(&config).unwrap())
            .unwrap();
    Gated {
        inner: Arc::new(keysmith_plugin::InProcess::named("keypad", driver)),
        arrived: Arc::new(Semaphore::new(0)),
        gate: Arc::new(Semaphore::new(0)),
    }
}

fn garden_pin(holder: &str) -> Bytes {
    pb::IssueRequest {
        property_id: PROPERTY.into(),
        holder_id: holder.into(),
        entrance_ids: vec!["garden-gate".into()],
        starts_at: Some(ts(T0)),
        ends_at: Some(ts(T0 + DAY)),
        role: pb::Role::Guest as i32,
        modes: vec![pb::CredentialMode::Pin as i32],
        ..Default::default()
    }
    .encode_to_vec()
    .into()
}

const ISSUE: &str = "/keysmith.v1.AccessService/Issue";

/// Starts `n` Issues on `h2` with `token` and waits until each has reached
/// the gated driver, where it is held until the gate opens.
async fn hold_issues(
    h2: &mut H2,
    token: &str,
    arrived: &Semaphore,
    n: u32,
) -> Vec<tokio::task::JoinHandle<Status>> {
    let mut held = Vec::new();
    for i in 0..n {
        let body = grpc_frame(garden_pin(&format!("guest-{i}")));
        let (response, _send) = h2.start(ISSUE, Some(token), body, true).await;
        held.push(tokio::spawn(answer(response)));
    }
    let reached = tokio::time::timeout(GUARD, arrived.acquire_many(n)).await;
    reached
        .expect("the calls reach the driver")
        .unwrap()
        .forget();
    held
}

#[tokio::test]
async fn health_answers_while_a_tokens_calls_are_held_at_its_limit() {
    let token = generate_token();
    let gated = gated_keypad();
    let (arrived, gate) = (gated.arrived.clone(), gated.gate.clone());
    let (running, _dir) = start(secured(&token, 2), vec![Arc::new(gated)]).await;
    let mut h2 = H2::connect("127.0.0.1", running.addr).await;
    let held = hold_issues(&mut h2, &token, &arrived, 2).await;

    let third = h2.call(ISSUE, Some(&token), garden_pin("guest-2")).await;
    assert_eq!(
        reason(&third),
        (Code::ResourceExhausted, "TOKEN_CONCURRENCY_LIMITED".into())
    );
    assert_eq!(h2.health_check().await.code(), Code::Ok);
    let mut other = H2::connect("127.0.0.1", running.addr).await;
    assert_eq!(other.health_check().await.code(), Code::Ok);

    gate.add_permits(2);
    for call in held {
        let status = tokio::time::timeout(GUARD, call).await.unwrap().unwrap();
        assert_eq!(status.code(), Code::Ok, "{status:?}");
    }
    running.stop().await.unwrap();
}

/// Stopping tells every connection to go (GOAWAY) and waits for their
/// calls: a call in flight is answered, while a new one is refused in a
/// way its client may retry elsewhere.
#[tokio::test]
async fn a_call_in_flight_when_the_server_stops_is_answered() {
    let token = generate_token();
    let gated = gated_keypad();
    let (arrived, gate) = (gated.arrived.clone(), gated.gate.clone());
    let (running, _dir) = start(secured(&token, 2), vec![Arc::new(gated)]).await;
    let mut h2 = H2::connect("127.0.0.1", running.addr).await;
    let held = hold_issues(&mut h2, &token, &arrived, 1).await;

    let stopped = tokio::spawn(running.stop());
    let refused = tokio::time::timeout(GUARD, async {
        loop {
            match h2.try_health_check().await {
                Ok(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                Err(refused) => return refused,
            }
        }
    })
    .await
    .expect("new calls are refused once the server stops");
    assert!(refused.is_go_away(), "{refused:?}");
    assert!(
        !stopped.is_finished(),
        "the stop waits for the call in flight"
    );

    gate.add_permits(1);
    for call in held {
        let status = tokio::time::timeout(GUARD, call).await.unwrap().unwrap();
        assert_eq!(status.code(), Code::Ok, "{status:?}");
    }
    let stopped = tokio::time::timeout(GUARD, stopped).await;
    stopped.expect("the server stops").unwrap().unwrap();
}

const REFLECTION: &str = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo";

/// One reflection request: list the services.
fn list_services() -> Bytes {
    use tonic_reflection::pb::v1::{
        server_reflection_request::MessageRequest, ServerReflectionRequest,
    };
    ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    }
    .encode_to_vec()
    .into()
}

/// Server reflection is a stream both ways, so it is not read whole before
/// it is served; it is paced instead: a message begun (here, half a frame
/// header) must arrive within the request-body timeout, or the call ends.
/// Without that, the stream held its connection open for ever.
#[tokio::test]
async fn a_reflection_stream_with_half_a_message_is_ended() {
    let (running, _dir) = start(
        |c| {
            c.server.request_body_timeout_ms = 200;
        },
        vec![],
    )
    .await;
    let mut h2 = H2::connect("127.0.0.1", running.addr).await;
    let half = grpc_frame(list_services()).slice(..3);
    let (response, _send) = h2.start(REFLECTION, None, half, false).await;
    tokio::time::timeout(GUARD, answer(response))
        .await
        .expect("the call ends while its client holds the stream open");
    running.stop().await.unwrap();
}

/// A reflection stream that asked and was answered, then sends nothing, is
/// ended after the idle timeout, and then its connection is closed as idle:
/// an open reflection stream no longer keeps a connection from being idle.
#[tokio::test]
async fn a_reflection_stream_idle_between_messages_is_ended_and_its_connection_closed() {
    let (running, _dir) = start(quick_timeouts, vec![]).await;
    let mut h2 = H2::connect("127.0.0.1", running.addr).await;
    let (response, _send) = h2
        .start(REFLECTION, None, grpc_frame(list_services()), false)
        .await;
    let response = tokio::time::timeout(GUARD, response)
        .await
        .expect("response headers")
        .expect("response headers");
    let mut body = response.into_body();
    let first = tokio::time::timeout(GUARD, body.data())
        .await
        .expect("an answer to the first message")
        .expect("an answer")
        .expect("an answer");
    assert!(!first.is_empty());
    let _ = body.flow_control().release_capacity(first.len());
    // The client keeps its request stream open and sends nothing more.
    let trailers = tokio::time::timeout(GUARD, body.trailers())
        .await
        .expect("the call ends while its client holds the stream open")
        .expect("trailers")
        .expect("trailers");
    assert_eq!(
        Status::from_header_map(&trailers).map(|s| s.code()),
        Some(Code::Ok)
    );
    let ended = tokio::time::timeout(GUARD, h2.connection).await;
    assert!(ended.is_ok(), "the server closes the connection once idle");
    running.stop().await.unwrap();
}

/// With `max_connection_age_seconds`, a connection that reached its age is
/// asked to go (GOAWAY) and closed once its calls are done, although it is
/// far from idle-timed-out: clients reconnect, and spread over replicas.
#[tokio::test]
async fn a_connection_past_its_max_age_is_sent_away() {
    let (running, _dir) = start(|c| c.server.max_connection_age_seconds = 1, vec![]).await;
    let mut h2 = H2::connect("127.0.0.1", running.addr).await;
    assert_eq!(h2.health_check().await.code(), Code::Ok);
    let ended = tokio::time::timeout(GUARD, h2.connection)
        .await
        .expect("the server ends the connection at its age");
    assert!(
        matches!(ended, Ok(Ok(()))),
        "a graceful end (GOAWAY), not an error: {ended:?}"
    );
    running.stop().await.unwrap();
}
