//! The `pabi` imports (`IMP-1`) and the per-instance state they work on.
//!
//! Every (pointer, length) pair is checked against the plugin's memory,
//! including 32-bit wrap-around, before a byte moves (`MEM-3`). Buffers are
//! copied in and out; the host keeps no plugin pointer after an import
//! returns (`MEM-2`).

use std::ops::Range;

use pabi_abi::ImportCode;
use wasmtime::{Caller, Linker, Memory, ResourceLimiter};

use crate::Error;

/// What a call is doing, which decides what the imports may do (`IMP-4`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    Initialize,
    Init,
    Call,
    StateSave,
    StateLoad,
    Shutdown,
}

/// The state of one instance, owned by its `Store`.
pub(crate) struct StoreData {
    pub memory: Option<Memory>,
    pub phase: Phase,
    pub input: Vec<u8>,
    pub output: Vec<u8>,
    pub message: Vec<u8>,
    pub max_output: u64,
    pub max_message: u64,
    pub limiter: Limiter,
    pub wasi: Option<wasmtime_wasi::p1::WasiP1Ctx>,
    pub virtual_clock: Option<crate::wasi::VirtualClock>,
    pub plugin_name: String,
}

impl StoreData {
    pub fn wasi(&mut self) -> &mut wasmtime_wasi::p1::WasiP1Ctx {
        self.wasi.as_mut().expect("WASI imports are linked only for wasi-profile plugins")
    }
}

/// Enforces the memory and table caps (`LIM-1`, `LIM-8`) and remembers a
/// refusal, so that a trap right after it reads as `MEMORY_LIMIT` (`LIM-2`).
pub(crate) struct Limiter {
    pub max_memory: u64,
    pub max_table_elements: u64,
    pub refused: bool,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let allowed = desired as u64 <= self.max_memory;
        self.refused |= !allowed;
        Ok(allowed)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let allowed = desired as u64 <= self.max_table_elements;
        self.refused |= !allowed;
        Ok(allowed)
    }

    fn instances(&self) -> usize {
        1
    }

    fn memories(&self) -> usize {
        1
    }

    fn tables(&self) -> usize {
        // Reference-types modules may declare several tables.
        100
    }
}

/// Ends a call from inside an import: the plugin broke the ABI or a limit.
/// It travels through wasmtime as the error's root cause.
#[derive(Debug)]
pub(crate) struct Abort(pub Error);

impl std::fmt::Display for Abort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Abort {}

fn violation(clause: &'static str, detail: String) -> wasmtime::Error {
    wasmtime::Error::new(Abort(Error::AbiViolation { clause, detail }))
}

/// The plugin memory range `[ptr, ptr+len)`, or the `MEM-3` violation.
fn checked_range(import: &str, ptr: i32, len: i32, memory_len: usize) -> wasmtime::Result<Range<usize>> {
    let (ptr, len) = (ptr as u32, len as u32);
    let Some(end) = ptr.checked_add(len) else {
        return Err(violation("MEM-3", format!("{import}: range {ptr:#x}+{len} wraps past 2^32")));
    };
    if end as usize > memory_len {
        return Err(violation(
            "MEM-3",
            format!("{import}: range {ptr:#x}..{end:#x} is outside the {memory_len}-byte memory"),
        ));
    }
    Ok(ptr as usize..end as usize)
}

fn memory(caller: &Caller<'_, StoreData>) -> wasmtime::Result<Memory> {
    caller.data().memory.ok_or_else(|| violation("MOD-3", "the plugin exports no memory".into()))
}

pub(crate) fn add_to_linker(linker: &mut Linker<StoreData>) -> wasmtime::Result<()> {
    linker.func_wrap("pabi", "input_read", input_read)?;
    linker.func_wrap("pabi", "output_write", output_write)?;
    linker.func_wrap("pabi", "error_write", error_write)?;
    linker.func_wrap("pabi", "log", log)?;
    Ok(())
}

/// Copies `min(len, input_len - offset)` input bytes to `dst` (`IMP-2`).
fn input_read(mut caller: Caller<'_, StoreData>, dst: i32, offset: i32, len: i32) -> wasmtime::Result<i32> {
    let memory = memory(&caller)?;
    let (bytes, data) = memory.data_and_store_mut(&mut caller);
    let range = checked_range("input_read", dst, len, bytes.len())?;
    let offset = (offset as u32 as usize).min(data.input.len());
    let count = range.len().min(data.input.len() - offset);
    bytes[range.start..range.start + count].copy_from_slice(&data.input[offset..offset + count]);
    Ok(count as i32)
}

/// Appends `[src, src+len)` to the output (`IMP-2`); past the cap the call
/// ends with `OUTPUT_LIMIT` (`LIM-5`).
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

/// Appends to the error message; keeps what fits under the cap and then
/// returns `E_LIMIT` (`LIM-6`).
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

/// Logs at level 0 (error) … 4 (trace) through `tracing` (`IMP-2`).
fn log(mut caller: Caller<'_, StoreData>, level: i32, src: i32, len: i32) -> wasmtime::Result<i32> {
    let memory = memory(&caller)?;
    let (bytes, data) = memory.data_and_store_mut(&mut caller);
    let range = checked_range("log", src, len, bytes.len())?;
    let text = String::from_utf8_lossy(&bytes[range]);
    let plugin = data.plugin_name.as_str();
    match level {
        0 => tracing::error!(target: "pabi::plugin", plugin, "{text}"),
        1 => tracing::warn!(target: "pabi::plugin", plugin, "{text}"),
        2 => tracing::info!(target: "pabi::plugin", plugin, "{text}"),
        3 => tracing::debug!(target: "pabi::plugin", plugin, "{text}"),
        4 => tracing::trace!(target: "pabi::plugin", plugin, "{text}"),
        _ => return Ok(ImportCode::Invalid.code()),
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clause_of(result: wasmtime::Result<Range<usize>>) -> Option<&'static str> {
        result.err().and_then(|e| e.downcast_ref::<Abort>().and_then(|a| a.0.clause()))
    }

    #[test]
    fn ranges_are_checked_with_wraparound() {
        assert_eq!(checked_range("x", 0, 10, 10).unwrap(), 0..10);
        assert_eq!(checked_range("x", 10, 0, 10).unwrap(), 10..10);
        assert_eq!(clause_of(checked_range("x", 11, 0, 10)), Some("MEM-3"));
        assert_eq!(clause_of(checked_range("x", 5, 6, 10)), Some("MEM-3"));
        assert_eq!(clause_of(checked_range("x", -1, 2, 1 << 20)), Some("MEM-3"));
        assert_eq!(clause_of(checked_range("x", 1, -1, usize::MAX)), Some("MEM-3"));
    }
}
