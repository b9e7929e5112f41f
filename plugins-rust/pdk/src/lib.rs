//! Write [pabi](https://github.com/pabi-dev/pabi) WebAssembly plugins in Rust.
//!
//! ```ignore
//! use pabi_pdk::Error;
//!
//! pabi_pdk::metadata!("pabi.json"); // the `pabi` custom section, from a file beside Cargo.toml
//! pabi_pdk::export!(shout => shout); // exports `pabi_fn_shout(i32) -> i32`
//!
//! fn shout(input: &[u8]) -> Result<Vec<u8>, Error> {
//!     let text = std::str::from_utf8(input).map_err(|_| Error::invalid_input("not UTF-8"))?;
//!     Ok(format!("{}!", text.to_uppercase()).into_bytes())
//! }
//! ```
//!
//! Build it as a `cdylib` with `cargo build --release --target
//! wasm32-unknown-unknown` (profile `core`) or `--target wasm32-wasip1`
//! (profile `wasi`), then check it with `pabi validate`.
//!
//! # The model
//!
//! pabi copies bytes in and out; no buffer ever changes owner. A plugin
//! function receives only the input length and pulls the bytes with
//! `pabi.input_read`; it pushes its output with `pabi.output_write` and an
//! error message with `pabi.error_write`, then returns a status. The macros of
//! this crate write that glue:
//!
//! | macro | export | your function |
//! |---|---|---|
//! | [`export!`]`(name => f)` | `pabi_fn_name` | `fn(&[u8]) -> Result<Vec<u8>, Error>` |
//! | [`export_stream!`]`(name => f)` | `pabi_fn_name` | `fn(&mut Input, &mut Output) -> Result<(), Error>` |
//! | [`init!`]`(f)` | `pabi_init` | `fn(config: &[u8]) -> Result<(), Error>` |
//! | [`shutdown!`]`(f)` | `pabi_shutdown` | `fn() -> Result<(), Error>` |
//! | [`state!`]`(save => s, load => l)` | `pabi_state_save`, `pabi_state_load` | `fn() -> Result<Vec<u8>, Error>`, `fn(&[u8]) -> Result<(), Error>` |
//! | [`metadata!`]`("pabi.json")` | custom section `pabi` | – |
//!
//! A plugin of ABI 1.1 calls the application that hosts it with
//! [`host::call`]; it declares each call in `pabi.json` under `host_calls`.
//!
//! # Panics
//!
//! Every export installs (once) a panic hook that writes the panic message
//! with `pabi.error_write` and logs it at level `error`. Where panics unwind
//! (a target built with `-C panic=unwind`), the export catches the panic and
//! returns [`status::FAILED`] with that message. On `wasm32-unknown-unknown`
//! and `wasm32-wasip1` the standard library is built with `panic=abort`, so a
//! panic cannot be caught: it ends in a trap. The host then reports `TRAP`,
//! and the message logged just before it tells you why. Either way the host
//! re-creates the instance before the next call.

use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

pub mod host;
pub mod sys;

/// The status codes a plugin returns (`ERR-1`..`ERR-3`).
pub mod status {
    /// The call succeeded; the output is what was written.
    pub const OK: i32 = 0;
    /// The input (or config, or state) was refused.
    pub const INVALID_INPUT: i32 = 1;
    /// The plugin does not support the request.
    pub const UNSUPPORTED: i32 = 2;
    /// The call failed for another reason.
    pub const FAILED: i32 = 3;
    /// The plugin ran out of memory.
    pub const OUT_OF_MEMORY: i32 = 4;
    /// The first plugin-defined status.
    pub const CUSTOM_MIN: i32 = 64;
    /// The last plugin-defined status.
    pub const CUSTOM_MAX: i32 = 127;
}

/// A failed call: a non-zero status and a message for the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    /// The status the export returns; never [`status::OK`].
    pub status: i32,
    /// Written with `pabi.error_write`; may be empty.
    pub message: String,
}

impl Error {
    /// Status `INVALID_INPUT` (1).
    pub fn invalid_input(message: impl Into<String>) -> Error {
        Error { status: status::INVALID_INPUT, message: message.into() }
    }

    /// Status `UNSUPPORTED` (2).
    pub fn unsupported(message: impl Into<String>) -> Error {
        Error { status: status::UNSUPPORTED, message: message.into() }
    }

