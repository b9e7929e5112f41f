//! The protocol between a pool and its worker process
//! (`spec/schemas/worker-protocol.schema.json`).
//!
//! A worker reads frames on its standard input and writes frames on its
//! standard output. A frame is a header and a body, each preceded by its
//! length as a little-endian `u32`:
//!
//! ```text
//! u32 header_len | header (UTF-8 JSON) | u32 body_len | body (raw bytes)
//! ```
//!
//! The header is a [`ToWorker`] or a [`FromWorker`], tagged by `op`; the
//! body carries the bytes a header names (a module, an input, an output, a
//! plugin's own error message), so that they cross the pipe as they are,
//! never escaped into JSON.
//!
//! A session: the server sends `load`; the worker answers `ready` or
//! `refused` (and exits). Then any number of `call`, `cancel` and `reload`
//! in any order, calls running concurrently and answered by `id` in the
//! order they finish. The server ends the session by closing the worker's
//! standard input: the worker finishes the calls it holds, runs
//! `pabi_shutdown` on every instance and exits 0.

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

pub use crate::pool_settings::PoolSettings;
use crate::{Config, Error};

/// The JSON Schema of the frame headers, [`ToWorker`] and [`FromWorker`].
pub const WORKER_PROTOCOL_SCHEMA: &str = include_str!("../../../spec/schemas/worker-protocol.schema.json");

/// A header is JSON of a few hundred bytes; a larger one is a broken peer.
const MAX_HEADER: u32 = 1 << 20;

/// What a pool sends its worker.
// Not `PartialEq`: a host configuration holds closures.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum ToWorker {
    /// Load the plugin whose module is the body, on a host of this
    /// configuration, in a pool of these settings, under these OS limits,
    /// with the pool's host functions it is offered. First and once.
    Load {
        /// The plugin's name, for logs.
        plugin: String,
        config: Box<Config>,
        pool: PoolSettings,
        limits: WorkerLimits,
        #[serde(default)]
        host_functions: Vec<HostFunctionOffer>,
    },
    /// Call `function` with the body as input.
    Call { id: u64, function: String },
    /// Stop the call `id`, waiting or running; it is answered `CANCELLED`.
    /// A cancel for a call already answered is ignored.
    Cancel { id: u64 },
    /// Replace the plugin by the module in the body, with its state
    /// (`LIFE-10`, `LIFE-11`).
    Reload { id: u64 },
    /// Serve with this many instances, from 1 up to the pool's
    /// `instances`; no answer.
    Resize { instances: usize },
    /// The answer to the worker's host call `id`: the body is the reply,
    /// or, with `error`, the handler failed with that message (`CALL-4`).
    /// The message is at most 65,536 bytes, as the plugin reads it; the
    /// body at most the reply cap and one byte, so that a reply past the
    /// cap still reads as one (`LIM-14`).
    HostReply { id: u64, error: Option<String> },
    /// Are you alive? The worker answers `pong` at once, from the thread
    /// that reads its input, whatever its calls are doing. The pool asks
    /// while it has calls in the worker, and ends a worker that stays
    /// silent (stopped, or gone wrong), so that no call waits forever.
    Ping,
}

impl ToWorker {
    /// The largest body a frame of this kind carries, for a worker whose
    /// host has `limits` (a `load` brings its own): a module within the
    /// compile budget (`LIM-12`), an input the ABI can address (`LIM-13`),
    /// a reply one byte past its cap (`LIM-14`), else nothing. The worker
    /// refuses a larger one unread.
    pub fn max_body(&self, limits: &pabi_abi::Limits) -> u64 {
        match self {
            ToWorker::Load { config, .. } => config.limits().max_module_bytes,
            ToWorker::Reload { .. } => limits.max_module_bytes,
            ToWorker::Call { .. } => pabi_abi::MAX_INPUT_LEN,
            ToWorker::HostReply { .. } => limits.max_reply.saturating_add(1),
            ToWorker::Cancel { .. } | ToWorker::Resize { .. } | ToWorker::Ping => 0,
        }
    }
}

