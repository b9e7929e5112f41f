//! How a failed instantiation or call becomes one of the spec's error
//! kinds: aborts, WASI pointer faults, traps and their kinds, the memory
//! limit, timeouts and fuel, with the wasm backtrace (`ERR-6`, `ERR-9`).

use pabi_abi::{Clause, TrapKind};
use wasmtime::{Store, Trap, WasmBacktrace};

use crate::error::{Frame, Unavailable, WasmTrace};
use crate::store::{Abort, StoreData};
use crate::{Config, Error};

/// A failed instantiation: a full instance pool is the host's problem, not
/// the plugin's; anything else is classified like a failed call.
pub(crate) fn instantiation_error(error: wasmtime::Error, store: &Store<StoreData>, config: &Config) -> Error {
    if error.downcast_ref::<wasmtime::PoolConcurrencyLimitError>().is_some() {
        return Error::HostUnavailable(Unavailable::InstanceSlots { limit: config.max_instances() });
    }
    // What the plugin did (a trap in a segment or a start function, an
    // abort, a refused growth) is classified as for a call. Anything else
    // is the engine failing to set up the instance, for example the
    // kernel refusing to seal the memory image's file: not the plugin's
    // fault, and not a trap.
    let plugins_doing = error.downcast_ref::<Trap>().is_some()
        || error.downcast_ref::<Abort>().is_some()
        || error.downcast_ref::<wasmtime_wasi::I32Exit>().is_some()
        || error.downcast_ref::<wiggle::GuestError>().is_some()
        || store.data().limiter.refused;
    if !plugins_doing {
        return Error::HostUnavailable(Unavailable::Engine(format!("cannot set up the instance: {error:#}")));
    }
    classify(error, store, config)
}

/// Turns a failed wasm call into the spec's error kind.
pub(crate) fn classify(error: wasmtime::Error, store: &Store<StoreData>, config: &Config) -> Error {
    let limits = config.limits();
    if let Some(Abort(e)) = error.downcast_ref::<Abort>() {
        return e.clone();
    }
    // A WASI function of wasmtime's given a pointer outside memory or
    // misaligned traps, as WASI says; pabi reports it like the `pabi`
    // imports' ranges (`MEM-3`).
    if let Some(fault) = error.downcast_ref::<wiggle::GuestError>().filter(|e| is_pointer_fault(e)) {
        return Error::AbiViolation { clause: Clause::Mem3, detail: format!("a WASI function: {fault}") };
    }
    let backtrace = error.downcast_ref::<WasmBacktrace>().map(backtrace).unwrap_or_default();
    if let Some(trap) = error.downcast_ref::<Trap>() {
        return match trap {
            Trap::Interrupt => Error::Timeout { timeout: limits.timeout },
            Trap::OutOfFuel => Error::FuelExhausted { fuel: limits.fuel.unwrap_or(0) },
            _ if store.data().limiter.refused => Error::MemoryLimit { limit: limits.max_memory },
            other => Error::Trap { trap: trap_kind(*other), detail: other.to_string(), backtrace },
        };
    }
    if store.data().limiter.refused {
        return Error::MemoryLimit { limit: limits.max_memory };
    }
    if let Some(exit) = error.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return Error::Trap { trap: TrapKind::Other, detail: format!("proc_exit({})", exit.0), backtrace };
    }
    Error::Trap { trap: TrapKind::Other, detail: format!("{error:#}"), backtrace }
}

/// A pointer outside memory or misaligned, also when wrapped with the
/// function and argument it was for.
fn is_pointer_fault(error: &wiggle::GuestError) -> bool {
    use wiggle::GuestError::*;
    match error {
        PtrOutOfBounds(_) | PtrNotAligned(..) | PtrOverflow => true,
        InFunc { err, .. } => is_pointer_fault(err),
        _ => false,
    }
}

/// wasmtime's trap codes under the names of `ERR-9`.
fn trap_kind(trap: Trap) -> TrapKind {
    match trap {
        Trap::StackOverflow => TrapKind::StackOverflow,
        Trap::MemoryOutOfBounds => TrapKind::MemoryOutOfBounds,
        Trap::TableOutOfBounds => TrapKind::TableOutOfBounds,
        Trap::IndirectCallToNull => TrapKind::IndirectCallNull,
        Trap::BadSignature => TrapKind::IndirectCallType,
        Trap::IntegerOverflow => TrapKind::IntegerOverflow,
        Trap::IntegerDivisionByZero => TrapKind::IntegerDivideByZero,
        Trap::BadConversionToInteger => TrapKind::InvalidConversion,
        Trap::UnreachableCodeReached => TrapKind::Unreachable,
        Trap::NullReference => TrapKind::NullReference,
        _ => TrapKind::Other,
    }
}

fn backtrace(trace: &WasmBacktrace) -> WasmTrace {
    WasmTrace::from_frames(
        trace
            .frames()
            .iter()
            .map(|frame| Frame { func_index: frame.func_index(), name: frame.func_name().map(String::from) }),
    )
}
