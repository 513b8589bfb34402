//! The host against tables living in this test binary: a real SDK driver,
//! and a liar that breaks the contract in every way it can.
use std::{ffi::c_void, path::PathBuf};

use keysmith_core::{
    driver::{
        EntranceSpec, EntranceTarget, IssueArgs, IssueReply, IssuedState, ListArgs, RevokeArgs,
        RevokeReply,
    },
    key::{Behaviour, Credential, CredentialData, Holder},
    CredentialMode, Driver, DriverCapability, DriverKind, Error, ErrorKind, Result, Role, Secret,
    Timestamp, Window,
};
use keysmith_plugin::{
    abi::{ByteSlice, CreateResult, PluginBuffer, PluginTable, ABI_VERSION},
    plugin_table, proto as pb, reasons, PluginDriver, PluginInfo,
};
use prost::Message;

use crate::load::{from_table, PluginSpec};

struct Echo;

impl PluginDriver for Echo {
    fn info(&self) -> PluginInfo {
        PluginInfo {
            name: "echo".into(),
            version: "9.8.7".into(),
            capability: DriverCapability {
                issue: true,
                revoke: true,
                modes: vec![CredentialMode::Pin],
                ..Default::default()
            },
        }
    }
    fn entrances(&self) -> Result<Vec<EntranceSpec>> {
        Ok(vec![])
    }
    fn issue(&self, args: IssueArgs) -> Result<IssueReply> {
        match args.holder.id.as_str() {
            "panic" => panic!("PIN {:?}", args.pin.map(Secret::into_inner)),
            "taken" => {
                Err(
                    Error::new(ErrorKind::AlreadyExists, "PIN_IN_USE", "this PIN is in use")
                        .with_violation("pin", "in use"),
                )
            }
            _ => Ok(IssueReply {
                credentials: vec![Credential {
                    mode: CredentialMode::Pin,
                    driver: String::new(),
                    entrance_ids: vec!["door".into()],
                    data: CredentialData::Pin(args.pin.unwrap_or_default()),
                    credential_id: "c-1".into(),
                    encoding_required: false,
                }],
                state: IssuedState::Active,
                warnings: vec![],
                driver_ref: Some(args.key_id),
            }),
        }
    }
    fn revoke(&self, _args: RevokeArgs) -> Result<RevokeReply> {
        Ok(RevokeReply::default())
    }
}

fn spec(name: &str) -> PluginSpec {
    PluginSpec {
        name: name.into(),
        path: PathBuf::from("/in/this/test.so"),
        sha256: None,
        config: b"{}".to_vec(),
    }
}

fn issue_args(holder: &str) -> IssueArgs {
    IssueArgs {
        key_id: "01KEY".into(),
        property_id: "hotel".into(),
        holder: Holder {
            id: holder.into(),
            name: None,
        },
        role: Role::Guest,
        window: Window {
            starts_at: Timestamp::from_unix_seconds(100),
            ends_at: Timestamp::from_unix_seconds(200),
        },
        reservation: None,
        entrances: vec![EntranceTarget {
            entrance_id: "door".into(),
            behaviour: Behaviour::Standard,
        }],
        modes: vec![CredentialMode::Pin],
        pin: Some(Secret::new("4821".into())),
    }
}

#[tokio::test]
async fn a_driver_behind_the_table_answers_like_a_built_in_one() {
    let table = plugin_table!(|_config: &[u8]| Ok(Echo));
    // SAFETY: a static table in this binary.
    let driver = unsafe { from_table(&spec("front-door"), table) }.unwrap();
    let info = driver.info();
    assert_eq!(info.name, "front-door", "the configured name wins");
    assert_eq!(info.version, "9.8.7");
    assert_eq!(info.kind, DriverKind::Plugin);
    assert!(info.capability.issue && !info.capability.list);

    let reply = driver.issue(issue_args("g1")).await.unwrap();
    assert_eq!(reply.driver_ref.as_deref(), Some("01KEY"));
    assert_eq!(reply.credentials[0].driver, "front-door");
    assert_eq!(
        reply.credentials[0].data,
        CredentialData::Pin(Secret::new("4821".into()))
    );

    let taken = driver.issue(issue_args("taken")).await.unwrap_err();
    assert_eq!(taken.kind(), ErrorKind::AlreadyExists);
    assert_eq!(taken.reason(), "PIN_IN_USE");
    assert_eq!(taken.violations()[0].field, "pin");

    let unsupported = driver
        .list(ListArgs {
            property_id: "hotel".into(),
            page_size: 10,
            page_token: None,
        })
        .await
        .unwrap_err();
    assert_eq!(unsupported.kind(), ErrorKind::Unsupported);
}

