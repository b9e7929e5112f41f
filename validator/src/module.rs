//! One decoding pass that collects what the ABI rules look at, with wasm
//! validation of function bodies spread over the validator's own threads.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use rayon::prelude::*;

use crate::SectionSize;
use wasmparser::{
    Encoding, ExternalKind, FuncToValidate, FuncType, FuncValidatorAllocations, FunctionBody, MemoryType, Operator,
    Parser, Payload, TypeRef, ValidPayload, Validator, ValidatorResources, WasmFeatures,
};

/// An import, as the rules need it.
#[derive(Clone, Debug)]
pub struct ImportEntry {
    pub module: String,
    pub name: String,
    pub ty: TypeRef,
    pub offset: usize,
}

#[derive(Clone, Debug)]
pub struct ExportEntry {
    pub name: String,
    pub kind: ExternalKind,
    pub index: u32,
    pub offset: usize,
}

#[derive(Clone, Debug)]
pub struct CustomEntry {
    pub name: String,
    pub data: Vec<u8>,
    pub offset: usize,
    pub size: usize,
}

/// What the decoding pass learned; private to the crate, whose public view
/// of a module is [`crate::PluginShape`].
#[derive(Clone, Debug, Default)]
pub struct ModuleInfo {
    pub types: Vec<Option<FuncType>>,
    /// Type index of every function, imported ones first.
    pub func_types: Vec<u32>,
    pub imported_funcs: u32,
    pub imports: Vec<ImportEntry>,
    pub memories: Vec<(MemoryType, usize)>,
    /// (initial, maximum) elements of every table the module defines.
    pub tables: Vec<(u64, Option<u64>)>,
    pub exports: Vec<ExportEntry>,
    pub start: Option<usize>,
    pub customs: Vec<CustomEntry>,
    pub data_bytes: u64,
    pub data_offset: Option<usize>,
    pub sections: Vec<SectionSize>,
    pub function_names: std::collections::HashMap<u32, String>,
    /// Defined function index (module-wide) holding the first NaN-producing
    /// float or SIMD instruction, when a scan was asked for.
    pub first_float_function: Option<(u32, usize)>,
}

impl ModuleInfo {
    pub fn func_type(&self, func_index: u32) -> Option<&FuncType> {
        let ty = *self.func_types.get(func_index as usize)?;
        self.types.get(ty as usize)?.as_ref()
    }
}

/// Why the module could not be taken in.
#[derive(Clone, Debug)]
pub struct DecodeError {
    pub message: String,
    pub offset: usize,
    /// The module is a component, not a core module.
    pub component: bool,
}

impl From<wasmparser::BinaryReaderError> for DecodeError {
    fn from(e: wasmparser::BinaryReaderError) -> Self {
        DecodeError { message: e.message().to_string(), offset: e.offset(), component: false }
    }
}

/// Decodes and validates `wasm` under `features`. When `scan_floats` is set,
/// also finds a function using NaN-producing float or SIMD instructions.
///
/// In a module large enough for threads, the function bodies are validated
/// on the pool while this thread goes on with the sections after the code
/// (data, names), as `wasm-tools validate` does: a sequential tail left the
/// other cores idle for a third of a large module's time. The result is the
/// same as a sequential pass's: an error in a later section is reported
/// before one in a body, as when the bodies were validated last.
pub(crate) fn decode(wasm: &[u8], features: WasmFeatures, scan_floats: bool) -> Result<ModuleInfo, DecodeError> {
    let checked: std::sync::Mutex<Option<Checked>> = std::sync::Mutex::new(None);
    let parsed = match (wasm.len() >= PARALLEL_CODE_BYTES).then(pool).flatten() {
        Some(pool) => pool.in_place_scope(|scope| parse(wasm, features, scan_floats, &checked, Some(scope))),
        None => parse(wasm, features, scan_floats, &checked, None),
    };
    let mut info = parsed?;
    let checked = checked.into_inner().unwrap_or_else(|p| p.into_inner());
    info.first_float_function = checked.unwrap_or(Ok(None))?;
    Ok(info)
}

type Checked = Result<Option<(u32, usize)>, wasmparser::BinaryReaderError>;

