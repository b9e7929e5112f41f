//! The ABI rules, applied to a decoded module.

use std::collections::BTreeSet;

use pabi_abi::{
    feature_profile, find_import, is_valid_function_name, named_features, wasi_import_requirement, wasi_signature,
    AbiVersion, Capability, Clause, Metadata, MetadataError, Profile, ValType, WasiRequirement, WasiValType, EXPORTS,
    FN_EXPORT_PREFIX, HOST_ABI, IMPORT_MODULE, METADATA_SECTION, PROFILE_NAME, RESERVED_EXPORT_PREFIX, WASI_MODULE,
};
use wasmparser::{ExternalKind, FuncType, TypeRef, WasmFeatures};

use crate::module::{decode, validates_at, ModuleInfo};
use crate::{Finding, ForeignAbi, PluginShape, Report, Rule};

/// Data segments above this total earn a `MOD-6` warning.
const LARGE_DATA_BYTES: u64 = 16 << 20;

/// The steps of `VER-8`, in order: a host that could refuse a plugin for
/// several findings cites the first, so findings are reported step by step
/// (and by offset within a step), whatever order the checks below find
/// them in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    /// Step 2 and 3: the `pabi` section, the envelope, the version.
    Envelope,
    /// Step 4, from here on: the schema and the metadata's other rules.
    Metadata,
    /// The Since of every item used: imports (`IMP-4`), then exports,
    /// metadata fields and capability kinds (`VER-9`).
    Since,
    /// The feature profile and the rest of MOD.
    Module,
    Imports,
    Exports,
}

/// Who checks a plugin, so that a message can name the version it
/// implements (`VER-4`).
#[derive(Clone, Copy)]
struct Checker {
    abi: AbiVersion,
    noun: &'static str,
}

impl Checker {
    fn of(options: &crate::Options) -> Checker {
        match options.host_abi {
            Some(abi) => Checker { abi, noun: "host" },
            None => Checker { abi: HOST_ABI, noun: "validator" },
        }
    }
}

struct Sink {
    findings: Vec<(Step, Finding)>,
    /// The step the findings pushed now belong to.
    step: Step,
}

impl Sink {
    fn push(&mut self, rule: Rule, message: impl Into<String>, offset: Option<usize>, subject: Option<&str>) {
        let step = self.step;
        self.push_in(step, rule, message, offset, subject);
    }

    fn push_in(
        &mut self,
        step: Step,
        rule: Rule,
        message: impl Into<String>,
        offset: Option<usize>,
        subject: Option<&str>,
    ) {
        let finding = Finding { rule, message: message.into(), offset, subject: subject.map(str::to_string) };
        self.findings.push((step, finding));
    }

    /// The findings in the order of `VER-8`, then of their offsets; the
    /// sort is stable, so findings at one offset keep the order they were
    /// found in.
    fn into_findings(mut self) -> Vec<Finding> {
        self.findings.sort_by_key(|(step, f)| (*step, f.offset.unwrap_or(usize::MAX)));
        self.findings.into_iter().map(|(_, f)| f).collect()
    }
}

