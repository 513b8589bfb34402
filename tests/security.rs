//! Security through the real server: bearer tokens, scopes, property
//! isolation, redaction of credential data, the audit log, abuse limits,
//! the refusal to serve a network address without authentication, and TLS.
mod common;

use std::sync::Arc;

use common::*;
use keysmith_api::{
    sim::v1::{self as sim, lock_simulator_service_client::LockSimulatorServiceClient},
    v1::{
        self as pb, access_service_client::AccessServiceClient,
        audit_service_client::AuditServiceClient,
    },
};
use keysmith_server::{
    auth::{generate_token, hash_token},
    config::{AuthConfig, AuthMode, ReflectionAccess, TlsConfig, TokenConfig},
    Config, Source,
};
use tonic::{
    metadata::MetadataValue,
    service::{interceptor::InterceptedService, Interceptor},
    transport::{Certificate, Channel, ClientTlsConfig, Identity},
    Code, Request, Status,
};
use tonic_types::StatusExt;

const OTHER_PROPERTY: &str = "other-hotel";

/// The tokens of the tests, by role.
struct Tokens {
    /// Every scope, for the demo hotel.
    full: String,
    /// keys.read only (no secrets), for the demo hotel.
    reader: String,
    /// keys.read and keys.read_secrets.
    secret_reader: String,
    /// keys.issue only, for the demo hotel.
    issuer: String,
    /// Every scope, for another property.
    other: String,
}

