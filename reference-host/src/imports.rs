//! The `pabi` imports (`IMP-1`), working on the instance's [`StoreData`].
//!
//! Every (pointer, length) pair is checked against the plugin's memory,
//! including 32-bit wrap-around, before a byte moves (`MEM-3`, `MEM-4`).
//! Buffers are copied in and out; the host keeps no plugin pointer after an
//! import returns (`MEM-2`).

use std::ops::Range;

use pabi_abi::{Clause, ImportCode};
use wasmtime::{Caller, Linker, Memory};

use crate::log::Level;
use crate::store::{Abort, Phase, StoreData};
use crate::Error;

pub(crate) fn violation(clause: Clause, detail: String) -> wasmtime::Error {
    wasmtime::Error::new(Abort(Error::AbiViolation { clause, detail }))
}

/// The plugin memory range `[ptr, ptr+len)`, or the `MEM-3` violation.
pub(crate) fn checked_range(import: &str, ptr: i32, len: i32, memory_len: usize) -> wasmtime::Result<Range<usize>> {
    let (ptr, len) = (ptr as u32, len as u32);
    let Some(end) = ptr.checked_add(len) else {
        return Err(violation(Clause::Mem3, format!("{import}: range {ptr:#x}+{len} wraps past 2^32")));
    };
    if end as usize > memory_len {
        return Err(violation(
            Clause::Mem3,
            format!("{import}: range {ptr:#x}..{end:#x} is outside the {memory_len}-byte memory"),
        ));
    }
    Ok(ptr as usize..end as usize)
}

fn memory(caller: &Caller<'_, StoreData>) -> wasmtime::Result<Memory> {
    caller.data().memory.ok_or_else(|| violation(Clause::Exp1, "the plugin exports no memory".into()))
}

pub(crate) fn add_to_linker(linker: &mut Linker<StoreData>) -> wasmtime::Result<()> {
    linker.func_wrap("pabi", "input_read", input_read)?;
    linker.func_wrap("pabi", "output_write", output_write)?;
    linker.func_wrap("pabi", "error_write", error_write)?;
    linker.func_wrap("pabi", "log", log)?;
    linker.func_wrap("pabi", "host_call", host_call)?;
    linker.func_wrap("pabi", "reply_read", reply_read)?;
    Ok(())
}

/// Runs the application's handler for a declared host call (`CALL-3` …
/// `CALL-7`): the name and request are copied out, the reply kept in the
/// host, and only its length returned.
fn host_call(
    mut caller: Caller<'_, StoreData>,
    name: i32,
    name_len: i32,
    req: i32,
    req_len: i32,
) -> wasmtime::Result<i32> {
    let memory = memory(&caller)?;
    let (bytes, data) = memory.data_and_store_mut(&mut caller);
    let name_range = checked_range("host_call", name, name_len, bytes.len())?;
    let req_range = checked_range("host_call", req, req_len, bytes.len())?;
    data.reply.clear();
    // The name, the request and every borrow of the store's state live only
    // in this block: the handler reads them in place (the plugin is paused
    // in this import, so its memory cannot change), and nothing is copied
    // or reference-counted per call.
    let outcome = {
        let state: &StoreData = data;
        let Some((name, handler)) = std::str::from_utf8(&bytes[name_range.clone()])
            .ok()
            .and_then(|name| state.host_calls.calls.get(name).map(|h| (name, h)))
        else {
            return Err(violation(
                Clause::Call3,
                format!(
                    "host_call: `{}` is not a host call the plugin declares",
                    pabi_abi::text::escape_controls(&String::from_utf8_lossy(&bytes[name_range]))
                ),
            ));
        };
        if !matches!(state.phase, Phase::Call | Phase::Init) {
            return Ok(ImportCode::Unavailable.code());
        }
        let Some(handler) = handler else { return Ok(ImportCode::Absent.code()) };
        if req_range.len() as u64 > state.max_request {
            return Ok(ImportCode::Limit.code());
        }
        let function = match state.phase {
            Phase::Init => "pabi_init",
            _ => state.function_names.get(state.serving).map_or("", String::as_str),
        };
        let context = crate::host_fn::CallContext {
            plugin: &state.plugin_name,
            function,
            host_call: name,
            deadline: state.deadline.wall(),
            cancel: Some(&state.deadline.cancel),
            max_reply: state.max_reply,
        };
        // While the handler runs, a call back into this plugin from this
        // thread is refused instead of waiting for itself (`CALL-8`).
        let _serving = crate::host_fn::Serving::enter(state.group);
        // A call blocked in its host's code holds no permit of the CPU
        // gate: it waits for its turn again after.
        state.deadline.give_turn();
        crate::host_fn::run_handler(handler, &context, &bytes[req_range])
    };
    // The handler's time counts against the deadline (`CALL-7`): epoch
    // interruption reaches only wasm code, so look now.
    data.deadline.check_after_host_code()?;
    data.deadline.take_turn_in_call(data.group)?;
    match outcome {
        Ok(reply) if reply.len() as u64 > data.max_reply => Ok(ImportCode::Limit.code()),
        Ok(reply) => {
            data.reply = reply;
            Ok(data.reply.len() as i32)
        }
        Err(error) => {
            data.reply.extend_from_slice(crate::host_fn::failure_message(&error).as_bytes());
            Ok(ImportCode::Failed.code())
        }
    }
}

