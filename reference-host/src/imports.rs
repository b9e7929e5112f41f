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
    Ok(())
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
