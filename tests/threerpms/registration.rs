//! Webhook registration as 3RPMS says: HTTPS, one active endpoint.

use super::*;

/// Item 7: HTTPS only (plain http to loopback for tests), and a replaced
/// endpoint is switched off: however often the endpoint is replaced, one is
/// active, within 3RPMS's five.
#[tokio::test]
async fn webhook_registration_keeps_to_https_and_one_active_endpoint() {
    let e = env(Options {
        fake: assuming_all(),
        webhooks: true,
        ..Options::default()
    })
    .await;
    e.fake.reset_counts();
    let refused = e
        .register(
            format!("http://keysmith.example.com/3rpms/webhooks/{PROPERTY}"),
            false,
            false,
        )
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert_eq!(common::violations(&refused), ["url"]);
    assert_eq!(
        e.fake.counts().http_requests,
        0,
        "refused by keysmith before 3RPMS is asked"
    );
    assert!(e.fake.webhook_endpoints(PROPERTY).is_empty());

    e.register_webhooks().await;
    for _ in 0..6 {
        e.register(e.hook_url(), true, false)
            .await
            .expect("replaced");
    }
    let endpoints = e.fake.webhook_endpoints(PROPERTY);
    assert_eq!(endpoints.len(), 7);
    let active: Vec<_> = endpoints
        .iter()
        .filter(|ep| ep.status == WebhookEndpointStatus::Enabled)
        .collect();
    assert_eq!(active.len(), 1, "{endpoints:?}");
    assert_eq!(active[0].id, endpoints[6].id, "the newest");

    // Deliveries come to the one active endpoint and are acted on.
    let r = e.fake.add_reservation(PROPERTY, "R-HOOK");
    let stay = e.stay(&r, "rs-101", &day(0), &day(1));
    e.webhooks_settled().await;
    e.live_key(&stay).await;
}

/// Item 7 where 3RPMS documents no way to switch an endpoint off: replacing
/// is refused until the operator says the old endpoint was removed in
/// 3RPMS, so keysmith never leaves an endpoint it cannot retire active.
#[tokio::test]
async fn without_a_way_to_retire_an_endpoint_replacing_waits_for_the_operator() {
    let e = env(Options {
        webhooks: true,
        ..Options::default()
    })
    .await;
    e.register_webhooks().await;
    let first = e.fake.webhook_endpoints(PROPERTY)[0].id.clone();
    let refused = e.register(e.hook_url(), true, false).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert_eq!(
        refused.get_details_error_info().unwrap().reason,
        "WEBHOOK_RETIREMENT_UNSUPPORTED"
    );
    assert_eq!(e.fake.webhook_endpoints(PROPERTY).len(), 1);

    e.fake.remove_webhook_endpoint(PROPERTY, &first);
    let replaced = e.register(e.hook_url(), true, true).await.unwrap();
    let endpoints = e.fake.webhook_endpoints(PROPERTY);
    assert_eq!(endpoints.len(), 1);
    assert_eq!(endpoints[0].id, replaced.endpoint_id);
    let r = e.fake.add_reservation(PROPERTY, "R-NEW-HOOK");
    let stay = e.stay(&r, "rs-101", &day(0), &day(1));
    e.webhooks_settled().await;
    e.live_key(&stay).await;
}

/// Issue 18: the receiver answered 404 for a property it does not serve
/// and 401 for one it does, so property ids could be probed without a
/// secret. Against the real server: both answers are the same, and neither
/// queues anything.
#[tokio::test]
async fn an_unknown_property_is_answered_as_a_bad_signature_is() {
    let e = env(Options {
        fake: assuming_all(),
        webhooks: true,
        ..Options::default()
    })
    .await;
    e.register_webhooks().await;
    let addr = e.server.running.as_ref().unwrap().webhook_addr.unwrap();
    let body = br#"{"id":"evt_probe","type":"room_stay.updated","data":{"object":{"id":"x"}}}"#;
    let t = jiff::Timestamp::now().as_second();
    // Signed with a secret that is not the endpoint's.
    let forged = format!(
        "t={t},signature={}",
        fake_3rpms::sign(
            "not-the-endpoints-secret-0123456789",
            t,
            std::str::from_utf8(body).unwrap()
        )
    );
    let http = reqwest::Client::new();
    let answer = |property: &'static str, signature: Option<String>| {
        let mut request = http
            .post(format!("http://{addr}/3rpms/webhooks/{property}"))
            .header("content-type", "application/json")
            .body(body.to_vec());
        if let Some(signature) = signature {
            request = request.header("3rpms-signature", signature);
        }
        async move {
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    let configured = answer(PROPERTY, Some(forged.clone())).await;
    assert_eq!(configured, (401, "invalid signature".to_owned()));
    assert_eq!(answer("no-such-hotel", Some(forged)).await, configured);
    assert_eq!(
        answer("no-such-hotel", None).await,
        answer(PROPERTY, None).await
    );
    assert!(e.parked().await.is_empty());
    let listed = e
        .server
        .list(pb::ListKeysRequest {
            property_id: PROPERTY.into(),
            include_revoked: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(listed.keys.is_empty(), "nothing was synced by a probe");
}