pub(crate) fn run(wasm: &[u8], options: &crate::Options) -> Report {
    let checker = Checker::of(options);
    let mut sink = Sink { findings: Vec::new(), step: Step::Envelope };
    let section_offset =
        || pabi_abi::find_custom_sections(wasm, METADATA_SECTION).ok().and_then(|s| s.first().map(|s| s.section.start));
    // The envelope before anything of a version (`VER-8`): a plugin of a
    // version this validator does not implement gets that one finding, and
    // none for the fields, features or imports its version may add. An
    // envelope that cannot be read gets one finding too, citing the clause
    // of step 2 it breaks; a missing section (META-1) and malformed section
    // headers (MOD-1) are found below, where the module is still decoded to
    // name a foreign ABI.
    let stop = |sink: Sink, abi| Report {
        findings: sink.into_findings(),
        abi,
        metadata: None,
        shape: None,
        foreign_abi: None,
    };
    match pabi_abi::read_envelope(wasm) {
        Ok(version) if !checker.abi.accepts(version) => {
            sink.push(
                Rule::UnsupportedVersion,
                format!("the plugin declares ABI {version}, but this {} implements ABI {}", checker.noun, checker.abi),
                section_offset(),
                Some("abi"),
            );
            return stop(sink, Some(version));
        }
        Ok(_) => {}
        Err(err) => {
            let rule = match err.clause() {
                Clause::Meta2 => Some(Rule::MetadataEncoding),
                Clause::Ver1 => Some(Rule::VersionSyntax),
                _ => None,
            };
            if let Some(rule) = rule {
                let subject = if rule == Rule::VersionSyntax { "abi" } else { "pabi" };
                sink.push(rule, err.to_string(), section_offset(), Some(subject));
                return stop(sink, None);
            }
        }
    }
    // Metadata first: it is read without validating code (META-6), and it
    // says whether the float scan is needed.
    let metadata = read_metadata(wasm, &mut sink);
    let has_section = !sink.findings.iter().any(|(_, f)| f.rule == Rule::MetadataSection && f.offset.is_none());
    let scan_floats = metadata.as_ref().is_some_and(|m| m.functions.iter().any(|f| f.deterministic));
    // The Since of the exports, metadata fields and capability kinds needs
    // no decoded module, so a module that cannot be decoded gets it too.
    if let Some(meta) = &metadata {
        for finding in crate::since::newer_than_declared(wasm, meta.abi, &pabi_abi::since::Catalog::current()) {
            sink.findings.push((Step::Since, finding));
        }
    }

    sink.step = Step::Module;
    let module = match decode(wasm, feature_profile(), scan_floats) {
        Ok(module) => module,
        Err(err) => {
            let component = err.component;
            match decode_outside_profile(wasm, err, scan_floats, &mut sink) {
                Some(module) => module,
                None => {
                    return Report {
                        findings: sink.into_findings(),
                        abi: abi_of(&metadata),
                        metadata,
                        shape: None,
                        foreign_abi: component.then_some(ForeignAbi::Component),
                    }
                }
            }
        }
    };

    check_shape(&module, &mut sink);
    if let Some(meta) = &metadata {
        check_float_use(&module, meta, &mut sink);
    }
    sink.step = Step::Imports;
    check_imports(&module, metadata.as_ref(), checker, &mut sink);
    sink.step = Step::Exports;
    check_exports(&module, &mut sink);
    if let Some(meta) = &metadata {
        check_metadata_against_module(&module, meta, &mut sink);
    }
    Report {
        findings: sink.into_findings(),
        abi: abi_of(&metadata),
        metadata,
        shape: Some(PluginShape::from(&module)),
        foreign_abi: if has_section { None } else { crate::foreign::detect(&module) },
    }
}

fn abi_of(metadata: &Option<Metadata>) -> Option<pabi_abi::AbiVersion> {
    metadata.as_ref().map(|m| m.abi)
}

/// A module that fails under the profile is either invalid outright
/// (`MOD-1`, and `None` is returned), or valid with more features. Then the
/// features it needs are named (`MOD-2`) unless a memory-shape finding
/// (`MOD-4`) already explains them, and the module is returned for the
/// remaining checks.
fn decode_outside_profile(
    wasm: &[u8],
    err: crate::module::DecodeError,
    scan_floats: bool,
    sink: &mut Sink,
) -> Option<ModuleInfo> {
    if err.component {
        sink.push(Rule::InvalidModule, err.message, Some(err.offset), None);
        return None;
    }
    let everything = WasmFeatures::all();
    let module = match decode(wasm, everything, scan_floats) {
        Ok(module) => module,
        Err(_) => {
            sink.push(Rule::InvalidModule, format!("invalid WebAssembly: {}", err.message), Some(err.offset), None);
            return None;
        }
    };
    // The features that get the module past its first out-of-profile
    // construct. Only that spot is re-validated per feature: validating the
    // whole module once per feature made a module with one tail call take
    // seconds.
    let profile = feature_profile();
    let needed: Vec<WasmFeatures> = everything
        .difference(profile)
        .iter()
        .filter(|feature| validates_at(wasm, profile.union(*feature), err.offset))
        .collect();
    let memory_explains = |feature: &WasmFeatures| {
        (*feature == WasmFeatures::THREADS && module.memories.iter().any(|(m, _)| m.shared))
            || (*feature == WasmFeatures::MEMORY64 && module.memories.iter().any(|(m, _)| m.memory64))
            || (*feature == WasmFeatures::MULTI_MEMORY && module.memories.len() > 1)
    };
    if needed.len() == 1 && memory_explains(&needed[0]) {
        return Some(module);
    }
    let names: Vec<String> = needed.iter().flat_map(|f| named_features(*f)).collect();
    let what = if names.is_empty() {
        "several features outside the profile".to_string()
    } else {
        format!("the `{}` feature", names.join("`, `"))
    };
    sink.push(
        Rule::FeatureOutsideProfile,
        format!("the module uses {what}, which {PROFILE_NAME} does not include ({})", err.message),
        Some(err.offset),
        names.first().map(String::as_str),
    );
    Some(module)
}

