//! The 3RPMS client against the fake 3RPMS over real HTTP: schema
//! detection, paging, batched lookups, chained writes, and a refused step
//! isolated from the rest.
use fake_3rpms::{Access, Assumed, Fake3rpms, FakeConfig, KeyKind, Refusal, ReservationStatus};
use keysmith_core::Secret;
use keysmith_threerpms::{
    client::{Assignment, Creation, WritePlan},
    detect::{detect, Detected, EndpointFeatures, Features},
    Client, Egress, LimiterConfig, NewKey, Timeouts, Transport,
};

const HOTEL: &str = "h1";

async fn setup() -> (Fake3rpms, Client) {
    setup_with(Assumed::NONE).await
}

async fn setup_with(assumed: Assumed) -> (Fake3rpms, Client) {
    let fake = Fake3rpms::start(FakeConfig {
        assumed,
        ..FakeConfig::default()
    })
    .await
    .unwrap();
    fake.add_hotel(HOTEL);
    fake.add_api_key(HOTEL, "keysmith", "api_w", Access::Write);
    fake.add_room(HOTEL, "101", "Room 101");
    let transport = Transport::new(
        HOTEL,
        fake.graphql_url(),
        Secret::new("api_w".to_owned()),
        Egress::new(LimiterConfig::default()),
        &Timeouts::default(),
    )
    .unwrap();
    (fake, Client::new(transport))
}

fn pin(p: &str) -> NewKey {
    NewKey::Pin(Secret::new(p.to_owned()))
}

