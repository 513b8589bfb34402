//! Loading a plugin: the file's digest, the library, the ABI version and
//! table size, then one instance made from its configuration.
use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use keysmith_core::{Driver, DriverInfo, DriverKind};
use keysmith_plugin::{
    abi::{
        methods, ByteSlice, EntryPoint, PluginTable, TableHeader, ABI_VERSION, ENTRY_SYMBOL,
        ENTRY_SYMBOL_NUL,
    },
    convert, proto as pb, SDK_VERSION,
};
use libloading::Library;
use sha2::{Digest, Sha256};

use crate::{
    handle::PluginDriverHandle,
    instance::{take_response, Instance},
};

/// What keysmith's configuration says about one plugin.
#[derive(Clone, Debug)]
pub struct PluginSpec {
    /// The driver's name in keysmith (routing, ListDrivers, keys).
    pub name: String,
    pub path: PathBuf,
    /// The expected sha256 of the file, hex; checked before loading.
    pub sha256: Option<String>,
    /// Handed to the plugin's `create` as they are (keysmith passes JSON).
    pub config: Vec<u8>,
}

/// Why a plugin was not loaded; the message names the library.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LoadError(String);

fn fail(path: &Path, why: impl std::fmt::Display) -> LoadError {
    LoadError(format!("plugin {}: {why}", path.display()))
}

/// Loads the library, checks it and makes its driver. Blocking: call it at
/// start-up, off the async workers. The library is never unloaded.
pub fn load(spec: &PluginSpec) -> Result<Arc<dyn Driver>, LoadError> {
    load_handle(spec).map(|h| Arc::new(h) as Arc<dyn Driver>)
}

pub(crate) fn load_handle(spec: &PluginSpec) -> Result<PluginDriverHandle, LoadError> {
    let path = spec.path.as_path();
    if let Some(expected) = &spec.sha256 {
        verify_digest(path, expected)?;
    }
    // SAFETY: loading a library runs its initialisers with keysmith's rights.
    // keysmith loads only what its operator configured, and with `sha256`
    // only the exact file they named.
    let library = unsafe { Library::new(path) }.map_err(|e| fail(path, e))?;
    // Never unloaded: the driver's code and the table must outlive every call.
    let library: &'static Library = Box::leak(Box::new(library));
    // SAFETY: every keysmith plugin of every ABI version exports this
    // symbol with this type; a library that does not is refused below.
    let entry = unsafe { library.get::<EntryPoint>(ENTRY_SYMBOL_NUL) }.map_err(|_| {
        fail(
            path,
            format!("exports no {ENTRY_SYMBOL}: it is not a keysmith driver plugin"),
        )
    })?;
    // SAFETY: the entry point takes nothing and returns a pointer to the
    // library's static table.
    let table_ptr = unsafe { entry() };
    if table_ptr.is_null() {
        return Err(fail(path, format!("{ENTRY_SYMBOL} returned no table")));
    }
    // SAFETY: a non-null table of a library that stays loaded.
    unsafe { from_table(spec, table_ptr) }
}

/// [`from_table`] as a driver, for the fuzz targets (`fuzz/`): they play a
/// plugin from a table inside the fuzzer's own binary, so that the host's
/// decoding of a plugin's replies is exercised as keysmith runs it, with no
/// library to load. Not an API for anything else.
///
/// # Safety
///
/// As for [`from_table`]: `table_ptr` points to a plugin's table that stays
/// valid for the life of the process.
#[doc(hidden)]
pub unsafe fn load_table(
    spec: &PluginSpec,
    table_ptr: *const PluginTable,
) -> Result<Arc<dyn Driver>, LoadError> {
    // SAFETY: the caller's promise, passed on.
    unsafe { from_table(spec, table_ptr) }.map(|h| Arc::new(h) as Arc<dyn Driver>)
}

