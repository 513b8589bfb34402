//! One plugin instance behind its C function table: lends request bytes,
//! takes back response bytes and returns them to the plugin to free.
use std::ffi::c_void;

use keysmith_core::Result;
use keysmith_plugin::{
    abi::{ByteSlice, PluginBuffer, PluginTable},
    convert::protocol_error,
    proto as pb,
};
use prost::Message;

pub(crate) struct Instance {
    /// Copied out of the library, whose code stays loaded for good.
    table: PluginTable,
    ptr: *mut c_void,
}

// SAFETY: the ABI requires a plugin instance to be callable from any thread,
// concurrently (the SDK demands `PluginDriver: Send + Sync`), and the table
// holds plain function pointers into a library that is never unloaded.
unsafe impl Send for Instance {}
// SAFETY: as for Send; `call` only reads the instance on the host's side.
unsafe impl Sync for Instance {}

impl Instance {
    /// Takes ownership of an instance `table.create` returned.
    ///
    /// # Safety
    ///
    /// `ptr` must be a live instance made by `table.create`.
    pub(crate) unsafe fn new(table: PluginTable, ptr: *mut c_void) -> Self {
        Self { table, ptr }
    }

    /// Runs one operation. Blocks for as long as the plugin does.
    pub(crate) fn call(&self, method: &str, request: &[u8]) -> Result<pb::DriverResponse> {
        // SAFETY: `ptr` is live until Drop; the method name and the request
        // are borrowed for the whole call, as the ABI lends them.
        let buffer = unsafe {
            (self.table.call)(
                self.ptr,
                ByteSlice::new(method.as_bytes()),
                ByteSlice::new(request),
            )
        };
        // SAFETY: a buffer this instance's plugin just returned.
        unsafe { take_response(&self.table, buffer) }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        // SAFETY: made by `create`; dropped once, after every call (callers
        // hold an Arc for the duration of theirs).
        unsafe { (self.table.destroy)(self.ptr) }
    }
}

/// Decodes a `DriverResponse` the plugin returned and gives the buffer back
/// to it to free.
///
/// # Safety
///
/// `buffer` must come from `table`'s plugin and not have been freed.
pub(crate) unsafe fn take_response(
    table: &PluginTable,
    buffer: PluginBuffer,
) -> Result<pb::DriverResponse> {
    if buffer.ptr.is_null() {
        return Err(protocol_error("the plugin answered without a buffer"));
    }
    if buffer.len > isize::MAX as usize {
        // Not a real allocation: do not hand it back either.
        return Err(protocol_error("the plugin answered an impossible buffer"));
    }
    let decoded = {
        // SAFETY: non-null, and the plugin promises `len` readable bytes
        // until it frees them below; the slice does not outlive this block.
        let bytes = unsafe { std::slice::from_raw_parts(buffer.ptr, buffer.len) };
        pb::DriverResponse::decode(bytes)
    };
    // SAFETY: returned by this plugin, freed once, by it.
    unsafe { (table.free_buffer)(buffer) };
    decoded.map_err(|_| protocol_error("the plugin answered bytes that are not a DriverResponse"))
}
