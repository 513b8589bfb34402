//! The guide's scenarios through signed webhooks, in both modes of the
//! fake; events out of order and twice; a forged delivery; a key revoked
//! through keysmith.

use super::*;

#[tokio::test]
async fn stay_changes_reach_keysmith_through_signed_webhooks_as_documented() {
    guide_scenarios_through_webhooks(FakeConfig::default()).await;
}

#[tokio::test]
async fn stay_changes_reach_keysmith_through_signed_webhooks_with_assumed_extras() {
    guide_scenarios_through_webhooks(assuming_all()).await;
}

/// Every scenario of the guide's "Listen for Room Stay Changes". Without the
/// reservation status, a cancelled reservation shows by its stays no longer
/// being returned; with it, by the status.
async fn guide_scenarios_through_webhooks(fake: FakeConfig) {
    let e = env(Options {
        fake,
        webhooks: true,
        // The split stay below arrives on day 7.
        edit: |c| c["hotels"][0]["sync_days"] = json!(10),
        ..Options::default()
    })
    .await;
    e.register_webhooks().await;
    let r1 = e.fake.add_reservation(PROPERTY, "R-1");
    let s1 = e.stay(&r1, "rs-101", &day(0), &day(2));
    let s2 = e.stay(&r1, "rs-102", &day(1), &day(3));
    e.webhooks_settled().await;
    // The created events already brought both stays into step.
    let k1 = e.live_key(&s1).await;
    let (rpms1, pin1) = e.published_pin(&s1);
    assert_eq!(pin1, pin_of(&k1));
    e.live_key(&s2).await;

    // Departure moved: the same key, its window follows, 3RPMS unchanged.
    e.fake
        .change_room_stay_dates(PROPERTY, &s1, &day(0), &day(4));
    e.webhooks_settled().await;
    let k1b = e.live_key(&s1).await;
    assert_eq!(k1b.key_id, k1.key_id);
    assert_eq!(k1b.ends_at.unwrap().seconds, unix(&day(4), 11));
    assert_eq!(k1b.state, pb::KeyState::Active as i32, "re-encoded at once");
    assert_eq!(e.published_pin(&s1), (rpms1.clone(), pin1.clone()));
    assert!(
        e.server
            .present("room-101", &pin1, unix(&day(3), 12))
            .await
            .granted,
        "the PIN opens on the new last day"
    );

    // Moved to another room: the old key is revoked, a new one published.
    let (old_rpms2, _) = e.published_pin(&s2);
    let old2 = e.live_key(&s2).await;
    e.fake.move_room_stay(PROPERTY, &s2, "rs-101");
    e.webhooks_settled().await;
    let new2 = e.live_key(&s2).await;
    assert_ne!(new2.key_id, old2.key_id);
    assert_eq!(new2.entrances[0].entrance_id, "room-101");
    let revoked = e.keys_of(&s2).await;
    assert!(revoked
        .iter()
        .any(|k| k.key_id == old2.key_id && k.state == pb::KeyState::Revoked as i32));
    let (new_rpms2, pin2) = e.published_pin(&s2);
    assert_ne!(new_rpms2, old_rpms2);
    assert_eq!(pin2, pin_of(&new2));
    assert!(
        e.fake.key(PROPERTY, &old_rpms2).is_none(),
        "old 3RPMS key deleted"
    );

    // Deleted: keysmith revokes, the 3RPMS key is deleted.
    e.fake.delete_room_stay(PROPERTY, &s1);
    e.webhooks_settled().await;
    assert!(e
        .keys_of(&s1)
        .await
        .iter()
        .all(|k| k.state == pb::KeyState::Revoked as i32));
    assert!(e.fake.key(PROPERTY, &rpms1).is_none());

    // Cancelled, then re-activated: revoked and removed, then a new key.
    let r2 = e.fake.add_reservation(PROPERTY, "R-2");
    let s4 = e.stay(&r2, "rs-102", &day(2), &day(5));
    e.webhooks_settled().await;
    let first = e.live_key(&s4).await;
    let (rpms4, _) = e.published_pin(&s4);
    e.fake
        .set_reservation_status(PROPERTY, &r2, ReservationStatus::Cancelled);
    e.webhooks_settled().await;
    assert!(e
        .keys_of(&s4)
        .await
        .iter()
        .all(|k| k.state == pb::KeyState::Revoked as i32));
    assert_eq!(e.fake.room_stay(PROPERTY, &s4).unwrap().key_id, None);
    assert!(e.fake.key(PROPERTY, &rpms4).is_none());
    e.fake
        .set_reservation_status(PROPERTY, &r2, ReservationStatus::Confirmed);
    e.webhooks_settled().await;
    let again = e.live_key(&s4).await;
    assert_ne!(again.key_id, first.key_id, "a new key, not the revoked one");
    let (_, pin4) = e.published_pin(&s4);
    assert_eq!(pin4, pin_of(&again));

    // Split: the new stay shows up with the same 3RPMS key; keysmith shares
    // its key and the window covers both stays.
    let r3 = e.fake.add_reservation(PROPERTY, "R-3");
    let s5 = e.stay(&r3, "rs-102", &day(5), &day(9));
    e.webhooks_settled().await;
    let k5 = e.live_key(&s5).await;
    let (rpms5, pin5) = e.published_pin(&s5);
    let s6 = e.fake.split_room_stay(PROPERTY, &s5, &day(7));
    e.webhooks_settled().await;
    assert_eq!(
        e.fake.room_stay(PROPERTY, &s6).unwrap().key_id,
        Some(rpms5.clone())
    );
    assert!(
        e.keys_of(&s6).await.is_empty(),
        "no second key for the split"
    );
    let k5b = e.live_key(&s5).await;
    assert_eq!(k5b.key_id, k5.key_id);
    assert_eq!(k5b.ends_at.unwrap().seconds, unix(&day(9), 11));

    // 3RPMS deleted keysmith's key (its own cleanup): republished, same PIN.
    e.fake.expire_key(PROPERTY, &rpms5);
    e.webhooks_settled().await;
    let (new5, again5) = e.published_pin(&s5);
    assert_ne!(new5, rpms5);
    assert_eq!(again5, pin5);
    let (new6, again6) = e.published_pin(&s6);
    assert_ne!(new6, rpms5);
    assert_eq!(again6, pin5, "both stays show the PIN that opens the room");
}