/// Checks a plugin's table and makes its driver.
///
/// # Safety
///
/// `table_ptr` must point to a plugin's table (of any ABI version) that
/// stays valid for the life of the process.
pub(crate) unsafe fn from_table(
    spec: &PluginSpec,
    table_ptr: *const PluginTable,
) -> Result<PluginDriverHandle, LoadError> {
    let path = spec.path.as_path();
    // SAFETY: the tables of all ABI versions start with the frozen header,
    // and the table is a static of a library that stays loaded.
    let header = unsafe { table_ptr.cast::<TableHeader>().read() };
    let table = checked_table(path, header, || {
        // SAFETY: checked_table calls this only for a table of this ABI
        // version at least as large as ours: its layout is PluginTable.
        unsafe { table_ptr.read() }
    })?;
    // SAFETY: the configuration bytes outlive the call.
    let created = unsafe { (table.create)(ByteSlice::new(&spec.config)) };
    if created.instance.is_null() {
        // SAFETY: a buffer this plugin returned, taken once.
        let why = match unsafe { take_response(&table, created.error) } {
            Ok(pb::DriverResponse {
                result: Some(pb::driver_response::Result::Error(e)),
            }) => {
                let error = convert::error_from_proto(e);
                format!(
                    "refused its configuration: {} ({})",
                    error.message(),
                    error.reason()
                )
            }
            _ => "failed to start and said nothing intelligible".to_owned(),
        };
        return Err(fail(path, why));
    }
    if !created.error.ptr.is_null() {
        // An instance and an error: the error is noise, but still ours to return.
        // SAFETY: a buffer this plugin returned, taken once.
        let _ = unsafe { take_response(&table, created.error) };
    }
    // SAFETY: a live instance `table.create` just made.
    let instance = Arc::new(unsafe { Instance::new(table, created.instance) });
    let info = instance
        .call(methods::INFO, &[])
        .and_then(|response| match response.result {
            Some(pb::driver_response::Result::Info(info)) => convert::info_from_proto(info),
            Some(pb::driver_response::Result::Error(e)) => Err(convert::error_from_proto(e)),
            _ => Err(convert::protocol_error("info answered something else")),
        })
        .map_err(|e| fail(path, format!("could not say who it is: {}", e.message())))?;
    if info.name != spec.name {
        tracing::info!(
            plugin = %path.display(),
            plugin_name = %info.name,
            name = %spec.name,
            "the plugin's driver is registered under the configured name"
        );
    }
    tracing::info!(
        name = %spec.name,
        version = %info.version,
        plugin = %path.display(),
        "driver plugin loaded"
    );
    Ok(PluginDriverHandle::new(
        DriverInfo {
            name: spec.name.clone(),
            version: info.version,
            kind: DriverKind::Plugin,
            capability: info.capability,
        },
        instance,
    ))
}

/// The table, once its header says it is one this keysmith can read.
fn checked_table(
    path: &Path,
    header: TableHeader,
    read: impl FnOnce() -> PluginTable,
) -> Result<PluginTable, LoadError> {
    if header.abi_version != ABI_VERSION {
        return Err(fail(
            path,
            format!(
                "speaks driver ABI {} but this keysmith speaks ABI {ABI_VERSION}; rebuild the \
                 plugin against keysmith-plugin {SDK_VERSION}",
                header.abi_version
            ),
        ));
    }
    if header.table_size < PluginTable::SIZE {
        return Err(fail(
            path,
            format!(
                "has a function table of {} bytes where ABI {ABI_VERSION} has {}: it is \
                 damaged or was not built with keysmith-plugin",
                header.table_size,
                PluginTable::SIZE
            ),
        ));
    }
    Ok(read())
}

fn verify_digest(path: &Path, expected: &str) -> Result<(), LoadError> {
    let bytes = std::fs::read(path).map_err(|e| fail(path, format!("cannot be read: {e}")))?;
    let actual = hex::encode(Sha256::digest(&bytes));
    if !actual.eq_ignore_ascii_case(expected.trim()) {
        return Err(fail(
            path,
            format!(
                "has sha256 {actual} but the configuration expects {}: refusing to load it",
                expected.trim()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn never_read() -> PluginTable {
        unreachable!("a refused table is never read")
    }

    #[test]
    fn another_abi_version_is_refused_naming_both() {
        let path = Path::new("/opt/plugins/libfoo.so");
        let err = checked_table(
            path,
            TableHeader {
                abi_version: 99,
                table_size: 1000,
            },
            never_read,
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            format!(
                "plugin /opt/plugins/libfoo.so: speaks driver ABI 99 but this keysmith speaks \
                 ABI 1; rebuild the plugin against keysmith-plugin {SDK_VERSION}"
            )
        );
    }

    #[test]
    fn a_short_table_is_refused() {
        let err = checked_table(
            Path::new("/x.so"),
            TableHeader {
                abi_version: ABI_VERSION,
                table_size: 8,
            },
            never_read,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("table of 8 bytes"), "{err}");
    }

    #[test]
    fn the_digest_must_match() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("libx.so");
        std::fs::write(&file, b"not really a library").unwrap();
        let good = hex::encode(Sha256::digest(b"not really a library"));
        verify_digest(&file, &good.to_uppercase()).unwrap();
        let err = verify_digest(&file, &"0".repeat(64))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&good) && err.contains(&"0".repeat(64)),
            "{err}"
        );
        let missing = verify_digest(&dir.path().join("nope.so"), &good).unwrap_err();
        assert!(missing.to_string().contains("cannot be read"), "{missing}");
    }

    #[test]
    fn a_file_that_is_not_a_library_is_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("libjunk.so");
        std::fs::write(&file, b"junk").unwrap();
        let spec = PluginSpec {
            name: "junk".into(),
            path: file.clone(),
            sha256: None,
            config: b"{}".to_vec(),
        };
        let err = load(&spec).err().expect("refused").to_string();
        assert!(
            err.starts_with(&format!("plugin {}", file.display())),
            "{err}"
        );
    }
}
