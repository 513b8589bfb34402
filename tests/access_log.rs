//! The access log: one JSON line per call under the target
//! `keysmith::access`, with the method, the code, the latency, the caller's
//! token id and the property, and never the token.
mod common;

use std::{
    io::Write,
    sync::{Arc, Mutex},
};

use common::{guest, TestServer, DAY, PROPERTY, T0};
use keysmith_api::v1::{self as pb, access_service_client::AccessServiceClient};
use keysmith_server::{
    auth::{generate_token, hash_token},
    config::{AuthConfig, AuthMode, ReflectionAccess, TokenConfig},
};
use serde_json::Value;
use tonic::{metadata::MetadataValue, service::Interceptor, Code, Request, Status};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[derive(Clone)]
struct Bearer(Option<String>);

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(t) = &self.0 {
            let value: MetadataValue<_> = format!("Bearer {t}").parse().unwrap();
            request.metadata_mut().insert("authorization", value);
        }
        Ok(request)
    }
}

#[tokio::test]
async fn every_call_is_one_line_with_method_code_latency_caller_and_property() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || writer.clone())
        .init();

    let token = generate_token();
    let front_desk = TokenConfig {
        id: "front-desk".into(),
        sha256: hash_token(&token),
        properties: vec![PROPERTY.into()],
        scopes: vec!["keys.issue".into(), "keys.read".into()],
        max_in_flight: 64,
        requests_per_minute: None,
    };
    let mut s = TestServer::start_with(|c| {
        c.auth = AuthConfig {
            mode: AuthMode::Tokens,
            reflection: ReflectionAccess::Open,
            max_failures_per_minute: 10,
            tokens: vec![front_desk],
        };
    })
    .await;
    let mut client =
        AccessServiceClient::with_interceptor(s.channel.clone(), Bearer(Some(token.clone())));
    client
        .issue(guest("g1", &["room-101"], T0, T0 + DAY, "stay-1"))
        .await
        .unwrap();
    // A scope the token lacks: refused, yet the caller is known.
    let denied = client
        .revoke(pb::RevokeRequest {
            property_id: PROPERTY.into(),
            request_id: String::new(),
            target: Some(pb::revoke_request::Target::ReservationKey("stay-1".into())),
        })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    // No token at all.
    let anonymous = AccessServiceClient::with_interceptor(s.channel.clone(), Bearer(None))
        .list_keys(pb::ListKeysRequest {
            property_id: PROPERTY.into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated);
    drop(client);
    // Stopping waits for every call to have ended, and so to be logged.
    s.running.take().unwrap().stop().await.unwrap();

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(!logs.contains(&token), "the token never reaches the logs");
    let lines: Vec<Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["target"] == "keysmith::access")
        .collect();
    let line = |method: &str| {
        let found: Vec<&Value> = lines
            .iter()
            .filter(|l| l["method"] == format!("keysmith.v1.AccessService/{method}"))
            .collect();
        assert_eq!(found.len(), 1, "one line for {method}: {lines:#?}");
        found[0].clone()
    };

    let issue = line("Issue");
    assert_eq!(issue["level"], "INFO");
    assert_eq!(issue["code"], "OK");
    assert_eq!(issue["caller"], "front-desk");
    assert_eq!(issue["property"], PROPERTY);
    assert!(issue["latency_ms"].as_f64().unwrap() >= 0.0);

    let revoke = line("Revoke");
    assert_eq!(revoke["code"], "PERMISSION_DENIED");
    assert_eq!(revoke["caller"], "front-desk");

    let list = line("ListKeys");
    assert_eq!(list["code"], "UNAUTHENTICATED");
    assert_eq!(list["caller"], "-");
    assert!(list.get("property").is_none(), "the request was never read");
}