/// [`decode`]'s pass over the sections; the bodies go to `scope` once the
/// code section is complete, or are validated here at the end.
fn parse<'s>(
    wasm: &'s [u8],
    features: WasmFeatures,
    scan_floats: bool,
    checked: &'s std::sync::Mutex<Option<Checked>>,
    scope: Option<&rayon::Scope<'s>>,
) -> Result<ModuleInfo, DecodeError> {
    let mut info = ModuleInfo::default();
    let mut validator = Validator::new_with_features(features);
    let mut bodies: Vec<(FuncToValidate<ValidatorResources>, FunctionBody<'_>)> = Vec::new();
    let mut expected = 0;
    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload?;
        if let Payload::Version { encoding: Encoding::Component, range, .. } = &payload {
            return Err(DecodeError {
                message: "this is a component, not a core module".into(),
                offset: range.start,
                component: true,
            });
        }
        if let Payload::CodeSectionStart { count, .. } = &payload {
            expected = *count as usize;
        }
        record_section_size(&mut info, &payload);
        match validator.payload(&payload)? {
            ValidPayload::Func(func, body) => {
                bodies.push((func, body));
                if let Some(scope) = scope.filter(|_| bodies.len() == expected) {
                    let bodies = std::mem::take(&mut bodies);
                    scope.spawn(move |_| {
                        let result = validate_bodies(bodies, scan_floats);
                        *checked.lock().unwrap_or_else(|p| p.into_inner()) = Some(result);
                    });
                }
            }
            ValidPayload::End(_) => break,
            _ => {}
        }
        collect(&mut info, &payload)?;
    }
    if !bodies.is_empty() || scope.is_none() {
        *checked.lock().unwrap_or_else(|p| p.into_inner()) = Some(validate_bodies(bodies, scan_floats));
    }
    Ok(info)
}

/// Below this much code, spreading the bodies over threads costs more than
/// it saves.
const PARALLEL_CODE_BYTES: usize = 256 << 10;

/// Validates every function body, and finds the first one using a
/// NaN-producing instruction when `scan_floats` is set.
///
/// The first body (in module order) that fails ends the work: bodies after
/// it are skipped, bodies before it still run, so the error reported is
/// the one a sequential pass would report. The float scan narrows the same
/// way, so its answer does not depend on thread timing either.
fn validate_bodies(
    bodies: Vec<(FuncToValidate<ValidatorResources>, FunctionBody<'_>)>,
    scan_floats: bool,
) -> Result<Option<(u32, usize)>, wasmparser::BinaryReaderError> {
    let first_failure = AtomicUsize::new(usize::MAX);
    let first_float = AtomicUsize::new(usize::MAX);
    let check = |allocs: &mut FuncValidatorAllocations,
                 position: usize,
                 func: FuncToValidate<ValidatorResources>,
                 body: &FunctionBody<'_>| {
        if position > first_failure.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let mut validator = func.into_validator(std::mem::take(allocs));
        let result = validator.validate(body);
        let index = validator.index();
        *allocs = validator.into_allocations();
        if let Err(err) = result {
            first_failure.fetch_min(position, Ordering::Relaxed);
            return Err(err);
        }
        if scan_floats && position < first_float.load(Ordering::Relaxed) {
            if let Some(offset) = first_nan_producing_op(body)? {
                first_float.fetch_min(position, Ordering::Relaxed);
                return Ok(Some((index, offset)));
            }
        }
        Ok(None)
    };
    let code_bytes: usize = bodies.iter().map(|(_, body)| body.range().len()).sum();
    let results: Vec<Result<Option<(u32, usize)>, wasmparser::BinaryReaderError>> =
        // The size first: building the pool spawns a thread per core, which
        // would cost a small module's validation more than the work itself.
        match (code_bytes >= PARALLEL_CODE_BYTES).then(pool).flatten() {
            Some(pool) => pool.install(|| {
                bodies
                    .into_par_iter()
                    .enumerate()
                    .map_init(FuncValidatorAllocations::default, |allocs, (position, (func, body))| {
                        check(allocs, position, func, &body)
                    })
                    .collect()
            }),
            None => {
                let mut allocs = FuncValidatorAllocations::default();
                let mut results = Vec::with_capacity(bodies.len());
                for (position, (func, body)) in bodies.into_iter().enumerate() {
                    let result = check(&mut allocs, position, func, &body);
                    let failed = result.is_err();
                    results.push(result);
                    if failed {
                        break;
                    }
                }
                results
            }
        };
    // Results are in module order, so the first error and the first float
    // function are the earliest ones.
    let mut float = None;
    for result in results {
        if let Some(found) = result? {
            float = float.or(Some(found));
        }
    }
    Ok(float)
}