fn read_metadata(wasm: &[u8], sink: &mut Sink) -> Option<Metadata> {
    let sections = match pabi_abi::find_custom_sections(wasm, METADATA_SECTION) {
        Ok(sections) => sections,
        // The decode pass reports the malformed module.
        Err(_) => return None,
    };
    let section = match sections.as_slice() {
        [] => {
            sink.push(Rule::MetadataSection, "the `pabi` metadata section is missing", None, Some("pabi"));
            return None;
        }
        [one] => one,
        [_, second, ..] => {
            sink.push(
                Rule::MetadataSection,
                format!("{} `pabi` metadata sections; exactly one is allowed", sections.len()),
                Some(second.section.start),
                Some("pabi"),
            );
            return None;
        }
    };
    let at = Some(section.section.start);
    sink.step = Step::Metadata;
    match Metadata::parse(&wasm[section.data.clone()]) {
        Ok(meta) => Some(meta),
        Err(err) => {
            let rule = match &err {
                MetadataError::TooLarge(_) | MetadataError::NotUtf8(_) | MetadataError::NotJson(_) => {
                    Rule::MetadataEncoding
                }
                MetadataError::Schema(problems) if problems.iter().all(|p| p.starts_with("at /statuses")) => {
                    Rule::MetadataStatuses
                }
                MetadataError::Schema(problems) if problems.iter().all(|p| p.starts_with("at /abi")) => {
                    Rule::VersionSyntax
                }
                MetadataError::DuplicateFunction(_) => Rule::MetadataDuplicate,
                MetadataError::BadVersion(_) => Rule::VersionSyntax,
                MetadataError::CapabilitiesInCore => Rule::WasiInCore,
                MetadataError::FsPath { .. } => Rule::CapabilityPath,
                MetadataError::HostCall { clause, .. } => {
                    if *clause == pabi_abi::Clause::Call2 {
                        Rule::HostCallName
                    } else {
                        Rule::HostCallDeclaration
                    }
                }
                MetadataError::Schema(problems)
                    if problems.iter().all(|p| p.starts_with("at /host_calls/") && p.contains("/name")) =>
                {
                    Rule::HostCallName
                }
                _ => Rule::MetadataSchema,
            };
            sink.push(rule, err.to_string(), at, Some("pabi"));
            None
        }
    }
}

