//! Tokens and scopes of every PmsService RPC, and the audit log.

use super::*;

/// Test tokens for the PMS's security table (test material only).
const PMS_FULL: &str = "ks_test_pms_full_0000000000000000000000000000";
const PMS_READER: &str = "ks_test_pms_reader_00000000000000000000000000";
const PMS_ISSUER: &str = "ks_test_pms_issuer_00000000000000000000000000";
const PMS_OTHER: &str = "ks_test_pms_other_000000000000000000000000000";

fn pms_tokens(c: &mut Config) {
    use keysmith_server::{
        auth::hash_token,
        config::{AuthMode, TokenConfig},
    };
    let all = [
        "keys.issue",
        "keys.revoke",
        "keys.read",
        "keys.read_secrets",
        "keysmith.admin",
    ];
    let token = |id: &str, token: &str, property: &str, scopes: &[&str]| TokenConfig {
        id: id.into(),
        sha256: hash_token(token),
        properties: vec![property.into()],
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        max_in_flight: 64,
        requests_per_minute: None,
    };
    c.auth.mode = AuthMode::Tokens;
    c.auth.max_failures_per_minute = 1000;
    c.auth.tokens = vec![
        token("full", PMS_FULL, PROPERTY, &all),
        token("reader", PMS_READER, PROPERTY, &["keys.read"]),
        token("issuer", PMS_ISSUER, PROPERTY, &["keys.issue"]),
        token("other", PMS_OTHER, "other-hotel", &all),
    ];
}

