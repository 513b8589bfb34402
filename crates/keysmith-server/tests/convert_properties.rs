//! Properties of the gRPC edge's conversions (`keysmith_server::convert`)
//! on any bytes a caller sends, run by `cargo test` (FUZZING.md has the
//! fuzz target that does the same for longer).
use keysmith_api::v1 as pb;
use keysmith_core::{CredentialMode, Error, ErrorKind, Role, Timestamp};
use keysmith_server::convert;
use proptest::prelude::*;
use prost::Message;

/// A refusal of caller input: INVALID_ARGUMENT, naming a field, and a
/// status of the same code.
fn refused(error: Error) -> Result<(), TestCaseError> {
    prop_assert_eq!(error.kind(), ErrorKind::InvalidArgument, "{:?}", error);
    prop_assert!(!error.violations().is_empty());
    prop_assert_eq!(convert::status(error).code(), tonic::Code::InvalidArgument);
    Ok(())
}

/// Timestamps as callers send them: mostly ordinary, some at the ends of
/// the protobuf range and beyond, some with nanos out of range.
fn timestamp() -> impl Strategy<Value = Option<prost_types::Timestamp>> {
    let seconds = prop_oneof![
        0i64..4_102_444_800,
        any::<i64>(),
        Just(i64::MIN),
        Just(i64::MAX),
        Just(-62_135_596_800),
        Just(253_402_300_799),
    ];
    let nanos = prop_oneof![0i32..1_000_000_000, any::<i32>()];
    proptest::option::weighted(
        0.9,
        (seconds, nanos).prop_map(|(seconds, nanos)| prost_types::Timestamp { seconds, nanos }),
    )
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z0-9-]{0,12}", ".{0,16}"]
}

prop_compose! {
    fn issue_request()(
        property_id in text(),
        request_id in text(),
        holder_id in text(),
        holder_name in text(),
        entrance_ids in prop::collection::vec(text(), 0..4),
        space_ids in prop::collection::vec(text(), 0..3),
        starts_at in timestamp(),
        ends_at in timestamp(),
        reservation_key in text(),
        role in prop_oneof![0i32..4, any::<i32>()],
        modes in prop::collection::vec(prop_oneof![0i32..7, any::<i32>()], 0..4),
        pin in "[0-9]{0,9}",
    ) -> pb::IssueRequest {
        pb::IssueRequest {
            property_id, request_id, holder_id, holder_name, entrance_ids, space_ids,
            starts_at, ends_at, reservation_key, role, modes, pin,
        }
    }
}

fn from_pb(t: &Option<prost_types::Timestamp>) -> Option<Timestamp> {
    t.as_ref()
        .and_then(|t| Timestamp::from_parts(t.seconds, t.nanos))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any bytes as any request: decoding may fail (tonic's business), but
    /// what decodes converts and validates without a panic, and every
    /// refusal is the caller's mistake.
    #[test]
    fn any_bytes_convert_and_validate_or_are_refused(
        which in 0u8..6,
        bytes in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        let outcome = match which {
            0 => pb::IssueRequest::decode(&bytes[..])
                .map(|r| convert::issue_request(r).and_then(|r| r.validate())),
            1 => pb::RevokeRequest::decode(&bytes[..])
                .map(|r| convert::revoke_request(r).and_then(|r| r.validate())),
            2 => pb::UpdateKeyRequest::decode(&bytes[..])
                .map(|r| convert::update_key_request(r).and_then(|r| r.validate())),
            3 => pb::EncodeKeyRequest::decode(&bytes[..])
                .map(|r| convert::encode_key_request(r).validate()),
            4 => pb::ListKeysRequest::decode(&bytes[..])
                .map(|r| convert::list_keys_request(r, "t").and_then(|r| r.validate().map(drop))),
            _ => pb::ListDriverKeysRequest::decode(&bytes[..])
                .map(|r| convert::list_driver_keys_request(r).validate().map(drop)),
        };
        if let Ok(Err(error)) = outcome {
            refused(error)?;
        }
    }

    /// proto → domain keeps what the caller sent: the strings as they are
    /// (empty optional ones as None), the instants, the modes in order
    /// once each; or it refuses, naming the field.
    #[test]
    fn issue_conversion_keeps_the_request(req in issue_request()) {
        match convert::issue_request(req.clone()) {
            Ok(r) => {
                prop_assert_eq!(&r.property_id, &req.property_id);
                prop_assert_eq!(r.request_id.unwrap_or_default(), req.request_id);
                prop_assert_eq!(&r.holder.id, &req.holder_id);
                prop_assert_eq!(r.holder.name.unwrap_or_default(), req.holder_name);
                prop_assert_eq!(&r.entrance_ids, &req.entrance_ids);
                prop_assert_eq!(&r.space_ids, &req.space_ids);
                prop_assert_eq!(Some(r.window.starts_at), from_pb(&req.starts_at));
                prop_assert_eq!(Some(r.window.ends_at), from_pb(&req.ends_at));
                prop_assert_eq!(r.reservation_key.unwrap_or_default(), req.reservation_key);
                prop_assert_eq!(r.role, if req.role == 2 { Role::Staff } else { Role::Guest });
                let mut expected: Vec<i32> = Vec::new();
                for m in &req.modes {
                    if !expected.contains(m) {
                        expected.push(*m);
                    }
                }
                let got: Vec<i32> = r.modes.iter().map(|m| match m {
                    CredentialMode::Pin => 1,
                    CredentialMode::Card => 2,
                    CredentialMode::MobileKey => 3,
                    CredentialMode::Qr => 4,
                    CredentialMode::KeyStorage => 5,
                }).collect();
                prop_assert_eq!(got, expected);
                prop_assert_eq!(r.pin.map(|p| p.into_inner()).unwrap_or_default(), req.pin);
            }
            Err(error) => refused(error)?,
        }
    }

    /// domain → proto → domain: every instant keysmith holds goes out as a
    /// protobuf Timestamp and comes back as the same instant.
    #[test]
    fn instants_round_trip_through_the_wire(micros in prop_oneof![
        any::<i64>(),
        Just(i64::MIN),
        Just(i64::MAX),
        i64::MIN..i64::MIN + 2_000_000,
        i64::MAX - 2_000_000..=i64::MAX,
    ]) {
        let t = Timestamp::from_micros(micros);
        let wire = convert::timestamp(t);
        prop_assert!((0..1_000_000_000).contains(&wire.nanos));
        prop_assert_eq!(Timestamp::from_parts(wire.seconds, wire.nanos), Some(t));
    }
}
