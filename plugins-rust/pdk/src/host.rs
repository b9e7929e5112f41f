//! Host calls (ABI 1.1): ask the application that hosts the plugin for
//! something, bytes in and bytes out.
//!
//! ```ignore
//! // pabi.json: "abi": "1.1", "host_calls": [{"name": "kv.get", "required": true}]
//! let value = pabi_pdk::host::call("kv.get", b"apple")?;
//! ```
//!
//! The host copies the request out and keeps the reply; [`call`] reads the
//! reply into a `Vec` this plugin owns. No buffer changes owner.

use crate::{sys, Error};

/// Why a host call gave no reply. None of these is a trap: the plugin
/// decides what each means (`CALL-4`, `FN-6`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostCallError {
    /// The application's handler failed, with this message (`E_FAILED`).
    Failed(String),
    /// The call is optional and this host does not offer it (`E_ABSENT`).
    Absent,
    /// The request or the reply passed the host's cap (`E_LIMIT`).
    Limit,
    /// Host calls are not available in this phase, e.g. in `_initialize`
    /// (`E_UNAVAILABLE`).
    Unavailable,
    /// A code this version of the crate does not know.
    Code(i32),
}

impl std::fmt::Display for HostCallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostCallError::Failed(message) => write!(f, "the host's handler failed: {message}"),
            HostCallError::Absent => f.write_str("the host does not offer this call"),
            HostCallError::Limit => f.write_str("the request or the reply is larger than the host allows"),
            HostCallError::Unavailable => f.write_str("host calls are not available in this phase"),
            HostCallError::Code(code) => write!(f, "host_call returned {code}"),
        }
    }
}

impl std::error::Error for HostCallError {}

/// A failed host call as the plugin's own error: `FAILED` with the reason.
impl From<HostCallError> for Error {
    fn from(error: HostCallError) -> Error {
        Error::failed(error.to_string())
    }
}

/// Calls the host call `name` (declared in the metadata) with `request`
/// and returns the reply.
///
/// A reply too large to allocate is reported as [`HostCallError::Limit`];
/// [`call_or_oom`] reports it as `OUT_OF_MEMORY` instead.
pub fn call(name: &str, request: &[u8]) -> Result<Vec<u8>, HostCallError> {
    match call_or_oom(name, request) {
        Ok(reply) => reply,
        // The reply would not fit in memory: the same as a reply past a cap,
        // for a plugin that does not care which.
        Err(_) => Err(HostCallError::Limit),
    }
}

/// [`call`], with a reply that cannot be allocated reported as the
/// outer `OUT_OF_MEMORY` error.
pub fn call_or_oom(name: &str, request: &[u8]) -> Result<Result<Vec<u8>, HostCallError>, Error> {
    // SAFETY: both pointers and lengths describe live byte slices.
    let code = unsafe { sys::host_call(name.as_ptr(), name.len() as u32, request.as_ptr(), request.len() as u32) };
    if code >= 0 {
        return read_reply(code as u32).map(Ok);
    }
    Ok(Err(match code {
        -1 => HostCallError::Limit,
        -3 => HostCallError::Unavailable,
        -4 => {
            // The reply holds the handler's message.
            HostCallError::Failed(String::from_utf8_lossy(&read_message()).into_owned())
        }
        -5 => HostCallError::Absent,
        other => HostCallError::Code(other),
    }))
}

/// Whether the host offers the optional host call `name` to this plugin,
/// found by calling it with an empty request (`CALL-5`): use it only for
/// calls whose empty request has no effect.
pub fn offers(name: &str) -> bool {
    !matches!(call(name, &[]), Err(HostCallError::Absent))
}

/// Reads the whole reply of `len` bytes into one buffer: one copy.
fn read_reply(len: u32) -> Result<Vec<u8>, Error> {
    crate::read_whole(len, "a host call's reply", |buf, offset| {
        // SAFETY: the slice is live and writable for its length.
        let n = unsafe { sys::reply_read(buf.as_mut_ptr(), offset, buf.len() as u32) };
        usize::try_from(n).unwrap_or(0).min(buf.len())
    })
}

/// Reads a failure message, whose length `host_call` does not return: in
/// pieces, up to the 64 KiB a host keeps (`CALL-4`).
fn read_message() -> Vec<u8> {
    let mut message = Vec::new();
    let mut chunk = [0u8; 1024];
    while message.len() < 64 << 10 {
        // SAFETY: the chunk is a live, writable buffer.
        let n = unsafe { sys::reply_read(chunk.as_mut_ptr(), message.len() as u32, chunk.len() as u32) };
        let n = usize::try_from(n).unwrap_or(0).min(chunk.len());
        if n == 0 {
            break;
        }
        message.extend_from_slice(&chunk[..n]);
    }
    message
}
