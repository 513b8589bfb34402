//! keysmith with Seam, end to end: the real keysmith server on an ephemeral
//! port and the fake Seam on another, the demo hotel's doors on the
//! simulated lock and the Seam workspace's doors in the same property.
mod common;

use common::{reason, TestServer, DAY, HOUR, PROPERTY, T0};
use fake_seam::{EntranceSeed, FakeSeam, FakeSeamConfig, Fault};
use keysmith_api::v1 as pb;
use serde_json::json;
use tonic::Code;
use tonic_types::StatusExt;

const WS: &str = "ws_test";
const KEY: &str = "seam_test_key";

struct Seam {
    server: TestServer,
    fake: FakeSeam,
    room_a: String,
    room_b: String,
    gym: String,
    encoder: String,
}

impl Drop for Seam {
    /// Every request keysmith sent, and every answer and event of the fake,
    /// kept to Seam's published API definition.
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let broken = self.fake.contract_violations();
            assert!(broken.is_empty(), "outside Seam's definition: {broken:#?}");
        }
    }
}

fn room(name: &str, space: &str) -> EntranceSeed {
    EntranceSeed {
        display_name: name.into(),
        space_key: Some(space.into()),
        can_belong_to_reservation: true,
        can_unlock_with_card: true,
        can_unlock_with_code: true,
        can_unlock_with_mobile_key: true,
    }
}

async fn seam_with(config: FakeSeamConfig) -> Seam {
    seam_configured(config, None).await
}

/// With `events`: keysmith's Svix receiver on that address, registered with
/// the fake as a webhook endpoint.
async fn seam_configured(config: FakeSeamConfig, events: Option<std::net::SocketAddr>) -> Seam {
    let fake = FakeSeam::start(config).await.unwrap();
    fake.add_workspace(WS, KEY);
    fake.add_acs_system(WS, "sys_visionline", "Visionline", true);
    fake.add_acs_system(WS, "sys_plain", "Plain", false);
    let room_a = fake.add_entrance(WS, "sys_visionline", room("Room 201", "space-201"));
    let room_b = fake.add_entrance(WS, "sys_visionline", room("Room 202", "space-202"));
    let gym = fake.add_entrance(
        WS,
        "sys_plain",
        EntranceSeed {
            display_name: "Gym".into(),
            can_unlock_with_card: true,
            can_unlock_with_code: true,
            ..EntranceSeed::default()
        },
    );
    let encoder = fake.add_encoder(WS, "sys_visionline", "Front desk");
    let base_url = fake.base_url();
    let secret =
        events.map(|addr| fake.add_webhook(WS, &format!("http://{addr}/seam/webhooks/{PROPERTY}")));
    let server = TestServer::start_with(move |c| {
        let mut seam = json!({
                "base_url": base_url,
                "connect_timeout_ms": 1000,
                "request_timeout_ms": 1000,
                "max_retries": 2,
                "backoff_ms": 5,
                // Tests refresh by hand (RefreshKey): no background polling.
                "poll_interval_ms": 3_600_000,
                "entrance_refresh_seconds": 3600,
                "workspaces": [{ "property_id": PROPERTY, "api_key": KEY }],
        });
        if let (Some(addr), Some(secret)) = (events, secret) {
            seam["webhook_listen"] = json!(addr.to_string());
            seam["workspaces"][0]["webhook_secret"] = json!(secret);
        }
        c.drivers.seam = Some(serde_json::from_value(seam).unwrap());
    })
    .await;
    Seam {
        server,
        fake,
        room_a,
        room_b,
        gym,
        encoder,
    }
}

async fn seam() -> Seam {
    seam_with(FakeSeamConfig::manual()).await
}

fn code_key(holder: &str, doors: &[&str], rk: &str) -> pb::IssueRequest {
    let mut r = common::guest(holder, doors, T0, T0 + 2 * DAY, rk);
    r.modes = vec![pb::CredentialMode::Pin as i32];
    r
}