/// The validator's own thread pool, built on first use. An embedder's
/// global rayon pool is left alone: it may be configured (or built) by the
/// embedder after a validation, which the global pool would not allow.
/// `None` when no thread can be spawned; validation then runs on the
/// caller's thread.
fn pool() -> Option<&'static rayon::ThreadPool> {
    static POOL: OnceLock<Option<rayon::ThreadPool>> = OnceLock::new();
    POOL.get_or_init(|| rayon::ThreadPoolBuilder::new().thread_name(|i| format!("pabi-validator-{i}")).build().ok())
        .as_ref()
}

/// Whether `wasm` validates under `features` up to and including the
/// function body at `focus` (a byte offset): other bodies are skipped, so
/// asking which feature a failing body needs costs one body per feature,
/// not one module.
pub(crate) fn validates_at(wasm: &[u8], features: WasmFeatures, focus: usize) -> bool {
    let mut validator = Validator::new_with_features(features);
    for payload in Parser::new(0).parse_all(wasm) {
        let Ok(payload) = payload else { return false };
        match validator.payload(&payload) {
            Ok(ValidPayload::Func(func, body)) if body.range().contains(&focus) => {
                let mut func = func.into_validator(FuncValidatorAllocations::default());
                if func.validate(&body).is_err() {
                    return false;
                }
            }
            Ok(ValidPayload::End(_)) => return true,
            Ok(_) => {}
            Err(_) => return false,
        }
    }
    true
}

fn record_section_size(info: &mut ModuleInfo, payload: &Payload<'_>) {
    let (name, size) = match payload {
        Payload::TypeSection(r) => ("type", r.range().len()),
        Payload::ImportSection(r) => ("import", r.range().len()),
        Payload::FunctionSection(r) => ("function", r.range().len()),
        Payload::TableSection(r) => ("table", r.range().len()),
        Payload::MemorySection(r) => ("memory", r.range().len()),
        Payload::GlobalSection(r) => ("global", r.range().len()),
        Payload::ExportSection(r) => ("export", r.range().len()),
        Payload::ElementSection(r) => ("element", r.range().len()),
        Payload::DataSection(r) => ("data", r.range().len()),
        Payload::CodeSectionStart { size, .. } => ("code", *size as usize),
        Payload::CustomSection(r) => {
            info.sections.push(SectionSize { name: format!("custom \"{}\"", r.name()), size: r.range().len() });
            return;
        }
        _ => return,
    };
    info.sections.push(SectionSize { name: name.to_string(), size });
}

fn collect(info: &mut ModuleInfo, payload: &Payload<'_>) -> Result<(), DecodeError> {
    match payload {
        Payload::TypeSection(reader) => {
            for group in reader.clone() {
                for sub in group?.into_types() {
                    info.types.push(match &sub.composite_type.inner {
                        wasmparser::CompositeInnerType::Func(f) => Some(f.clone()),
                        _ => None,
                    });
                }
            }
        }
        Payload::ImportSection(reader) => {
            for import in reader.clone().into_imports_with_offsets() {
                let (offset, import) = import?;
                if let TypeRef::Func(ty) | TypeRef::FuncExact(ty) = import.ty {
                    info.func_types.push(ty);
                    info.imported_funcs += 1;
                }
                if let TypeRef::Memory(mem) = import.ty {
                    info.memories.push((mem, offset));
                }
                info.imports.push(ImportEntry {
                    module: import.module.to_string(),
                    name: import.name.to_string(),
                    ty: import.ty,
                    offset,
                });
            }
        }
        Payload::FunctionSection(reader) => {
            for ty in reader.clone() {
                info.func_types.push(ty?);
            }
        }
        Payload::TableSection(reader) => {
            for table in reader.clone() {
                let table = table?;
                info.tables.push((table.ty.initial, table.ty.maximum));
            }
        }
        Payload::MemorySection(reader) => {
            for mem in reader.clone().into_iter_with_offsets() {
                let (offset, mem) = mem?;
                info.memories.push((mem, offset));
            }
        }
        Payload::ExportSection(reader) => {
            for export in reader.clone().into_iter_with_offsets() {
                let (offset, export) = export?;
                info.exports.push(ExportEntry {
                    name: export.name.to_string(),
                    kind: export.kind,
                    index: export.index,
                    offset,
                });
            }
        }
        Payload::StartSection { range, .. } => info.start = Some(range.start),
        Payload::DataSection(reader) => {
            info.data_offset = Some(reader.range().start);
            for data in reader.clone() {
                info.data_bytes += data?.data.len() as u64;
            }
        }
        Payload::CustomSection(reader) => {
            if reader.name() == "name" {
                collect_names(info, reader.data(), reader.data_offset());
            }
            info.customs.push(CustomEntry {
                name: reader.name().to_string(),
                data: reader.data().to_vec(),
                offset: reader.range().start,
                size: reader.range().len(),
            });
        }
        _ => {}
    }
    Ok(())
}

