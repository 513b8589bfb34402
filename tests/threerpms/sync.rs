//! The window sync: keys for every stay, request efficiency, and the
//! documented client where introspection is refused.

use super::*;

/// With 3RPMS configured, reflection lists PmsService beside the services
/// always served (without it, it does not: tests/reflection.rs).
#[tokio::test]
async fn reflection_lists_pms_service_when_3rpms_is_configured() {
    let env = env(Options::default()).await;
    let channel = &env.server.channel;
    for listed in [
        reflection::v1::services(channel).await,
        reflection::v1alpha::services(channel).await,
    ] {
        for served in [
            "keysmith.v1.PmsService",
            "keysmith.v1.AccessService",
            "keysmith.sim.v1.LockSimulatorService",
        ] {
            assert!(listed.iter().any(|s| s == served), "{served} in {listed:?}");
        }
    }
}

#[tokio::test]
async fn the_window_sync_gives_every_stay_a_working_key_in_one_read_and_one_write() {
    let e = env(Options::default()).await;
    let r = e.fake.add_reservation(PROPERTY, "R-1001");
    let s1 = e.stay(&r, "rs-101", &day(0), &day(2));
    let s2 = e.stay(&r, "rs-102", &day(1), &day(3));
    let later = e.stay(&r, "rs-101", &day(10), &day(12));
    let unmapped = e.stay(&r, "rs-999", &day(1), &day(2));
    e.fake.reset_counts();

    let report = e.sync().await;
    assert_eq!(report.read_requests, 1);
    assert_eq!(report.write_requests, 1);
    assert_eq!(report.keys_issued, 2);
    assert_eq!(report.keys_published, 2);
    // And, the first time, the two requests that introspect the schema.
    assert_eq!(e.fake.counts().http_requests, 4, "{:?}", e.fake.counts());
    assert!(report
        .skipped
        .iter()
        .any(|s| s.room_stay_id == unmapped && s.why.contains("no entrance mapping")));

    for (stay, entrance, arrival, departure) in [
        (&s1, "room-101", day(0), day(2)),
        (&s2, "room-102", day(1), day(3)),
    ] {
        let key = e.live_key(stay).await;
        assert_eq!(key.state, pb::KeyState::Active as i32);
        assert_eq!(key.entrances[0].entrance_id, entrance);
        assert_eq!(key.starts_at.unwrap().seconds, unix(&arrival, 15));
        assert_eq!(key.ends_at.unwrap().seconds, unix(&departure, 11));
        let (_, published) = e.published_pin(stay);
        assert_eq!(published, pin_of(&key), "3RPMS shows the lock's PIN");
        let at = unix(&arrival, 16).max(T0);
        assert!(
            e.server.present(entrance, &published, at).await.granted,
            "the published PIN opens {entrance}"
        );
    }
    assert_eq!(e.fake.room_stay(PROPERTY, &later).unwrap().key_id, None);

    // keysmith remembers which 3RPMS stay and key each of its keys is for.
    let k1 = e.live_key(&s1).await;
    let links = e
        .pms
        .clone()
        .list_room_stay_links(pb::ListRoomStayLinksRequest {
            property_id: PROPERTY.into(),
            key_id: k1.key_id.clone(),
            room_stay_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .links;
    assert_eq!(links.len(), 1);
    assert_eq!(links[0].room_stay_id, s1);
    assert_eq!(links[0].room_setup_id, "rs-101");
    assert_eq!(links[0].arrival, day(0));
    assert_eq!(
        Some(links[0].pms_key_id.clone()),
        e.fake.room_stay(PROPERTY, &s1).unwrap().key_id
    );

    // Nothing changed: a second sync reads and writes nothing more.
    e.fake.reset_counts();
    let again = e.sync().await;
    assert_eq!((again.keys_issued, again.write_requests), (0, 0));
    assert_eq!(e.fake.counts().http_requests, 1);
}

/// Reads page by 100; writes go 100 operations a request (a create and its
/// assignment are two), the bound the fake holds keysmith to.
#[tokio::test]
async fn bringing_n_stays_into_sync_costs_a_read_per_hundred_and_a_write_per_fifty() {
    for n in [1usize, 20, 200] {
        let e = env(Options {
            extra_rooms: n,
            ..Options::default()
        })
        .await;
        let r = e.fake.add_reservation(PROPERTY, "GROUP");
        for i in 0..n {
            e.stay(&r, &format!("rs-t-{i}"), &day(1), &day(3));
        }
        e.fake.reset_counts();
        let report = e.sync().await;
        let reads = n.div_ceil(100) as i32;
        let writes = n.div_ceil(50) as i32;
        assert_eq!(report.keys_issued as usize, n);
        assert_eq!(report.keys_published as usize, n);
        assert!(report.failed.is_empty(), "{:?}", report.failed);
        assert_eq!(report.read_requests, reads, "n={n}");
        assert_eq!(report.write_requests, writes, "n={n}");
        let http = e.fake.counts().http_requests;
        // And the two requests of schema introspection, once.
        assert_eq!(http, (reads + writes) as u64 + 2, "n={n}");
        println!(
            "THREERPMS_EFFICIENCY n={n} requests={} (and 2 of introspection) naive={}",
            http - 2,
            3 * n
        );
    }
}

/// Item 3: where 3RPMS refuses introspection, keysmith uses only what 3RPMS
/// documents, even against a 3RPMS that has the extras.
#[tokio::test]
async fn refused_introspection_leaves_the_documented_client() {
    let e = env(Options {
        fake: assuming_all(),
        ..Options::default()
    })
    .await;
    e.fake.refuse_operations(Refusal::Schema, |query, _| {
        query.contains("__schema") || query.contains("__type") || query.contains("reservation {")
    });
    let r = e.fake.add_reservation(PROPERTY, "R-PLAIN");
    let stay = e.stay(&r, "rs-101", &day(0), &day(2));
    let report = e.sync().await;
    assert_eq!(report.keys_issued, 1);
    assert_eq!(e.fake.counts().refused, 1, "introspection only, once");
    let key = e.live_key(&stay).await;
    assert_eq!(e.published_pin(&stay).1, pin_of(&key));
}