    /// Status `FAILED` (3).
    pub fn failed(message: impl Into<String>) -> Error {
        Error { status: status::FAILED, message: message.into() }
    }

    /// Status `OUT_OF_MEMORY` (4).
    pub fn out_of_memory(message: impl Into<String>) -> Error {
        Error { status: status::OUT_OF_MEMORY, message: message.into() }
    }

    /// A plugin-defined status, 64..=127; describe it in the metadata's
    /// `statuses`.
    ///
    /// # Panics
    ///
    /// If `code` is outside 64..=127.
    pub fn custom(code: i32, message: impl Into<String>) -> Error {
        assert!(
            (status::CUSTOM_MIN..=status::CUSTOM_MAX).contains(&code),
            "plugin-defined status codes are 64..=127, got {code}"
        );
        Error { status: code, message: message.into() }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "status {}: {}", self.status, self.message)
    }
}

impl std::error::Error for Error {}

impl From<io::Error> for Error {
    /// An I/O error of [`Input`] or [`Output`] becomes `FAILED`.
    fn from(err: io::Error) -> Error {
        Error::failed(err.to_string())
    }
}

impl From<std::str::Utf8Error> for Error {
    /// Invalid UTF-8 becomes `INVALID_INPUT`.
    fn from(_: std::str::Utf8Error) -> Error {
        Error::invalid_input("input is not valid UTF-8")
    }
}

/// Log levels of `pabi.log`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum Level {
    Error = 0,
    Warn = 1,
    Info = 2,
    Debug = 3,
    Trace = 4,
}

/// Sends a log line to the host. Logging never fails a call; the host may
/// drop or truncate lines.
pub fn log(level: Level, message: &str) {
    // SAFETY: the pointer and length describe a live, readable byte slice.
    unsafe { sys::log(level as i32, message.as_ptr(), message.len() as u32) };
}

/// Appends to the call's error message (`pabi.error_write`). Returns `false`
/// when the host truncated it at its 64 KiB cap.
pub fn write_error(message: &[u8]) -> bool {
    // SAFETY: the pointer and length describe a live, readable byte slice.
    unsafe { sys::error_write(message.as_ptr(), message.len() as u32) == 0 }
}

/// Appends `bytes` to the call's output (`pabi.output_write`).
///
/// Fails with `E_UNAVAILABLE` (-3) where output is not allowed, e.g. in
/// `pabi_init`. Past the host's output cap the host aborts the call itself.
pub fn write_output(bytes: &[u8]) -> io::Result<()> {
    if bytes.is_empty() {
        return Ok(());
    }
    // SAFETY: the pointer and length describe a live, readable byte slice.
    match unsafe { sys::output_write(bytes.as_ptr(), bytes.len() as u32) } {
        0 => Ok(()),
        code => Err(io::Error::other(format!("pabi.output_write returned {code}"))),
    }
}

/// Copies up to `buf.len()` input bytes starting at `offset` into `buf`
/// (`pabi.input_read`); returns how many were copied, 0 at the end.
pub fn read_input_at(buf: &mut [u8], offset: u32) -> usize {
    // SAFETY: the pointer and length describe a live, writable byte slice.
    let n = unsafe { sys::input_read(buf.as_mut_ptr(), offset, buf.len() as u32) };
    // The host never copies more than asked; a negative answer is no bytes.
    usize::try_from(n).unwrap_or(0).min(buf.len())
}

/// Reads the whole input of `len` bytes (the export's argument).
///
/// Fails with `OUT_OF_MEMORY` when the buffer cannot be allocated.
pub fn read_input(len: u32) -> Result<Vec<u8>, Error> {
    read_whole(len, "the input", read_input_at)
}

/// Reads `len` bytes into a buffer of its own with `read_at(buf, offset)`,
/// which copies what it can and returns the count (0 at the end): the input
/// and a host call's reply are read the same way. `what` names the bytes in
/// the `OUT_OF_MEMORY` message.
pub(crate) fn read_whole(len: u32, what: &str, read_at: impl Fn(&mut [u8], u32) -> usize) -> Result<Vec<u8>, Error> {
    let len = len as usize;
    let mut buf = Vec::new();
    buf.try_reserve_exact(len).map_err(|_| Error::out_of_memory(format!("cannot allocate {len} bytes for {what}")))?;
    buf.resize(len, 0);
    let mut filled = 0;
    while filled < len {
        let n = read_at(&mut buf[filled..], filled as u32);
        if n == 0 {
            break;
        }
        filled += n;
    }
    buf.truncate(filled);
    Ok(buf)
}

