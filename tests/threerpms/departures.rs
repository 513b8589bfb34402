//! Departures, cancellations and deletions that take effect at once, on
//! the webhook path and at the nightly sync; the horizon on every path.

use super::*;

/// Check-out one minute before T0 (2030-03-17 17:46:40 UTC): a departure
/// moved to today has then ended one minute ago.
fn check_out_a_minute_ago(c: &mut serde_json::Value) {
    c["hotels"][0]["check_out"] = json!("17:45:40");
}

/// Item 5 on the webhook path: the departure moves earlier; a key that
/// still opens after the guest left is the worst outcome there is.
#[tokio::test]
async fn a_departure_moved_earlier_takes_effect_at_once_through_webhooks() {
    for (mode, fake) in both_modes() {
        let e = env(Options {
            fake,
            webhooks: true,
            edit: check_out_a_minute_ago,
            ..Options::default()
        })
        .await;
        e.register_webhooks().await;
        let r = e.fake.add_reservation(PROPERTY, "R-EARLY");
        let leaving = e.stay(&r, "rs-101", &day(-1), &day(3));
        let shorter = e.stay(&r, "rs-102", &day(0), &day(5));
        e.webhooks_settled().await;
        let (rpms, pin) = e.published_pin(&leaving);
        let staying = e.live_key(&shorter).await;

        // The guest left a minute ago; the other stay now ends on day 2.
        e.fake
            .change_room_stay_dates(PROPERTY, &leaving, &day(-1), &day(0));
        e.fake
            .change_room_stay_dates(PROPERTY, &shorter, &day(0), &day(2));
        e.webhooks_settled().await;

        e.assert_no_key(&leaving, &rpms).await;
        assert_ne!(
            e.fake.room_stay(PROPERTY, &leaving).unwrap().key_id,
            Some(rpms.clone()),
            "{mode}: 3RPMS no longer shows the departed guest's PIN {pin}"
        );
        let shortened = e.live_key(&shorter).await;
        assert_eq!(shortened.key_id, staying.key_id, "{mode}");
        assert_eq!(
            shortened.ends_at.unwrap().seconds,
            unix(&day(2), 17) + 45 * 60 + 40,
            "{mode}: the key ends at the new departure"
        );
        let (_, published) = e.published_pin(&shorter);
        assert_eq!(published, pin_of(&shortened), "{mode}");
    }
}

/// Item 5 on the nightly path (SyncRoomStays runs the nightly round): a
/// departure moved to a minute ago, a cancelled reservation and a deleted
/// stay each lose their key at once, in keysmith and in 3RPMS, and the
/// other stays go on.
#[tokio::test]
async fn departures_cancellations_and_deletions_take_effect_at_the_nightly_sync() {
    for (mode, fake) in both_modes() {
        let e = env(Options {
            fake,
            edit: check_out_a_minute_ago,
            ..Options::default()
        })
        .await;
        let r = e.fake.add_reservation(PROPERTY, "R-NIGHT");
        let cancelled = e.fake.add_reservation(PROPERTY, "R-CANCEL");
        let left = e.stay(&r, "rs-101", &day(-1), &day(2));
        let deleted = e.stay(&r, "rs-102", &day(1), &day(3));
        let called_off = e.stay(&cancelled, "rs-102", &day(4), &day(6));
        let other = e.stay(&r, "rs-101", &day(3), &day(5));
        e.sync().await;
        let rpms: Vec<String> = [&left, &deleted, &called_off]
            .iter()
            .map(|s| e.published_pin(s).0)
            .collect();

        e.fake
            .change_room_stay_dates(PROPERTY, &left, &day(-1), &day(0));
        e.fake.delete_room_stay(PROPERTY, &deleted);
        e.fake
            .set_reservation_status(PROPERTY, &cancelled, ReservationStatus::Cancelled);
        let report = e.sync().await;

        assert!(report.failed.is_empty(), "{mode}: {:?}", report.failed);
        assert_eq!(report.keys_revoked, 3, "{mode}");
        for (stay, rpms) in [&left, &deleted, &called_off].into_iter().zip(&rpms) {
            e.assert_no_key(stay, rpms).await;
        }
        assert_eq!(
            e.live_key(&other).await.state,
            pb::KeyState::Active as i32,
            "{mode}"
        );
    }
}

/// Item 6: with `sync_days = 1`, a stay two days out named by a webhook
/// gets no key; it gets one once it enters the horizon (here, moved up to
/// today).
#[tokio::test]
async fn the_horizon_holds_on_the_webhook_path() {
    for (mode, fake) in both_modes() {
        let e = env(Options {
            fake,
            webhooks: true,
            edit: |c| c["hotels"][0]["sync_days"] = json!(1),
            ..Options::default()
        })
        .await;
        e.register_webhooks().await;
        let r = e.fake.add_reservation(PROPERTY, "R-LATER");
        let later = e.stay(&r, "rs-101", &day(2), &day(4));
        let today = e.stay(&r, "rs-102", &day(0), &day(1));
        e.webhooks_settled().await;

        assert!(e.keys_of(&later).await.is_empty(), "{mode}: no key yet");
        assert_eq!(e.fake.room_stay(PROPERTY, &later).unwrap().key_id, None);
        e.live_key(&today).await;

        // Moved up to today, it enters the horizon and is keyed. (The
        // clock is not moved: audit ids in one process follow the latest
        // clock any test set.)
        e.fake
            .change_room_stay_dates(PROPERTY, &later, &day(0), &day(2));
        e.webhooks_settled().await;
        let key = e.live_key(&later).await;
        assert_eq!(e.published_pin(&later).1, pin_of(&key), "{mode}");
    }
}
