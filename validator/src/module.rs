//! One decoding pass that collects what the ABI rules look at, with wasm
//! validation of function bodies spread over all cores.

use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;
use wasmparser::{
    Encoding, ExternalKind, FuncToValidate, FuncType, FunctionBody, MemoryType, Parser, Payload, TypeRef, ValidPayload,
    Validator, ValidatorResources, WasmFeatures,
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

#[derive(Clone, Debug)]
pub struct SectionSize {
    pub name: String,
    pub size: usize,
}

/// What the decoding pass learned.
#[derive(Clone, Debug, Default)]
pub struct ModuleInfo {
    pub types: Vec<Option<FuncType>>,
    /// Type index of every function, imported ones first.
    pub func_types: Vec<u32>,
    pub imported_funcs: u32,
    pub imports: Vec<ImportEntry>,
    pub memories: Vec<(MemoryType, usize)>,
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
pub fn decode(wasm: &[u8], features: WasmFeatures, scan_floats: bool) -> Result<ModuleInfo, DecodeError> {
    let mut info = ModuleInfo::default();
    let mut validator = Validator::new_with_features(features);
    let mut bodies: Vec<(FuncToValidate<ValidatorResources>, FunctionBody<'_>)> = Vec::new();

    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload?;
        if let Payload::Version { encoding: Encoding::Component, range, .. } = &payload {
            return Err(DecodeError {
                message: "this is a component, not a core module".into(),
                offset: range.start,
                component: true,
            });
        }
        record_section_size(&mut info, &payload);
        match validator.payload(&payload)? {
            ValidPayload::Func(func, body) => bodies.push((func, body)),
            ValidPayload::End(_) => break,
            _ => {}
        }
        collect(&mut info, &payload)?;
    }

    let found_float = AtomicBool::new(false);
    let imported = info.imported_funcs;
    let results: Vec<Result<Option<(u32, usize)>, wasmparser::BinaryReaderError>> = bodies
        .into_par_iter()
        .map_init(wasmparser::FuncValidatorAllocations::default, |allocs, (func, body)| {
            let mut validator = func.into_validator(std::mem::take(allocs));
            validator.validate(&body)?;
            let index = validator.index();
            *allocs = validator.into_allocations();
            if scan_floats && !found_float.load(Ordering::Relaxed) {
                if let Some(offset) = first_nan_producing_op(&body, wasm)? {
                    found_float.store(true, Ordering::Relaxed);
                    return Ok(Some((index, offset)));
                }
            }
            Ok(None)
        })
        .collect();
    for result in results {
        if let Some(found) = result? {
            info.first_float_function = info.first_float_function.or(Some(found));
        }
    }
    debug_assert!(info.func_types.len() as u32 >= imported);
    Ok(info)
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

/// The offset of the first instruction in `body` that can produce a NaN with
/// an engine-dependent bit pattern (float arithmetic, demote/promote), or of
/// any SIMD instruction.
fn first_nan_producing_op(
    body: &FunctionBody<'_>,
    wasm: &[u8],
) -> Result<Option<usize>, wasmparser::BinaryReaderError> {
    let mut reader = body.get_operators_reader()?;
    while !reader.eof() {
        let (_, offset) = reader.read_with_offset()?;
        let opcode = wasm.get(offset).copied().unwrap_or(0);
        let nan_producing = matches!(opcode, 0x8d..=0x97 | 0x9b..=0xa5 | 0xb6 | 0xbb | 0xfd);
        if nan_producing {
            return Ok(Some(offset));
        }
    }
    Ok(None)
}
