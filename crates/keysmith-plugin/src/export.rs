//! The plugin's side of the ABI: the `extern "C"` entry points that
//! [`export_driver!`](crate::export_driver) puts in a table. They decode the
//! host's bytes, call the [`PluginDriver`], encode the answer, and never let
//! a panic unwind into the host.
use std::{
    cell::Cell,
    ffi::c_void,
    panic::{catch_unwind, AssertUnwindSafe},
    ptr,
    sync::Once,
};

use keysmith_driver::{reasons as core_reasons, Error, ErrorKind, Result};
use prost::Message;

use crate::{
    abi::{methods, ByteSlice, CreateResult, PluginBuffer},
    convert,
    driver::PluginDriver,
    proto as pb, reasons,
};

/// What an instance pointer points to.
struct Instance {
    driver: Box<dyn PluginDriver>,
    /// The driver's name, for the credentials it is handed back.
    name: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Method {
    Info,
    Entrances,
    Issue,
    Revoke,
    Update,
    Encode,
    Refresh,
    List,
}

impl Method {
    const ALL: [Method; 8] = [
        Method::Info,
        Method::Entrances,
        Method::Issue,
        Method::Revoke,
        Method::Update,
        Method::Encode,
        Method::Refresh,
        Method::List,
    ];

    fn name(self) -> &'static str {
        match self {
            Method::Info => methods::INFO,
            Method::Entrances => methods::ENTRANCES,
            Method::Issue => methods::ISSUE,
            Method::Revoke => methods::REVOKE,
            Method::Update => methods::UPDATE,
            Method::Encode => methods::ENCODE,
            Method::Refresh => methods::REFRESH,
            Method::List => methods::LIST,
        }
    }

    fn parse(name: &[u8]) -> Option<Method> {
        Method::ALL
            .into_iter()
            .find(|m| m.name().as_bytes() == name)
    }
}

thread_local! {
    /// Set while this thread runs inside an entry point.
    static IN_ENTRY_POINT: Cell<bool> = const { Cell::new(false) };
}

/// A panic message can hold anything the code had at hand, a PIN included:
/// inside an entry point only where it happened is printed. Panics
/// elsewhere (the plugin's own threads, or a host sharing this std in
/// tests) keep the hook they had.
fn withhold_panic_messages() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if IN_ENTRY_POINT.with(Cell::get) {
                let at = info
                    .location()
                    .map(|l| format!(" at {}:{}", l.file(), l.line()))
                    .unwrap_or_default();
                eprintln!(
                    "keysmith driver plugin panicked{at} (message withheld: it may hold a secret)"
                );
            } else {
                previous(info)
            }
        }));
    });
}

/// Runs `body`, turning a panic into `Err(())`.
fn guarded<T>(body: impl FnOnce() -> T) -> Result<T, ()> {
    withhold_panic_messages();
    let was_inside = IN_ENTRY_POINT.with(|f| f.replace(true));
    let outcome = catch_unwind(AssertUnwindSafe(body));
    IN_ENTRY_POINT.with(|f| f.set(was_inside));
    outcome.map_err(|payload| {
        // Dropping a payload runs foreign code too: keep it from unwinding.
        let _ = catch_unwind(AssertUnwindSafe(move || drop(payload)));
    })
}

fn panicked(operation: &str) -> Error {
    Error::new(
        ErrorKind::Internal,
        reasons::PLUGIN_PANICKED,
        format!("the plugin panicked in {operation}"),
    )
}

fn error_response(error: &Error) -> pb::DriverResponse {
    pb::DriverResponse {
        result: Some(pb::driver_response::Result::Error(convert::error_to_proto(
            error,
        ))),
    }
}

fn encode(response: &pb::DriverResponse) -> PluginBuffer {
    PluginBuffer::from_vec(response.encode_to_vec())
}

/// The body of a plugin's `create`: builds the driver from its
/// configuration bytes with `constructor`.
///
/// # Safety
///
/// `config` must be lent as the ABI says: readable for the whole call.
pub unsafe fn create<D: PluginDriver>(
    config: ByteSlice,
    constructor: impl FnOnce(&[u8]) -> Result<D>,
) -> CreateResult {
    let outcome = guarded(|| {
        // SAFETY: the host keeps `config` alive for this call.
        let bytes = unsafe { config.as_slice() };
        let driver = constructor(bytes)?;
        let name = driver.info().name;
        Ok(Instance {
            driver: Box::new(driver),
            name,
        })
    });
    let failure = match outcome {
        Ok(Ok(instance)) => {
            return CreateResult {
                instance: Box::into_raw(Box::new(instance)).cast::<c_void>(),
                error: PluginBuffer::EMPTY,
            }
        }
        Ok(Err(error)) => error,
        Err(()) => panicked("create"),
    };
    CreateResult {
        instance: ptr::null_mut(),
        error: encode(&error_response(&failure)),
    }
}