fn check_shape(module: &ModuleInfo, sink: &mut Sink) {
    if let Some(offset) = module.start {
        sink.push(
            Rule::StartSection,
            "the module has a start section; plugins start through `_initialize`",
            Some(offset),
            Some("start"),
        );
    }
    match module.memories.as_slice() {
        [] => sink.push(Rule::MemoryShape, "the module defines no memory", None, None),
        [(mem, offset)] => {
            let imported = module.imports.iter().any(|i| matches!(i.ty, TypeRef::Memory(_)));
            if imported {
                sink.push(
                    Rule::MemoryShape,
                    "the memory is imported; a plugin must define its own",
                    Some(*offset),
                    None,
                );
            }
            if mem.memory64 {
                sink.push(Rule::MemoryShape, "the memory is 64-bit", Some(*offset), None);
            }
            if mem.shared {
                sink.push(Rule::MemoryShape, "the memory is shared", Some(*offset), None);
            }
        }
        [_, (_, offset), ..] => sink.push(
            Rule::MemoryShape,
            format!("the module has {} memories; exactly one is allowed", module.memories.len()),
            Some(*offset),
            None,
        ),
    }
    if !module.customs.iter().any(|c| c.name == "name") {
        sink.push(
            Rule::MissingNameSection,
            "no `name` section: trap backtraces will show <unknown> frames",
            None,
            Some("name"),
        );
    }
    if module.data_bytes > LARGE_DATA_BYTES {
        sink.push(
            Rule::LargeData,
            format!("data segments hold {} bytes, more than 16 MiB", module.data_bytes),
            module.data_offset,
            Some("data"),
        );
    }
}

fn signature_matches(ty: Option<&FuncType>, params: &[ValType], results: &[ValType]) -> bool {
    let as_wasm = |v: &ValType| match v {
        ValType::I32 => wasmparser::ValType::I32,
    };
    ty.is_some_and(|ty| {
        ty.params().iter().copied().eq(params.iter().map(as_wasm))
            && ty.results().iter().copied().eq(results.iter().map(as_wasm))
    })
}

fn render_signature(ty: Option<&FuncType>) -> String {
    match ty {
        None => "a non-function type".into(),
        Some(ty) => {
            let list = |tys: &[wasmparser::ValType]| tys.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(", ");
            format!("({}) -> ({})", list(ty.params()), list(ty.results()))
        }
    }
}

fn render_expected(params: &[ValType], results: &[ValType]) -> String {
    let list = |tys: &[ValType]| vec!["i32"; tys.len()].join(", ");
    format!("({}) -> ({})", list(params), list(results))
}

/// Import findings that tend to come in dozens (a foreign ABI's imports,
/// WASI imports in a core plugin) are grouped: one finding per kind, naming
/// the count and the first few imports.
#[derive(Default)]
struct ImportGroups {
    groups: Vec<ImportGroup>,
}

struct ImportGroup {
    rule: Rule,
    kind: GroupKind,
    /// (subject, message, offset) of each member, in module order.
    members: Vec<(String, String, Option<usize>)>,
}

#[derive(Clone, PartialEq, Eq)]
enum GroupKind {
    FromModule(String),
    NotAFunction,
    /// With the versions a refusal names (`VER-4`), as a message ends.
    UnknownHostFunction(String),
    WasiInCore,
    WasiNeedsFs,
    WasiSocket,
    NotWasi,
}

/// How many import names a grouped finding lists.
const GROUP_NAMES_SHOWN: usize = 3;

impl ImportGroups {
    fn push(&mut self, rule: Rule, kind: GroupKind, subject: &str, message: String, offset: Option<usize>) {
        let member = (subject.to_string(), message, offset);
        match self.groups.iter_mut().find(|g| g.rule == rule && g.kind == kind) {
            Some(group) => group.members.push(member),
            None => self.groups.push(ImportGroup { rule, kind, members: vec![member] }),
        }
    }

