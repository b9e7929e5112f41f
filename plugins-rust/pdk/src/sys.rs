//! The raw `pabi` imports (ABI 1.0, and the host calls of ABI 1.1). Prefer
//! the safe wrappers of the crate root and [`crate::host`]; these are here
//! for code that manages its own buffers. An import the plugin does not use
//! is not imported, so a 1.0 plugin built with this crate stays 1.0.
//!
//! Pointers and lengths are unsigned 32-bit values on wasm32. A range outside
//! the plugin's memory makes the host abort the call (`MEM-3`).

#[link(wasm_import_module = "pabi")]
extern "C" {
    /// Copies `min(len, input_len - offset)` bytes of the current input (or
    /// config, or state) to `dst`; returns the count, 0 past the end.
    pub fn input_read(dst: *mut u8, offset: u32, len: u32) -> i32;

    /// Appends `len` bytes at `src` to the output; 0 on success, -3
    /// (`E_UNAVAILABLE`) where output is not allowed.
    pub fn output_write(src: *const u8, len: u32) -> i32;

    /// Appends `len` bytes at `src` to the error message; 0, or -1 (`E_LIMIT`)
    /// when truncated at the host's cap.
    pub fn error_write(src: *const u8, len: u32) -> i32;

    /// Logs `len` bytes at `src` at `level` (0 error … 4 trace); 0, or -2
    /// (`E_INVALID`) for an unknown level.
    pub fn log(level: i32, src: *const u8, len: u32) -> i32;

    /// Calls the application's handler for the host call `name` with the
    /// request (ABI 1.1, `CALL-4`): the reply length, or -1 (`E_LIMIT`),
    /// -3 (`E_UNAVAILABLE`), -4 (`E_FAILED`, the reply holds the handler's
    /// message) or -5 (`E_ABSENT`).
    pub fn host_call(name: *const u8, name_len: u32, req: *const u8, req_len: u32) -> i32;

    /// Copies `min(len, reply_len - offset)` bytes of the latest host
    /// call's reply to `dst`; returns the count (ABI 1.1, `CALL-6`).
    pub fn reply_read(dst: *mut u8, offset: u32, len: u32) -> i32;
}