#[tokio::test]
async fn a_panic_fails_that_call_only_and_keeps_the_pin_out() {
    let table = plugin_table!(|_config: &[u8]| Ok(Echo));
    // SAFETY: a static table in this binary.
    let driver = unsafe { from_table(&spec("echo"), table) }.unwrap();
    let err = driver.issue(issue_args("panic")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Internal);
    assert_eq!(err.reason(), reasons::PLUGIN_PANICKED);
    assert!(!format!("{err:?} {err}").contains("4821"));
    assert!(driver.issue(issue_args("g2")).await.is_ok());
}

#[test]
fn a_constructor_error_is_a_load_error_naming_the_library() {
    let table = plugin_table!(|_config: &[u8]| -> Result<Echo> {
        Err(Error::invalid_field(
            "CONFIG_INVALID",
            "doors",
            "must not be empty",
        ))
    });
    // SAFETY: a static table in this binary.
    let err = unsafe { from_table(&spec("echo"), table) }
        .err()
        .unwrap()
        .to_string();
    assert_eq!(
        err,
        "plugin /in/this/test.so: refused its configuration: doors: must not be empty \
         (CONFIG_INVALID)"
    );
}

// ---- a plugin that breaks the contract ----

fn answer(response: pb::DriverResponse) -> PluginBuffer {
    PluginBuffer::from_vec(response.encode_to_vec())
}

unsafe extern "C" fn liar_create(_config: ByteSlice) -> CreateResult {
    CreateResult {
        instance: std::ptr::NonNull::<c_void>::dangling().as_ptr(),
        error: PluginBuffer::EMPTY,
    }
}

unsafe extern "C" fn liar_call(
    _instance: *mut c_void,
    method: ByteSlice,
    _request: ByteSlice,
) -> PluginBuffer {
    use pb::driver_response::Result as Reply;
    // SAFETY: the host lends the method name for the call.
    match unsafe { method.as_slice() } {
        b"info" => answer(pb::DriverResponse {
            result: Some(Reply::Info(pb::InfoReply {
                name: "liar".into(),
                version: "0".into(),
                capability: Some(pb::Capability {
                    issue: true,
                    revoke: true,
                    list: true,
                    ..Default::default()
                }),
            })),
        }),
        b"entrances" => PluginBuffer::from_vec(vec![0xff, 0xff, 0xff]),
        b"issue" => answer(pb::DriverResponse {
            result: Some(Reply::List(pb::ListReply::default())),
        }),
        b"revoke" => PluginBuffer::EMPTY,
        _ => answer(pb::DriverResponse { result: None }),
    }
}

unsafe extern "C" fn liar_free(buffer: PluginBuffer) {
    // SAFETY: every non-empty buffer the liar returns comes from from_vec.
    drop(unsafe { buffer.into_vec() })
}

unsafe extern "C" fn liar_destroy(_instance: *mut c_void) {}

static LIAR: PluginTable = PluginTable {
    abi_version: ABI_VERSION,
    table_size: PluginTable::SIZE,
    create: liar_create,
    call: liar_call,
    free_buffer: liar_free,
    destroy: liar_destroy,
};

#[tokio::test]
async fn bytes_that_break_the_contract_fail_the_call_as_protocol_errors() {
    // SAFETY: a static table in this binary.
    let driver = unsafe { from_table(&spec("liar"), &LIAR) }.unwrap();
    let slice = keysmith_core::driver::KeySlice {
        key_id: "k".into(),
        property_id: "p".into(),
        holder: Holder {
            id: "h".into(),
            name: None,
        },
        role: Role::Guest,
        window: issue_args("h").window,
        reservation: None,
        entrances: vec![],
        credentials: vec![],
        driver_ref: None,
    };
    let failures = [
        driver.entrances().await.map(|_| ()).unwrap_err(),
        driver.issue(issue_args("g")).await.map(|_| ()).unwrap_err(),
        driver
            .revoke(RevokeArgs { key: slice })
            .await
            .map(|_| ())
            .unwrap_err(),
        driver
            .list(ListArgs {
                property_id: "p".into(),
                page_size: 1,
                page_token: None,
            })
            .await
            .map(|_| ())
            .unwrap_err(),
    ];
    for err in failures {
        assert_eq!(err.kind(), ErrorKind::Internal, "{err}");
        assert_eq!(err.reason(), reasons::PLUGIN_PROTOCOL_ERROR, "{err}");
        assert!(err.metadata().contains(&("driver", "liar".to_string())));
    }
}