    fn flush(self, sink: &mut Sink) {
        for group in self.groups {
            let ImportGroup { rule, kind, mut members } = group;
            if members.len() == 1 {
                let (subject, message, offset) = members.remove(0);
                sink.push(rule, message, offset, Some(&subject));
                continue;
            }
            let count = members.len();
            // A refusal names every import the host lacks (`VER-4`).
            let shown = if matches!(kind, GroupKind::UnknownHostFunction(_)) { count } else { GROUP_NAMES_SHOWN };
            let mut names: Vec<String> =
                members.iter().take(shown).map(|(subject, ..)| format!("`{subject}`")).collect();
            if count > shown {
                names.push(format!("and {} more", count - GROUP_NAMES_SHOWN));
            }
            let names = names.join(", ");
            let message = match &kind {
                GroupKind::FromModule(module) => format!(
                    "{count} imports come from module `{module}` ({names}); plugins import only from `{IMPORT_MODULE}` and, in the wasi profile, `{WASI_MODULE}`"
                ),
                GroupKind::NotAFunction => {
                    format!("{count} imports are not functions ({names}); plugins import only functions")
                }
                GroupKind::UnknownHostFunction(versions) => {
                    format!("{count} `{IMPORT_MODULE}` imports are not host functions of {versions}: {names}")
                }
                GroupKind::WasiInCore => {
                    format!("{count} WASI imports ({names}), but the plugin declares the `core` profile")
                }
                GroupKind::WasiNeedsFs => {
                    format!("{count} WASI imports need an `fs:` capability, and the plugin declares none: {names}")
                }
                GroupKind::WasiSocket => format!(
                    "{count} WASI imports are socket functions, and no capability grants sockets in ABI {HOST_ABI}: {names}"
                ),
                GroupKind::NotWasi => format!("{count} imports are not {WASI_MODULE} functions: {names}"),
            };
            let subject = match &kind {
                GroupKind::FromModule(module) => module.clone(),
                _ => members[0].0.clone(),
            };
            sink.push(rule, message, members[0].2, Some(&subject));
        }
    }
}

fn check_imports(module: &ModuleInfo, metadata: Option<&Metadata>, checker: Checker, sink: &mut Sink) {
    let profile = metadata.map(|m| m.profile);
    let declared = metadata.map(|m| m.capabilities.clone()).unwrap_or_default();
    let plugin_abi = metadata.map(|m| m.abi);
    // `VER-4`: a refusal for an import the host lacks names both versions.
    let (abi, noun) = (checker.abi, checker.noun);
    let versions = match plugin_abi {
        Some(plugin) => format!("ABI {abi} (the plugin declares ABI {plugin}, and this {noun} implements ABI {abi})"),
        None => format!("ABI {abi} (this {noun} implements ABI {abi})"),
    };
    let mut groups = ImportGroups::default();
    // A preview1 import's type is judged after whether it is allowed at
    // all (`WASI-4` before `WASI-11`, `VER-8`): these findings follow the
    // grouped ones, and keep that order at one offset.
    let mut wasi_types = Sink { findings: Vec::new(), step: Step::Imports };
    for import in &module.imports {
        let subject = format!("{}.{}", import.module, import.name);
        let at = Some(import.offset);
        let func_ty = match import.ty {
            TypeRef::Func(ty) | TypeRef::FuncExact(ty) => module.types.get(ty as usize).and_then(Option::as_ref),
            TypeRef::Memory(_) => continue, // MOD-4 reports it.
            _ => {
                groups.push(
                    Rule::ForeignImport,
                    GroupKind::NotAFunction,
                    &subject,
                    format!("`{subject}` is not a function; plugins import only functions"),
                    at,
                );
                continue;
            }
        };
        match import.module.as_str() {
            IMPORT_MODULE => {
                let Some(spec) = find_import(&import.name) else {
                    groups.push(
                        Rule::UnknownHostFunction,
                        GroupKind::UnknownHostFunction(versions.clone()),
                        &subject,
                        format!("`{subject}` is not a host function of {versions}"),
                        at,
                    );
                    continue;
                };
                if !signature_matches(func_ty, spec.params, spec.results) {
                    sink.push(
                        Rule::HostFunctionSignature,
                        format!(
                            "`{subject}` is imported as {}, but the spec gives {}",
                            render_signature(func_ty),
                            render_expected(spec.params, spec.results)
                        ),
                        at,
                        Some(&subject),
                    );
                }
                if let Some(plugin_abi) = plugin_abi {
                    if spec.since.major == plugin_abi.major && spec.since.minor > plugin_abi.minor {
                        // The Since of an import comes before the
                        // feature profile and the other import rules (`VER-8`).
                        sink.push_in(
                            Step::Since,
                            Rule::ImportTooNew,
                            format!("`{subject}` arrived in ABI {}, but the plugin declares ABI {plugin_abi}", spec.since),
                            at,
                            Some(&subject),
                        );
                    }
                }
            }
            WASI_MODULE => {
                check_wasi_import(&import.name, &subject, at, profile, &declared, &mut groups);
                check_wasi_type(&import.name, &subject, at, profile, func_ty, &mut wasi_types);
            }
            other => groups.push(
                Rule::ForeignImport,
                GroupKind::FromModule(other.to_string()),
                &subject,
                format!("`{subject}` comes from module `{other}`; plugins import only from `{IMPORT_MODULE}` and, in the wasi profile, `{WASI_MODULE}`"),
                at,
            ),
        }
    }
    groups.flush(sink);
    sink.findings.append(&mut wasi_types.findings);
}

