//! The plugin ABI's byte boundary, both ways.
//!
//! Host side (even first byte): a plugin table living in this binary answers
//! every call with the fuzzer's bytes, and keysmith's host
//! (`keysmith_plugin_host`) decodes them as it does a loaded library's
//! reply: `DriverResponse`, the reply kind for the method, and its
//! conversion to the driver types. A plugin is foreign code: whatever it
//! answers fails that call with a typed error, never a panic in keysmith.
//!
//! Plugin side (odd first byte): the SDK's decoding of the host's request
//! bytes (`keysmith_plugin::convert::*_from_proto`), called directly so that
//! a panic is seen here instead of being caught by the entry point.
#![no_main]

use std::{
    ffi::c_void,
    path::PathBuf,
    sync::{Arc, Mutex, OnceLock},
};

use keysmith_core::{
    driver::{
        EncodeArgs, EntranceTarget, IssueArgs, KeySlice, ListArgs, RefreshArgs, RevokeArgs,
        UpdateArgs,
    },
    key::{Behaviour, Holder},
    CredentialMode, Driver, Role, Secret, Timestamp, Window,
};
use keysmith_plugin::{
    abi::{methods, ByteSlice, CreateResult, PluginBuffer, PluginTable, ABI_VERSION},
    convert, proto as pb,
};
use keysmith_plugin_host::{load_table, PluginSpec};
use libfuzzer_sys::fuzz_target;
use prost::Message;

/// What the fake plugin answers to every call but `info`.
static REPLY: Mutex<Vec<u8>> = Mutex::new(Vec::new());

unsafe extern "C" fn create(_config: ByteSlice) -> CreateResult {
    CreateResult {
        // Never dereferenced: the fake keeps no state per instance.
        instance: std::ptr::NonNull::<u8>::dangling()
            .as_ptr()
            .cast::<c_void>(),
        error: PluginBuffer::EMPTY,
    }
}

unsafe extern "C" fn call(
    _instance: *mut c_void,
    method: ByteSlice,
    _request: ByteSlice,
) -> PluginBuffer {
    // SAFETY: the host lends the method name for the call.
    let method = unsafe { method.as_slice() };
    if method == methods::INFO.as_bytes() {
        let info = pb::DriverResponse {
            result: Some(pb::driver_response::Result::Info(pb::InfoReply {
                name: "fuzz".into(),
                version: "1".into(),
                capability: None,
            })),
        };
        return PluginBuffer::from_vec(info.encode_to_vec());
    }
    PluginBuffer::from_vec(REPLY.lock().unwrap().clone())
}

unsafe extern "C" fn free_buffer(buffer: PluginBuffer) {
    // SAFETY: made by from_vec in this binary, handed back once.
    drop(unsafe { buffer.into_vec() });
}

unsafe extern "C" fn destroy(_instance: *mut c_void) {}

static TABLE: PluginTable = PluginTable {
    abi_version: ABI_VERSION,
    table_size: PluginTable::SIZE,
    create,
    call,
    free_buffer,
    destroy,
};

struct Host {
    runtime: tokio::runtime::Runtime,
    driver: Arc<dyn Driver>,
}

fn host() -> &'static Host {
    static HOST: OnceLock<Host> = OnceLock::new();
    HOST.get_or_init(|| {
        let spec = PluginSpec {
            name: "fuzz".into(),
            path: PathBuf::from("/in/the/fuzzer"),
            sha256: None,
            config: b"{}".to_vec(),
        };
        // SAFETY: a static table in this binary.
        let driver = unsafe { load_table(&spec, &TABLE) }.expect("the fake plugin loads");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        Host { runtime, driver }
    })
}

fn window() -> Window {
    Window {
        starts_at: Timestamp::from_unix_seconds(1_900_000_000),
        ends_at: Timestamp::from_unix_seconds(1_900_086_400),
    }
}

