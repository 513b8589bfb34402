//! One driver conformance suite, run against every driver through keysmith's
//! gRPC API: the same scenarios, skipping what a driver's capabilities
//! exclude (as OpenDAL's behaviour tests do). Each driver brings a `Target`:
//! its server, two reservation-capable doors and a common door, and how to
//! let asynchronous issuance finish.
mod common;

use common::{reason, TestServer, DAY, HOUR, PROPERTY, T0};
use keysmith_api::v1 as pb;
use tonic::Code;

#[async_trait::async_trait]
trait Target: Send + Sync {
    fn server(&self) -> &TestServer;
    fn driver(&self) -> &'static str;
    /// Two doors that can belong to a reservation, and one that cannot.
    fn rooms(&self) -> (String, String);
    fn common_door(&self) -> String;
    /// A credential mode every one of those doors takes.
    fn mode(&self) -> pb::CredentialMode;
    /// Lets the driver finish issuing (online platforms issue
    /// asynchronously) and returns the key as keysmith now sees it.
    async fn settle(&self, key_id: &str) -> pb::AccessKey;
}

async fn capability(t: &dyn Target) -> pb::DriverCapability {
    let drivers = t
        .server()
        .client
        .clone()
        .list_drivers(pb::ListDriversRequest {})
        .await
        .unwrap()
        .into_inner()
        .drivers;
    drivers
        .into_iter()
        .find(|d| d.name == t.driver())
        .and_then(|d| d.capability)
        .expect("the driver is listed")
}

fn request(
    t: &dyn Target,
    holder: &str,
    doors: &[&str],
    start: i64,
    end: i64,
    rk: &str,
) -> pb::IssueRequest {
    let mut r = common::guest(holder, doors, start, end, rk);
    r.modes = vec![t.mode() as i32];
    r
}

