//! WatchKeys through the real server: changes in order as ListKeys shows
//! them, filters, resuming after a disconnect and after a restart with
//! nothing lost or repeated, expired and foreign resume tokens, expiry
//! events from the sweeper, and a watcher that never reads.
mod common;

use common::*;
use keysmith_api::v1::{self as pb, access_service_client::AccessServiceClient};
use keysmith_core::changes::ResumeToken;
use tonic::{transport::Channel, Code, Streaming};
use tonic_types::StatusExt;

use pb::KeyEventType as Event;

fn request(resume_token: &str) -> pb::WatchKeysRequest {
    pb::WatchKeysRequest {
        property_id: PROPERTY.into(),
        resume_token: resume_token.into(),
        ..Default::default()
    }
}

/// Starts a watch and reads its first message; the stream and the token
/// it starts from.
async fn watch(
    client: &AccessServiceClient<Channel>,
    req: pb::WatchKeysRequest,
) -> (Streaming<pb::WatchKeysResponse>, String) {
    let mut stream = client
        .clone()
        .watch_keys(req)
        .await
        .expect("watching")
        .into_inner();
    let first = next(&mut stream).await;
    assert_eq!(first.event_type, Event::Watching as i32);
    assert!(first.key.is_none());
    assert!(!first.resume_token.is_empty());
    (stream, first.resume_token)
}

async fn next(stream: &mut Streaming<pb::WatchKeysResponse>) -> pb::WatchKeysResponse {
    stream
        .message()
        .await
        .expect("a message, not an error")
        .expect("the watch goes on")
}

/// The next `n` changes: (event, key id).
async fn changes(stream: &mut Streaming<pb::WatchKeysResponse>, n: usize) -> Vec<(i32, String)> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let m = next(stream).await;
        out.push((m.event_type, m.key.expect("a key").key_id));
    }
    out
}

fn stay(holder: &str) -> pb::IssueRequest {
    guest(
        holder,
        &["room-101", "lobby"],
        T0,
        T0 + DAY,
        &format!("stay-{holder}"),
    )
}

async fn listed(s: &TestServer, key_id: &str) -> pb::AccessKey {
    s.list(pb::ListKeysRequest {
        property_id: PROPERTY.into(),
        include_revoked: true,
        page_size: 500,
        ..Default::default()
    })
    .await
    .unwrap()
    .keys
    .into_iter()
    .find(|k| k.key_id == key_id)
    .expect("listed")
}

