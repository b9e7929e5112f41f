//! The public view of a plugin's shape: what it imports, exports and
//! contains, in pabi's own terms, so that embedders do not depend on the
//! wasm decoder the validator happens to use.

use serde::Serialize;
use wasmparser::{ExternalKind, TypeRef};

use crate::module::ModuleInfo;

/// The shape of a decoded plugin.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct PluginShape {
    /// Every import, in module order.
    pub imports: Vec<Import>,
    /// Every export, in module order.
    pub exports: Vec<Export>,
    /// The first memory the module defines or imports (MOD-4 allows one).
    pub memory: Option<MemoryShape>,
    /// The tables the module defines, in module order.
    pub tables: Vec<TableShape>,
    /// The plugin function names, from the `pabi_fn_*` exports, in module
    /// order.
    pub functions: Vec<String>,
    /// Every known section with its size in bytes, in module order; custom
    /// sections are named `custom "NAME"`.
    pub sections: Vec<SectionSize>,
    /// The custom sections alone, by their own names.
    pub custom_sections: Vec<SectionSize>,
    /// Total bytes of the data segments.
    pub data_bytes: u64,
}

impl PluginShape {
    /// The imports from `module`, e.g. `pabi`.
    pub fn imports_from<'a>(&'a self, module: &'a str) -> impl Iterator<Item = &'a Import> + 'a {
        self.imports.iter().filter(move |i| i.module == module)
    }
}

/// One import.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Import {
    pub module: String,
    pub name: String,
    pub kind: ExternKind,
}

/// One export.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Export {
    pub name: String,
    pub kind: ExternKind,
}

/// What an import or export is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum ExternKind {
    Function,
    Table,
    Memory,
    Global,
    Tag,
}

/// A table's limits, in elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct TableShape {
    pub initial_elements: u64,
    pub maximum_elements: Option<u64>,
}

/// A memory's size in 64 KiB pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct MemoryShape {
    pub initial_pages: u64,
    pub maximum_pages: Option<u64>,
}

/// A section and its size in bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SectionSize {
    pub name: String,
    pub size: usize,
}

impl From<ExternalKind> for ExternKind {
    fn from(kind: ExternalKind) -> Self {
        match kind {
            ExternalKind::Func | ExternalKind::FuncExact => ExternKind::Function,
            ExternalKind::Table => ExternKind::Table,
            ExternalKind::Memory => ExternKind::Memory,
            ExternalKind::Global => ExternKind::Global,
            ExternalKind::Tag => ExternKind::Tag,
        }
    }
}

fn import_kind(ty: &TypeRef) -> ExternKind {
    match ty {
        TypeRef::Func(_) | TypeRef::FuncExact(_) => ExternKind::Function,
        TypeRef::Table(_) => ExternKind::Table,
        TypeRef::Memory(_) => ExternKind::Memory,
        TypeRef::Global(_) => ExternKind::Global,
        TypeRef::Tag(_) => ExternKind::Tag,
    }
}

impl From<&ModuleInfo> for PluginShape {
    fn from(module: &ModuleInfo) -> Self {
        PluginShape {
            imports: module
                .imports
                .iter()
                .map(|i| Import { module: i.module.clone(), name: i.name.clone(), kind: import_kind(&i.ty) })
                .collect(),
            exports: module.exports.iter().map(|e| Export { name: e.name.clone(), kind: e.kind.into() }).collect(),
            memory: module
                .memories
                .first()
                .map(|(m, _)| MemoryShape { initial_pages: m.initial, maximum_pages: m.maximum }),
            tables: module
                .tables
                .iter()
                .map(|&(initial, maximum)| TableShape { initial_elements: initial, maximum_elements: maximum })
                .collect(),
            functions: module
                .exports
                .iter()
                .filter_map(|e| e.name.strip_prefix(pabi_abi::FN_EXPORT_PREFIX))
                .map(str::to_string)
                .collect(),
            sections: module.sections.clone(),
            custom_sections: module
                .customs
                .iter()
                .map(|c| SectionSize { name: c.name.clone(), size: c.size })
                .collect(),
            data_bytes: module.data_bytes,
        }
    }
}