async fn issue_list_and_revoke(t: &dyn Target) {
    let (room, _) = t.rooms();
    let issued = t
        .server()
        .issue(request(
            t,
            "g1",
            &[room.as_str()],
            T0,
            T0 + 2 * DAY,
            "stay-1",
        ))
        .await
        .expect("issued");
    assert_eq!(issued.entrances[0].driver, t.driver());
    let key = t.settle(&issued.key_id).await;
    assert_eq!(key.state, pb::KeyState::Active as i32, "{key:?}");
    assert!(
        key.credentials.iter().all(|c| c.data.is_some()),
        "deliverable: {key:?}"
    );
    let listed = t
        .server()
        .list(pb::ListKeysRequest {
            property_id: PROPERTY.into(),
            reservation_key: "stay-1".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.keys.len(), 1);
    let revoked = t.server().revoke_key(&key.key_id).await.unwrap();
    assert_eq!(revoked.keys[0].state, pb::KeyState::Revoked as i32);
}

async fn reservation_rules_hold(t: &dyn Target) {
    let (a, b) = t.rooms();
    let common = t.common_door();
    let s = t.server();
    s.issue(request(t, "g1", &[a.as_str()], T0, T0 + 2 * DAY, "stay-r"))
        .await
        .unwrap();
    let cases = [
        (
            request(t, "g2", &[common.as_str()], T0, T0 + DAY, "stay-x"),
            Code::InvalidArgument,
            "RESERVATION_KEY_NOT_SUPPORTED",
        ),
        (
            request(t, "g2", &[b.as_str()], T0, T0 + DAY, "stay-r"),
            Code::FailedPrecondition,
            "RESERVATION_ENTRANCE_CHANGE_REQUIRES_CLEANUP",
        ),
        (
            request(t, "g2", &[a.as_str(), b.as_str()], T0, T0 + DAY, "stay-r"),
            Code::FailedPrecondition,
            "RESERVATION_JOINER_ENTRANCE_SET_CONFLICT",
        ),
        (
            request(t, "g2", &[a.as_str()], T0 + 5 * DAY, T0 + 6 * DAY, "stay-r"),
            Code::FailedPrecondition,
            "RESERVATION_TIME_FRAMES_MUST_OVERLAP",
        ),
    ];
    for (req, code, expected) in cases {
        let err = s.issue(req).await.unwrap_err();
        assert_eq!(reason(&err), (code, expected.to_owned()), "{}", t.driver());
    }
    // A joiner on the same door is fine.
    let joiner = s
        .issue(request(
            t,
            "g3",
            &[a.as_str()],
            T0 + HOUR,
            T0 + DAY,
            "stay-r",
        ))
        .await
        .unwrap();
    assert_eq!(
        joiner.entrances[0].behaviour(),
        pb::ReservationBehaviour::Join
    );
}

async fn mixed_grant_applies_reservation_only_where_capable(t: &dyn Target) {
    let (room, _) = t.rooms();
    let common = t.common_door();
    let key = t
        .server()
        .issue(request(
            t,
            "g1",
            &[room.as_str(), common.as_str()],
            T0,
            T0 + DAY,
            "stay-m",
        ))
        .await
        .unwrap();
    let behaviours = common::behaviours(&key);
    assert!(behaviours.contains(&(room, pb::ReservationBehaviour::Override)));
    assert!(behaviours.contains(&(common, pb::ReservationBehaviour::Standard)));
}

async fn window_update_and_relocation(t: &dyn Target) {
    let cap = capability(t).await;
    let (a, b) = t.rooms();
    let s = t.server();
    let key = s
        .issue(request(t, "g1", &[a.as_str()], T0, T0 + DAY, "stay-u"))
        .await
        .unwrap();
    t.settle(&key.key_id).await;
    if cap.update {
        let updated = s
            .client
            .clone()
            .update_key(pb::UpdateKeyRequest {
                property_id: PROPERTY.into(),
                request_id: String::new(),
                key_id: key.key_id.clone(),
                starts_at: Some(common::ts(T0)),
                ends_at: Some(common::ts(T0 + 3 * DAY)),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(updated.ends_at.unwrap().seconds, T0 + 3 * DAY);
    }
    // Relocation: clear the reservation, then issue anew for another door.
    let cleared = s.revoke_reservation("stay-u").await.unwrap();
    assert!(cleared
        .keys
        .iter()
        .all(|k| k.state == pb::KeyState::Revoked as i32));
    let moved = s
        .issue(request(t, "g1", &[b.as_str()], T0, T0 + DAY, "stay-u"))
        .await
        .expect("a cleared reservation takes a new door set");
    assert_eq!(moved.entrances[0].entrance_id, b);
}

async fn back_to_back_stays_and_several_guests(t: &dyn Target) {
    let (a, _) = t.rooms();
    let s = t.server();
    // The guide's back-to-back stays: 11:00 check-out, 15:00 check-in.
    let first = s
        .issue(request(
            t,
            "g1",
            &[a.as_str()],
            T0,
            T0 + DAY + 11 * HOUR,
            "stay-1",
        ))
        .await
        .unwrap();
    let second = s
        .issue(request(
            t,
            "g2",
            &[a.as_str()],
            T0 + DAY + 15 * HOUR,
            T0 + 3 * DAY,
            "stay-2",
        ))
        .await
        .unwrap();
    for k in [&first, &second] {
        assert_eq!(
            k.entrances[0].behaviour(),
            pb::ReservationBehaviour::Override
        );
    }
    // Several guests of one reservation: the second joins.
    let partner = s
        .issue(request(
            t,
            "g3",
            &[a.as_str()],
            T0 + DAY + 15 * HOUR,
            T0 + 3 * DAY,
            "stay-2",
        ))
        .await
        .unwrap();
    assert_eq!(
        partner.entrances[0].behaviour(),
        pb::ReservationBehaviour::Join
    );
    for k in [&first, &second, &partner] {
        assert_eq!(t.settle(&k.key_id).await.state, pb::KeyState::Active as i32);
    }
}

async fn staff_keys_stay_out_of_reservations(t: &dyn Target) {
    if !capability(t).await.staff {
        return;
    }
    let (a, _) = t.rooms();
    let mut staff = request(t, "staff-housekeeping", &[a.as_str()], T0, T0 + DAY, "");
    staff.role = pb::Role::Staff as i32;
    let key = t.server().issue(staff).await.unwrap();
    assert!(key.reservation_key.is_empty());
    assert_eq!(
        key.entrances[0].behaviour(),
        pb::ReservationBehaviour::Standard
    );
    let mut with_rk = request(t, "staff-2", &[a.as_str()], T0, T0 + DAY, "stay-s");
    with_rk.role = pb::Role::Staff as i32;
    let err = t.server().issue(with_rk).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}

/// Reconciliation: what a driver says it holds follows issue and revoke.
async fn the_driver_lists_what_it_holds(t: &dyn Target) {
    if !capability(t).await.list {
        return;
    }
    let (a, _) = t.rooms();
    let s = t.server();
    let key = s
        .issue(request(t, "g1", &[a.as_str()], T0, T0 + DAY, "stay-l"))
        .await
        .unwrap();
    let key = t.settle(&key.key_id).await;
    let held = held_by_driver(t).await;
    let record = held
        .iter()
        .find(|k| k.key_id == key.key_id)
        .expect("an issued key is held by its driver");
    assert_eq!(record.keysmith_state(), pb::KeyState::Active);
    assert_eq!(record.entrance_ids, [a]);
    s.revoke_key(&key.key_id).await.unwrap();
    assert!(
        held_by_driver(t)
            .await
            .iter()
            .all(|k| k.key_id != key.key_id),
        "a revoked key is no longer held"
    );
}

/// Every key the driver holds for the property, one small page at a time.
async fn held_by_driver(t: &dyn Target) -> Vec<pb::DriverKey> {
    let mut keys = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = t
            .server()
            .client
            .clone()
            .list_driver_keys(pb::ListDriverKeysRequest {
                property_id: PROPERTY.into(),
                driver: t.driver().into(),
                page_size: 2,
                page_token,
            })
            .await
            .unwrap()
            .into_inner();
        keys.extend(page.keys);
        if page.next_page_token.is_empty() {
            return keys;
        }
        page_token = page.next_page_token;
    }
}

// ---- the simulated offline lock ----

struct OfflineLock(TestServer);

#[async_trait::async_trait]
impl Target for OfflineLock {
    fn server(&self) -> &TestServer {
        &self.0
    }
    fn driver(&self) -> &'static str {
        "offline-lock"
    }
    fn rooms(&self) -> (String, String) {
        ("room-101".into(), "room-102".into())
    }
    fn common_door(&self) -> String {
        "gym".into()
    }
    fn mode(&self) -> pb::CredentialMode {
        pb::CredentialMode::Card
    }
    async fn settle(&self, key_id: &str) -> pb::AccessKey {
        // Issued synchronously: nothing to wait for.
        self.0.get(key_id).await.unwrap()
    }
}

async fn offline_lock() -> OfflineLock {
    OfflineLock(TestServer::start().await)
}

macro_rules! conformance {
    ($module:ident, $target:expr) => {
        mod $module {
            use super::*;

            #[tokio::test]
            async fn issue_list_and_revoke() {
                super::issue_list_and_revoke(&$target.await).await
            }
            #[tokio::test]
            async fn reservation_rules_hold() {
                super::reservation_rules_hold(&$target.await).await
            }
            #[tokio::test]
            async fn mixed_grant_applies_reservation_only_where_capable() {
                super::mixed_grant_applies_reservation_only_where_capable(&$target.await).await
            }
            #[tokio::test]
            async fn window_update_and_relocation() {
                super::window_update_and_relocation(&$target.await).await
            }
            #[tokio::test]
            async fn back_to_back_stays_and_several_guests() {
                super::back_to_back_stays_and_several_guests(&$target.await).await
            }
            #[tokio::test]
            async fn staff_keys_stay_out_of_reservations() {
                super::staff_keys_stay_out_of_reservations(&$target.await).await
            }
            #[tokio::test]
            async fn the_driver_lists_what_it_holds() {
                super::the_driver_lists_what_it_holds(&$target.await).await
            }
        }
    };
}

// ---- Seam, against the fake Seam ----

struct SeamTarget {
    server: TestServer,
    fake: fake_seam::FakeSeam,
    rooms: (String, String),
    common: String,
}

impl Drop for SeamTarget {
    /// Every request the driver sent, and every answer and event of the
    /// fake, kept to Seam's published API definition.
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let broken = self.fake.contract_violations();
            assert!(broken.is_empty(), "outside Seam's definition: {broken:#?}");
        }
    }
}