impl Seam {
    async fn entrances(&self, refresh: bool) -> Vec<pb::Entrance> {
        self.server
            .client
            .clone()
            .list_entrances(pb::ListEntrancesRequest {
                property_id: PROPERTY.into(),
                refresh,
            })
            .await
            .unwrap()
            .into_inner()
            .entrances
    }

    async fn refresh(&self, key_id: &str) -> pb::AccessKey {
        self.server
            .client
            .clone()
            .refresh_key(pb::RefreshKeyRequest {
                property_id: PROPERTY.into(),
                key_id: key_id.into(),
            })
            .await
            .expect("refreshed")
            .into_inner()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn entrances_come_from_seam_with_their_capabilities() {
    let s = seam().await;
    let entrances = s.entrances(false).await;
    let room = entrances
        .iter()
        .find(|e| e.entrance_id == s.room_a)
        .unwrap();
    assert_eq!(room.driver, "seam");
    let cap = room.capability.as_ref().unwrap();
    assert!(cap.can_belong_to_reservation);
    let gym = entrances.iter().find(|e| e.entrance_id == s.gym).unwrap();
    let gym_cap = gym.capability.as_ref().unwrap();
    assert!(!gym_cap.can_belong_to_reservation, "missing means false");
    assert!(!gym_cap
        .modes
        .contains(&(pb::CredentialMode::MobileKey as i32)));
    // The simulated lock's doors are in the same property, routed to it.
    assert!(entrances
        .iter()
        .any(|e| e.entrance_id == "room-101" && e.driver == "offline-lock"));

    // A door removed in Seam disappears on the next refresh.
    s.fake.remove_entrance(WS, &s.room_b);
    let after = s.entrances(true).await;
    assert!(!after.iter().any(|e| e.entrance_id == s.room_b));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_is_issued_asynchronously_and_becomes_active_with_its_code() {
    let s = seam().await;
    let issued = s
        .server
        .issue(code_key("guest-1", &[&s.room_a], "stay-1"))
        .await
        .unwrap();
    assert_eq!(issued.state, pb::KeyState::Issuing as i32);
    assert!(
        issued.credentials.iter().all(|c| c.data.is_none()),
        "nothing to deliver yet"
    );
    let grants = s.fake.grants(WS);
    assert_eq!(grants.len(), 1);
    assert_eq!(
        grants[0].access_grant_key.as_deref(),
        Some(issued.key_id.as_str())
    );
    assert_eq!(grants[0].reservation_key.as_deref(), Some("stay-1"));

    s.fake.issue_pending();
    let key = s.refresh(&issued.key_id).await;
    assert_eq!(key.state, pb::KeyState::Active as i32);
    let code = common::pin(&key);
    let method = s
        .fake
        .access_methods(WS)
        .into_iter()
        .find(|m| m.is_issued)
        .unwrap();
    assert_eq!(Some(code), method.code);

    // The same holder again: the Seam user identity is reused.
    s.server
        .issue(code_key("guest-1", &[&s.room_a], "stay-1"))
        .await
        .unwrap();
    assert_eq!(s.fake.user_identities(WS).len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn reservation_key_goes_to_seam_only_with_a_capable_door() {
    let s = seam().await;
    let mixed = s
        .server
        .issue(code_key("guest-1", &[&s.room_a, &s.gym], "stay-1"))
        .await
        .unwrap();
    let behaviours = common::behaviours(&mixed);
    assert!(behaviours.contains(&(s.room_a.clone(), pb::ReservationBehaviour::Override)));
    assert!(behaviours.contains(&(s.gym.clone(), pb::ReservationBehaviour::Standard)));
    let standard = s
        .server
        .issue(code_key("guest-2", &[&s.gym], ""))
        .await
        .unwrap();
    let grants = s.fake.grants(WS);
    let of = |key_id: &str| {
        grants
            .iter()
            .find(|g| g.access_grant_key.as_deref() == Some(key_id))
            .unwrap()
            .clone()
    };
    assert_eq!(of(&mixed.key_id).reservation_key.as_deref(), Some("stay-1"));
    assert_eq!(of(&standard.key_id).reservation_key, None);
}

#[tokio::test(flavor = "multi_thread")]
async fn seams_own_rule_errors_map_to_the_cores_reasons() {
    let s = seam().await;
    // Visionline-like: a guest card needs a reservation. keysmith cannot know
    // it from the entrance; Seam says so and keysmith maps it.
    let mut card = common::guest("guest-1", &[&s.room_a], T0, T0 + DAY, "");
    card.modes = vec![pb::CredentialMode::Card as i32];
    let err = s.server.issue(card).await.unwrap_err();
    assert_eq!(
        reason(&err),
        (Code::InvalidArgument, "RESERVATION_KEY_REQUIRED".into())
    );
    assert!(s.fake.grants(WS).is_empty(), "nothing created");
}

#[tokio::test(flavor = "multi_thread")]
async fn update_revoke_and_relocation_reach_seam() {
    let s = seam().await;
    let key = s
        .server
        .issue(code_key("guest-1", &[&s.room_a], "stay-1"))
        .await
        .unwrap();
    s.fake.issue_pending();
    s.refresh(&key.key_id).await;
    s.server
        .update_window(&key.key_id, T0, T0 + 4 * DAY)
        .await
        .unwrap();
    let grant = s.fake.grants(WS).into_iter().next().unwrap();
    assert_eq!(
        grant.ends_at.map(|t| t.as_second()),
        Some(T0 + 4 * DAY),
        "Seam has the new window"
    );
    // Seam reissues the code for the new window: issuing until it has.
    assert_eq!(
        s.server.get(&key.key_id).await.unwrap().state,
        pb::KeyState::Issuing as i32
    );
    s.fake.issue_pending();
    assert_eq!(
        s.refresh(&key.key_id).await.state,
        pb::KeyState::Active as i32
    );

    // Relocation: clear the reservation (Seam deletes its grants), then a
    // new door set under the same reservation_key.
    let cleared = s.server.revoke_reservation("stay-1").await.unwrap();
    assert!(cleared
        .keys
        .iter()
        .all(|k| k.state == pb::KeyState::Revoked as i32));
    assert!(s.fake.grants(WS).iter().all(|g| g.being_deleted));
    let moved = s
        .server
        .issue(code_key("guest-1", &[&s.room_b], "stay-1"))
        .await
        .expect("issued for the new room");
    // As the guide's relocation: the same reservation_key, and at Seam the
    // new grant is the reservation's only live one, so it establishes the
    // reservation on the new door (and overrides there).
    let live: Vec<_> = s
        .fake
        .grants(WS)
        .into_iter()
        .filter(|g| !g.being_deleted)
        .collect();
    assert_eq!(live.len(), 1, "{live:?}");
    assert_eq!(live[0].reservation_key.as_deref(), Some("stay-1"));
    assert_eq!(
        live[0].reservation_entrance_ids,
        std::slice::from_ref(&s.room_b)
    );
    assert!(common::behaviours(&moved)
        .iter()
        .all(|(_, b)| *b == pb::ReservationBehaviour::Override));
    s.fake.finish_deletions();
    let grants = s.fake.grants(WS);
    assert_eq!(grants.len(), 1, "the old grant is gone: {grants:?}");
    assert_eq!(
        grants[0].access_grant_key.as_deref(),
        Some(moved.key_id.as_str())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_card_is_encoded_at_an_encoder() {
    // The encoder finishes on its own, as a real one does once the card is on it.
    let s = seam_with(FakeSeamConfig {
        encode_delay: Some(std::time::Duration::ZERO),
        ..FakeSeamConfig::manual()
    })
    .await;
    let mut card = common::guest("guest-1", &[&s.room_a], T0, T0 + DAY, "stay-c");
    card.modes = vec![pb::CredentialMode::Card as i32];
    let key = s.server.issue(card).await.unwrap();
    s.fake.issue_pending();
    let key = s.refresh(&key.key_id).await;
    assert_eq!(key.state, pb::KeyState::EncodingRequired as i32, "{key:?}");
    let encoded = s
        .server
        .client
        .clone()
        .encode_key(pb::EncodeKeyRequest {
            property_id: PROPERTY.into(),
            request_id: String::new(),
            key_id: key.key_id.clone(),
            encoder_id: s.encoder.clone(),
        })
        .await
        .expect("encoded")
        .into_inner();
    assert_eq!(encoded.state, pb::KeyState::Active as i32, "{encoded:?}");
    assert!(s
        .fake
        .access_methods(WS)
        .iter()
        .all(|m| !m.is_encoding_required));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_create_whose_answer_is_lost_is_found_not_duplicated() {
    let s = seam().await;
    s.fake.fail_next(
        Fault::DropResponseAfterCommit {
            route: "/access_grants/create".into(),
        },
        1,
    );
    let key = s
        .server
        .issue(code_key("guest-1", &[&s.room_a], "stay-1"))
        .await
        .expect("the grant was found by its access_grant_key");
    let grants = s.fake.grants(WS);
    assert_eq!(grants.len(), 1, "exactly one grant");
    assert_eq!(
        grants[0].access_grant_key.as_deref(),
        Some(key.key_id.as_str())
    );
    assert_eq!(
        s.fake.counts().by_route.get("/access_grants/create"),
        Some(&1)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn outages_and_rate_limits_are_retried_then_surface_unavailable() {
    let s = seam().await;
    let key = s
        .server
        .issue(code_key("guest-1", &[&s.room_a], "stay-1"))
        .await
        .unwrap();
    // Two 503s, then success: an idempotent read is retried.
    s.fake
        .fail_next(Fault::Outage503.on("/access_methods/list"), 2);
    s.fake.reset_counts();
    s.fake.issue_pending();
    let refreshed = s.refresh(&key.key_id).await;
    assert_eq!(refreshed.state, pb::KeyState::Active as i32);
    assert_eq!(
        s.fake.counts().by_route.get("/access_methods/list"),
        Some(&3)
    );

    // A 429 with Retry-After, then success.
    s.fake
        .fail_next(Fault::TooManyRequests { retry_after_s: 0 }, 1);
    s.refresh(&key.key_id).await;

    // A longer outage: three tries, then UNAVAILABLE with retry info, and
    // keysmith's store unchanged.
    s.fake.fail_next(Fault::Outage503, 10);
    let err = s
        .server
        .client
        .clone()
        .update_key(pb::UpdateKeyRequest {
            property_id: PROPERTY.into(),
            request_id: String::new(),
            key_id: key.key_id.clone(),
            starts_at: Some(common::ts(T0)),
            ends_at: Some(common::ts(T0 + 5 * DAY)),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(err.get_details_retry_info().is_some());
    let unchanged = s.server.get(&key.key_id).await.unwrap();
    assert_eq!(unchanged.ends_at.unwrap().seconds, T0 + 2 * DAY);

    // A create is never retried blindly: an outage fails it after one try
    // and a look-up, and creates nothing twice.
    s.fake.clear_faults();
    s.fake.reset_counts();
    s.fake.fail_next(Fault::Outage503, 1);
    let _ = s.server.issue(code_key("guest-9", &[&s.gym], "")).await;
    assert_eq!(
        s.fake.counts().by_route.get("/access_grants/create"),
        Some(&1)
    );
    let _ = HOUR;
}

#[tokio::test(flavor = "multi_thread")]
async fn signed_events_make_an_issued_key_active_without_polling() {
    // The receiver's address is chosen first: the fake's endpoint secret goes
    // into keysmith's configuration.
    let addr = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap()
    };
    let s = seam_configured(FakeSeamConfig::manual(), Some(addr)).await;
    let key = s
        .server
        .issue(code_key("guest-1", &[&s.room_a], "stay-1"))
        .await
        .unwrap();
    assert_eq!(key.state, pb::KeyState::Issuing as i32);
    s.fake.issue_pending();
    s.fake.webhooks_idle().await;
    let delivered: Vec<_> = s.fake.deliveries();
    assert!(!delivered.is_empty());
    assert!(delivered.iter().all(|d| d.succeeded()), "{delivered:?}");
    let now = s.server.get(&key.key_id).await.unwrap();
    assert_eq!(
        now.state,
        pb::KeyState::Active as i32,
        "no RefreshKey, no polling"
    );
    assert!(!common::pin(&now).is_empty());
}

/// A reservation spread over two drivers (the simulated lock's room-101 and
/// a Seam room): a key that ended stays a member, a later key joins it on
/// both drivers, and Revoke by reservation_key clears every key on both in
/// one answer. At the simulated door the next stay then overrides, and
/// Seam's grants are being deleted.
#[tokio::test(flavor = "multi_thread")]
async fn revoke_by_reservation_clears_a_stay_over_two_drivers() {
    let s = seam().await;
    let card = |holder: &str, start: i64, end: i64| {
        let mut r = common::guest(holder, &["room-101", &s.room_a], start, end, "two-drivers");
        r.modes = vec![pb::CredentialMode::Card as i32];
        r
    };
    let first = s.server.issue(card("g1", T0, T0 + DAY)).await.unwrap();
    s.server.clock.set(T0 + DAY + HOUR);
    let joiner = s
        .server
        .issue(card("g2", T0 + DAY - 2 * HOUR, T0 + 2 * DAY))
        .await
        .unwrap();
    assert!(
        common::behaviours(&joiner)
            .iter()
            .all(|(_, b)| *b == pb::ReservationBehaviour::Join),
        "{:?}",
        common::behaviours(&joiner)
    );
    assert_eq!(s.fake.grants(WS).len(), 2);

    let revoked = s.server.revoke_reservation("two-drivers").await.unwrap();
    let mut ids: Vec<&str> = revoked.keys.iter().map(|k| k.key_id.as_str()).collect();
    ids.sort();
    let mut want = vec![first.key_id.as_str(), joiner.key_id.as_str()];
    want.sort();
    assert_eq!(ids, want);
    assert!(revoked
        .warnings
        .iter()
        .any(|w| w.code == "OFFLINE_CREDENTIAL_STILL_VALID"));
    assert!(
        s.fake.grants(WS).iter().all(|g| g.being_deleted),
        "every Seam grant of the stay is deleted"
    );

    // At the simulated door: the next stay overrides and the revoked
    // joiner's card is superseded.
    let mut next = common::guest(
        "g3",
        &["room-101"],
        T0 + DAY + 2 * HOUR,
        T0 + 3 * DAY,
        "next",
    );
    next.modes = vec![pb::CredentialMode::Card as i32];
    let next = s.server.issue(next).await.unwrap();
    let r = s
        .server
        .present("room-101", &common::card(&next), T0 + DAY + 3 * HOUR)
        .await;
    assert!(r.granted && r.overrode, "{r:?}");
    let joiner_card = joiner
        .credentials
        .iter()
        .find_map(|c| match (&c.data, c.driver.as_str()) {
            (Some(pb::credential::Data::CardData(d)), "offline-lock") => Some(d.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        s.server
            .present("room-101", &joiner_card, T0 + DAY + 4 * HOUR)
            .await
            .reason,
        "superseded"
    );
}

// ---- fidelity to Seam's published API (issue 15) ----

impl Seam {
    /// One round of keysmith's key follower, now.
    async fn follow(&self) {
        self.server
            .running
            .as_ref()
            .unwrap()
            .follow_keys_now()
            .await;
    }

    /// A grant made in Seam by someone else (another integration, Seam's
    /// console) with this reservation_key, at `door`.
    async fn foreign_grant(&self, door: &str, reservation_key: &str, starts: i64, ends: i64) {
        let iso = |t: i64| jiff::Timestamp::from_second(t).unwrap().to_string();
        let r = reqwest::Client::new()
            .post(format!("{}/access_grants/create", self.fake.base_url()))
            .bearer_auth(KEY)
            .json(&json!({
                "user_identity": { "user_identity_key": format!("foreign-{reservation_key}") },
                "acs_entrance_ids": [door],
                "starts_at": iso(starts),
                "ends_at": iso(ends),
                "requested_access_methods": [{ "mode": "code" }],
                "reservation_key": reservation_key,
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }
}

/// Seam names an access method's grants in the arrays `access_grant_ids`
/// and `access_grant_keys` (its `event` schema); after a window change only
/// `access_method.*` events say the code was reissued.
#[tokio::test(flavor = "multi_thread")]
async fn access_method_events_alone_make_a_reissued_key_active() {
    let addr = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap()
    };
    let s = seam_configured(FakeSeamConfig::manual(), Some(addr)).await;
    let key = s
        .server
        .issue(code_key("guest-1", &[&s.room_a], "stay-1"))
        .await
        .unwrap();
    s.fake.issue_pending();
    s.fake.webhooks_idle().await;
    assert_eq!(
        s.server.get(&key.key_id).await.unwrap().state,
        pb::KeyState::Active as i32
    );
    s.server
        .update_window(&key.key_id, T0, T0 + 4 * DAY)
        .await
        .unwrap();
    s.fake.webhooks_idle().await;
    assert_eq!(
        s.server.get(&key.key_id).await.unwrap().state,
        pb::KeyState::Issuing as i32,
        "the code is being reissued"
    );
    let before = s.fake.deliveries().len();
    s.fake.issue_pending();
    s.fake.webhooks_idle().await;
    let reissued: Vec<String> = s.fake.deliveries()[before..]
        .iter()
        .map(|d| d.event_type.to_string())
        .collect();
    assert_eq!(reissued, ["access_method.reissued"], "only a method event");
    let now = s.server.get(&key.key_id).await.unwrap();
    assert_eq!(
        now.state,
        pb::KeyState::Active as i32,
        "the access_method.reissued event refreshed it: no polling, no RefreshKey"
    );
}

/// Whatever goes wrong when keysmith reads the access methods of a grant it
/// has just created, the key is not ACTIVE without its credential: it stays
/// ISSUING and the key follower completes it.
#[tokio::test(flavor = "multi_thread")]
async fn a_key_is_never_active_without_its_credential() {
    let s = seam().await;
    let list = "/access_methods/list";
    let faults = [
        ("hang", Fault::HangAfterCommit { route: list.into() }),
        ("503", Fault::Outage503.on(list)),
        (
            "429, Retry-After in seconds",
            Fault::TooManyRequests { retry_after_s: 0 }.on(list),
        ),
        (
            "429, Retry-After as an HTTP date",
            Fault::TooManyRequestsUntil {
                retry_after: std::time::Duration::from_secs(1),
            }
            .on(list),
        ),
        (
            "a lost answer",
            Fault::DropResponseAfterCommit { route: list.into() },
        ),
    ];
    for (i, (what, fault)) in faults.into_iter().enumerate() {
        s.fake.fail_next(fault, fake_seam::UNTIL_CLEARED);
        let issued = s
            .server
            .issue(code_key(
                &format!("guest-{i}"),
                &[&s.room_a],
                &format!("stay-{i}"),
            ))
            .await
            .unwrap_or_else(|e| panic!("{what}: {e:?}"));
        assert_eq!(
            issued.state,
            pb::KeyState::Issuing as i32,
            "{what}: {issued:?}"
        );
        assert_eq!(
            s.server.get(&issued.key_id).await.unwrap().state,
            pb::KeyState::Issuing as i32,
            "{what}: stored as issuing"
        );
        s.fake.clear_faults();
        s.fake.issue_pending();
        s.follow().await;
        let done = s.server.get(&issued.key_id).await.unwrap();
        assert_eq!(done.state, pb::KeyState::Active as i32, "{what}: {done:?}");
        assert!(!common::pin(&done).is_empty(), "{what}");
    }
}

/// A grant whose access methods Seam cannot create is not ACTIVE: it fails,
/// with Seam's error named in a warning.
#[tokio::test(flavor = "multi_thread")]
async fn a_grant_whose_methods_cannot_be_created_fails_with_seams_error() {
    let s = seam().await;
    s.fake.refuse_access_methods(WS, 1);
    let key = s
        .server
        .issue(code_key("guest-1", &[&s.room_a], "stay-1"))
        .await
        .unwrap();
    s.fake.issue_pending();
    let key = s.refresh(&key.key_id).await;
    assert_eq!(key.state, pb::KeyState::Failed as i32, "{key:?}");
    let warning = key
        .warnings
        .iter()
        .find(|w| w.code == "SEAM_CANNOT_CREATE_REQUESTED_ACCESS_METHODS")
        .unwrap_or_else(|| panic!("{:?}", key.warnings));
    assert!(
        warning.message.contains("could not be created"),
        "{warning:?}"
    );
    // The follower leaves a failed key alone.
    s.fake.reset_counts();
    s.follow().await;
    assert_eq!(s.fake.counts().total, 0);
}

/// Seam's reservation refusals are recognised by every text the guide
/// documents for them (its message, and its title), not by one wording.
#[tokio::test(flavor = "multi_thread")]
async fn seams_reservation_refusals_are_recognised_by_every_text_the_guide_gives() {
    for text in [
        fake_seam::ReservationErrorText::Message,
        fake_seam::ReservationErrorText::Title,
    ] {
        let s = seam_with(FakeSeamConfig {
            reservation_error_text: text,
            ..FakeSeamConfig::manual()
        })
        .await;
        // Rule 2: another Seam client holds stay-x at room B; keysmith knows
        // nothing of it, so only Seam can refuse.
        s.foreign_grant(&s.room_b, "stay-x", T0, T0 + 2 * DAY).await;
        let err = s
            .server
            .issue(code_key("guest-1", &[&s.room_a], "stay-x"))
            .await
            .unwrap_err();
        assert_eq!(
            reason(&err),
            (
                Code::FailedPrecondition,
                "RESERVATION_ENTRANCE_CHANGE_REQUIRES_CLEANUP".into()
            ),
            "{text:?}"
        );
        // Rule 4: a stay that does not overlap the one Seam holds.
        s.foreign_grant(&s.room_b, "stay-y", T0, T0 + DAY).await;
        let mut later = code_key("guest-2", &[&s.room_b], "stay-y");
        later.starts_at = Some(common::ts(T0 + 3 * DAY));
        later.ends_at = Some(common::ts(T0 + 4 * DAY));
        let err = s.server.issue(later).await.unwrap_err();
        assert_eq!(
            reason(&err),
            (
                Code::FailedPrecondition,
                "RESERVATION_TIME_FRAMES_MUST_OVERLAP".into()
            ),
            "{text:?}"
        );
    }
}

/// An operator finds the encoder EncodeKey needs with ListEncoders, and a
/// property with one encoder needs none named; entrances keep Seam's
/// display names, and a Seam space is the keysmith space of its space_key.
#[tokio::test(flavor = "multi_thread")]
async fn encoders_are_listed_and_the_only_one_is_used() {
    let s = seam_with(FakeSeamConfig {
        encode_delay: Some(std::time::Duration::ZERO),
        ..FakeSeamConfig::manual()
    })
    .await;
    let room = s
        .entrances(false)
        .await
        .into_iter()
        .find(|e| e.entrance_id == s.room_a)
        .unwrap();
    assert_eq!(room.name, "Room 201");
    assert_eq!(room.space_ids, ["space-201"]);

    let encoders = s
        .server
        .client
        .clone()
        .list_encoders(pb::ListEncodersRequest {
            property_id: PROPERTY.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .encoders;
    assert_eq!(
        encoders,
        [pb::Encoder {
            encoder_id: s.encoder.clone(),
            name: "Front desk".into(),
            driver: "seam".into(),
        }]
    );

    // Issued by space, encoded without naming the encoder.
    let mut card = common::guest("guest-1", &[], T0, T0 + DAY, "stay-e");
    card.space_ids = vec!["space-201".into()];
    card.modes = vec![pb::CredentialMode::Card as i32];
    let key = s.server.issue(card).await.unwrap();
    s.fake.issue_pending();
    s.refresh(&key.key_id).await;
    let encoded = s
        .server
        .client
        .clone()
        .encode_key(pb::EncodeKeyRequest {
            property_id: PROPERTY.into(),
            request_id: String::new(),
            key_id: key.key_id.clone(),
            encoder_id: String::new(),
        })
        .await
        .expect("encoded at the only encoder")
        .into_inner();
    assert_eq!(encoded.state, pb::KeyState::Active as i32, "{encoded:?}");
}

/// Seam's Retry-After may be an HTTP date (RFC 9110): keysmith reads it, and
/// one longer than it waits out itself reaches the caller as the retry
/// delay of an UNAVAILABLE answer.
#[tokio::test(flavor = "multi_thread")]
async fn retry_after_as_an_http_date_reaches_the_caller() {
    let s = seam().await;
    let key = s
        .server
        .issue(code_key("guest-1", &[&s.room_a], "stay-1"))
        .await
        .unwrap();
    s.fake.fail_next(
        Fault::TooManyRequestsUntil {
            retry_after: std::time::Duration::from_secs(120),
        }
        .on("/access_grants/update"),
        fake_seam::UNTIL_CLEARED,
    );
    let err = s
        .server
        .update_window(&key.key_id, T0, T0 + 3 * DAY)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    let wait = err
        .get_details_retry_info()
        .and_then(|r| r.retry_delay)
        .expect("retry info");
    assert!(wait.as_secs() >= 60, "Seam's date, not a default: {wait:?}");
    assert_eq!(
        s.fake.counts().route("/access_grants/update"),
        1,
        "not retried"
    );
}

/// WatchKeys: a client that watches the property sees a Seam key issued
/// ISSUING, then ACTIVE with its code once Seam's signed event says the
/// code is set, without asking (no RefreshKey, no polling).
#[tokio::test(flavor = "multi_thread")]
async fn a_watch_sees_a_seam_key_go_from_issuing_to_active() {
    let addr = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap()
    };
    let s = seam_configured(FakeSeamConfig::manual(), Some(addr)).await;
    let mut watch = s
        .server
        .client
        .clone()
        .watch_keys(pb::WatchKeysRequest {
            property_id: PROPERTY.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    async fn next(watch: &mut tonic::Streaming<pb::WatchKeysResponse>) -> pb::WatchKeysResponse {
        watch.message().await.unwrap().expect("watching")
    }
    assert_eq!(
        next(&mut watch).await.event_type,
        pb::KeyEventType::Watching as i32
    );

    let key = s
        .server
        .issue(code_key("guest-1", &[&s.room_a], "stay-1"))
        .await
        .unwrap();
    let issued = next(&mut watch).await;
    assert_eq!(issued.event_type, pb::KeyEventType::Issued as i32);
    let shown = issued.key.unwrap();
    assert_eq!(shown.key_id, key.key_id);
    assert_eq!(shown.state, pb::KeyState::Issuing as i32);
    assert!(shown.credentials.iter().all(|c| c.data.is_none()));

    s.fake.issue_pending();
    // Seam may deliver its credentials one event at a time: the key stays
    // ISSUING (updated) until every one is there.
    let active = loop {
        let m = next(&mut watch).await;
        if m.event_type != pb::KeyEventType::Updated as i32 {
            break m;
        }
        assert_eq!(m.key.unwrap().state, pb::KeyState::Issuing as i32);
    };
    assert_eq!(active.event_type, pb::KeyEventType::StateChanged as i32);
    let shown = active.key.unwrap();
    assert_eq!(shown.key_id, key.key_id);
    assert_eq!(shown.state, pb::KeyState::Active as i32);
    assert!(!common::pin(&shown).is_empty());
}
