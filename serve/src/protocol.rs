//! The protocol between a server and its worker processes
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

use crate::PluginSettings;

/// The JSON Schema of the frame headers, [`ToWorker`] and [`FromWorker`].
pub const WORKER_PROTOCOL_SCHEMA: &str = include_str!("../../spec/schemas/worker-protocol.schema.json");

/// A header is JSON of a few hundred bytes; a larger one is a broken peer.
const MAX_HEADER: u32 = 1 << 20;

/// What a server sends a worker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum ToWorker {
    /// Load the plugin whose module is the body, with these settings and
    /// the server's host functions it is offered. First and once.
    Load {
        plugin: String,
        settings: Box<PluginSettings>,
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
    /// The answer to the worker's host call `id`: the body is the reply,
    /// or, with `error`, the handler failed with that message (`CALL-4`).
    HostReply { id: u64, error: Option<String> },
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
    pub fn of(function: &pabi_host::HostFunction) -> HostFunctionOffer {
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
    /// The plugin cannot be loaded; the worker exits.
    Refused { message: String },
    /// The call `id` succeeded; the body is its output.
    Output { id: u64 },
    /// The call or reload `id` failed; for `PLUGIN_ERROR` the body is the
    /// plugin's own message.
    Failed { id: u64, failure: Failure },
    /// The reload `id` took over.
    Reloaded { id: u64, metadata: Box<pabi_abi::Metadata> },
    /// The plugin made the host call `name` while serving `function`: the
    /// body is the request; the server answers `host_reply` with this `id`.
    HostCall { id: u64, name: String, plugin: String, function: String },
}

/// A failed call, as a client sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Failure {
    /// The host error kind (`ERR-6`); absent when the host could not apply
    /// its configuration, which has no kind.
    pub kind: Option<String>,
    /// The plugin's status, for `PLUGIN_ERROR` and `UNKNOWN_STATUS`.
    pub status: Option<i32>,
    /// What happened, for people.
    pub message: String,
    /// Seconds after which trying again may succeed.
    pub retry_after: Option<u64>,
}

impl Failure {
    pub fn new(kind: Option<pabi_abi::HostErrorKind>, message: impl Into<String>) -> Failure {
        Failure { kind: kind.map(|k| k.name().to_string()), status: None, message: message.into(), retry_after: None }
    }

    /// The failure of a host error, worded as the in-process server words
    /// it.
    pub fn of(error: &pabi_host::Error) -> Failure {
        use pabi_host::Error;
        let message = match error {
            Error::PluginError { message, .. } => String::from_utf8_lossy(message).into_owned(),
            other => other.to_string(),
        };
        let retry_after = match error {
            Error::CrashLoop { window, .. } => Some(window.as_secs().max(1)),
            Error::HostUnavailable(_) => Some(1),
            _ => None,
        };
        Failure { kind: error.kind().map(|k| k.name().to_string()), status: error.status(), message, retry_after }
    }

    /// The kind, typed; `None` for a kind this build does not know, which
    /// is then treated as a host failure.
    pub fn kind(&self) -> Option<pabi_abi::HostErrorKind> {
        self.kind.as_deref().and_then(pabi_abi::HostErrorKind::from_name)
    }
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
        assert_eq!(read_frame::<ToWorker>(&mut reader).unwrap(), Some((call, b"hello".to_vec())));
        assert_eq!(read_frame::<ToWorker>(&mut reader).unwrap(), Some((ToWorker::Cancel { id: 7 }, Vec::new())));
        assert_eq!(read_frame::<ToWorker>(&mut reader).unwrap(), None);
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
