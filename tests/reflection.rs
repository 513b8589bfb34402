//! Server reflection, end to end, as grpcurl and other clients use it: it
//! lists exactly the services this configuration serves, and it describes the
//! google.rpc details that keysmith's errors carry, so that a client can
//! decode them. (With 3RPMS configured, PmsService is listed: tests/threerpms/sync.rs.)
mod common;

use common::{guest, reflection, TestServer, PROPERTY, T0};
use keysmith_api::{
    sim::v1 as sim,
    v1::{self as pb, pms_service_client::PmsServiceClient},
};
use prost::Message;
use tonic::Code;

/// Served whatever the configuration.
const ALWAYS_SERVED: [&str; 3] = [
    "grpc.health.v1.Health",
    "keysmith.v1.AccessService",
    "keysmith.v1.AuditService",
];
const LOCK_SIMULATOR: &str = "keysmith.sim.v1.LockSimulatorService";
const REFLECTION_V1: &str = "grpc.reflection.v1.ServerReflection";
const REFLECTION_V1ALPHA: &str = "grpc.reflection.v1alpha.ServerReflection";

fn sorted(names: &[&str]) -> Vec<String> {
    let mut names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    names.sort();
    names
}

#[tokio::test]
async fn reflection_lists_what_the_embedded_default_serves_and_not_pms_service() {
    let s = TestServer::start().await;
    let served = [&ALWAYS_SERVED[..], &[LOCK_SIMULATOR]].concat();
    assert_eq!(
        reflection::v1::services(&s.channel).await,
        sorted(&[&served[..], &[REFLECTION_V1]].concat())
    );
    assert_eq!(
        reflection::v1alpha::services(&s.channel).await,
        sorted(&[&served[..], &[REFLECTION_V1ALPHA]].concat())
    );
    // Not listed because not served: no 3RPMS is configured.
    let unserved = PmsServiceClient::new(s.channel.clone())
        .get_room_stay_key(pb::GetRoomStayKeyRequest {
            property_id: PROPERTY.into(),
            room_stay_id: "stay-1".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(unserved.code(), Code::Unimplemented);
}

#[tokio::test]
async fn without_the_simulated_lock_reflection_lists_no_lock_simulator() {
    let s = TestServer::start_with(|c| c.drivers.offline_lock = None).await;
    assert_eq!(
        reflection::v1::services(&s.channel).await,
        sorted(&[&ALWAYS_SERVED[..], &[REFLECTION_V1]].concat())
    );
    assert_eq!(
        reflection::v1alpha::services(&s.channel).await,
        sorted(&[&ALWAYS_SERVED[..], &[REFLECTION_V1ALPHA]].concat())
    );
    let unserved = s
        .sim
        .clone()
        .get_lock_state(sim::GetLockStateRequest {
            property_id: PROPERTY.into(),
            entrance_id: "room-101".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unserved.code(), Code::Unimplemented);
}

/// What grpcurl does with an error: read the type of each detail, ask
/// reflection for the file defining it, then for that file's imports.
#[tokio::test]
async fn reflection_describes_every_detail_of_an_error() {
    let s = TestServer::start().await;
    let mut bad = guest("", &["room-101"], T0, T0, "");
    bad.modes.clear();
    let error = s.issue(bad).await.unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    let status = tonic_types::pb::Status::decode(error.details()).unwrap();
    let mut detail_types: Vec<&str> = status
        .details
        .iter()
        .map(|any| {
            any.type_url
                .strip_prefix("type.googleapis.com/")
                .unwrap_or_else(|| panic!("type URL {}", any.type_url))
        })
        .collect();
    detail_types.sort();
    assert_eq!(
        detail_types,
        ["google.rpc.BadRequest", "google.rpc.ErrorInfo"]
    );

    for symbol in detail_types.into_iter().chain(["google.rpc.Status"]) {
        let message = symbol.strip_prefix("google.rpc.").unwrap();
        for files in [
            reflection::v1alpha::file_containing_symbol(&s.channel, symbol).await,
            reflection::v1::file_containing_symbol(&s.channel, symbol).await,
        ] {
            let files = files.unwrap_or_else(|e| panic!("{symbol}: {e:?}"));
            let file = files
                .iter()
                .find(|f| f.message_type.iter().any(|m| m.name() == message))
                .unwrap_or_else(|| panic!("no file defines {symbol}"));
            assert_eq!(file.package(), "google.rpc");
            for import in &file.dependency {
                let imported = reflection::v1alpha::file_by_filename(&s.channel, import)
                    .await
                    .unwrap_or_else(|e| panic!("{import}, imported by {}: {e:?}", file.name()));
                assert!(imported.iter().any(|f| f.name() == import), "{import}");
            }
        }
    }
}