/// `call` of the table: one operation, bytes in and bytes out.
///
/// # Safety
///
/// `instance` must come from this library's `create` and not be destroyed;
/// `method` and `request` must be lent as the ABI says.
pub unsafe extern "C" fn call(
    instance: *mut c_void,
    method: ByteSlice,
    request: ByteSlice,
) -> PluginBuffer {
    // SAFETY: the host lends the method name for this call.
    let method_name = unsafe { method.as_slice() };
    let Some(method) = Method::parse(method_name) else {
        return encode(&error_response(&Error::new(
            ErrorKind::Unsupported,
            core_reasons::OPERATION_NOT_SUPPORTED,
            format!(
                "this plugin has no method {:?}",
                String::from_utf8_lossy(method_name)
            ),
        )));
    };
    if instance.is_null() {
        return encode(&error_response(&convert::protocol_error(
            "call without an instance",
        )));
    }
    let outcome = guarded(|| {
        // SAFETY: a live instance made by `create` (the caller's promise);
        // it is only read, and PluginDriver is Sync, so concurrent calls
        // are fine.
        let instance = unsafe { &*instance.cast::<Instance>() };
        // SAFETY: the host keeps `request` alive for this call.
        let request = unsafe { request.as_slice() };
        encode(&dispatch(instance, method, request))
    });
    outcome.unwrap_or_else(|()| encode(&error_response(&panicked(method.name()))))
}

/// `free_buffer` of the table.
///
/// # Safety
///
/// `buffer` must be one this library returned, freed once.
pub unsafe extern "C" fn free_buffer(buffer: PluginBuffer) {
    let _ = guarded(move || {
        // SAFETY: made by PluginBuffer::from_vec in this library and handed
        // back once, as the caller promises.
        drop(unsafe { buffer.into_vec() })
    });
}

/// `destroy` of the table.
///
/// # Safety
///
/// `instance` must come from this library's `create`, with no call running
/// or following.
pub unsafe extern "C" fn destroy(instance: *mut c_void) {
    if instance.is_null() {
        return;
    }
    let _ = guarded(move || {
        // SAFETY: `create` made it with Box::into_raw; nothing uses it any more.
        drop(unsafe { Box::from_raw(instance.cast::<Instance>()) })
    });
}

fn decode<M: Message + Default>(bytes: &[u8], method: Method) -> Result<M> {
    M::decode(bytes).map_err(|_| {
        convert::protocol_error(format!(
            "the plugin could not decode the {} request",
            method.name()
        ))
    })
}

fn dispatch(instance: &Instance, method: Method, request: &[u8]) -> pb::DriverResponse {
    use pb::driver_response::Result as Reply;
    let driver = instance.driver.as_ref();
    let name = instance.name.as_str();
    let result: Result<Reply> = match method {
        Method::Info => decode::<pb::InfoRequest>(request, method)
            .map(|_| Reply::Info(convert::info_to_proto(&driver.info()))),
        Method::Entrances => decode::<pb::EntrancesRequest>(request, method)
            .and_then(|_| driver.entrances())
            .map(|e| Reply::Entrances(convert::entrances_to_proto(&e))),
        Method::Issue => decode(request, method)
            .and_then(convert::issue_args_from_proto)
            .and_then(|args| driver.issue(args))
            .map(|r| Reply::Issue(convert::issue_reply_to_proto(&r))),
        Method::Revoke => decode(request, method)
            .and_then(|r| convert::revoke_args_from_proto(r, name))
            .and_then(|args| driver.revoke(args))
            .map(|r| Reply::Revoke(convert::revoke_reply_to_proto(&r))),
        Method::Update => decode(request, method)
            .and_then(|r| convert::update_args_from_proto(r, name))
            .and_then(|args| driver.update(args))
            .map(|r| Reply::Update(convert::update_reply_to_proto(&r))),
        Method::Encode => decode(request, method)
            .and_then(|r| convert::encode_args_from_proto(r, name))
            .and_then(|args| driver.encode(args))
            .map(|r| Reply::Encode(convert::encode_reply_to_proto(&r))),
        Method::Refresh => decode(request, method)
            .and_then(|r| convert::refresh_args_from_proto(r, name))
            .and_then(|args| driver.refresh(args))
            .map(|r| Reply::Refresh(convert::refresh_reply_to_proto(&r))),
        Method::List => decode(request, method)
            .map(convert::list_args_from_proto)
            .and_then(|args| driver.list(args))
            .map(|r| Reply::List(convert::list_reply_to_proto(&r))),
    };
    pb::DriverResponse {
        result: Some(result.unwrap_or_else(|e| Reply::Error(convert::error_to_proto(&e)))),
    }
}

