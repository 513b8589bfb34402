//! The C ABI between keysmith and a driver plugin: one exported symbol, a
//! versioned table of `extern "C"` functions, and byte buffers. Only C types
//! cross it; what the bytes mean is protobuf (`keysmith.driver.v1`).
//!
//! Rules both sides keep:
//!
//! - The symbol [`ENTRY_SYMBOL`] never changes name, and the first two
//!   fields of the table ([`TableHeader`]) never change, whatever the ABI
//!   version: a host can always read which version a library speaks, and
//!   refuse it by name.
//! - A buffer is freed by whoever allocated it: the host frees every
//!   [`PluginBuffer`] a plugin returns with that plugin's `free_buffer`,
//!   exactly once; the plugin never keeps a [`ByteSlice`] the host lent it
//!   beyond the call.
//! - No entry point unwinds: the plugin catches every panic and answers an
//!   error instead (a panic unwinding out of `extern "C"` aborts).
//! - `call` may run on several host threads at once for one instance.
//! - The host never unloads a library; `destroy` ends one instance.
use std::{ffi::c_void, ptr};

/// The ABI this SDK speaks. A change to the table or to the meaning of its
/// functions is a new version; new protobuf fields are not.
pub const ABI_VERSION: u32 = 1;

/// The exported symbol, the same for every ABI version.
pub const ENTRY_SYMBOL: &str = "keysmith_driver_plugin";

/// [`ENTRY_SYMBOL`], NUL-terminated, as a loader wants it.
pub const ENTRY_SYMBOL_NUL: &[u8] = b"keysmith_driver_plugin\0";

/// The type of the exported symbol: returns the plugin's table, which lives
/// as long as the library is loaded.
pub type EntryPoint = unsafe extern "C" fn() -> *const PluginTable;

/// The frozen start of every table of every ABI version.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableHeader {
    /// The ABI version the library speaks: [`ABI_VERSION`] of the SDK it was
    /// built with. A host refuses a version it does not speak.
    pub abi_version: u32,
    /// `size_of` the whole table as the plugin was built: a host refuses a
    /// table smaller than the one it knows.
    pub table_size: u32,
}

/// Bytes lent for the duration of one call; the lender keeps them alive.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ByteSlice {
    /// The first byte; may be null when `len` is 0.
    pub ptr: *const u8,
    /// How many bytes are lent.
    pub len: usize,
}

impl ByteSlice {
    /// Lends `bytes`. The `ByteSlice` holds no lifetime: the lender keeps
    /// `bytes` alive and unchanged until the call it is passed to returns.
    pub fn new(bytes: &[u8]) -> Self {
        Self {
            ptr: bytes.as_ptr(),
            len: bytes.len(),
        }
    }

    /// The lent bytes.
    ///
    /// # Safety
    ///
    /// `ptr` must be null with `len == 0`, or point to `len` readable bytes
    /// that stay alive and unchanged for `'a`.
    pub unsafe fn as_slice<'a>(&self) -> &'a [u8] {
        if self.ptr.is_null() || self.len == 0 {
            &[]
        } else {
            // SAFETY: non-null and valid for `len` bytes for `'a`, as the
            // caller promises.
            unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
        }
    }
}

/// Bytes a plugin allocated and hands to the host, which gives them back to
/// the plugin's `free_buffer` when done. Null means "no bytes".
#[repr(C)]
#[derive(Debug)]
pub struct PluginBuffer {
    /// The bytes, allocated by the plugin; null for none.
    pub ptr: *mut u8,
    /// How many bytes.
    pub len: usize,
}

impl PluginBuffer {
    /// No bytes. Handing it to `free_buffer` does nothing.
    pub const EMPTY: PluginBuffer = PluginBuffer {
        ptr: ptr::null_mut(),
        len: 0,
    };

    /// Hands the bytes over; only [`PluginBuffer::into_vec`] in the same
    /// library may take them back.
    pub fn from_vec(bytes: Vec<u8>) -> Self {
        // A boxed slice has no spare capacity, so (ptr, len) is all it takes
        // to rebuild it.
        let boxed = bytes.into_boxed_slice();
        let len = boxed.len();
        Self {
            ptr: Box::into_raw(boxed) as *mut u8,
            len,
        }
    }

    /// Takes back bytes made by [`PluginBuffer::from_vec`].
    ///
    /// # Safety
    ///
    /// The buffer must come from `from_vec` in this same library (this same
    /// allocator) and not have been taken back before.
    pub unsafe fn into_vec(self) -> Vec<u8> {
        if self.ptr.is_null() {
            return Vec::new();
        }
        let slice = ptr::slice_from_raw_parts_mut(self.ptr, self.len);
        // SAFETY: `from_vec` leaked exactly this boxed slice, and the caller
        // promises it is taken back once, by the allocator that made it.
        unsafe { Box::from_raw(slice) }.into_vec()
    }
}

