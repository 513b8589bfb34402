//! Caller bytes through the gRPC edge as keysmith takes them: the protobuf
//! message tonic decodes, its conversion to the domain request
//! (`keysmith_server::convert`), the request's validation, and the error
//! status a refusal becomes. Nothing may panic, and every refusal by the
//! conversion or the validation is INVALID_ARGUMENT, the caller's mistake.
#![no_main]

use keysmith_api::v1 as pb;
use keysmith_core::{Error, ErrorKind};
use keysmith_server::convert;
use libfuzzer_sys::fuzz_target;
use prost::Message;

/// A refusal of the caller's bytes: typed, INVALID_ARGUMENT with at least
/// one field violation, and it must turn into a status the server can send.
fn refused(error: Error) {
    assert_eq!(error.kind(), ErrorKind::InvalidArgument, "{error:?}");
    assert!(!error.violations().is_empty(), "{error:?}");
    let status = convert::status(error);
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
}

/// A validated request is fingerprinted by serialising it with postcard
/// (`service::envelope`), whose failure would silently merge fingerprints.
fn fingerprintable(request: &impl serde::Serialize) {
    postcard::to_stdvec(request).expect("a validated request serialises");
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    match which % 6 {
        0 => {
            let Ok(req) = pb::IssueRequest::decode(bytes) else {
                return;
            };
            match convert::issue_request(req).and_then(|r| r.validate().map(|()| r)) {
                Ok(r) => fingerprintable(&r),
                Err(e) => refused(e),
            }
        }
        1 => {
            let Ok(req) = pb::RevokeRequest::decode(bytes) else {
                return;
            };
            match convert::revoke_request(req).and_then(|r| r.validate().map(|()| r)) {
                Ok(r) => fingerprintable(&r),
                Err(e) => refused(e),
            }
        }
        2 => {
            let Ok(req) = pb::UpdateKeyRequest::decode(bytes) else {
                return;
            };
            match convert::update_key_request(req).and_then(|r| r.validate().map(|()| r)) {
                Ok(r) => fingerprintable(&r),
                Err(e) => refused(e),
            }
        }
        3 => {
            let Ok(req) = pb::EncodeKeyRequest::decode(bytes) else {
                return;
            };
            let r = convert::encode_key_request(req);
            match r.validate() {
                Ok(()) => fingerprintable(&r),
                Err(e) => refused(e),
            }
        }
        4 => {
            let Ok(req) = pb::ListKeysRequest::decode(bytes) else {
                return;
            };
            match convert::list_keys_request(req, "token-1").and_then(|r| {
                let size = r.validate()?;
                // A page token is read only after the request is valid.
                keysmith_core::page::decode(&r).map(|_| size)
            }) {
                Ok(size) => assert!((1..=keysmith_core::request::MAX_PAGE_SIZE).contains(&size)),
                Err(e) => refused(e),
            }
        }
        _ => {
            let Ok(req) = pb::ListDriverKeysRequest::decode(bytes) else {
                return;
            };
            match convert::list_driver_keys_request(req).validate() {
                Ok(size) => {
                    assert!((1..=keysmith_core::request::MAX_PAGE_SIZE as u32).contains(&size))
                }
                Err(e) => refused(e),
            }
        }
    }
});