/// A preview1 import with a type other than preview1's (`WASI-11`): an
/// engine that links by name alone would call the host's function with
/// arguments it does not expect.
fn check_wasi_type(
    name: &str,
    subject: &str,
    at: Option<usize>,
    profile: Option<Profile>,
    func_ty: Option<&FuncType>,
    sink: &mut Sink,
) {
    // A core plugin's WASI import is already refused (WASI-1), and a name
    // preview1 lacks has no type to compare (WASI-4).
    let (Some(expected), false) = (wasi_signature(name), profile == Some(Profile::Core)) else { return };
    let as_wasm = |t: &WasiValType| match t {
        WasiValType::I32 => wasmparser::ValType::I32,
        WasiValType::I64 => wasmparser::ValType::I64,
    };
    let matches = func_ty.is_some_and(|ty| {
        ty.params().iter().copied().eq(expected.params.iter().map(as_wasm))
            && ty.results().iter().copied().eq(expected.results.iter().map(as_wasm))
    });
    if !matches {
        let expected_text = {
            let list = |types: &[WasiValType]| types.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(", ");
            format!("({}) -> ({})", list(expected.params), list(expected.results))
        };
        sink.push(
            Rule::WasiImportType,
            format!("`{subject}` is imported as {}, but preview1 gives {expected_text}", render_signature(func_ty)),
            at,
            Some(subject),
        );
    }
}

fn check_wasi_import(
    name: &str,
    subject: &str,
    at: Option<usize>,
    profile: Option<Profile>,
    declared: &[Capability],
    groups: &mut ImportGroups,
) {
    if profile == Some(Profile::Core) {
        groups.push(
            Rule::WasiInCore,
            GroupKind::WasiInCore,
            subject,
            format!("`{subject}` is a WASI import, but the plugin declares the `core` profile"),
            at,
        );
        return;
    }
    let has_fs = declared.iter().any(|c| matches!(c, Capability::Fs { .. }));
    let (kind, message) = match wasi_import_requirement(name) {
        Some(WasiRequirement::Baseline) => return,
        Some(WasiRequirement::Filesystem) if has_fs => return,
        Some(WasiRequirement::Filesystem) => {
            (GroupKind::WasiNeedsFs, format!("`{subject}` needs an `fs:` capability, and the plugin declares none"))
        }
        Some(WasiRequirement::Forbidden) => (
            GroupKind::WasiSocket,
            format!("`{subject}` is a socket function; no capability grants sockets in ABI {HOST_ABI}"),
        ),
        _ => (GroupKind::NotWasi, format!("`{subject}` is not a wasi_snapshot_preview1 function")),
    };
    groups.push(Rule::UncoveredWasiImport, kind, subject, message, at);
}

