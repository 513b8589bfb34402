//! The API's contracts end to end: idempotency, pagination, bad input,
//! durability across a restart, concurrency, health and reflection.
mod common;

use common::*;
use keysmith_api::v1 as pb;
use tonic::Code;

fn with_request_id(mut req: pb::IssueRequest, id: &str) -> pb::IssueRequest {
    req.request_id = id.into();
    req
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retried_issue_returns_the_first_answer_and_changes_nothing() {
    let s = TestServer::start().await;
    let req = with_request_id(guest("g1", &["room-101"], T0, T0 + DAY, "stay-1"), "req-1");
    let first = s.issue(req.clone()).await.unwrap();
    let again = s.issue(req.clone()).await.unwrap();
    assert_eq!(first, again);
    let listed = s
        .list(pb::ListKeysRequest {
            property_id: PROPERTY.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.keys.len(), 1);

    let mut other = req.clone();
    other.holder_id = "someone-else".into();
    let err = s.issue(other).await.unwrap_err();
    assert_eq!(
        reason(&err),
        (Code::InvalidArgument, "REQUEST_ID_REUSED".into())
    );
    assert_eq!(violations(&err), ["request_id"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retried_revoke_and_update_return_the_first_answer() {
    let s = TestServer::start().await;
    let key = s
        .issue(guest("g1", &["room-101"], T0, T0 + DAY, "stay-1"))
        .await
        .unwrap();
    let revoke = pb::RevokeRequest {
        property_id: PROPERTY.into(),
        request_id: "rev-1".into(),
        target: Some(pb::revoke_request::Target::KeyId(key.key_id.clone())),
    };
    let a = s
        .client
        .clone()
        .revoke(revoke.clone())
        .await
        .unwrap()
        .into_inner();
    let b = s
        .client
        .clone()
        .revoke(revoke.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(a, b);
    let mut reuse = revoke;
    reuse.target = Some(pb::revoke_request::Target::ReservationKey("stay-1".into()));
    let err = s.client.clone().revoke(reuse).await.unwrap_err();
    assert_eq!(reason(&err).1, "REQUEST_ID_REUSED");

    // Updating a revoked key is refused.
    let err = s
        .update_window(&key.key_id, T0, T0 + 2 * DAY)
        .await
        .unwrap_err();
    assert_eq!(
        reason(&err),
        (Code::FailedPrecondition, "KEY_REVOKED".into())
    );
}

/// Listings answer from each key version's kept encoding: a change, a
/// revocation and the passing of time must all show in the next page.
#[tokio::test(flavor = "multi_thread")]
async fn a_listed_key_shows_every_change_and_its_expiry_in_the_next_listing() {
    let s = TestServer::start().await;
    let key = s
        .issue(guest("g1", &["room-101"], T0, T0 + DAY, "stay-g1"))
        .await
        .unwrap();
    let other = s
        .issue(guest("g2", &["room-102"], T0, T0 + 3 * DAY, "stay-g2"))
        .await
        .unwrap();
    async fn listing(s: &TestServer, include_revoked: bool) -> Vec<pb::AccessKey> {
        s.list(pb::ListKeysRequest {
            property_id: PROPERTY.into(),
            include_revoked,
            ..Default::default()
        })
        .await
        .unwrap()
        .keys
    }
    async fn listed(s: &TestServer) -> Vec<pb::AccessKey> {
        listing(s, false).await
    }
    // Twice: the second page is written from the kept encodings.
    assert_eq!(listed(&s).await, listed(&s).await);
    assert_eq!(listed(&s).await, [key.clone(), other.clone()]);

    let updated = s
        .update_window(&key.key_id, T0, T0 + 2 * DAY)
        .await
        .unwrap();
    assert_eq!(updated.ends_at, Some(ts(T0 + 2 * DAY)));
    assert_eq!(listed(&s).await, [updated.clone(), other.clone()]);

    // Expired keys leave the listing of keys in force as soon as the clock
    // passes their end, and are listed with the ended ones; the sweeper
    // moving them out of the live set changes neither listing.
    s.clock.set(T0 + 2 * DAY);
    let ids =
        |keys: Vec<pb::AccessKey>| -> Vec<String> { keys.into_iter().map(|k| k.key_id).collect() };
    assert_eq!(ids(listed(&s).await), std::slice::from_ref(&other.key_id));
    let states: Vec<_> = listing(&s, true).await.iter().map(|k| k.state()).collect();
    assert_eq!(states, [pb::KeyState::Expired, pb::KeyState::Active]);
    assert_eq!(
        s.get(&key.key_id).await.unwrap().state(),
        pb::KeyState::Expired
    );
    let swept = s.running.as_ref().unwrap().sweep_now().await;
    assert_eq!(swept.expired, 1);
    assert_eq!(ids(listed(&s).await), std::slice::from_ref(&other.key_id));
    let states: Vec<_> = listing(&s, true).await.iter().map(|k| k.state()).collect();
    assert_eq!(states, [pb::KeyState::Expired, pb::KeyState::Active]);

    s.revoke_key(&other.key_id).await.unwrap();
    assert!(listed(&s).await.is_empty());
    let states: Vec<_> = listing(&s, true).await.iter().map(|k| k.state()).collect();
    assert_eq!(states, [pb::KeyState::Expired, pb::KeyState::Revoked]);
}

#[tokio::test(flavor = "multi_thread")]
async fn list_keys_pages_through_everything_exactly_once() {
    let s = TestServer::start().await;
    let mut issued = Vec::new();
    for i in 0..23 {
        let room = if i % 2 == 0 { "room-101" } else { "room-102" };
        issued.push(
            s.issue(guest(
                &format!("g{i}"),
                &[room, "lobby"],
                T0,
                T0 + DAY,
                &format!("stay-{i}"),
            ))
            .await
            .unwrap()
            .key_id,
        );
    }
    let revoked = issued[3].clone();
    s.revoke_key(&revoked).await.unwrap();

    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = s
            .list(pb::ListKeysRequest {
                property_id: PROPERTY.into(),
                page_size: 5,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(page.keys.len() <= 5);
        pages += 1;
        seen.extend(page.keys.into_iter().map(|k| k.key_id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let mut want: Vec<String> = issued.iter().filter(|k| **k != revoked).cloned().collect();
    want.sort();
    assert_eq!(
        seen, want,
        "every live key once, in order, revoked left out"
    );
    assert_eq!(pages, 5);

    // Revoked keys when asked; filters by entrance and holder.
    let all = s
        .list(pb::ListKeysRequest {
            property_id: PROPERTY.into(),
            page_size: 100,
            include_revoked: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.keys.len(), 23);
    let only_revoked = s
        .list(pb::ListKeysRequest {
            property_id: PROPERTY.into(),
            states: vec![pb::KeyState::Revoked as i32],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(only_revoked.keys.len(), 1);
    let in_102 = s
        .list(pb::ListKeysRequest {
            property_id: PROPERTY.into(),
            entrance_id: "room-102".into(),
            page_size: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(in_102.keys.len(), 10, "the 11 odd keys but the revoked one");
    let of_g4 = s
        .list(pb::ListKeysRequest {
            property_id: PROPERTY.into(),
            holder_id: "g4".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(of_g4.keys.len(), 1);

    // A token belongs to its query.
    let first = s
        .list(pb::ListKeysRequest {
            property_id: PROPERTY.into(),
            page_size: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    let err = s
        .list(pb::ListKeysRequest {
            property_id: PROPERTY.into(),
            page_size: 2,
            page_token: first.next_page_token,
            holder_id: "g4".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        reason(&err),
        (Code::InvalidArgument, "INVALID_PAGE_TOKEN".into())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let s = TestServer::start().await;
    let ok = || guest("g1", &["room-101"], T0, T0 + DAY, "stay-g1");
    let mut cases: Vec<(&str, pb::IssueRequest, Code, &str)> = Vec::new();
    let mut r = ok();
    r.property_id.clear();
    cases.push((
        "missing property",
        r,
        Code::InvalidArgument,
        "FIELD_REQUIRED",
    ));
    let mut r = ok();
    r.property_id = "no-such-hotel".into();
    cases.push(("unknown property", r, Code::NotFound, "PROPERTY_NOT_FOUND"));
    let mut r = ok();
    r.entrance_ids = vec!["room-999".into()];
    cases.push(("unknown entrance", r, Code::NotFound, "ENTRANCE_NOT_FOUND"));
    let mut r = ok();
    r.entrance_ids.clear();
    r.space_ids = vec!["attic".into()];
    cases.push(("unknown space", r, Code::NotFound, "SPACE_NOT_FOUND"));
    let mut r = ok();
    r.ends_at = r.starts_at;
    cases.push((
        "empty window",
        r,
        Code::InvalidArgument,
        "INVALID_TIME_WINDOW",
    ));
    let mut r = ok();
    r.ends_at = Some(ts(T0 - DAY));
    r.starts_at = Some(ts(T0 - 2 * DAY));
    cases.push((
        "window in the past",
        r,
        Code::InvalidArgument,
        "INVALID_TIME_WINDOW",
    ));
    let mut r = ok();
    r.starts_at = None;
    cases.push((
        "missing starts_at",
        r,
        Code::InvalidArgument,
        "FIELD_REQUIRED",
    ));
    let mut r = ok();
    r.modes = vec![pb::CredentialMode::Qr as i32];
    cases.push((
        "mode the room cannot take",
        r,
        Code::InvalidArgument,
        "CREDENTIAL_MODE_NOT_SUPPORTED",
    ));
    let mut r = ok();
    r.modes = vec![pb::CredentialMode::KeyStorage as i32];
    cases.push((
        "key storage",
        r,
        Code::InvalidArgument,
        "CREDENTIAL_MODE_NOT_SUPPORTED",
    ));
    let mut r = ok();
    r.modes = vec![];
    cases.push(("no mode", r, Code::InvalidArgument, "FIELD_REQUIRED"));
    let mut r = ok();
    r.modes = vec![42];
    cases.push(("unknown mode", r, Code::InvalidArgument, "FIELD_INVALID"));
    let mut r = ok();
    r.role = 9;
    cases.push(("unknown role", r, Code::InvalidArgument, "FIELD_INVALID"));
    let mut r = ok();
    r.modes = vec![pb::CredentialMode::Pin as i32];
    r.pin = "12ab".into();
    cases.push(("malformed PIN", r, Code::InvalidArgument, "INVALID_PIN"));
    let mut r = ok();
    r.holder_id = "x".repeat(5000);
    cases.push((
        "oversize holder",
        r,
        Code::InvalidArgument,
        "FIELD_TOO_LONG",
    ));
    let mut r = ok();
    r.holder_name = "n".repeat(5000);
    cases.push(("oversize name", r, Code::InvalidArgument, "FIELD_TOO_LONG"));
    let mut r = ok();
    r.entrance_ids = (0..200).map(|i| format!("e{i}")).collect();
    cases.push((
        "too many entrances",
        r,
        Code::InvalidArgument,
        "FIELD_TOO_LONG",
    ));
    let mut r = ok();
    r.starts_at = Some(prost_types::Timestamp {
        seconds: 0,
        nanos: -5,
    });
    cases.push((
        "malformed timestamp",
        r,
        Code::InvalidArgument,
        "FIELD_INVALID",
    ));
    let mut r = ok();
    r.starts_at = Some(prost_types::Timestamp {
        seconds: i64::MAX,
        nanos: 0,
    });
    cases.push((
        "timestamp out of range",
        r,
        Code::InvalidArgument,
        "FIELD_INVALID",
    ));

    for (what, req, code, want) in cases {
        let err = s.issue(req).await.unwrap_err();
        assert_eq!(reason(&err), (code, want.to_string()), "{what}");
    }

    let list_cases: Vec<(&str, pb::ListKeysRequest, &str)> = vec![
        (
            "negative page size",
            pb::ListKeysRequest {
                property_id: PROPERTY.into(),
                page_size: -1,
                ..Default::default()
            },
            "INVALID_PAGE_SIZE",
        ),
        (
            "garbage token",
            pb::ListKeysRequest {
                property_id: PROPERTY.into(),
                page_token: "%%%".into(),
                ..Default::default()
            },
            "INVALID_PAGE_TOKEN",
        ),
        (
            "missing property",
            pb::ListKeysRequest::default(),
            "FIELD_REQUIRED",
        ),
        (
            "unknown state",
            pb::ListKeysRequest {
                property_id: PROPERTY.into(),
                states: vec![77],
                ..Default::default()
            },
            "FIELD_INVALID",
        ),
    ];
    for (what, req, want) in list_cases {
        let err = s.list(req).await.unwrap_err();
        assert_eq!(
            reason(&err),
            (Code::InvalidArgument, want.to_string()),
            "{what}"
        );
    }
    let err = s.get("no-such-key").await.unwrap_err();
    assert_eq!(reason(&err), (Code::NotFound, "KEY_NOT_FOUND".into()));
    let err = s.revoke_key("no-such-key").await.unwrap_err();
    assert_eq!(reason(&err), (Code::NotFound, "KEY_NOT_FOUND".into()));
    let err = s.revoke_reservation("no-such-stay").await.unwrap_err();
    assert_eq!(
        reason(&err),
        (Code::NotFound, "RESERVATION_NOT_FOUND".into())
    );
    let err = s
        .client
        .clone()
        .revoke(pb::RevokeRequest {
            property_id: PROPERTY.into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        reason(&err),
        (Code::InvalidArgument, "FIELD_REQUIRED".into())
    );

    let all = s
        .list(pb::ListKeysRequest {
            property_id: PROPERTY.into(),
            include_revoked: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(all.keys.is_empty(), "nothing was created");
}

#[tokio::test(flavor = "multi_thread")]
async fn several_field_violations_come_back_together() {
    let s = TestServer::start().await;
    let mut r = guest("", &["room-101"], T0, T0, "");
    r.modes.clear();
    let err = s.issue(r).await.unwrap_err();
    assert_eq!(violations(&err), ["holder_id", "ends_at", "modes"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn pins_are_delivered_unique_and_open_the_keypad() {
    let s = TestServer::start().await;
    let mut r = guest("g1", &["room-101", "gym"], T0, T0 + DAY, "stay-pin");
    r.modes = vec![
        pb::CredentialMode::Pin as i32,
        pb::CredentialMode::Card as i32,
    ];
    r.pin = "4821".into();
    let key = s.issue(r.clone()).await.unwrap();
    assert_eq!(pin(&key), "4821");
    assert!(s.present("room-101", "4821", T0 + HOUR).await.granted);
    assert!(s.present("gym", "4821", T0 + HOUR).await.granted);
    assert_eq!(
        s.present("gym", "0000", T0 + HOUR).await.reason,
        "unknown_pin"
    );
    // The same PIN again at the same doors is refused.
    r.holder_id = "g2".into();
    let err = s.issue(r.clone()).await.unwrap_err();
    assert_eq!(reason(&err), (Code::AlreadyExists, "PIN_IN_USE".into()));
    // A generated PIN is six digits.
    r.pin.clear();
    let generated = pin(&s.issue(r).await.unwrap());
    assert!(generated.len() == 6 && generated.bytes().all(|b| b.is_ascii_digit()));
    assert_ne!(generated, "4821");
}

#[tokio::test(flavor = "multi_thread")]
async fn entrances_and_drivers_are_listed_with_capabilities() {
    let s = TestServer::start().await;
    let drivers = s
        .client
        .clone()
        .list_drivers(pb::ListDriversRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(drivers.drivers.len(), 1);
    let d = &drivers.drivers[0];
    assert_eq!(
        (d.name.as_str(), d.kind()),
        ("offline-lock", pb::DriverKind::BuiltIn)
    );
    assert!(!d.version.is_empty());
    let cap = d.capability.as_ref().unwrap();
    assert!(cap.issue && cap.reservations && cap.offline && !cap.online);

    let entrances = s
        .client
        .clone()
        .list_entrances(pb::ListEntrancesRequest {
            property_id: PROPERTY.into(),
            refresh: true,
        })
        .await
        .unwrap()
        .into_inner()
        .entrances;
    let room = entrances
        .iter()
        .find(|e| e.entrance_id == "room-101")
        .unwrap();
    assert_eq!(room.driver, "offline-lock");
    assert!(room.capability.as_ref().unwrap().can_belong_to_reservation);
    let gym = entrances.iter().find(|e| e.entrance_id == "gym").unwrap();
    assert!(!gym.capability.as_ref().unwrap().can_belong_to_reservation);
    let err = s
        .client
        .clone()
        .list_entrances(pb::ListEntrancesRequest {
            property_id: "elsewhere".into(),
            refresh: false,
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&err), (Code::NotFound, "PROPERTY_NOT_FOUND".into()));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_loses_no_key_reservation_or_lock_state() {
    let s = TestServer::start().await;
    let a = s
        .issue(guest("g1", &["room-101"], T0, T0 + 4 * DAY, "stay-1"))
        .await
        .unwrap();
    assert!(s.present("room-101", &card(&a), T0 + HOUR).await.overrode);
    s.sim
        .clone()
        .set_clock_skew(keysmith_api::sim::v1::SetClockSkewRequest {
            property_id: PROPERTY.into(),
            entrance_id: "room-102".into(),
            skew_seconds: 120,
        })
        .await
        .unwrap();
    let idem = with_request_id(
        guest("g2", &["room-101"], T0, T0 + DAY, "stay-1"),
        "joiner-1",
    );
    let joiner = s.issue(idem.clone()).await.unwrap();

    let s = s.restart().await;
    assert_eq!(s.get(&a.key_id).await.unwrap(), a);
    assert_eq!(
        s.issue(idem).await.unwrap(),
        joiner,
        "the idempotency record survived"
    );
    let state = s.lock_state("room-101").await;
    assert_eq!(state.guest_sequence, 1);
    assert_eq!(state.audit_events, 1);
    assert_eq!(s.lock_state("room-102").await.clock_skew_seconds, 120);
    // The reservation's door set survived: changing doors is still refused.
    let err = s
        .issue(guest("g3", &["room-102"], T0, T0 + DAY, "stay-1"))
        .await
        .unwrap_err();
    assert_eq!(
        reason(&err).1,
        "RESERVATION_ENTRANCE_CHANGE_REQUIRES_CLEANUP"
    );
    // And the encoder's counter: the next stay overrides the lock again.
    let b = s
        .issue(guest(
            "g9",
            &["room-101"],
            T0 + 4 * DAY,
            T0 + 5 * DAY,
            "stay-2",
        ))
        .await
        .unwrap();
    let r = s.present("room-101", &card(&b), T0 + 4 * DAY + 60).await;
    assert!(r.granted && r.overrode, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundreds_of_concurrent_issues_all_complete_durably() {
    let s = TestServer::start().await;
    let rooms = [
        "room-101", "room-102", "room-201", "room-203", "lobby", "gym", "pool",
    ];
    let mut tasks = Vec::new();
    for i in 0..400 {
        let mut client = s.client.clone();
        let mut req = guest(
            &format!("g{i}"),
            &[rooms[i % rooms.len()]],
            T0,
            T0 + DAY,
            "",
        );
        // Guest keys on rooms need a reservation: each its own, and every
        // fourth request joins one of a few shared reservations.
        if rooms[i % rooms.len()].starts_with("room-") {
            req.reservation_key = format!("solo-{i}");
        }
        if i % 4 == 0 && i % 7 < 4 {
            req.reservation_key = format!("shared-{}", i % 7);
            req.entrance_ids = vec![rooms[i % 7].into()];
        }
        req.request_id = format!("c-{i}");
        tasks.push(tokio::spawn(async move { client.issue(req).await }));
    }
    let mut ok = 0;
    for t in tasks {
        t.await.unwrap().unwrap();
        ok += 1;
    }
    assert_eq!(ok, 400);
    let s = s.restart().await;
    let mut count = 0;
    let mut token = String::new();
    loop {
        let page = s
            .list(pb::ListKeysRequest {
                property_id: PROPERTY.into(),
                page_size: 500,
                page_token: token,
                ..Default::default()
            })
            .await
            .unwrap();
        count += page.keys.len();
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(count, 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn health_reports_each_service_and_reflection_lists_them() {
    use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};
    let s = TestServer::start().await;
    let channel = tonic::transport::Channel::from_shared(format!(
        "http://{}",
        s.running.as_ref().unwrap().addr
    ))
    .unwrap()
    .connect()
    .await
    .unwrap();
    let mut health = HealthClient::new(channel.clone());
    for service in [
        "keysmith.v1.AccessService",
        "keysmith.sim.v1.LockSimulatorService",
    ] {
        let r = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.status, 1, "{service} is SERVING");
    }

    use tonic_reflection::pb::v1alpha::{
        server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        ServerReflectionRequest,
    };
    let mut reflection = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = reflection
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let response = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for want in [
        "keysmith.v1.AccessService",
        "keysmith.sim.v1.LockSimulatorService",
        "grpc.health.v1.Health",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
    }
}

/// A request_id is remembered for storage.idempotency_retention_hours (72
/// by default), across restarts; after that the same id is a new request.
#[tokio::test(flavor = "multi_thread")]
async fn request_ids_are_forgotten_after_their_retention() {
    let s = TestServer::start().await;
    let mut first = guest("retained", &["room-101"], T0, T0 + 10 * DAY, "stay-r");
    first.request_id = "pms-retry-1".into();
    let key = s.issue(first.clone()).await.unwrap();
    let mut other = first.clone();
    other.holder_id = "someone-else".into();
    let reused = s.issue(other.clone()).await.unwrap_err();
    assert_eq!(reason(&reused).1, "REQUEST_ID_REUSED");

    // Within the retention, across a restart: the first answer again.
    s.clock.set(T0 + 71 * HOUR);
    let s = s.restart().await;
    assert_eq!(s.issue(first.clone()).await.unwrap().key_id, key.key_id);

    // Past it: the id is free, and the request is new.
    s.clock.set(T0 + 73 * HOUR);
    let s = s.restart().await;
    let new = s.issue(other).await.expect("a new request");
    assert_ne!(new.key_id, key.key_id);
    assert_eq!(new.holder_id, "someone-else");
}