/// The input of a call, read in pieces: [`io::Read`] over `pabi.input_read`.
///
/// Each `read` asks the host for at most the buffer's length, at the next
/// offset, so the input never has to fit in memory at once.
#[derive(Debug)]
pub struct Input {
    offset: u32,
    len: u32,
}

impl Input {
    /// The input of the current call, `len` bytes long.
    pub fn new(len: u32) -> Input {
        Input { offset: 0, len }
    }

    /// The total input length.
    pub fn len(&self) -> u32 {
        self.len
    }

    /// Whether the input is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> u32 {
        self.len - self.offset
    }
}

impl io::Read for Input {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf.len().min(self.remaining() as usize);
        if want == 0 {
            return Ok(0);
        }
        let n = read_input_at(&mut buf[..want], self.offset);
        self.offset += n as u32;
        Ok(n)
    }
}

/// The output of a call: [`io::Write`] over `pabi.output_write`.
///
/// Every `write` goes straight to the host; wrap it in a
/// [`std::io::BufWriter`] when writing many small pieces.
#[derive(Debug, Default)]
pub struct Output {
    _private: (),
}

impl Output {
    /// The output of the current call.
    pub fn new() -> Output {
        Output { _private: () }
    }
}

impl io::Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        write_output(buf)?;
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        write_output(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Glue used by the macros. Public for the macros only.

static PANIC_HOOK: Once = Once::new();
static PANIC_REPORTED: AtomicBool = AtomicBool::new(false);

fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "panic with a non-string payload"
    }
}

fn install_panic_hook() {
    PANIC_HOOK.call_once(|| {
        panic::set_hook(Box::new(|info| {
            let message = match info.location() {
                Some(at) => format!("panicked at {}:{}: {}", at.file(), at.line(), panic_message(info.payload())),
                None => format!("panicked: {}", panic_message(info.payload())),
            };
            // With panic=abort the trap follows right after this hook, so
            // this is the only chance to tell the host why.
            log(Level::Error, &message);
            write_error(message.as_bytes());
            PANIC_REPORTED.store(true, Ordering::Relaxed);
        }));
    });
}

/// Runs `body` as the body of an export and turns its result into a status.
#[doc(hidden)]
pub fn __run(body: impl FnOnce() -> Result<(), Error>) -> i32 {
    install_panic_hook();
    PANIC_REPORTED.store(false, Ordering::Relaxed);
    match panic::catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => status::OK,
        Ok(Err(err)) => {
            if !err.message.is_empty() {
                write_error(err.message.as_bytes());
            }
            if err.status == status::OK {
                status::FAILED
            } else {
                err.status
            }
        }
        Err(payload) => {
            if !PANIC_REPORTED.load(Ordering::Relaxed) {
                write_error(panic_message(&*payload).as_bytes());
            }
            status::FAILED
        }
    }
}

/// The body of a `pabi_fn_*` export over a whole-input function.
#[doc(hidden)]
pub fn __call(len: i32, f: fn(&[u8]) -> Result<Vec<u8>, Error>) -> i32 {
    __run(|| {
        let input = read_input(len as u32)?;
        let output = f(&input)?;
        write_output(&output)?;
        Ok(())
    })
}

/// The body of a `pabi_fn_*` export over a streaming function.
#[doc(hidden)]
pub fn __call_stream(len: i32, f: fn(&mut Input, &mut Output) -> Result<(), Error>) -> i32 {
    __run(|| f(&mut Input::new(len as u32), &mut Output::new()))
}

/// The body of `pabi_init`.
#[doc(hidden)]
pub fn __init(len: i32, f: fn(&[u8]) -> Result<(), Error>) -> i32 {
    __run(|| f(&read_input(len as u32)?))
}

/// The body of `pabi_shutdown`.
#[doc(hidden)]
pub fn __shutdown(f: fn() -> Result<(), Error>) -> i32 {
    __run(f)
}

/// The body of `pabi_state_save`.
#[doc(hidden)]
pub fn __state_save(f: fn() -> Result<Vec<u8>, Error>) -> i32 {
    __run(|| Ok(write_output(&f()?)?))
}

