//! The raw `pabi` imports (ABI 1.0). Prefer the safe wrappers of the crate
//! root; these are here for code that manages its own buffers.
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
}