fn key() -> KeySlice {
    KeySlice {
        key_id: "01KEY".into(),
        property_id: "hotel".into(),
        holder: Holder {
            id: "guest-1".into(),
            name: None,
        },
        role: Role::Guest,
        window: window(),
        reservation: None,
        entrances: vec![EntranceTarget {
            entrance_id: "door".into(),
            behaviour: Behaviour::Standard,
        }],
        credentials: vec![],
        driver_ref: Some("ref".into()),
    }
}

/// One call of the host, its reply being `bytes`. Any refusal is a typed
/// error of the plugin's or of the boundary's.
fn host_side(method: u8, bytes: &[u8]) {
    let host = host();
    *REPLY.lock().unwrap() = bytes.to_vec();
    let driver = host.driver.clone();
    let outcome: Result<(), keysmith_core::Error> = host.runtime.block_on(async move {
        match method % 7 {
            0 => driver.entrances().await.map(drop),
            1 => driver
                .issue(IssueArgs {
                    key_id: "01KEY".into(),
                    property_id: "hotel".into(),
                    holder: Holder {
                        id: "guest-1".into(),
                        name: None,
                    },
                    role: Role::Guest,
                    window: window(),
                    reservation: None,
                    entrances: key().entrances,
                    modes: vec![CredentialMode::Pin],
                    pin: Some(Secret::new("4821".into())),
                })
                .await
                .map(|reply| {
                    // The host stamps every credential with the driver's name.
                    assert!(reply.credentials.iter().all(|c| c.driver == "fuzz"));
                }),
            2 => driver.revoke(RevokeArgs { key: key() }).await.map(drop),
            3 => driver
                .update(UpdateArgs {
                    key: key(),
                    new_window: window(),
                })
                .await
                .map(drop),
            4 => driver
                .encode(EncodeArgs {
                    key: key(),
                    encoder_id: None,
                })
                .await
                .map(drop),
            5 => driver.refresh(RefreshArgs { key: key() }).await.map(drop),
            _ => driver
                .list(ListArgs {
                    property_id: "hotel".into(),
                    page_size: 10,
                    page_token: None,
                })
                .await
                .map(drop),
        }
    });
    if let Err(e) = outcome {
        // The error's message and metadata reached keysmith from foreign
        // bytes: they must still be printable, and its reason one of the
        // bounded set (interned).
        let _ = format!("{e} {e:?}");
        assert!(!e.reason().is_empty());
    }
}

/// The plugin's decoding of one request, as its entry point does it.
fn plugin_side(method: u8, bytes: &[u8]) {
    let _ = match method % 7 {
        0 => pb::IssueRequest::decode(bytes).map(|r| convert::issue_args_from_proto(r).map(drop)),
        1 => pb::RevokeRequest::decode(bytes)
            .map(|r| convert::revoke_args_from_proto(r, "fuzz").map(drop)),
        2 => pb::UpdateRequest::decode(bytes)
            .map(|r| convert::update_args_from_proto(r, "fuzz").map(drop)),
        3 => pb::EncodeRequest::decode(bytes)
            .map(|r| convert::encode_args_from_proto(r, "fuzz").map(drop)),
        4 => pb::RefreshRequest::decode(bytes)
            .map(|r| convert::refresh_args_from_proto(r, "fuzz").map(drop)),
        5 => pb::ListRequest::decode(bytes).map(|r| {
            convert::list_args_from_proto(r);
            Ok(())
        }),
        _ => pb::DriverError::decode(bytes).map(|e| {
            let e = convert::error_from_proto(e);
            // An error that crossed once crosses again the same.
            let again = convert::error_from_proto(convert::error_to_proto(&e));
            assert_eq!((again.kind(), again.reason()), (e.kind(), e.reason()));
            Ok(())
        }),
    };
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    if selector % 2 == 0 {
        host_side(selector / 2, bytes);
    } else {
        plugin_side(selector / 2, bytes);
    }
});