/// A host function of the server, offered to a worker's plugin: the
/// worker relays the plugin's host calls of that name to the server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct HostFunctionOffer {
    pub name: String,
    /// Offered only to plugins of these metadata names; absent: to all.
    pub only_for: Option<Vec<String>>,
}

impl HostFunctionOffer {
    pub fn of(function: &crate::HostFunction) -> HostFunctionOffer {
        HostFunctionOffer {
            name: function.name().to_string(),
            only_for: function.only_for_plugins().map(<[String]>::to_vec),
        }
    }
}

/// What a worker sends its server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum FromWorker {
    /// The plugin is loaded and its instances made.
    Ready { pid: u32, metadata: Box<pabi_abi::Metadata> },
    /// The plugin cannot be loaded, for this reason; the worker exits.
    Refused { error: Error },
    /// The call `id` succeeded; the body is its output.
    Output { id: u64 },
    /// The call or reload `id` failed; for `PLUGIN_ERROR` the body is the
    /// plugin's own message, which `error` then leaves empty.
    Failed { id: u64, error: Error },
    /// The reload `id` took over.
    Reloaded { id: u64, metadata: Box<pabi_abi::Metadata> },
    /// The plugin made the host call `name` while serving `function`: the
    /// body is the request; the server answers `host_reply` with this `id`.
    /// `time_left` is how long the call had until its deadline when the
    /// plugin made the host call: the handler's deadline in the server
    /// (`CALL-7`); absent, none.
    HostCall {
        id: u64,
        name: String,
        plugin: String,
        function: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        time_left: Option<std::time::Duration>,
    },
    /// The call that made the host call `id` stopped waiting for its
    /// reply (its deadline passed or it was cancelled): the server ends
    /// the handler, as a host in one process ends it (`CALL-7`), and sends
    /// no reply.
    HostCallEnded { id: u64 },
    /// The answer to a `ping`.
    Pong,
    /// Log records and bytes dropped since the last `log_dropped`, past
    /// the log cap of a call (`LIM-11`) or the plugin's log rate: sent
    /// after a call that dropped some, before its answer.
    LogDropped { records: u64, bytes: u64 },
}

/// The OS limits a worker process takes on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct WorkerLimits {
    /// `RLIMIT_CPU`; `None`: no limit.
    pub cpu_time: Option<std::time::Duration>,
    /// Bytes the worker may map beyond what loading its plugin mapped.
    pub address_headroom: u64,
}

impl Default for WorkerLimits {
    fn default() -> WorkerLimits {
        WorkerLimits { cpu_time: None, address_headroom: 1 << 30 }
    }
}

/// Moves a plugin's message out of `error`, into a frame's body, where it
/// crosses as the bytes it is rather than as a JSON array of numbers.
pub(crate) fn take_message(mut error: Error) -> (Error, Vec<u8>) {
    let body = match &mut error {
        Error::PluginError { message, .. } => std::mem::take(message),
        _ => Vec::new(),
    };
    (error, body)
}

/// Puts back the message [`take_message`] took.
pub(crate) fn with_message(mut error: Error, body: Vec<u8>) -> Error {
    if let Error::PluginError { message, .. } = &mut error {
        *message = body;
    }
    error
}

/// Writes one frame. The caller flushes.
pub fn write_frame<H: Serialize>(out: &mut impl Write, header: &H, body: &[u8]) -> io::Result<()> {
    let header = serde_json::to_vec(header).map_err(io::Error::other)?;
    let too_long = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("a frame's {what} is over 4 GiB"));
    out.write_all(&u32::try_from(header.len()).map_err(|_| too_long("header"))?.to_le_bytes())?;
    out.write_all(&header)?;
    out.write_all(&u32::try_from(body.len()).map_err(|_| too_long("body"))?.to_le_bytes())?;
    out.write_all(body)
}

/// Reads one frame; `Ok(None)` at the end of the stream, before a frame.
pub fn read_frame<H: for<'de> Deserialize<'de>>(input: &mut impl Read) -> io::Result<Option<(H, Vec<u8>)>> {
    read_frame_capped(input, u64::from(u32::MAX))
}