#[tokio::test(flavor = "multi_thread")]
async fn issue_update_and_revoke_are_seen_in_order_as_listkeys_shows_them() {
    let s = TestServer::start().await;
    let (mut all, _) = watch(&s.client, request("")).await;
    let (mut only_bob, _) = watch(
        &s.client,
        pb::WatchKeysRequest {
            holder_id: "bob".into(),
            ..request("")
        },
    )
    .await;

    let ada = s.issue(stay("ada")).await.unwrap();
    let bob = s.issue(stay("bob")).await.unwrap();
    // A card's new window needs re-encoding: ACTIVE to ENCODING_REQUIRED.
    s.update_window(&ada.key_id, T0, T0 + 2 * DAY)
        .await
        .unwrap();
    s.revoke_key(&ada.key_id).await.unwrap();

    let seen = changes(&mut all, 4).await;
    assert_eq!(
        seen,
        vec![
            (Event::Issued as i32, ada.key_id.clone()),
            (Event::Issued as i32, bob.key_id.clone()),
            (Event::StateChanged as i32, ada.key_id.clone()),
            (Event::Revoked as i32, ada.key_id.clone()),
        ]
    );
    let bobs = next(&mut only_bob).await;
    assert_eq!(bobs.event_type, Event::Issued as i32);
    // The key as ListKeys shows it, credentials included (development mode
    // reads secrets).
    assert_eq!(bobs.key.unwrap(), listed(&s, &bob.key_id).await);
    assert!(bobs.change_time.is_some());

    // The filtered watch passed over Ada's changes: the next it sees is
    // Bob's revocation.
    s.revoke_key(&bob.key_id).await.unwrap();
    let revoked = next(&mut only_bob).await;
    assert_eq!(revoked.event_type, Event::Revoked as i32);
    assert_eq!(revoked.key.unwrap(), listed(&s, &bob.key_id).await);
    let last = changes(&mut all, 1).await;
    assert_eq!(last, vec![(Event::Revoked as i32, bob.key_id.clone())]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_watcher_resumes_after_a_disconnect_and_a_restart_with_nothing_lost_or_repeated() {
    let s = TestServer::start().await;
    let (mut stream, _) = watch(&s.client, request("")).await;
    let mut ids = Vec::new();
    for holder in ["a", "b", "c"] {
        ids.push(s.issue(stay(holder)).await.unwrap().key_id);
    }
    next(&mut stream).await;
    let second = next(&mut stream).await;
    assert_eq!(second.key.as_ref().unwrap().key_id, ids[1]);
    // Disconnects having read two of three.
    drop(stream);
    for holder in ["d", "e"] {
        ids.push(s.issue(stay(holder)).await.unwrap().key_id);
    }

    let (mut stream, from) = watch(&s.client, request(&second.resume_token)).await;
    assert_eq!(from, second.resume_token, "it starts where it stood");
    let mut last = String::new();
    for id in &ids[2..] {
        let m = next(&mut stream).await;
        assert_eq!(m.event_type, Event::Issued as i32);
        assert_eq!(&m.key.unwrap().key_id, id);
        last = m.resume_token;
    }
    drop(stream);

    // Changes made while it is away, then a restart on the same data.
    let f = s.issue(stay("f")).await.unwrap().key_id;
    let s = s.restart().await;
    let g = s.issue(stay("g")).await.unwrap().key_id;
    let (mut stream, _) = watch(&s.client, request(&last)).await;
    let seen = changes(&mut stream, 2).await;
    assert_eq!(
        seen,
        vec![(Event::Issued as i32, f), (Event::Issued as i32, g.clone())]
    );
    // Live from here: the next change is the next one made.
    s.revoke_key(&g).await.unwrap();
    assert_eq!(
        changes(&mut stream, 1).await,
        vec![(Event::Revoked as i32, g)]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn resume_tokens_past_retention_of_another_property_or_garbled_are_refused() {
    let s = TestServer::start_with(|c| c.storage.change_retention_hours = 1).await;
    let (mut stream, before) = watch(&s.client, request("")).await;
    s.issue(stay("a")).await.unwrap();
    let first = next(&mut stream).await;
    drop(stream);

    // Two hours on, the sweeper purges the change: a watcher standing
    // before it has missed it.
    s.clock.set(T0 + 2 * HOUR);
    let report = s.running.as_ref().unwrap().sweep_now().await;
    assert_eq!(report.purged_changes, 1);
    let refused = s
        .client
        .clone()
        .watch_keys(request(&before))
        .await
        .unwrap_err();
    assert_eq!(
        reason(&refused),
        (Code::FailedPrecondition, "RESUME_TOKEN_EXPIRED".into())
    );
    assert!(refused.message().contains("ListKeys"), "{refused:?}");
    // One standing after it has missed nothing.
    let (mut stream, _) = watch(&s.client, request(&first.resume_token)).await;
    let b = s.issue(stay("b")).await.unwrap().key_id;
    assert_eq!(
        changes(&mut stream, 1).await,
        vec![(Event::Issued as i32, b)]
    );

    // A token of another property is refused, as is one that is not a token.
    let mut foreign = ResumeToken::decode(&first.resume_token).unwrap();
    foreign.property_id = "other-hotel".into();
    for token in [foreign.encode(), "not-a-token".to_owned()] {
        let refused = s
            .client
            .clone()
            .watch_keys(request(&token))
            .await
            .unwrap_err();
        assert_eq!(
            reason(&refused),
            (Code::InvalidArgument, "INVALID_RESUME_TOKEN".into())
        );
        assert_eq!(violations(&refused), vec!["resume_token".to_owned()]);
    }
    // A token of another store (made anew) is stale.
    let mut other_store = ResumeToken::decode(&first.resume_token).unwrap();
    other_store.incarnation = "0".repeat(32);
    let refused = s
        .client
        .clone()
        .watch_keys(request(&other_store.encode()))
        .await
        .unwrap_err();
    assert_eq!(
        reason(&refused),
        (Code::FailedPrecondition, "RESUME_TOKEN_EXPIRED".into())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sweeper_recording_an_ended_window_is_an_expired_event() {
    let s = TestServer::start().await;
    let mut short = stay("a");
    short.ends_at = Some(ts(T0 + HOUR));
    let key = s.issue(short).await.unwrap();
    let (mut stream, _) = watch(&s.client, request("")).await;
    s.clock.set(T0 + 2 * HOUR);
    s.running.as_ref().unwrap().sweep_now().await;
    let m = next(&mut stream).await;
    assert_eq!(m.event_type, Event::Expired as i32);
    let shown = m.key.unwrap();
    assert_eq!(shown.key_id, key.key_id);
    assert_eq!(shown.state, pb::KeyState::Expired as i32);
}

/// A watcher that reads nothing while 400 keys are issued: every Issue is
/// answered, the watcher's stream ends with WATCH_BUFFER_OVERFLOW after
/// what it could hold, and resuming from its last token gives the rest,
/// each once.
#[tokio::test(flavor = "multi_thread")]
async fn a_watcher_that_never_reads_is_told_to_resume_and_never_holds_issue_back() {
    const KEYS: usize = 400;
    let s = TestServer::start_with(|c| c.server.watch_buffer = 8).await;
    // Small HTTP/2 windows: the server can send the slow watcher little
    // before it has to wait for the client to read.
    let slow = Channel::from_shared(format!("http://{}", s.running.as_ref().unwrap().addr))
        .unwrap()
        .initial_stream_window_size(Some(16 * 1024))
        .initial_connection_window_size(Some(16 * 1024))
        .connect()
        .await
        .unwrap();
    let (mut stream, from) = watch(&AccessServiceClient::new(slow), request("")).await;

    let mut issued = Vec::with_capacity(KEYS);
    for chunk in (0..KEYS).collect::<Vec<_>>().chunks(16) {
        let mut calls = tokio::task::JoinSet::new();
        for i in chunk {
            let mut client = s.client.clone();
            let req = stay(&format!("guest-{i}"));
            calls.spawn(async move { client.issue(req).await });
        }
        while let Some(answer) = calls.join_next().await {
            let key = answer
                .unwrap()
                .expect("Issue is not held back by the watcher");
            issued.push(key.into_inner().key.unwrap().key_id);
        }
    }

    let mut seen = Vec::new();
    let mut last = from;
    let overflow = loop {
        match stream.message().await {
            Ok(Some(m)) => {
                seen.push(m.key.unwrap().key_id);
                last = m.resume_token;
            }
            Ok(None) => panic!("the watch ended without an error"),
            Err(status) => break status,
        }
    };
    assert_eq!(
        reason(&overflow),
        (Code::ResourceExhausted, "WATCH_BUFFER_OVERFLOW".into())
    );
    let info = overflow.get_error_details();
    assert!(info
        .error_info()
        .unwrap()
        .metadata
        .contains_key("resume_token"));
    assert!(seen.len() < KEYS, "it overflowed before the end");

    let (mut resumed, _) = watch(&s.client, request(&last)).await;
    for _ in seen.len()..KEYS {
        seen.push(next(&mut resumed).await.key.unwrap().key_id);
    }
    // Every key once, in the order the store committed them.
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), KEYS, "no key twice");
    let mut expected = issued.clone();
    expected.sort();
    assert_eq!(sorted, expected, "every key");
    // Nothing more was pending: the next change is the next one made.
    let after = s.issue(stay("after")).await.unwrap().key_id;
    assert_eq!(
        changes(&mut resumed, 1).await,
        vec![(Event::Issued as i32, after)]
    );
}

mod secured {
    use super::*;
    use keysmith_server::{
        auth::{generate_token, hash_token},
        config::{AuthConfig, AuthMode, ReflectionAccess, TokenConfig},
    };
    use tonic::{metadata::MetadataValue, service::Interceptor, Request, Status};

    #[derive(Clone)]
    struct Bearer(String);

    impl Interceptor for Bearer {
        fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
            let value: MetadataValue<_> = format!("Bearer {}", self.0).parse().unwrap();
            request.metadata_mut().insert("authorization", value);
            Ok(request)
        }
    }

    fn token(id: &str, token: &str, scopes: &[&str]) -> TokenConfig {
        TokenConfig {
            id: id.into(),
            sha256: hash_token(token),
            properties: vec![PROPERTY.into()],
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            max_in_flight: 64,
            requests_per_minute: None,
        }
    }

    /// Each watcher sees the key as ListKeys shows it to them: the PIN only
    /// with keys.read_secrets.
    #[tokio::test]
    async fn credentials_go_only_to_watchers_that_read_secrets() {
        let (issuer, reader, secret_reader) =
            (generate_token(), generate_token(), generate_token());
        let tokens = vec![
            token("issuer", &issuer, &["keys.issue"]),
            token("reader", &reader, &["keys.read"]),
            token(
                "secret-reader",
                &secret_reader,
                &["keys.read", "keys.read_secrets"],
            ),
        ];
        let s = TestServer::start_with(move |c| {
            c.auth = AuthConfig {
                mode: AuthMode::Tokens,
                reflection: ReflectionAccess::Open,
                max_failures_per_minute: 10_000,
                tokens,
            }
        })
        .await;
        let client = |t: &str| {
            AccessServiceClient::with_interceptor(s.channel.clone(), Bearer(t.to_owned()))
        };
        let mut streams = Vec::new();
        for t in [&reader, &secret_reader] {
            let mut stream = client(t)
                .watch_keys(request(""))
                .await
                .unwrap()
                .into_inner();
            assert_eq!(next(&mut stream).await.event_type, Event::Watching as i32);
            streams.push(stream);
        }
        // keys.read is what watching takes.
        let refused = client(&issuer).watch_keys(request("")).await.unwrap_err();
        assert_eq!(refused.code(), Code::PermissionDenied);

        let mut req = stay("pin-holder");
        req.entrance_ids = vec!["room-101".into()];
        req.modes = vec![pb::CredentialMode::Pin as i32];
        client(&issuer).issue(req).await.unwrap();
        let redacted = next(&mut streams[0]).await.key.unwrap();
        assert!(!redacted.credentials.is_empty());
        assert!(redacted
            .credentials
            .iter()
            .all(|c| c.data.is_none() && c.data_redacted));
        let shown = next(&mut streams[1]).await.key.unwrap();
        assert!(!pin(&shown).is_empty());
    }
}