#[tokio::test]
async fn events_out_of_order_and_twice_end_in_the_same_state() {
    let fake = FakeConfig {
        duplicate_webhooks: true,
        ..FakeConfig::default()
    };
    let e = env(Options {
        fake,
        webhooks: true,
        ..Options::default()
    })
    .await;
    e.register_webhooks().await;
    e.fake.set_reorder_webhooks(true);
    e.fake.hold_webhooks();
    let r = e.fake.add_reservation(PROPERTY, "R-9");
    let s = e.stay(&r, "rs-101", &day(1), &day(2));
    e.fake
        .change_room_stay_dates(PROPERTY, &s, &day(1), &day(3));
    e.fake.move_room_stay(PROPERTY, &s, "rs-102");
    e.fake.release_webhooks();
    e.webhooks_settled().await;
    let key = e.live_key(&s).await;
    assert_eq!(key.entrances[0].entrance_id, "room-102");
    assert_eq!(key.ends_at.unwrap().seconds, unix(&day(3), 11));
    let (_, pin) = e.published_pin(&s);
    assert_eq!(pin, pin_of(&key));
    assert_eq!(
        e.fake.keys(PROPERTY).len(),
        1,
        "exactly one 3RPMS key, whatever the order"
    );
}

#[tokio::test]
async fn a_badly_signed_webhook_is_refused_and_changes_nothing() {
    let e = env(Options {
        webhooks: true,
        ..Options::default()
    })
    .await;
    e.register_webhooks().await;
    let event = e.fake.send_badly_signed_event(PROPERTY);
    e.fake.webhooks_idle().await;
    let attempts: Vec<_> = e
        .fake
        .deliveries()
        .into_iter()
        .filter(|d| d.event_id == event)
        .collect();
    assert!(!attempts.is_empty());
    assert!(attempts.iter().all(|d| matches!(
        d.outcome,
        fake_3rpms::DeliveryOutcome::Rejected { status: 401 }
    )));
    e.fake.reset_counts();
    e.webhooks_settled().await;
    assert_eq!(e.fake.counts().http_requests, 0, "nothing was acted on");
    // Other tests of this binary share the recorder: at least these.
    let metrics =
        common::metrics::scrape(e.server.running.as_ref().unwrap().metrics_addr.unwrap()).await;
    let rejected = metrics
        .get(
            "keysmith_webhook_deliveries_total",
            &[
                ("source", "threerpms".to_owned()),
                ("outcome", "rejected".to_owned()),
            ],
        )
        .unwrap_or(0.0);
    assert!(rejected >= attempts.len() as f64, "{rejected}");
}

#[tokio::test]
async fn a_published_key_revoked_through_keysmith_is_replaced_in_3rpms() {
    let e = env(Options::default()).await;
    let r = e.fake.add_reservation(PROPERTY, "R-LOST");
    let s = e.stay(&r, "rs-101", &day(0), &day(3));
    e.sync().await;
    let lost = e.live_key(&s).await;
    let (old_rpms, _) = e.published_pin(&s);

    // The guest's PIN leaked: the front desk revokes it through keysmith.
    e.server.revoke_key(&lost.key_id).await.unwrap();
    e.webhooks_settled().await;

    let new = e.live_key(&s).await;
    assert_ne!(new.key_id, lost.key_id);
    assert!(
        e.fake.key(PROPERTY, &old_rpms).is_none(),
        "the old key is gone from 3RPMS"
    );
    let (new_rpms, pin) = e.published_pin(&s);
    assert_ne!(new_rpms, old_rpms);
    assert_eq!(pin, pin_of(&new));
    assert!(e.server.present("room-101", &pin, T0 + 600).await.granted);
}