/// Every PmsService RPC against {no token, wrong token, token without the
/// scope, token for another property, right token}; and PINs and
/// compartments withheld from a token without keys.read_secrets.
#[tokio::test]
async fn pms_rpcs_need_the_right_token() {
    let e = env(Options {
        server: pms_tokens,
        ..Default::default()
    })
    .await;
    let r = e.fake.add_reservation(PROPERTY, "R-SEC");
    // In a room keysmith does not serve, so that the sync leaves its key be.
    let stay = e.stay(&r, "rs-999", &day(0), &day(2));
    let key = e.fake.add_foreign_key(
        PROPERTY,
        "now",
        KeyKind::KeyStorage {
            pin: "ABC123".into(),
            compartment: "C7".into(),
        },
    );
    e.fake.assign_key(PROPERTY, &stay, &key);

    let call = |rpc: &'static str, token: Option<&'static str>| {
        let channel = e.server.channel.clone();
        let stay = stay.clone();
        async move {
            let mut pms =
                PmsServiceClient::with_interceptor(channel, move |mut req: tonic::Request<()>| {
                    if let Some(t) = token {
                        req.metadata_mut()
                            .insert("authorization", format!("Bearer {t}").parse().unwrap());
                    }
                    Ok(req)
                });
            let p = || PROPERTY.to_owned();
            match rpc {
                "GetRoomStayKey" => pms
                    .get_room_stay_key(pb::GetRoomStayKeyRequest {
                        property_id: p(),
                        room_stay_id: stay,
                        view: pb::KeyView::Staff as i32,
                    })
                    .await
                    .map(|r| r.into_inner().key),
                "ListReservationRoomKeys" => pms
                    .list_reservation_room_keys(pb::ListReservationRoomKeysRequest {
                        property_id: p(),
                        reservation_code: "R-SEC".into(),
                        view: pb::KeyView::Staff as i32,
                    })
                    .await
                    .map(|r| r.into_inner().rooms.into_iter().find_map(|r| r.key)),
                "ListRoomStayLinks" => pms
                    .list_room_stay_links(pb::ListRoomStayLinksRequest {
                        property_id: p(),
                        ..Default::default()
                    })
                    .await
                    .map(|_| None),
                "SyncRoomStays" => pms
                    .sync_room_stays(pb::SyncRoomStaysRequest {
                        property_id: p(),
                        room_stay_ids: vec![],
                    })
                    .await
                    .map(|_| None),
                "RegisterWebhookEndpoint" => pms
                    .register_webhook_endpoint(pb::RegisterWebhookEndpointRequest {
                        property_id: p(),
                        url: "http://127.0.0.1:9/3rpms/webhooks/demo-hotel".into(),
                        replace: false,
                        previous_endpoint_removed: false,
                    })
                    .await
                    .map(|_| None),
                "ListParkedItems" => pms
                    .list_parked_items(pb::ListParkedItemsRequest { property_id: p() })
                    .await
                    .map(|_| None),
                "RetryParkedItem" => pms
                    .retry_parked_item(pb::RetryParkedItemRequest {
                        property_id: p(),
                        item_id: "1".into(),
                    })
                    .await
                    .map(|_| None),
                other => panic!("no call for {other}"),
            }
        }
    };
    // With the right token: the call's own answer (nothing is parked).
    let rpcs = [
        ("GetRoomStayKey", "keys.read", Code::Ok),
        ("ListReservationRoomKeys", "keys.read", Code::Ok),
        ("ListRoomStayLinks", "keys.read", Code::Ok),
        ("SyncRoomStays", "keys.issue", Code::Ok),
        ("RegisterWebhookEndpoint", "keysmith.admin", Code::Ok),
        ("ListParkedItems", "keys.read", Code::Ok),
        ("RetryParkedItem", "keysmith.admin", Code::NotFound),
    ];
    let mut failures = Vec::new();
    for (rpc, scope, allowed) in rpcs {
        let unscoped = if scope == "keys.read" {
            PMS_ISSUER
        } else {
            PMS_READER
        };
        let cases = [
            ("no token", None, Code::Unauthenticated),
            ("wrong token", Some("ks_not_a_token"), Code::Unauthenticated),
            (
                "token without the scope",
                Some(unscoped),
                Code::PermissionDenied,
            ),
            (
                "token for another property",
                Some(PMS_OTHER),
                Code::NotFound,
            ),
            ("right token", Some(PMS_FULL), allowed),
        ];
        for (who, token, expected) in cases {
            let got = match call(rpc, token).await {
                Ok(_) => Code::Ok,
                Err(s) => s.code(),
            };
            if got != expected {
                failures.push(format!(
                    "{rpc} with {who}: expected {expected:?}, got {got:?}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // The full token sees the PIN and the compartment; a reader without
    // keys.read_secrets sees that they exist, not what they are.
    let seen = call("GetRoomStayKey", Some(PMS_FULL))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (seen.pin.as_str(), seen.compartment.as_str()),
        ("ABC123", "C7")
    );
    for rpc in ["GetRoomStayKey", "ListReservationRoomKeys"] {
        let hidden = call(rpc, Some(PMS_READER)).await.unwrap().unwrap();
        assert!(hidden.data_redacted, "{rpc}: {hidden:?}");
        assert_eq!(
            (hidden.pin.as_str(), hidden.compartment.as_str()),
            ("", ""),
            "{rpc}"
        );
        assert_eq!(hidden.r#type, pb::PmsKeyType::KeyStorage as i32);
    }
}

/// The keys the sync issues on its own are in the audit log, under the
/// sync's name, next to the operator's SyncRoomStays call.
#[tokio::test]
async fn the_sync_writes_what_it_does_to_the_audit_log() {
    let e = env(Options::default()).await;
    let r = e.fake.add_reservation(PROPERTY, "R-AUDIT");
    let stay = e.stay(&r, "rs-101", &day(0), &day(2));
    let report = e.sync().await;
    assert_eq!(report.keys_issued, 1);
    let records =
        keysmith_api::v1::audit_service_client::AuditServiceClient::new(e.server.channel.clone())
            .list_audit_records(pb::ListAuditRecordsRequest {
                property_id: PROPERTY.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .records;
    let seen: Vec<(&str, &str, &str)> = records
        .iter()
        .map(|r| {
            (
                r.action.as_str(),
                r.token_id.as_str(),
                r.reservation_key.as_str(),
            )
        })
        .collect();
    let stay_key = format!("3rpms-stay:{stay}");
    assert_eq!(
        seen,
        vec![
            ("Issue", "3rpms-sync", stay_key.as_str()),
            ("SyncRoomStays", "development", ""),
        ]
    );
    assert_eq!(records[0].key_ids.len(), 1);
}
