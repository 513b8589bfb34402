//! The four reservation rules of the guide and the Visionline rule, with
//! the guide's statuses and messages (titles on request), and its scenarios.

use fake_seam::{
    ReservationErrorText, RESERVATION_CONFLICT_TYPE, RESERVATION_ENTRANCE_CHANGE_REQUIRES_CLEANUP,
    RESERVATION_ENTRANCE_CHANGE_REQUIRES_CLEANUP_MESSAGE,
    RESERVATION_JOINER_ENTRANCE_SET_CONFLICT_MESSAGE, RESERVATION_KEY_NOT_SUPPORTED_MESSAGE,
    RESERVATION_KEY_REQUIRED_FOR_GUEST_CARDS, RESERVATION_TIME_FRAMES_MUST_OVERLAP_MESSAGE,
};
use serde_json::{json, Value};

use crate::common::*;

fn window(mut body: Value, starts: &str, ends: &str) -> Value {
    body["starts_at"] = json!(starts);
    body["ends_at"] = json!(ends);
    body
}

#[tokio::test]
async fn rule_1_reservation_key_needs_a_capable_entrance() {
    let env = env().await;
    let user = env.user("g").await;
    let (kind, message) = env
        .fails(
            "/access_grants/create",
            card_grant(&user, &[&env.gym, &env.lobby], Some("stay-1")),
            400,
        )
        .await;
    assert_eq!(message, RESERVATION_KEY_NOT_SUPPORTED_MESSAGE);
    assert_eq!(kind, "invalid_input");
    // Without a key the same doors are standard access.
    env.grant(card_grant(&user, &[&env.gym, &env.lobby], None))
        .await;
}

#[tokio::test]
async fn mixed_grants_apply_the_reservation_to_capable_entrances_only() {
    let env = env().await;
    let user = env.user("g").await;
    env.grant(card_grant(
        &user,
        &[&env.room101, &env.gym, &env.lobby],
        Some("stay-1"),
    ))
    .await;
    let g = &env.fake.grants(WS)[0];
    assert_eq!(g.reservation_entrance_ids, [env.room101.as_str()]);
    assert_eq!(g.acs_entrance_ids.len(), 3);
}

#[tokio::test]
async fn rule_2_the_door_set_is_fixed_until_cleaned_up() {
    let env = env().await;
    let user = env.user("g").await;
    let old = env
        .grant(card_grant(&user, &[&env.room101], Some("stay-1")))
        .await;
    // Another room, or a set that is neither a subset nor a superset.
    for doors in [vec![&env.room203], vec![&env.room102]] {
        let (kind, message) = env
            .fails(
                "/access_grants/create",
                card_grant(&user, &doors, Some("stay-1")),
                409,
            )
            .await;
        assert_eq!(
            message,
            RESERVATION_ENTRANCE_CHANGE_REQUIRES_CLEANUP_MESSAGE
        );
        assert_eq!(kind, RESERVATION_CONFLICT_TYPE);
    }
    // Scenario 3 (relocation): delete, then create with the new room at
    // once, while the old grant's teardown is still running.
    env.ok(
        "/access_grants/delete",
        json!({ "access_grant_id": old["access_grant_id"] }),
    )
    .await;
    let mut moved = card_grant(&user, &[], Some("stay-1"));
    moved["space_ids"] = json!([env.space("room-203")]);
    let moved = window(moved, "2030-05-10T15:30:00Z", ENDS);
    env.grant(moved).await;
    // The reservation's doors are now room 203's.
    let (_, message) = env
        .fails(
            "/access_grants/create",
            card_grant(&user, &[&env.room101], Some("stay-1")),
            409,
        )
        .await;
    assert_eq!(
        message,
        RESERVATION_ENTRANCE_CHANGE_REQUIRES_CLEANUP_MESSAGE
    );
}

#[tokio::test]
async fn partly_different_door_sets_need_cleanup_too() {
    let env = env().await;
    let user = env.user("g").await;
    env.grant(card_grant(&user, &[&env.room101, &env.room102], Some("s")))
        .await;
    let (_, message) = env
        .fails(
            "/access_grants/create",
            card_grant(&user, &[&env.room101, &env.room203], Some("s")),
            409,
        )
        .await;
    assert_eq!(
        message,
        RESERVATION_ENTRANCE_CHANGE_REQUIRES_CLEANUP_MESSAGE
    );
}

#[tokio::test]
async fn rule_3_joiners_take_subsets_not_supersets() {
    let env = env().await;
    let (g1, g2) = (env.user("g1").await, env.user("g2").await);
    env.grant(card_grant(
        &g1,
        &[&env.room101, &env.room102],
        Some("stay-1"),
    ))
    .await;
    // Same set and a subset join; non-capable doors are not compared.
    env.grant(card_grant(
        &g2,
        &[&env.room101, &env.room102],
        Some("stay-1"),
    ))
    .await;
    env.grant(card_grant(
        &g2,
        &[&env.room101, &env.gym, &env.lobby],
        Some("stay-1"),
    ))
    .await;

    // A superset of the reservation's doors.
    env.grant(card_grant(&g1, &[&env.room203], Some("stay-2")))
        .await;
    let (kind, message) = env
        .fails(
            "/access_grants/create",
            card_grant(&g2, &[&env.room203, &env.room101], Some("stay-2")),
            409,
        )
        .await;
    assert_eq!(message, RESERVATION_JOINER_ENTRANCE_SET_CONFLICT_MESSAGE);
    assert_eq!(kind, RESERVATION_CONFLICT_TYPE);
}