/// Function names from the name section. A malformed name section is not an
/// ABI matter, so errors just end the collection.
fn collect_names(info: &mut ModuleInfo, data: &[u8], offset: usize) {
    let reader = wasmparser::NameSectionReader::new(wasmparser::BinaryReader::new(data, offset));
    for name in reader {
        let Ok(wasmparser::Name::Function(map)) = name else { continue };
        for naming in map.into_iter().flatten() {
            info.function_names.insert(naming.index, naming.name.to_string());
        }
    }
}

/// The offset of the first instruction in `body` that can produce a NaN
/// with an engine-dependent bit pattern (float arithmetic, demote/promote),
/// or of any SIMD instruction.
fn first_nan_producing_op(body: &FunctionBody<'_>) -> Result<Option<usize>, wasmparser::BinaryReaderError> {
    let mut reader = body.get_operators_reader()?;
    while !reader.eof() {
        let (op, offset) = reader.read_with_offset()?;
        if is_nan_producing(&op) {
            return Ok(Some(offset));
        }
    }
    Ok(None)
}

/// Scalar float instructions whose result can be a NaN with an unspecified
/// payload. `abs`, `neg`, `copysign`, loads, stores, constants and
/// conversions to or from integers only move bits, so they are left out.
fn is_nan_producing(op: &Operator<'_>) -> bool {
    use Operator::*;
    matches!(
        op,
        F32Ceil
            | F32Floor
            | F32Trunc
            | F32Nearest
            | F32Sqrt
            | F32Add
            | F32Sub
            | F32Mul
            | F32Div
            | F32Min
            | F32Max
            | F64Ceil
            | F64Floor
            | F64Trunc
            | F64Nearest
            | F64Sqrt
            | F64Add
            | F64Sub
            | F64Mul
            | F64Div
            | F64Min
            | F64Max
            | F32DemoteF64
            | F64PromoteF32
    ) || is_simd(op)
}

/// Generates `is_simd` from wasmparser's list of SIMD and relaxed-SIMD
/// operators, so that new SIMD instructions are covered without a table
/// to keep up to date here.
macro_rules! define_is_simd {
    ($( @$proposal:ident $op:ident $({ $($arg:ident: $argty:ty),* })? => $visit:ident ($($ann:tt)*) )*) => {
        fn is_simd(op: &Operator<'_>) -> bool {
            matches!(op, $(Operator::$op { .. })|*)
        }
    };
}
wasmparser::for_each_visit_simd_operator!(define_is_simd);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nan_producing_operators_are_told_from_bit_moves() {
        for op in [Operator::F32Add, Operator::F64Sqrt, Operator::F32DemoteF64, Operator::F64PromoteF32] {
            assert!(is_nan_producing(&op), "{op:?}");
        }
        for op in [Operator::F32Abs, Operator::F64Neg, Operator::F32Copysign, Operator::I32Add, Operator::Nop] {
            assert!(!is_nan_producing(&op), "{op:?}");
        }
        // Every SIMD instruction counts, relaxed SIMD included.
        assert!(is_nan_producing(&Operator::I8x16Add));
        assert!(is_nan_producing(&Operator::F32x4RelaxedMadd));
        assert!(!is_simd(&Operator::F32Add));
    }
}