fn token(id: &str, token: &str, properties: &[&str], scopes: &[&str]) -> TokenConfig {
    TokenConfig {
        id: id.into(),
        sha256: hash_token(token),
        properties: properties.iter().map(|s| s.to_string()).collect(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        max_in_flight: 64,
        requests_per_minute: None,
    }
}

const ALL_SCOPES: &[&str] = &[
    "keys.issue",
    "keys.revoke",
    "keys.read",
    "keys.read_secrets",
    "keysmith.admin",
];

fn tokens() -> (Tokens, Vec<TokenConfig>) {
    let t = Tokens {
        full: generate_token(),
        reader: generate_token(),
        secret_reader: generate_token(),
        issuer: generate_token(),
        other: generate_token(),
    };
    let configs = vec![
        token("full", &t.full, &[PROPERTY], ALL_SCOPES),
        token("reader", &t.reader, &[PROPERTY], &["keys.read"]),
        token(
            "secret-reader",
            &t.secret_reader,
            &[PROPERTY],
            &["keys.read", "keys.read_secrets"],
        ),
        token("issuer", &t.issuer, &[PROPERTY], &["keys.issue"]),
        token("other", &t.other, &[OTHER_PROPERTY], ALL_SCOPES),
    ];
    (t, configs)
}

fn secured(tokens: Vec<TokenConfig>, max_failures: u32) -> impl FnOnce(&mut Config) {
    move |c| {
        c.auth = AuthConfig {
            mode: AuthMode::Tokens,
            reflection: ReflectionAccess::Open,
            max_failures_per_minute: max_failures,
            tokens,
        };
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

fn access(
    s: &TestServer,
    token: Option<&str>,
) -> AccessServiceClient<InterceptedService<Channel, Bearer>> {
    let channel = s.channel.clone();
    AccessServiceClient::with_interceptor(channel, Bearer(token.map(str::to_owned)))
}

fn audit(
    s: &TestServer,
    token: Option<&str>,
) -> AuditServiceClient<InterceptedService<Channel, Bearer>> {
    AuditServiceClient::with_interceptor(s.channel.clone(), Bearer(token.map(str::to_owned)))
}

fn simulator(
    s: &TestServer,
    token: Option<&str>,
) -> LockSimulatorServiceClient<InterceptedService<Channel, Bearer>> {
    LockSimulatorServiceClient::with_interceptor(
        s.channel.clone(),
        Bearer(token.map(str::to_owned)),
    )
}

async fn issue_with(s: &TestServer, token: &str, holder: &str) -> pb::AccessKey {
    let mut req = guest(
        holder,
        &["room-101"],
        T0,
        T0 + DAY,
        &format!("stay-{holder}"),
    );
    req.modes = vec![pb::CredentialMode::Pin as i32];
    access(s, Some(token))
        .issue(req)
        .await
        .expect("issued")
        .into_inner()
        .key
        .unwrap()
}

/// Every RPC of AccessService, AuditService and the lock simulator, each
/// with the scope it needs.
const RPCS: &[(&str, &str)] = &[
    ("Issue", "keys.issue"),
    ("GetKey", "keys.read"),
    ("ListKeys", "keys.read"),
    ("WatchKeys", "keys.read"),
    ("RefreshKey", "keys.read"),
    ("UpdateKey", "keys.issue"),
    ("EncodeKey", "keys.issue"),
    ("ListEntrances", "keysmith.admin"),
    ("ListDrivers", "keysmith.admin"),
    ("ListDriverKeys", "keysmith.admin"),
    ("ListAuditRecords", "keysmith.admin"),
    ("Present", "keysmith.admin"),
    ("GetLockState", "keysmith.admin"),
    ("SetClockSkew", "keysmith.admin"),
    ("SetLockFlags", "keysmith.admin"),
    ("ListAuditEvents", "keysmith.admin"),
    ("Revoke", "keys.revoke"),
];

/// Calls one RPC about the demo hotel, on `key_id` where it needs a key.
async fn call(s: &TestServer, rpc: &str, token: Option<&str>, key_id: &str) -> Result<(), Status> {
    let p = || PROPERTY.to_owned();
    let k = || key_id.to_owned();
    let lock = |e: &str| (p(), e.to_owned());
    match rpc {
        "Issue" => {
            let mut req = guest("table-guest", &["room-102"], T0, T0 + DAY, "stay-table");
            req.modes = vec![pb::CredentialMode::Pin as i32];
            access(s, token).issue(req).await.map(drop)
        }
        "GetKey" => access(s, token)
            .get_key(pb::GetKeyRequest {
                property_id: p(),
                key_id: k(),
            })
            .await
            .map(drop),
        "ListKeys" => access(s, token)
            .list_keys(pb::ListKeysRequest {
                property_id: p(),
                ..Default::default()
            })
            .await
            .map(drop),
        "WatchKeys" => access(s, token)
            .watch_keys(pb::WatchKeysRequest {
                property_id: p(),
                ..Default::default()
            })
            .await
            .map(drop),
        "RefreshKey" => access(s, token)
            .refresh_key(pb::RefreshKeyRequest {
                property_id: p(),
                key_id: k(),
            })
            .await
            .map(drop),
        "UpdateKey" => access(s, token)
            .update_key(pb::UpdateKeyRequest {
                property_id: p(),
                key_id: k(),
                starts_at: Some(ts(T0)),
                ends_at: Some(ts(T0 + 2 * DAY)),
                ..Default::default()
            })
            .await
            .map(drop),
        "EncodeKey" => access(s, token)
            .encode_key(pb::EncodeKeyRequest {
                property_id: p(),
                key_id: k(),
                ..Default::default()
            })
            .await
            .map(drop),
        "ListEntrances" => access(s, token)
            .list_entrances(pb::ListEntrancesRequest {
                property_id: p(),
                refresh: false,
            })
            .await
            .map(drop),
        "ListDrivers" => access(s, token)
            .list_drivers(pb::ListDriversRequest {})
            .await
            .map(drop),
        "ListDriverKeys" => access(s, token)
            .list_driver_keys(pb::ListDriverKeysRequest {
                property_id: p(),
                driver: "offline-lock".into(),
                ..Default::default()
            })
            .await
            .map(drop),
        "ListAuditRecords" => audit(s, token)
            .list_audit_records(pb::ListAuditRecordsRequest {
                property_id: p(),
                ..Default::default()
            })
            .await
            .map(drop),
        "Present" => {
            let (property_id, entrance_id) = lock("room-101");
            simulator(s, token)
                .present(sim::PresentRequest {
                    property_id,
                    entrance_id,
                    credential_data: "000000".into(),
                    at: Some(ts(T0 + 60)),
                })
                .await
                .map(drop)
        }
        "GetLockState" => {
            let (property_id, entrance_id) = lock("room-101");
            simulator(s, token)
                .get_lock_state(sim::GetLockStateRequest {
                    property_id,
                    entrance_id,
                })
                .await
                .map(drop)
        }
        "SetClockSkew" => {
            let (property_id, entrance_id) = lock("room-201");
            simulator(s, token)
                .set_clock_skew(sim::SetClockSkewRequest {
                    property_id,
                    entrance_id,
                    skew_seconds: 0,
                })
                .await
                .map(drop)
        }
        "SetLockFlags" => {
            let (property_id, entrance_id) = lock("room-201");
            simulator(s, token)
                .set_lock_flags(sim::SetLockFlagsRequest {
                    property_id,
                    entrance_id,
                    ..Default::default()
                })
                .await
                .map(drop)
        }
        "ListAuditEvents" => {
            let (property_id, entrance_id) = lock("room-101");
            simulator(s, token)
                .list_audit_events(sim::ListAuditEventsRequest {
                    property_id,
                    entrance_id,
                })
                .await
                .map(drop)
        }
        "Revoke" => access(s, token)
            .revoke(pb::RevokeRequest {
                property_id: p(),
                request_id: String::new(),
                target: Some(pb::revoke_request::Target::KeyId(k())),
            })
            .await
            .map(drop),
        other => panic!("no call for {other}"),
    }
}

fn code_of(result: &Result<(), Status>) -> Code {
    match result {
        Ok(()) => Code::Ok,
        Err(s) => s.code(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_rpc_against_every_kind_of_caller() {
    let (t, configs) = tokens();
    let s = TestServer::start_with(secured(configs, 10_000)).await;
    let key = issue_with(&s, &t.full, "table-key").await;
    let wrong = generate_token();
    let mut failures = Vec::new();
    for &(rpc, scope) in RPCS {
        let unscoped = if scope == "keys.read" {
            &t.issuer
        } else {
            &t.reader
        };
        // A token for another property is refused as if the property did
        // not exist; drivers are global, so it may list them.
        let other_code = if rpc == "ListDrivers" {
            Code::Ok
        } else {
            Code::NotFound
        };
        let cases: [(&str, Option<&str>, Code); 5] = [
            ("no token", None, Code::Unauthenticated),
            ("wrong token", Some(&wrong), Code::Unauthenticated),
            (
                "token without the scope",
                Some(unscoped),
                Code::PermissionDenied,
            ),
            ("token for another property", Some(&t.other), other_code),
            (
                "right token",
                Some(&t.full),
                // EncodeKey comes after UpdateKey, which made the card
                // need re-encoding. The offline lock keeps no list of keys.
                if rpc == "ListDriverKeys" {
                    Code::FailedPrecondition
                } else {
                    Code::Ok
                },
            ),
        ];
        for (who, token, expected) in cases {
            let result = call(&s, rpc, token, &key.key_id).await;
            let got = code_of(&result);
            if got != expected {
                failures.push(format!(
                    "{rpc} with {who}: expected {expected:?}, got {result:?}"
                ));
                continue;
            }
            if let Err(status) = &result {
                let (_, why) = reason(status);
                let expected_reason = match (expected, who) {
                    (Code::Unauthenticated, "no token") => Some("TOKEN_MISSING"),
                    (Code::Unauthenticated, _) => Some("TOKEN_INVALID"),
                    (Code::PermissionDenied, _) => Some("SCOPE_MISSING"),
                    (Code::NotFound, _) => Some("PROPERTY_NOT_FOUND"),
                    _ => None,
                };
                if let Some(r) = expected_reason {
                    if why != r {
                        failures.push(format!("{rpc} with {who}: reason {why}, expected {r}"));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Health stays open.
    let mut health = tonic_health::pb::health_client::HealthClient::new(s.channel.clone());
    let served = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health needs no token");
    assert_eq!(served.into_inner().status, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn another_property_cannot_see_or_touch_a_key_and_changes_nothing() {
    let (t, configs) = tokens();
    let s = TestServer::start_with(secured(configs, 10_000)).await;
    let key = issue_with(&s, &t.full, "isolated").await;
    let other = access(&s, Some(&t.other));
    // The key exists, yet the other property's token learns nothing: the
    // same answer as for a key that does not exist.
    let existing = other
        .clone()
        .get_key(pb::GetKeyRequest {
            property_id: PROPERTY.into(),
            key_id: key.key_id.clone(),
        })
        .await
        .unwrap_err();
    let missing = other
        .clone()
        .get_key(pb::GetKeyRequest {
            property_id: PROPERTY.into(),
            key_id: "01HZZZZZZZZZZZZZZZZZZZZZZZ".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&existing), reason(&missing));
    assert_eq!(existing.message(), missing.message());
    let revoke = other
        .clone()
        .revoke(pb::RevokeRequest {
            property_id: PROPERTY.into(),
            request_id: String::new(),
            target: Some(pb::revoke_request::Target::KeyId(key.key_id.clone())),
        })
        .await
        .unwrap_err();
    assert_eq!(revoke.code(), Code::NotFound);
    let listed = other
        .clone()
        .list_keys(pb::ListKeysRequest {
            property_id: PROPERTY.into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        reason(&listed),
        (Code::NotFound, "PROPERTY_NOT_FOUND".into())
    );
    let still = access(&s, Some(&t.full))
        .get_key(pb::GetKeyRequest {
            property_id: PROPERTY.into(),
            key_id: key.key_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        still.state,
        pb::KeyState::Active as i32,
        "the refused revoke changed nothing"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_are_withheld_without_read_secrets_and_secret_reads_are_audited() {
    let (t, configs) = tokens();
    let s = TestServer::start_with(secured(configs, 10_000)).await;
    let key = issue_with(&s, &t.full, "secretive").await;
    let pin = pin(&key);
    let get = |token: String| {
        let s = &s;
        let id = key.key_id.clone();
        async move {
            access(s, Some(&token))
                .get_key(pb::GetKeyRequest {
                    property_id: PROPERTY.into(),
                    key_id: id,
                })
                .await
                .unwrap()
                .into_inner()
        }
    };
    let redacted = get(t.reader.clone()).await;
    assert!(!redacted.credentials.is_empty());
    for c in &redacted.credentials {
        assert!(c.data.is_none() && c.data_redacted, "{c:?}");
    }
    let listed = access(&s, Some(&t.reader))
        .list_keys(pb::ListKeysRequest {
            property_id: PROPERTY.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(listed
        .keys
        .iter()
        .flat_map(|k| &k.credentials)
        .all(|c| c.data.is_none()));
    // An issuer without keys.read_secrets does not see the PIN it issued.
    let mut req = guest("issued-blind", &["room-102"], T0, T0 + DAY, "stay-blind");
    req.modes = vec![pb::CredentialMode::Pin as i32];
    let blind = access(&s, Some(&t.issuer))
        .issue(req)
        .await
        .unwrap()
        .into_inner()
        .key
        .unwrap();
    assert!(blind
        .credentials
        .iter()
        .all(|c| c.data.is_none() && c.data_redacted));

    let seen = get(t.secret_reader.clone()).await;
    assert_eq!(common::pin(&seen), pin);

    // A page keeps one encoding per audience: the secret reader's listing
    // carries the PIN, and the reader's next one still does not.
    let list = |token: String| {
        let s = &s;
        async move {
            access(s, Some(&token))
                .list_keys(pb::ListKeysRequest {
                    property_id: PROPERTY.into(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .keys
        }
    };
    let with_secrets = list(t.secret_reader.clone()).await;
    let listed_key = with_secrets
        .iter()
        .find(|k| k.key_id == key.key_id)
        .unwrap();
    assert_eq!(common::pin(listed_key), pin);
    assert!(list(t.reader.clone())
        .await
        .iter()
        .flat_map(|k| &k.credentials)
        .all(|c| c.data.is_none() && c.data_redacted));

    let records = audit(&s, Some(&t.full))
        .list_audit_records(pb::ListAuditRecordsRequest {
            property_id: PROPERTY.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .records;
    let summary: Vec<(String, String, bool)> = records
        .iter()
        .map(|r| (r.action.clone(), r.token_id.clone(), r.secrets_returned))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("Issue".into(), "full".into(), true),
            ("Issue".into(), "issuer".into(), false),
            ("GetKey".into(), "secret-reader".into(), true),
            ("ListKeys".into(), "secret-reader".into(), true),
        ],
        "redacted reads are not secret reads"
    );
    let first = &records[0];
    assert_eq!(first.key_ids, vec![key.key_id.clone()]);
    assert_eq!(first.outcome, "OK");
    assert!(first.peer.starts_with("127.0.0.1:"), "{}", first.peer);
    assert_eq!(first.time.as_ref().unwrap().seconds, T0);
    let mut listed_ids: Vec<String> = with_secrets.into_iter().map(|k| k.key_id).collect();
    let mut recorded = records[3].key_ids.clone();
    listed_ids.sort();
    recorded.sort();
    assert_eq!(
        recorded, listed_ids,
        "the secret listing records every key it returned"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_audit_log_records_refusals_pages_and_survives_a_restart() {
    let s = TestServer::start().await;
    let key = s
        .issue(guest(
            "audited",
            &["room-101"],
            T0,
            T0 + DAY,
            "stay-audited",
        ))
        .await
        .unwrap();
    let mut wrong = guest("audited", &["room-101"], T0 + DAY, T0, "");
    wrong.request_id = String::new();
    s.issue(wrong).await.unwrap_err();
    s.client
        .clone()
        .update_key(pb::UpdateKeyRequest {
            property_id: PROPERTY.into(),
            key_id: key.key_id.clone(),
            starts_at: Some(ts(T0)),
            ends_at: Some(ts(T0 + 2 * DAY)),
            ..Default::default()
        })
        .await
        .unwrap();
    s.revoke_key(&key.key_id).await.unwrap();
    let s = s.restart().await;
    let mut client = AuditServiceClient::new(s.channel.clone());
    let mut pages = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_audit_records(pb::ListAuditRecordsRequest {
                property_id: PROPERTY.into(),
                page_size: 1,
                page_token: token,
            })
            .await
            .unwrap()
            .into_inner();
        pages.extend(page.records);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let actions: Vec<(&str, &str, &str)> = pages
        .iter()
        .map(|r| (r.action.as_str(), r.outcome.as_str(), r.reason.as_str()))
        .collect();
    assert_eq!(
        actions,
        vec![
            ("Issue", "OK", ""),
            ("Issue", "INVALID_ARGUMENT", "INVALID_TIME_WINDOW"),
            ("UpdateKey", "OK", ""),
            ("Revoke", "OK", ""),
        ]
    );
    assert!(pages.iter().all(|r| r.token_id == "development"));
}

#[tokio::test(flavor = "multi_thread")]
async fn page_tokens_cannot_be_replayed_by_another_token() {
    let (t, configs) = tokens();
    let s = TestServer::start_with(secured(configs, 10_000)).await;
    for i in 0..3 {
        issue_with(&s, &t.full, &format!("paged-{i}")).await;
    }
    let first = access(&s, Some(&t.full))
        .list_keys(pb::ListKeysRequest {
            property_id: PROPERTY.into(),
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!first.next_page_token.is_empty());
    let replay = access(&s, Some(&t.reader))
        .list_keys(pb::ListKeysRequest {
            property_id: PROPERTY.into(),
            page_size: 1,
            page_token: first.next_page_token.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        reason(&replay),
        (Code::InvalidArgument, "INVALID_PAGE_TOKEN".into())
    );
    let own = access(&s, Some(&t.full))
        .list_keys(pb::ListKeysRequest {
            property_id: PROPERTY.into(),
            page_size: 1,
            page_token: first.next_page_token,
            ..Default::default()
        })
        .await;
    assert!(own.is_ok());
}

#[tokio::test(flavor = "multi_thread")]
async fn repeated_authentication_failures_are_refused_for_a_while() {
    let (t, configs) = tokens();
    let s = TestServer::start_with(secured(configs, 3)).await;
    let wrong = generate_token();
    for _ in 0..3 {
        let err = call(&s, "ListKeys", Some(&wrong), "").await.unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated);
    }
    // From now on the address is refused, even with a good token.
    let err = call(&s, "ListKeys", Some(&t.full), "").await.unwrap_err();
    assert_eq!(
        reason(&err),
        (Code::ResourceExhausted, "AUTH_RATE_LIMITED".into())
    );
    assert!(err.get_error_details().retry_info().is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_past_its_rate_is_refused() {
    let limited = generate_token();
    let mut config = token("limited", &limited, &[PROPERTY], &["keys.read"]);
    config.requests_per_minute = Some(2);
    let s = TestServer::start_with(secured(vec![config], 10)).await;
    for _ in 0..2 {
        call(&s, "ListKeys", Some(&limited), "").await.unwrap();
    }
    let err = call(&s, "ListKeys", Some(&limited), "").await.unwrap_err();
    assert_eq!(
        reason(&err),
        (Code::ResourceExhausted, "TOKEN_RATE_LIMITED".into())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_request_is_refused_and_changes_nothing() {
    let s = TestServer::start_with(|c| c.server.max_request_bytes = 4096).await;
    let mut req = guest("big", &["room-101"], T0, T0 + DAY, "stay-big");
    req.holder_name = "x".repeat(8192);
    let err = s.issue(req).await.unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange, "{err:?}");
    let listed = s
        .list(pb::ListKeysRequest {
            property_id: PROPERTY.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(listed.keys.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn reflection_can_require_a_token() {
    use tonic_reflection::pb::v1::{
        server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, ServerReflectionRequest,
    };
    let (t, configs) = tokens();
    let s = TestServer::start_with(move |c| {
        secured(configs, 100)(c);
        c.auth.reflection = ReflectionAccess::Authenticated;
    })
    .await;
    let ask = |token: Option<String>| {
        let channel = s.channel.clone();
        async move {
            let mut client = ServerReflectionClient::with_interceptor(channel, Bearer(token));
            let request = ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::ListServices(String::new())),
            };
            client
                .server_reflection_info(tokio_stream::iter([request]))
                .await
                .map(drop)
        }
    };
    assert_eq!(ask(None).await.unwrap_err().code(), Code::Unauthenticated);
    // Any valid token will do, whatever its scopes.
    ask(Some(t.reader.clone())).await.unwrap();
}

#[test]
fn development_mode_refuses_a_network_address_and_says_how_to_fix_it() {
    let text = keysmith_server::config::DEFAULT_CONFIG.replace("127.0.0.1:50051", "0.0.0.0:50051");
    let err = Config::load_with_env(Source::Text(&text), false)
        .unwrap_err()
        .to_string();
    for needed in [
        "refusing",
        "0.0.0.0:50051",
        "without authentication",
        "127.0.0.1",
        "auth.mode = \"tokens\"",
        "keysmith token create",
    ] {
        assert!(err.contains(needed), "{needed:?} missing from: {err}");
    }
    // Tokens mode with no token is refused too, with the way out.
    let text = keysmith_server::config::DEFAULT_CONFIG
        .replace("mode = \"development\"", "mode = \"tokens\"");
    let err = Config::load_with_env(Source::Text(&text), false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no [[auth.tokens]]"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn start_refuses_a_network_address_without_authentication() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.server.listen = "0.0.0.0:0".parse().unwrap();
    let err = keysmith_server::start(c)
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("without authentication"), "{err}");
}

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tls")
        .join(name)
}

/// `cert` is a fixture's name: "server" (signed by the test CA) or
/// "self-signed".
async fn tls_server(cert: &str, client_ca: bool) -> (keysmith_server::Running, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.server.tls = Some(TlsConfig {
        cert: fixture(&format!("{cert}.pem")),
        key: fixture(&format!("{cert}.key")),
        client_ca: client_ca.then(|| fixture("ca.pem")),
    });
    let clock = Arc::new(TestClock::new(T0));
    let running = keysmith_server::start_with_clock(c, clock)
        .await
        .expect("starts with TLS");
    (running, dir)
}

/// A client that trusts only `anchor` (a fixture's name).
async fn tls_channel(
    addr: std::net::SocketAddr,
    anchor: &str,
    identity: bool,
) -> Result<Channel, String> {
    let ca = Certificate::from_pem(std::fs::read(fixture(&format!("{anchor}.pem"))).unwrap());
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(ca)
        .domain_name("localhost");
    if identity {
        tls = tls.identity(Identity::from_pem(
            std::fs::read(fixture("client.pem")).unwrap(),
            std::fs::read(fixture("client.key")).unwrap(),
        ));
    }
    Channel::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| e.to_string())
}

async fn list_drivers(channel: Channel) -> Result<(), Status> {
    AccessServiceClient::new(channel)
        .list_drivers(pb::ListDriversRequest {})
        .await
        .map(drop)
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_serves_a_client_that_verifies_a_self_signed_certificate() {
    let (running, _dir) = tls_server("self-signed", false).await;
    let channel = tls_channel(running.addr, "self-signed", false)
        .await
        .expect("TLS handshake");
    list_drivers(channel).await.expect("a call over TLS");
    // A client that trusts another certificate refuses the server.
    match tls_channel(running.addr, "ca", false).await {
        Err(_) => {}
        Ok(channel) => assert!(list_drivers(channel).await.is_err(), "unverified server"),
    }
    // A plaintext client gets nowhere.
    let plain = Channel::from_shared(format!("http://{}", running.addr))
        .unwrap()
        .connect()
        .await;
    match plain {
        Err(_) => {}
        Ok(channel) => assert!(list_drivers(channel).await.is_err()),
    }
    running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn mutual_tls_requires_a_client_certificate() {
    let (running, _dir) = tls_server("server", true).await;
    let with = tls_channel(running.addr, "ca", true)
        .await
        .expect("handshake with a certificate");
    list_drivers(with)
        .await
        .expect("a call with a client certificate");
    match tls_channel(running.addr, "ca", false).await {
        Err(_) => {}
        Ok(channel) => assert!(
            list_drivers(channel).await.is_err(),
            "no certificate, no call"
        ),
    }
    running.stop().await.unwrap();
}