/// The body of `pabi_state_load`.
#[doc(hidden)]
pub fn __state_load(len: i32, f: fn(&[u8]) -> Result<(), Error>) -> i32 {
    __run(|| f(&read_input(len as u32)?))
}

/// Exports `fn(&[u8]) -> Result<Vec<u8>, Error>` as the plugin function
/// `pabi_fn_<name>`.
///
/// The export reads the whole input, calls the function, and writes either
/// its output (status 0) or its error message (the error's status).
///
/// ```ignore
/// pabi_pdk::export!(echo => echo);
/// fn echo(input: &[u8]) -> Result<Vec<u8>, pabi_pdk::Error> {
///     Ok(input.to_vec())
/// }
/// ```
#[macro_export]
macro_rules! export {
    ($($name:ident => $f:path),+ $(,)?) => {
        $(
            const _: () = {
                #[unsafe(export_name = concat!("pabi_fn_", stringify!($name)))]
                extern "C" fn __pabi_export(input_len: i32) -> i32 {
                    $crate::__call(input_len, $f)
                }
            };
        )+
    };
}

/// Exports `fn(&mut Input, &mut Output) -> Result<(), Error>` as the plugin
/// function `pabi_fn_<name>`, for inputs and outputs read and written in
/// pieces.
///
/// ```ignore
/// pabi_pdk::export_stream!(copy => copy);
/// fn copy(input: &mut pabi_pdk::Input, output: &mut pabi_pdk::Output) -> Result<(), pabi_pdk::Error> {
///     std::io::copy(input, output)?;
///     Ok(())
/// }
/// ```
#[macro_export]
macro_rules! export_stream {
    ($($name:ident => $f:path),+ $(,)?) => {
        $(
            const _: () = {
                #[unsafe(export_name = concat!("pabi_fn_", stringify!($name)))]
                extern "C" fn __pabi_export(input_len: i32) -> i32 {
                    $crate::__call_stream(input_len, $f)
                }
            };
        )+
    };
}

/// Exports `pabi_init` over `fn(config: &[u8]) -> Result<(), Error>`.
///
/// The host calls it once per instance, before any plugin function, with the
/// plugin's config (possibly empty). Output is unavailable during init.
#[macro_export]
macro_rules! init {
    ($f:path) => {
        const _: () = {
            #[unsafe(export_name = "pabi_init")]
            extern "C" fn __pabi_init(config_len: i32) -> i32 {
                $crate::__init(config_len, $f)
            }
        };
    };
}

/// Exports `pabi_shutdown` over `fn() -> Result<(), Error>`.
#[macro_export]
macro_rules! shutdown {
    ($f:path) => {
        const _: () = {
            #[unsafe(export_name = "pabi_shutdown")]
            extern "C" fn __pabi_shutdown() -> i32 {
                $crate::__shutdown($f)
            }
        };
    };
}

/// Exports `pabi_state_save` and `pabi_state_load` (always together).
///
/// `save: fn() -> Result<Vec<u8>, Error>` returns the state to keep;
/// `load: fn(&[u8]) -> Result<(), Error>` restores it in a fresh instance.
#[macro_export]
macro_rules! state {
    (save => $save:path, load => $load:path $(,)?) => {
        const _: () = {
            #[unsafe(export_name = "pabi_state_save")]
            extern "C" fn __pabi_state_save() -> i32 {
                $crate::__state_save($save)
            }
            #[unsafe(export_name = "pabi_state_load")]
            extern "C" fn __pabi_state_load(state_len: i32) -> i32 {
                $crate::__state_load(state_len, $load)
            }
        };
    };
}

/// Embeds a metadata JSON file as the module's `pabi` custom section.
///
/// The path is relative to the crate's `Cargo.toml` directory; without an
/// argument it is `pabi.json`. The JSON is checked by `pabi validate`, not
/// at compile time.
#[macro_export]
macro_rules! metadata {
    () => {
        $crate::metadata!("pabi.json");
    };
    ($path:literal) => {
        const _: () = {
            // A `#[link_section]` static becomes a wasm custom section;
            // `#[used]` keeps it through LTO.
            #[used]
            #[unsafe(link_section = "pabi")]
            static PABI_METADATA: [u8; include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/", $path)).len()] =
                *include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/", $path));
        };
    };
}