/// [`read_frame`], refusing a body over `max_body` bytes before reading
/// it: a server reads its worker's frames with a cap, so that a worker
/// gone wrong cannot make the server allocate what no answer needs.
pub fn read_frame_capped<H: for<'de> Deserialize<'de>>(
    input: &mut impl Read,
    max_body: u64,
) -> io::Result<Option<(H, Vec<u8>)>> {
    read_frame_bounded(input, |_: &H| max_body)
}

/// [`read_frame`], refusing a body over the cap that `max_body` gives for
/// the frame's header before reading it: each kind of frame has the cap
/// of what its body carries (a module, an input, a reply …), checked by
/// the side that reads it as by the side that writes it.
pub fn read_frame_bounded<H: for<'de> Deserialize<'de>>(
    input: &mut impl Read,
    max_body: impl FnOnce(&H) -> u64,
) -> io::Result<Option<(H, Vec<u8>)>> {
    let mut len = [0; 4];
    // The stream may end before a frame, not inside one.
    let mut got = 0;
    while got < len.len() {
        match input.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let header_len = u32::from_le_bytes(len);
    if header_len > MAX_HEADER {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("a frame header of {header_len} bytes")));
    }
    let mut header = vec![0; header_len as usize];
    input.read_exact(&mut header)?;
    let header = serde_json::from_slice(&header)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("a bad frame header: {e}")))?;
    let max_body = max_body(&header);
    input.read_exact(&mut len)?;
    let mut body = Vec::new();
    // `take` + `read_to_end` grows the buffer as bytes arrive, so a peer
    // announcing 4 GiB and sending 10 bytes costs 10 bytes.
    let body_len = u64::from(u32::from_le_bytes(len));
    if body_len > max_body {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a frame body of {body_len} bytes, past {max_body}"),
        ));
    }
    input.take(body_len).read_to_end(&mut body)?;
    if body.len() as u64 != body_len {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(Some((header, body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_a_cut_frame_is_an_error() {
        let mut bytes = Vec::new();
        let call = ToWorker::Call { id: 7, function: "echo".into() };
        write_frame(&mut bytes, &call, b"hello").unwrap();
        let first = bytes.len();
        write_frame(&mut bytes, &ToWorker::Cancel { id: 7 }, b"").unwrap();
        let mut reader = &bytes[..];
        let json = |frame: Option<(ToWorker, Vec<u8>)>| frame.map(|(h, b)| (serde_json::to_value(h).unwrap(), b));
        let expected = (serde_json::to_value(call).unwrap(), b"hello".to_vec());
        assert_eq!(json(read_frame(&mut reader).unwrap()), Some(expected));
        let cancel = (serde_json::to_value(ToWorker::Cancel { id: 7 }).unwrap(), Vec::new());
        assert_eq!(json(read_frame(&mut reader).unwrap()), Some(cancel));
        assert!(read_frame::<ToWorker>(&mut reader).unwrap().is_none());
        for cut in [3, 10, first - 2] {
            let error = read_frame::<ToWorker>(&mut &bytes[..cut]).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof, "cut at {cut}");
        }
        let mut big = Vec::new();
        write_frame(&mut big, &ToWorker::Cancel { id: 1 }, &[0; 100]).unwrap();
        assert_eq!(read_frame_capped::<ToWorker>(&mut &big[..], 99).unwrap_err().kind(), io::ErrorKind::InvalidData);
        assert!(read_frame_capped::<ToWorker>(&mut &big[..], 100).unwrap().is_some());
        let mut huge = Vec::new();
        huge.extend_from_slice(&(MAX_HEADER + 1).to_le_bytes());
        assert_eq!(read_frame::<ToWorker>(&mut &huge[..]).unwrap_err().kind(), io::ErrorKind::InvalidData);
        let mut unknown = Vec::new();
        write_frame(&mut unknown, &serde_json::json!({"op": "launch"}), b"").unwrap();
        assert_eq!(read_frame::<ToWorker>(&mut &unknown[..]).unwrap_err().kind(), io::ErrorKind::InvalidData);
    }
}