/// Exports a [`PluginDriver`] as a keysmith plugin: generates the
/// `keysmith_driver_plugin` symbol and its table. Give it the driver's
/// constructor, a function or closure from the configuration bytes (JSON)
/// to `keysmith_driver::Result<YourDriver>`:
///
/// ```ignore
/// keysmith_plugin::export_driver!(KeypadDriver::from_config);
/// ```
///
/// Use it once per library, in a crate built as a `cdylib`.
#[macro_export]
macro_rules! export_driver {
    ($constructor:expr) => {
        $crate::export_driver!($constructor, abi_version = $crate::abi::ABI_VERSION);
    };
    // Not for plugin authors: keysmith's tests build a plugin that claims
    // another ABI version, to see the host refuse it.
    ($constructor:expr, abi_version = $version:expr) => {
        /// The entry point keysmith looks up: the plugin's function table.
        #[no_mangle]
        pub extern "C" fn keysmith_driver_plugin() -> *const $crate::abi::PluginTable {
            $crate::plugin_table!($constructor, abi_version = $version)
        }
    };
}

/// The function table of a constructor, without exporting a symbol: what
/// [`export_driver!`](crate::export_driver) returns, and what tests use to
/// drive the ABI inside one process.
#[doc(hidden)]
#[macro_export]
macro_rules! plugin_table {
    ($constructor:expr) => {
        $crate::plugin_table!($constructor, abi_version = $crate::abi::ABI_VERSION)
    };
    ($constructor:expr, abi_version = $version:expr) => {{
        unsafe extern "C" fn create(config: $crate::abi::ByteSlice) -> $crate::abi::CreateResult {
            // SAFETY: the host lends `config` for this call, as the ABI
            // requires of it.
            unsafe { $crate::export::create(config, $constructor) }
        }
        static TABLE: $crate::abi::PluginTable = $crate::abi::PluginTable {
            abi_version: $version,
            table_size: $crate::abi::PluginTable::SIZE,
            create,
            call: $crate::export::call,
            free_buffer: $crate::export::free_buffer,
            destroy: $crate::export::destroy,
        };
        &TABLE as *const $crate::abi::PluginTable
    }};
}

#[cfg(test)]
mod tests {
    use keysmith_driver::driver::{EntranceSpec, IssueArgs, IssueReply, RevokeArgs, RevokeReply};

    use super::*;
    use crate::{abi::PluginTable, driver::PluginInfo};

    struct Grumpy {
        secret: String,
    }

    impl PluginDriver for Grumpy {
        fn info(&self) -> PluginInfo {
            PluginInfo {
                name: "grumpy".into(),
                version: "0.0.1".into(),
                capability: Default::default(),
            }
        }
        fn entrances(&self) -> Result<Vec<EntranceSpec>> {
            Err(Error::unavailable("GRUMPY_OFFLINE", "not today"))
        }
        fn issue(&self, _args: IssueArgs) -> Result<IssueReply> {
            panic!("the PIN was {}", self.secret)
        }
        fn revoke(&self, _args: RevokeArgs) -> Result<RevokeReply> {
            Ok(RevokeReply::default())
        }
    }

