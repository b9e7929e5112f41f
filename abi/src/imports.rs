use crate::AbiVersion;

/// The module name of every host function (`IMP-1`).
pub const IMPORT_MODULE: &str = "pabi";
/// Prefix of plugin function exports (`EXP-3`).
pub const FN_EXPORT_PREFIX: &str = "pabi_fn_";
/// Export names with this prefix are reserved for the ABI (`EXP-2`).
pub const RESERVED_EXPORT_PREFIX: &str = "pabi_";

/// The value types the ABI's signatures use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValType {
    I32,
}

/// One host function a plugin may import from `pabi`.
#[derive(Clone, Copy, Debug)]
pub struct ImportSpec {
    pub name: &'static str,
    pub params: &'static [ValType],
    pub results: &'static [ValType],
    /// The minor version that introduced it (`VER-5`).
    pub since: AbiVersion,
}

const I32: ValType = ValType::I32;

/// Every host function of every 1.x version, with its Since (`IMP-2`,
/// `IMP-3`, `IMP-4`).
pub const IMPORTS: &[ImportSpec] = &[
    ImportSpec { name: "input_read", params: &[I32, I32, I32], results: &[I32], since: AbiVersion::new(1, 0) },
    ImportSpec { name: "output_write", params: &[I32, I32], results: &[I32], since: AbiVersion::new(1, 0) },
    ImportSpec { name: "error_write", params: &[I32, I32], results: &[I32], since: AbiVersion::new(1, 0) },
    ImportSpec { name: "log", params: &[I32, I32, I32], results: &[I32], since: AbiVersion::new(1, 0) },
    ImportSpec { name: "host_call", params: &[I32, I32, I32, I32], results: &[I32], since: AbiVersion::new(1, 1) },
    ImportSpec { name: "reply_read", params: &[I32, I32, I32], results: &[I32], since: AbiVersion::new(1, 1) },
];

pub fn find_import(name: &str) -> Option<&'static ImportSpec> {
    IMPORTS.iter().find(|spec| spec.name == name)
}

/// A lifecycle export the ABI names (`EXP-5`).
#[derive(Clone, Copy, Debug)]
pub struct ExportSpec {
    pub name: &'static str,
    pub params: &'static [ValType],
    pub results: &'static [ValType],
    /// The ABI version that introduced the export (`VER-9`).
    pub since: AbiVersion,
}

/// Optional lifecycle exports with their exact signatures (`EXP-5`).
pub const EXPORTS: &[ExportSpec] = &[
    ExportSpec { name: "_initialize", params: &[], results: &[], since: AbiVersion::new(1, 0) },
    ExportSpec { name: "pabi_init", params: &[I32], results: &[I32], since: AbiVersion::new(1, 0) },
    ExportSpec { name: "pabi_shutdown", params: &[], results: &[I32], since: AbiVersion::new(1, 0) },
    ExportSpec { name: "pabi_state_save", params: &[], results: &[I32], since: AbiVersion::new(1, 0) },
    ExportSpec { name: "pabi_state_load", params: &[I32], results: &[I32], since: AbiVersion::new(1, 0) },
];

/// Negative codes the host functions return (`ERR-5`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ImportCode {
    /// A cap was reached and the excess dropped.
    Limit,
    /// An argument is out of its range (not a memory range: those abort).
    Invalid,
    /// The function cannot be used in the current phase.
    Unavailable,
    /// A host call's handler failed; the reply holds its message (`CALL-4`).
    Failed,
    /// An optional host call this host does not offer (`CALL-5`).
    Absent,
}

impl ImportCode {
    pub fn code(self) -> i32 {
        match self {
            ImportCode::Limit => -1,
            ImportCode::Invalid => -2,
            ImportCode::Unavailable => -3,
            ImportCode::Failed => -4,
            ImportCode::Absent => -5,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ImportCode::Limit => "E_LIMIT",
            ImportCode::Invalid => "E_INVALID",
            ImportCode::Unavailable => "E_UNAVAILABLE",
            ImportCode::Failed => "E_FAILED",
            ImportCode::Absent => "E_ABSENT",
        }
    }
}