#[tokio::test]
async fn the_window_query_follows_every_page_of_100() {
    let (fake, client) = setup().await;
    let r = fake.add_reservation(HOTEL, "BIG");
    for _ in 0..230 {
        fake.add_room_stay(HOTEL, &r, "101", "2030-03-18", "2030-03-19");
    }
    fake.add_room_stay(HOTEL, &r, "101", "2030-04-18", "2030-04-19");
    fake.reset_counts();
    let documented = Detected::new(Features::default());
    let (stays, requests) = client
        .room_stays_between(
            &documented,
            "2030-03-17".parse().unwrap(),
            "2030-03-23".parse().unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(stays.len(), 230);
    assert_eq!(requests, 3);
    assert_eq!(fake.counts().http_requests, 3);
}

#[tokio::test]
async fn many_stays_by_id_in_one_request() {
    let (fake, client) = setup().await;
    let r = fake.add_reservation(HOTEL, "R");
    let mut ids: Vec<String> = (0..150)
        .map(|_| fake.add_room_stay(HOTEL, &r, "101", "2030-03-18", "2030-03-19"))
        .collect();
    ids.push("deleted-or-unknown".into());
    fake.reset_counts();
    let documented = Detected::new(Features::default());
    let (stays, requests) = client.room_stays_by_ids(&documented, &ids).await.unwrap();
    assert_eq!(stays.len(), 150);
    assert_eq!(requests, 1, "two queries of 100 ids in one batch");
    assert_eq!(fake.counts().http_requests, 1);
}

#[tokio::test]
async fn a_refused_step_is_isolated_and_the_rest_of_the_plan_lands() {
    let (fake, client) = setup().await;
    let r = fake.add_reservation(HOTEL, "R");
    let a = fake.add_room_stay(HOTEL, &r, "101", "2030-03-18", "2030-03-19");
    let b = fake.add_room_stay(HOTEL, &r, "101", "2030-03-19", "2030-03-20");
    let c = fake.add_room_stay(HOTEL, &r, "101", "2030-03-20", "2030-03-21");
    // Another integration's key is on stay c: keysmith may not remove it.
    let foreign = fake.add_foreign_key(HOTEL, "other", KeyKind::Pin { pin: "1111".into() });
    fake.assign_key(HOTEL, &c, &foreign);
    fake.reset_counts();
    let plan = WritePlan {
        removals: vec![Assignment {
            room_stay_id: c.clone(),
            key_id: foreign.clone(),
        }],
        creations: vec![
            Creation {
                room_stay_id: a.clone(),
                key: pin("1234"),
            },
            Creation {
                room_stay_id: b.clone(),
                key: pin("5678"),
            },
        ],
        ..WritePlan::default()
    };
    let outcome = client.write(&plan).await.unwrap();
    assert_eq!(outcome.created.len(), 2);
    assert_eq!(outcome.rejected.len(), 1);
    assert_eq!(
        outcome.rejected[0].room_stay_id.as_deref(),
        Some(c.as_str())
    );
    // The whole plan, then each half: the first half alone is refused.
    assert_eq!(outcome.requests, 3);
    for created in &outcome.created {
        assert_eq!(
            fake.room_stay(HOTEL, &created.room_stay_id).unwrap().key_id,
            Some(created.key_id.clone())
        );
    }
    assert_eq!(fake.room_stay(HOTEL, &c).unwrap().key_id, Some(foreign));
    assert_eq!(
        fake.counts().rollbacks,
        2,
        "the failed requests left nothing behind"
    );
}

#[tokio::test]
async fn invalid_keys_are_refused_before_anything_is_sent() {
    let (fake, client) = setup().await;
    fake.reset_counts();
    let plan = WritePlan {
        creations: vec![Creation {
            room_stay_id: "x".into(),
            key: pin("AbC"),
        }],
        ..WritePlan::default()
    };
    let error = client.write(&plan).await.unwrap_err();
    assert_eq!(error.reason(), keysmith_core::reasons::INVALID_PIN);
    assert_eq!(fake.counts().http_requests, 0);
}

#[tokio::test]
async fn the_documented_schema_offers_nothing_keysmith_assumes() {
    let (fake, client) = setup().await;
    fake.reset_counts();

    let features = detect(client.transport(), None).await.unwrap();

    assert_eq!(
        features,
        Features {
            introspected: true,
            ..Features::default()
        }
    );
    assert_eq!(
        fake.counts().http_requests,
        2,
        "two rounds of introspection"
    );
}

#[tokio::test]
async fn every_assumed_extra_is_detected_with_its_values() {
    let (_fake, client) = setup_with(Assumed::ALL).await;

    let features = detect(client.transport(), None).await.unwrap();

    assert_eq!(
        features,
        Features {
            stay_reservation: true,
            cancelled_statuses: Some(vec!["CANCELLED".into()]),
            reservation_id_filter: true,
            endpoint: EndpointFeatures {
                enabled_value: Some("ENABLED".into()),
                disabled_value: Some("DISABLED".into()),
                status_required: false,
                update_mutation: true,
            },
            introspected: true,
        }
    );
    // The hotel's own cancellation values win over the enum's.
    let configured = vec!["CONFIRMED".to_owned()];
    let features = detect(client.transport(), Some(&configured)).await.unwrap();
    assert_eq!(features.cancelled_statuses, Some(configured));
}

#[tokio::test]
async fn refused_introspection_leaves_only_what_is_documented() {
    let (fake, client) = setup_with(Assumed::ALL).await;
    fake.refuse_operations(Refusal::Schema, |query, _| {
        query.contains("__schema") || query.contains("__type")
    });

    let features = detect(client.transport(), None).await.unwrap();

    assert_eq!(features, Features::default());
    assert_eq!(fake.counts().refused, 1, "asked once");
}

#[tokio::test]
async fn a_cancelled_reservation_shows_as_its_status_or_as_stays_no_longer_returned() {
    for assumed in [Assumed::NONE, Assumed::ALL] {
        let (fake, client) = setup_with(assumed).await;
        let r = fake.add_reservation(HOTEL, "R");
        let stay = fake.add_room_stay(HOTEL, &r, "101", "2030-03-18", "2030-03-19");
        fake.set_reservation_status(HOTEL, &r, ReservationStatus::Cancelled);
        let detected = Detected::new(detect(client.transport(), None).await.unwrap());

        let (stays, _) = client
            .room_stays_by_ids(&detected, std::slice::from_ref(&stay))
            .await
            .unwrap();

        if assumed.reservation_status {
            assert_eq!(stays.len(), 1);
            assert!(stays[0].reservation_cancelled);
            assert_eq!(stays[0].reservation_id.as_deref(), Some(r.as_str()));
        } else {
            assert!(stays.is_empty(), "not returned: {stays:?}");
        }
    }
}