#[tokio::test]
async fn rule_4_time_frames_must_overlap() {
    let env = env().await;
    let (g1, g2, g3) = (
        env.user("g1").await,
        env.user("g2").await,
        env.user("g3").await,
    );
    env.grant(card_grant(&g1, &[&env.room101], Some("stay-1")))
        .await;
    // Overlapping joiner.
    env.grant(window(
        card_grant(&g2, &[&env.room101], Some("stay-1")),
        "2030-05-11T11:00:00Z",
        ENDS,
    ))
    .await;
    // No overlap (and back to back is no overlap either).
    for (starts, ends) in [
        ("2030-05-15T15:00:00Z", "2030-05-18T11:00:00Z"),
        (ENDS, "2030-05-16T11:00:00Z"),
    ] {
        let (kind, message) = env
            .fails(
                "/access_grants/create",
                window(
                    card_grant(&g3, &[&env.room101], Some("stay-1")),
                    starts,
                    ends,
                ),
                409,
            )
            .await;
        assert_eq!(message, RESERVATION_TIME_FRAMES_MUST_OVERLAP_MESSAGE);
        assert_eq!(kind, RESERVATION_CONFLICT_TYPE);
    }
    // Scenario 1: back to back with a different key overrides, no conflict.
    env.grant(window(
        card_grant(&g3, &[&env.room101], Some("stay-2")),
        "2030-05-14T15:00:00Z",
        "2030-05-16T11:00:00Z",
    ))
    .await;
}

#[tokio::test]
async fn rule_4_holds_for_updates_of_times() {
    let env = env().await;
    let (g1, g2) = (env.user("g1").await, env.user("g2").await);
    env.grant(card_grant(&g1, &[&env.room101], Some("stay-1")))
        .await;
    let joiner = env
        .grant(card_grant(&g2, &[&env.room101], Some("stay-1")))
        .await;
    let (_, message) = env
        .fails(
            "/access_grants/update",
            json!({
                "access_grant_id": joiner["access_grant_id"],
                "starts_at": "2030-06-01T15:00:00Z",
                "ends_at": "2030-06-03T11:00:00Z",
            }),
            409,
        )
        .await;
    assert_eq!(message, RESERVATION_TIME_FRAMES_MUST_OVERLAP_MESSAGE);
    // Scenario 4: extending a stay is fine.
    env.ok(
        "/access_grants/update",
        json!({ "access_grant_id": joiner["access_grant_id"], "ends_at": "2030-05-16T11:00:00Z" }),
    )
    .await;
}

#[tokio::test]
async fn visionline_guest_cards_need_a_reservation_key() {
    let env = env().await;
    let user = env.user("g").await;
    let (kind, message) = env
        .fails(
            "/access_grants/create",
            card_grant(&user, &[&env.room101], None),
            400,
        )
        .await;
    assert_eq!(message, RESERVATION_KEY_REQUIRED_FOR_GUEST_CARDS);
    assert_eq!(message, "reservation_key required for guest cards.");
    assert_eq!(kind, "invalid_input");
    // Mixed with common doors: still required.
    env.fails(
        "/access_grants/create",
        card_grant(&user, &[&env.room101, &env.lobby], None),
        400,
    )
    .await;
    // Not for mobile keys, nor for cards on a plain system.
    let mut mobile = card_grant(&user, &[&env.room101], None);
    mobile["requested_access_methods"] = json!([{ "mode": "mobile_key" }]);
    env.grant(mobile).await;
    env.grant(card_grant(&user, &[&env.lobby], None)).await;

    // A plain system's capable rooms take cards without a key.
    env.fake.add_acs_system(WS, "sys-online", "Online", false);
    let online = env
        .fake
        .add_entrance(WS, "sys-online", room("Room 900", "room-900", false));
    env.grant(card_grant(&user, &[&online], None)).await;
}

/// Which text Seam answers is undocumented: the guide's title on request.
#[tokio::test]
async fn the_guides_titles_on_request() {
    let env = env_with(fake_seam::FakeSeamConfig {
        reservation_error_text: ReservationErrorText::Title,
        ..fake_seam::FakeSeamConfig::manual()
    })
    .await;
    let user = env.user("g").await;
    env.grant(card_grant(&user, &[&env.room101], Some("stay-1")))
        .await;
    let (_, message) = env
        .fails(
            "/access_grants/create",
            card_grant(&user, &[&env.room102], Some("stay-1")),
            409,
        )
        .await;
    assert_eq!(message, RESERVATION_ENTRANCE_CHANGE_REQUIRES_CLEANUP);
}