#[async_trait::async_trait]
impl Target for SeamTarget {
    fn server(&self) -> &TestServer {
        &self.server
    }
    fn driver(&self) -> &'static str {
        "seam"
    }
    fn rooms(&self) -> (String, String) {
        self.rooms.clone()
    }
    fn common_door(&self) -> String {
        self.common.clone()
    }
    fn mode(&self) -> pb::CredentialMode {
        pb::CredentialMode::Pin
    }
    async fn settle(&self, key_id: &str) -> pb::AccessKey {
        self.fake.issue_pending();
        self.server
            .client
            .clone()
            .refresh_key(pb::RefreshKeyRequest {
                property_id: PROPERTY.into(),
                key_id: key_id.into(),
            })
            .await
            .unwrap()
            .into_inner()
    }
}

async fn seam() -> SeamTarget {
    use fake_seam::{EntranceSeed, FakeSeam, FakeSeamConfig};
    let fake = FakeSeam::start(FakeSeamConfig::manual()).await.unwrap();
    fake.add_workspace("ws", "seam_test_conformance");
    fake.add_acs_system("ws", "sys", "Rooms", false);
    let room = |name: &str| EntranceSeed {
        display_name: name.into(),
        can_belong_to_reservation: true,
        can_unlock_with_code: true,
        can_unlock_with_card: true,
        ..EntranceSeed::default()
    };
    let a = fake.add_entrance("ws", "sys", room("Room 1"));
    let b = fake.add_entrance("ws", "sys", room("Room 2"));
    let common = fake.add_entrance(
        "ws",
        "sys",
        EntranceSeed {
            display_name: "Lobby".into(),
            can_unlock_with_code: true,
            ..EntranceSeed::default()
        },
    );
    let base_url = fake.base_url();
    let server = TestServer::start_with(move |c| {
        c.drivers.seam = Some(
            serde_json::from_value(serde_json::json!({
                "base_url": base_url,
                "backoff_ms": 5,
                "poll_interval_ms": 3_600_000,
                "workspaces": [{ "property_id": PROPERTY, "api_key": "seam_test_conformance" }],
            }))
            .unwrap(),
        );
    })
    .await;
    SeamTarget {
        server,
        fake,
        rooms: (a, b),
        common,
    }
}

// ---- a plugin: the example keypad, loaded from its shared library ----

struct KeypadPlugin(TestServer);

#[async_trait::async_trait]
impl Target for KeypadPlugin {
    fn server(&self) -> &TestServer {
        &self.0
    }
    fn driver(&self) -> &'static str {
        "keypad"
    }
    fn rooms(&self) -> (String, String) {
        ("keypad-501".into(), "keypad-502".into())
    }
    fn common_door(&self) -> String {
        "keypad-gate".into()
    }
    fn mode(&self) -> pb::CredentialMode {
        pb::CredentialMode::Pin
    }
    async fn settle(&self, key_id: &str) -> pb::AccessKey {
        // Issued synchronously: nothing to wait for.
        self.0.get(key_id).await.unwrap()
    }
}

async fn keypad_plugin() -> KeypadPlugin {
    let path = common::plugins::built().keypad.clone();
    KeypadPlugin(
        TestServer::start_with(move |c| c.drivers.plugins.push(common::plugins::keypad(&path)))
            .await,
    )
}

conformance!(offline_lock_driver, offline_lock());
conformance!(seam_driver, seam());
conformance!(keypad_plugin_driver, keypad_plugin());