fn check_exports(module: &ModuleInfo, sink: &mut Sink) {
    let mut memory_exported = false;
    let mut has_function = false;
    let mut state_exports = BTreeSet::new();
    for export in &module.exports {
        let at = Some(export.offset);
        let name = export.name.as_str();
        let func_ty = (export.kind == ExternalKind::Func).then(|| module.func_type(export.index)).flatten();
        if name == "memory" {
            if export.kind == ExternalKind::Memory {
                memory_exported = true;
            } else {
                sink.push(Rule::MemoryExport, "the export `memory` is not a memory", at, Some(name));
            }
            continue;
        }
        if name == "_start" {
            sink.push(
                Rule::CommandExport,
                "`_start` is exported: this is a command module, not a plugin (build a reactor)",
                at,
                Some(name),
            );
            continue;
        }
        if let Some(spec) = EXPORTS.iter().find(|spec| spec.name == name) {
            if name.starts_with("pabi_state_") {
                state_exports.insert(name);
            }
            if export.kind != ExternalKind::Func || !signature_matches(func_ty, spec.params, spec.results) {
                sink.push(
                    Rule::LifecycleSignature,
                    format!(
                        "`{name}` has type {}, but the spec gives {}",
                        render_signature(func_ty),
                        render_expected(spec.params, spec.results)
                    ),
                    at,
                    Some(name),
                );
            }
            continue;
        }
        if let Some(function) = name.strip_prefix(FN_EXPORT_PREFIX) {
            has_function = true;
            if !is_valid_function_name(function) {
                sink.push(
                    Rule::FunctionName,
                    format!("`{function}` is not a valid plugin function name ([a-z][a-z0-9_]{{0,63}})"),
                    at,
                    Some(name),
                );
            }
            if export.kind != ExternalKind::Func || !signature_matches(func_ty, &[ValType::I32], &[ValType::I32]) {
                sink.push(
                    Rule::FunctionSignature,
                    format!("`{name}` has type {}, but plugin functions are (i32) -> (i32)", render_signature(func_ty)),
                    at,
                    Some(name),
                );
            }
            continue;
        }
        if name.starts_with(RESERVED_EXPORT_PREFIX) {
            sink.push(
                Rule::ReservedExport,
                format!("`{name}` uses the reserved `pabi_` prefix but is no export of the ABI"),
                at,
                Some(name),
            );
        }
    }
    if !memory_exported && !module.memories.is_empty() {
        sink.push(Rule::MemoryExport, "the memory is not exported as `memory`", None, Some("memory"));
    }
    if !has_function {
        sink.push(Rule::NoFunctions, "the plugin exports no `pabi_fn_*` function", None, None);
    }
    if state_exports.len() == 1 {
        let (have, missing) = if state_exports.contains("pabi_state_save") {
            ("pabi_state_save", "pabi_state_load")
        } else {
            ("pabi_state_load", "pabi_state_save")
        };
        sink.push(Rule::StatePair, format!("`{have}` is exported without `{missing}`"), None, Some(have));
    }
}

fn check_metadata_against_module(module: &ModuleInfo, meta: &Metadata, sink: &mut Sink) {
    let exported: BTreeSet<&str> = module
        .exports
        .iter()
        .filter_map(|e| e.name.strip_prefix(FN_EXPORT_PREFIX))
        .filter(|name| is_valid_function_name(name))
        .collect();
    if exported.is_empty() {
        return; // EXP-8 reports it; every listed function is then missing.
    }
    let declared: BTreeSet<&str> = meta.functions.iter().map(|f| f.name.as_str()).collect();
    for missing in exported.difference(&declared) {
        sink.push(
            Rule::MetadataFunctions,
            format!("`pabi_fn_{missing}` is exported but not listed in the metadata"),
            None,
            Some(missing),
        );
    }
    for extra in declared.difference(&exported) {
        sink.push(
            Rule::MetadataFunctions,
            format!("the metadata lists `{extra}`, but `pabi_fn_{extra}` is not exported"),
            None,
            Some(extra),
        );
    }
}

/// `MOD-7`: a NaN-producing instruction in a plugin that declares a
/// deterministic function.
fn check_float_use(module: &ModuleInfo, meta: &Metadata, sink: &mut Sink) {
    if let Some((func, offset)) = module.first_float_function {
        let deterministic: Vec<&str> =
            meta.functions.iter().filter(|f| f.deterministic).map(|f| f.name.as_str()).collect();
        let name = module.function_names.get(&func).map_or_else(|| format!("function {func}"), |n| format!("`{n}`"));
        sink.push(
            Rule::FloatInDeterministic,
            format!(
                "{name} uses a NaN-producing float or SIMD instruction, and {} declared deterministic; NaN bit patterns differ between engines",
                deterministic.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ") + if deterministic.len() == 1 { " is" } else { " are" }
            ),
            Some(offset),
            Some(&name),
        );
    }
}