/// What `create` answers: an instance, or a null instance and an encoded
/// `DriverResponse` carrying the error.
#[repr(C)]
#[derive(Debug)]
pub struct CreateResult {
    /// The new instance, for `call` and `destroy`; null when `create` failed.
    pub instance: *mut c_void,
    /// When `instance` is null, the error as an encoded `DriverResponse`
    /// (freed with `free_buffer` like any buffer); else [`PluginBuffer::EMPTY`].
    pub error: PluginBuffer,
}

/// The table of ABI version 1. Fields are only ever added at the end, in a
/// new ABI version.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PluginTable {
    /// The ABI version, as in [`TableHeader::abi_version`].
    pub abi_version: u32,
    /// The table's size, as in [`TableHeader::table_size`]: [`PluginTable::SIZE`]
    /// for this SDK.
    pub table_size: u32,
    /// Makes one driver instance from its configuration (the JSON keysmith
    /// was given in `[drivers.plugins.config]`).
    pub create: unsafe extern "C" fn(config: ByteSlice) -> CreateResult,
    /// Runs one operation: `method` is a UTF-8 name from [`methods`],
    /// `request` the encoded request message; answers an encoded
    /// `DriverResponse`.
    pub call: unsafe extern "C" fn(
        instance: *mut c_void,
        method: ByteSlice,
        request: ByteSlice,
    ) -> PluginBuffer,
    /// Frees a buffer this plugin returned.
    pub free_buffer: unsafe extern "C" fn(buffer: PluginBuffer),
    /// Ends an instance made by `create`; no call may follow.
    pub destroy: unsafe extern "C" fn(instance: *mut c_void),
}

impl PluginTable {
    /// The `table_size` of this ABI version's table.
    pub const SIZE: u32 = std::mem::size_of::<PluginTable>() as u32;
}

/// The method names `call` takes.
pub mod methods {
    /// [`PluginDriver::info`](crate::PluginDriver::info): `InfoRequest` in,
    /// `InfoReply` out.
    pub const INFO: &str = "info";
    /// [`PluginDriver::entrances`](crate::PluginDriver::entrances):
    /// `EntrancesRequest` in, `EntrancesReply` out.
    pub const ENTRANCES: &str = "entrances";
    /// [`PluginDriver::issue`](crate::PluginDriver::issue): `IssueRequest` in,
    /// `IssueReply` out.
    pub const ISSUE: &str = "issue";
    /// [`PluginDriver::revoke`](crate::PluginDriver::revoke): `RevokeRequest`
    /// in, `RevokeReply` out.
    pub const REVOKE: &str = "revoke";
    /// [`PluginDriver::update`](crate::PluginDriver::update): `UpdateRequest`
    /// in, `UpdateReply` out.
    pub const UPDATE: &str = "update";
    /// [`PluginDriver::encode`](crate::PluginDriver::encode): `EncodeRequest`
    /// in, `EncodeReply` out.
    pub const ENCODE: &str = "encode";
    /// [`PluginDriver::refresh`](crate::PluginDriver::refresh):
    /// `RefreshRequest` in, `RefreshReply` out.
    pub const REFRESH: &str = "refresh";
    /// [`PluginDriver::list`](crate::PluginDriver::list): `ListRequest` in,
    /// `ListReply` out.
    pub const LIST: &str = "list";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_is_the_start_of_the_table() {
        // The host reads a foreign table through the header: it must be a
        // prefix of the layout.
        assert_eq!(std::mem::offset_of!(PluginTable, abi_version), 0);
        assert_eq!(std::mem::offset_of!(PluginTable, table_size), 4);
        assert_eq!(std::mem::size_of::<TableHeader>(), 8);
        assert_eq!(
            ENTRY_SYMBOL_NUL,
            format!("{ENTRY_SYMBOL}\0").as_bytes(),
            "the two spellings of the symbol agree"
        );
    }

    #[test]
    fn a_buffer_round_trips_and_empty_is_empty() {
        let buffer = PluginBuffer::from_vec(vec![1, 2, 3]);
        assert_eq!(buffer.len, 3);
        // SAFETY: made by from_vec just above, taken back once.
        assert_eq!(unsafe { buffer.into_vec() }, vec![1, 2, 3]);
        // SAFETY: a null buffer is never dereferenced.
        assert!(unsafe { PluginBuffer::EMPTY.into_vec() }.is_empty());
        // SAFETY: null with len 0 is the documented empty slice.
        assert!(unsafe {
            ByteSlice {
                ptr: ptr::null(),
                len: 0,
            }
            .as_slice()
        }
        .is_empty());
    }
}
