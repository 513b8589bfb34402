//! One bad event or room stay never stops a hotel: retried with
//! back-off, parked with its reason, listed, retried by the operator.

use super::*;

/// Item 4: 3RPMS refuses one query shape (reading a reservation by id):
/// that event is tried again with back-off and parked with its reason,
/// every other stay still gets its key, and the parked item is listed and
/// can be queued again.
#[tokio::test]
async fn one_permanently_failing_event_is_parked_and_the_hotel_goes_on() {
    let e = env(Options {
        fake: assuming_all(),
        webhooks: true,
        ..Options::default()
    })
    .await;
    e.register_webhooks().await;
    let poisoned = e.fake.add_reservation(PROPERTY, "R-POISON");
    let refused = poisoned.clone();
    e.fake
        .refuse_operations(Refusal::Validation, move |query, variables| {
            query.contains("reservations(filter:{id:") && variables.to_string().contains(&refused)
        });
    let fine = e.fake.add_reservation(PROPERTY, "R-FINE");
    let a = e.stay(&poisoned, "rs-101", &day(0), &day(2));
    let b = e.stay(&fine, "rs-102", &day(1), &day(3));
    // Tests wait for the queue, never for time: a hang here is the failure.
    tokio::time::timeout(Duration::from_secs(60), e.webhooks_settled())
        .await
        .expect("the hotel's queue went on past the failing event");

    for stay in [&a, &b] {
        let key = e.live_key(stay).await;
        assert_eq!(e.published_pin(stay).1, pin_of(&key));
    }
    let parked = e.parked().await;
    assert_eq!(parked.len(), 1, "{parked:?}");
    assert_eq!(parked[0].kind, "reservation.created");
    assert_eq!(parked[0].object_id, poisoned);
    assert!(
        parked[0].reason.contains("THREERPMS_VALIDATION"),
        "{parked:?}"
    );
    assert_eq!(parked[0].attempts, 3, "a validation error is tried thrice");
    assert!(e.fake.counts().refused >= 3);

    // Fixed upstream: queued again, it goes through and leaves the list.
    e.fake.stop_refusing();
    let retried = e
        .pms
        .clone()
        .retry_parked_item(pb::RetryParkedItemRequest {
            property_id: PROPERTY.into(),
            item_id: parked[0].item_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retried.item.unwrap().object_id, poisoned);
    e.webhooks_settled().await;
    assert!(e.parked().await.is_empty());
    let again = e
        .pms
        .clone()
        .retry_parked_item(pb::RetryParkedItemRequest {
            property_id: PROPERTY.into(),
            item_id: parked[0].item_id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::NotFound);
}

/// Item 4 on the nightly path: the read of one stay keysmith keeps is
/// refused; the sync goes on for every other stay, the stay is tried again
/// with back-off and parked, and the parked item survives a restart.
#[tokio::test]
async fn the_nightly_sync_never_waits_on_a_parked_stay() {
    let e = env(Options::default()).await;
    let r = e.fake.add_reservation(PROPERTY, "R-N");
    let poisoned = e.stay(&r, "rs-101", &day(0), &day(2));
    e.sync().await;
    // Out of the window: the nightly round reads it by id, and 3RPMS
    // refuses that read.
    e.fake
        .change_room_stay_dates(PROPERTY, &poisoned, &day(20), &day(22));
    let refused = poisoned.clone();
    e.fake
        .refuse_operations(Refusal::Validation, move |query, variables| {
            query.contains("RoomStaysByIds") && variables.to_string().contains(&refused)
        });
    let newcomer = e.stay(&r, "rs-102", &day(1), &day(3));

    let report = e.sync().await;
    assert_eq!(report.keys_issued, 1, "the newcomer is keyed all the same");
    assert_eq!(report.failed.len(), 1, "{:?}", report.failed);
    assert_eq!(report.failed[0].room_stay_id, poisoned);
    let key = e.live_key(&newcomer).await;
    assert_eq!(e.published_pin(&newcomer).1, pin_of(&key));
    tokio::time::timeout(Duration::from_secs(60), e.webhooks_settled())
        .await
        .expect("the retries end in the dead-letter list");
    let parked = e.parked().await;
    assert_eq!(parked.len(), 1, "{parked:?}");
    assert_eq!(parked[0].kind, "keysmith.retry_stay");
    assert_eq!(parked[0].object_id, poisoned);

    // The next nightly round does not wait on it either, nor parks it twice.
    assert_eq!(e.sync().await.failed.len(), 1);
    e.webhooks_settled().await;
    assert_eq!(e.parked().await.len(), 1);

    // Durable: after a restart it is still listed, and can be retried.
    let Env {
        fake,
        server,
        threerpms,
        ..
    } = e;
    let kept = threerpms.clone();
    let server = server
        .restart_with(move |c| {
            c.threerpms = Some(serde_json::from_value(kept).unwrap());
        })
        .await;
    let addr = server.running.as_ref().unwrap().addr;
    let e = Env {
        pms: PmsServiceClient::connect(format!("http://{addr}"))
            .await
            .unwrap(),
        fake,
        server,
        threerpms,
    };
    let parked = e.parked().await;
    assert_eq!(parked.len(), 1, "the list survived the restart");
    e.fake.stop_refusing();
    e.pms
        .clone()
        .retry_parked_item(pb::RetryParkedItemRequest {
            property_id: PROPERTY.into(),
            item_id: parked[0].item_id.clone(),
        })
        .await
        .unwrap();
    e.webhooks_settled().await;
    assert!(e.parked().await.is_empty());
    // Moved beyond the horizon, the stay's key went.
    assert!(e
        .keys_of(&poisoned)
        .await
        .iter()
        .all(|k| k.state == pb::KeyState::Revoked as i32));
}