/// Copies `min(len, reply_len - offset)` reply bytes to `dst` (`CALL-6`).
fn reply_read(mut caller: Caller<'_, StoreData>, dst: i32, offset: i32, len: i32) -> wasmtime::Result<i32> {
    let memory = memory(&caller)?;
    let (bytes, data) = memory.data_and_store_mut(&mut caller);
    let range = checked_range("reply_read", dst, len, bytes.len())?;
    let offset = (offset as u32 as usize).min(data.reply.len());
    let count = range.len().min(data.reply.len() - offset);
    bytes[range.start..range.start + count].copy_from_slice(&data.reply[offset..offset + count]);
    Ok(count as i32)
}

/// Copies `min(len, input_len - offset)` input bytes to `dst` (`HOST-3`, `HOST-4`).
fn input_read(mut caller: Caller<'_, StoreData>, dst: i32, offset: i32, len: i32) -> wasmtime::Result<i32> {
    let memory = memory(&caller)?;
    let (bytes, data) = memory.data_and_store_mut(&mut caller);
    let range = checked_range("input_read", dst, len, bytes.len())?;
    let offset = (offset as u32 as usize).min(data.input.len());
    let count = range.len().min(data.input.len() - offset);
    bytes[range.start..range.start + count].copy_from_slice(&data.input[offset..offset + count]);
    Ok(count as i32)
}

/// Appends `[src, src+len)` to the output (`HOST-5`); past the cap the call
/// ends with `OUTPUT_LIMIT` (`LIM-5`). Unavailable outside calls and state
/// saves (`HOST-8`).
fn output_write(mut caller: Caller<'_, StoreData>, src: i32, len: i32) -> wasmtime::Result<i32> {
    let memory = memory(&caller)?;
    let (bytes, data) = memory.data_and_store_mut(&mut caller);
    let range = checked_range("output_write", src, len, bytes.len())?;
    if !matches!(data.phase, Phase::Call | Phase::StateSave) {
        return Ok(ImportCode::Unavailable.code());
    }
    if (data.output.len() + range.len()) as u64 > data.max_output {
        return Err(wasmtime::Error::new(Abort(Error::OutputLimit { limit: data.max_output })));
    }
    data.output.extend_from_slice(&bytes[range]);
    Ok(0)
}

/// Appends to the error message (`HOST-6`); keeps what fits under the cap
/// and then returns `E_LIMIT` (`LIM-6`). Unavailable in `_initialize`
/// (`HOST-8`).
fn error_write(mut caller: Caller<'_, StoreData>, src: i32, len: i32) -> wasmtime::Result<i32> {
    let memory = memory(&caller)?;
    let (bytes, data) = memory.data_and_store_mut(&mut caller);
    let range = checked_range("error_write", src, len, bytes.len())?;
    if data.phase == Phase::Initialize {
        return Ok(ImportCode::Unavailable.code());
    }
    let room = (data.max_message as usize).saturating_sub(data.message.len());
    let take = range.len().min(room);
    data.message.extend_from_slice(&bytes[range.start..range.start + take]);
    Ok(if take < range.len() { ImportCode::Limit.code() } else { 0 })
}

/// Logs at level 0 (error) … 4 (trace) through `tracing` (`HOST-7`), within
/// the call's log budget (`LIM-11`).
fn log(mut caller: Caller<'_, StoreData>, level: i32, src: i32, len: i32) -> wasmtime::Result<i32> {
    let memory = memory(&caller)?;
    let (bytes, data) = memory.data_and_store_mut(&mut caller);
    let range = checked_range("log", src, len, bytes.len())?;
    let Some(level) = Level::from_code(level) else { return Ok(ImportCode::Invalid.code()) };
    // Past the call's log budget the whole record is dropped (`LIM-11`).
    let kept = data.with_log(|sink| sink.record(level, &bytes[range]));
    Ok(if kept { 0 } else { ImportCode::Limit.code() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clause_of(result: wasmtime::Result<Range<usize>>) -> Option<Clause> {
        result.err().and_then(|e| e.downcast_ref::<Abort>().and_then(|a| a.0.clause()))
    }

    #[test]
    fn ranges_are_checked_with_wraparound() {
        assert_eq!(checked_range("x", 0, 10, 10).unwrap(), 0..10);
        assert_eq!(checked_range("x", 10, 0, 10).unwrap(), 10..10);
        assert_eq!(clause_of(checked_range("x", 11, 0, 10)), Some(Clause::Mem3));
        assert_eq!(clause_of(checked_range("x", 5, 6, 10)), Some(Clause::Mem3));
        assert_eq!(clause_of(checked_range("x", -1, 2, 1 << 20)), Some(Clause::Mem3));
        assert_eq!(clause_of(checked_range("x", 1, -1, usize::MAX)), Some(Clause::Mem3));
    }
}