    fn table() -> &'static PluginTable {
        let table = plugin_table!(|config: &[u8]| {
            if config == b"refuse" {
                Err(Error::invalid_field("CONFIG_INVALID", "config", "refused"))
            } else if config == b"panic" {
                panic!("constructor panicked")
            } else {
                Ok(Grumpy {
                    secret: "482913".into(),
                })
            }
        });
        // SAFETY: plugin_table! returns a pointer to a static.
        unsafe { &*table }
    }

    /// Calls through the table as the host would, and decodes the answer.
    fn call_table(instance: *mut c_void, method: &str, request: &[u8]) -> pb::DriverResponse {
        let table = table();
        // SAFETY: the instance comes from this table's create; both byte
        // slices outlive the call; the buffer is freed once, by its maker.
        unsafe {
            let buffer = (table.call)(
                instance,
                ByteSlice::new(method.as_bytes()),
                ByteSlice::new(request),
            );
            let bytes = std::slice::from_raw_parts(buffer.ptr, buffer.len).to_vec();
            (table.free_buffer)(buffer);
            pb::DriverResponse::decode(bytes.as_slice()).unwrap()
        }
    }

    fn error_of(response: pb::DriverResponse) -> pb::DriverError {
        match response.result {
            Some(pb::driver_response::Result::Error(e)) => e,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    fn create(config: &[u8]) -> CreateResult {
        // SAFETY: `config` outlives the call.
        unsafe { (table().create)(ByteSlice::new(config)) }
    }

    #[test]
    fn a_panic_in_issue_is_an_internal_error_without_the_message() {
        let created = create(b"{}");
        assert!(!created.instance.is_null());
        let request = pb::IssueRequest {
            key_id: "k".into(),
            property_id: "p".into(),
            holder: Some(pb::Holder {
                id: "h".into(),
                name: String::new(),
            }),
            role: pb::Role::Guest as i32,
            window: Some(convert::window_to_proto(&keysmith_driver::Window {
                starts_at: keysmith_driver::Timestamp::from_unix_seconds(0),
                ends_at: keysmith_driver::Timestamp::from_unix_seconds(10),
            })),
            ..Default::default()
        };
        let error = error_of(call_table(
            created.instance,
            methods::ISSUE,
            &request.encode_to_vec(),
        ));
        assert_eq!(error.reason, reasons::PLUGIN_PANICKED);
        assert_eq!(error.kind, pb::driver_error::Kind::Internal as i32);
        assert_eq!(error.message, "the plugin panicked in issue");
        assert!(!format!("{error:?}").contains("482913"));
        // The instance still answers.
        let info = call_table(created.instance, methods::INFO, &[]);
        assert!(matches!(
            info.result,
            Some(pb::driver_response::Result::Info(ref i)) if i.name == "grumpy"
        ));
        // SAFETY: made by create above, no call follows.
        unsafe { (table().destroy)(created.instance) };
    }

    #[test]
    fn errors_garbage_and_unknown_methods_are_answered_as_data() {
        let created = create(b"{}");
        let error = error_of(call_table(created.instance, methods::ENTRANCES, &[]));
        assert_eq!(error.reason, "GRUMPY_OFFLINE");
        assert!(error.temporary);
        let error = error_of(call_table(created.instance, methods::ISSUE, &[0xff, 0xff]));
        assert_eq!(error.reason, reasons::PLUGIN_PROTOCOL_ERROR);
        let error = error_of(call_table(created.instance, "teleport", &[]));
        assert_eq!(error.reason, core_reasons::OPERATION_NOT_SUPPORTED);
        let error = error_of(call_table(ptr::null_mut(), methods::INFO, &[]));
        assert_eq!(error.reason, reasons::PLUGIN_PROTOCOL_ERROR);
        // The default methods answer Unsupported.
        let error = error_of(call_table(
            created.instance,
            methods::LIST,
            &pb::ListRequest::default().encode_to_vec(),
        ));
        assert_eq!(error.kind, pb::driver_error::Kind::Unsupported as i32);
        // SAFETY: made by create above, no call follows.
        unsafe { (table().destroy)(created.instance) };
    }

    #[test]
    fn create_answers_the_constructors_error_or_its_panic() {
        for (config, reason) in [
            (&b"refuse"[..], "CONFIG_INVALID"),
            (&b"panic"[..], reasons::PLUGIN_PANICKED),
        ] {
            let created = create(config);
            assert!(created.instance.is_null());
            // SAFETY: a buffer from this library, taken back once.
            let bytes = unsafe { created.error.into_vec() };
            let error = error_of(pb::DriverResponse::decode(bytes.as_slice()).unwrap());
            assert_eq!(error.reason, reason);
        }
    }
}
