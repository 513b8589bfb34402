//! The read API, upstream errors by category, the rate-limit block.

use super::*;

#[tokio::test]
async fn reads_give_pins_to_guests_and_compartments_only_to_staff() {
    let e = env(Options {
        api_key: READ_KEY,
        ..Options::default()
    })
    .await;
    let r = e.fake.add_reservation(PROPERTY, "R-READ");
    let a = e.stay(&r, "rs-101", &day(0), &day(1));
    let b = e.stay(&r, "rs-102", &day(0), &day(1));
    let c = e.stay(&r, "rs-999", &day(0), &day(1));
    let pin = e.fake.add_foreign_key(
        PROPERTY,
        "doorlock",
        KeyKind::Pin {
            pin: "482913".into(),
        },
    );
    let storage = e.fake.add_foreign_key(
        PROPERTY,
        "keybox",
        KeyKind::KeyStorage {
            pin: "ABC123".into(),
            compartment: "C7".into(),
        },
    );
    let nfc = e.fake.add_foreign_key(
        PROPERTY,
        "future",
        KeyKind::Nfc {
            nfc_data: "04A224".into(),
        },
    );
    e.fake.assign_key(PROPERTY, &a, &pin);
    e.fake.assign_key(PROPERTY, &b, &storage);
    e.fake.assign_key(PROPERTY, &c, &nfc);
    // More rooms than one page of 100.
    for _ in 0..103 {
        e.stay(&r, "rs-999", &day(3), &day(4));
    }

    let list = |view: pb::KeyView| {
        let mut pms = e.pms.clone();
        async move {
            pms.list_reservation_room_keys(pb::ListReservationRoomKeysRequest {
                property_id: PROPERTY.into(),
                reservation_code: "R-READ".into(),
                view: view as i32,
            })
            .await
            .unwrap()
            .into_inner()
            .rooms
        }
    };
    let guest = list(pb::KeyView::Guest).await;
    assert_eq!(guest.len(), 106, "every page of rooms");
    let by_stay = |rooms: &[pb::RoomStayKey], id: &str| {
        rooms
            .iter()
            .find(|r| r.room_stay_id == id)
            .and_then(|r| r.key.clone())
            .unwrap()
    };
    let k = by_stay(&guest, &a);
    assert_eq!(
        (k.r#type, k.pin.as_str()),
        (pb::PmsKeyType::Pin as i32, "482913")
    );
    let k = by_stay(&guest, &b);
    assert_eq!(k.r#type, pb::PmsKeyType::KeyStorage as i32);
    assert_eq!(k.pin, "ABC123");
    assert_eq!(k.compartment, "", "never to guests");
    let k = by_stay(&guest, &c);
    assert_eq!(k.r#type, pb::PmsKeyType::Unknown as i32);
    assert_eq!(k.type_name, "RoomAccessNfc");
    let staff = list(pb::KeyView::Staff).await;
    assert_eq!(by_stay(&staff, &b).compartment, "C7");

    let one = e
        .pms
        .clone()
        .get_room_stay_key(pb::GetRoomStayKeyRequest {
            property_id: PROPERTY.into(),
            room_stay_id: b.clone(),
            view: pb::KeyView::Unspecified as i32,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(one.room_name, "Room 102");
    assert_eq!(one.key.unwrap().compartment, "");

    let missing = e
        .pms
        .clone()
        .get_room_stay_key(pb::GetRoomStayKeyRequest {
            property_id: PROPERTY.into(),
            room_stay_id: "no-such-stay".into(),
            view: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    assert_eq!(
        missing.get_details_error_info().unwrap().reason,
        "ROOM_STAY_NOT_FOUND"
    );
}

#[tokio::test]
async fn upstream_errors_map_by_category() {
    // A read-only key cannot write: PERMISSION_DENIED, nothing half-done.
    let e = env(Options {
        api_key: READ_KEY,
        ..Options::default()
    })
    .await;
    let r = e.fake.add_reservation(PROPERTY, "R-E");
    let s = e.stay(&r, "rs-101", &day(0), &day(1));
    let err = e
        .pms
        .clone()
        .sync_room_stays(pb::SyncRoomStaysRequest {
            property_id: PROPERTY.into(),
            room_stay_ids: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    let info = err.get_details_error_info().unwrap();
    assert_eq!(info.reason, "THREERPMS_AUTH");
    assert_eq!(info.domain, "keysmith.dev");
    assert!(info.metadata.contains_key("upstream_message"));
    assert_eq!(e.fake.room_stay(PROPERTY, &s).unwrap().key_id, None);
    // The lock's key was issued first and is remembered: another try
    // publishes that same key rather than issuing a second one.
    assert_eq!(e.keys_of(&s).await.len(), 1);
    e.pms
        .clone()
        .sync_room_stays(pb::SyncRoomStaysRequest {
            property_id: PROPERTY.into(),
            room_stay_ids: vec![s.clone()],
        })
        .await
        .unwrap_err();
    assert_eq!(e.keys_of(&s).await.len(), 1, "not issued twice");

    // The hotel is not set up for keys at 3RPMS: FAILED_PRECONDITION.
    let e = env(Options::default()).await;
    let r = e.fake.add_reservation(PROPERTY, "R-F");
    e.stay(&r, "rs-101", &day(0), &day(1));
    e.fake.set_hotel_configured(PROPERTY, false);
    let err = e
        .pms
        .clone()
        .sync_room_stays(pb::SyncRoomStaysRequest {
            property_id: PROPERTY.into(),
            room_stay_ids: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert_eq!(
        err.get_details_error_info().unwrap().reason,
        "THREERPMS_CONFIGURATION"
    );

    // An unknown key: UNAUTHENTICATED.
    let e = env(Options {
        api_key: "api_wrong",
        ..Options::default()
    })
    .await;
    let err = e
        .pms
        .clone()
        .get_room_stay_key(pb::GetRoomStayKeyRequest {
            property_id: PROPERTY.into(),
            room_stay_id: "x".into(),
            view: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");

    // Bad input never reaches 3RPMS.
    e.fake.reset_counts();
    for (request, field) in [
        (
            pb::GetRoomStayKeyRequest {
                property_id: PROPERTY.into(),
                room_stay_id: String::new(),
                view: 0,
            },
            "room_stay_id",
        ),
        (
            pb::GetRoomStayKeyRequest {
                property_id: PROPERTY.into(),
                room_stay_id: "x".into(),
                view: 9,
            },
            "view",
        ),
    ] {
        let err = e.pms.clone().get_room_stay_key(request).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        let violations = err.get_details_bad_request().unwrap().field_violations;
        assert_eq!(violations[0].field, field);
    }
    assert_eq!(e.fake.counts().http_requests, 0);
}

#[tokio::test]
async fn a_rate_limit_block_stops_keysmith_sending_and_answers_unavailable() {
    let fake = FakeConfig {
        rate_limit_per_minute: 3,
        block_duration: Duration::from_secs(600),
        ..FakeConfig::default()
    };
    let e = env(Options {
        fake,
        api_key: READ_KEY,
        edit: |c| {
            c["request_timeout_ms"] = json!(300);
            c["connect_timeout_ms"] = json!(300);
            c["timeouts_before_block"] = json!(1);
            c["block_backoff_seconds"] = json!(900);
        },
        ..Options::default()
    })
    .await;
    let read = || {
        let mut pms = e.pms.clone();
        async move {
            pms.get_room_stay_key(pb::GetRoomStayKeyRequest {
                property_id: PROPERTY.into(),
                room_stay_id: "any".into(),
                view: 0,
            })
            .await
        }
    };
    for _ in 0..3 {
        assert_eq!(read().await.unwrap_err().code(), Code::NotFound);
    }
    // The fourth goes over the limit: 3RPMS blocks and never answers.
    let err = read().await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert_eq!(
        err.get_details_error_info().unwrap().reason,
        "THREERPMS_RATE_LIMITED"
    );
    let retry = err.get_details_retry_info().unwrap().retry_delay.unwrap();
    assert!(retry > Duration::from_secs(60), "{retry:?}");
    assert!(e.fake.is_blocked());

    // While blocked keysmith does not even try.
    let tried = e.fake.counts().blocked_connections;
    for _ in 0..5 {
        let err = read().await.unwrap_err();
        assert_eq!(err.code(), Code::Unavailable);
        assert_eq!(
            err.get_details_error_info().unwrap().reason,
            "THREERPMS_RATE_LIMITED"
        );
    }
    assert_eq!(e.fake.counts().blocked_connections, tried);

    // The metrics say so. Other tests of this binary share the recorder
    // and the property, but none of them makes 3RPMS block.
    let metrics =
        common::metrics::scrape(e.server.running.as_ref().unwrap().metrics_addr.unwrap()).await;
    let requests = |outcome: &str| {
        metrics
            .get(
                "keysmith_threerpms_requests_total",
                &[
                    ("property", PROPERTY.to_owned()),
                    ("outcome", outcome.to_owned()),
                ],
            )
            .unwrap_or(0.0)
    };
    assert!(requests("timeout") >= 1.0);
    assert!(requests("blocked") >= 5.0, "the five refused while blocked");
    assert!(metrics.get("keysmith_threerpms_blocks_total", &[]).unwrap() >= 1.0);
    assert!(metrics
        .get("keysmith_threerpms_rate_budget_remaining", &[])
        .is_some());
}
