//! Static validation of pabi plugins (API skeleton; rules land next).

use pabi_abi::{AbiVersion, Metadata};

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Warning,
    Error,
}

/// A rule of the validator; its ID is the spec clause it enforces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Rule {
    /// `MOD-1`: the module decodes and validates.
    Mod1,
    /// `VER-3`: the plugin's ABI version is one this validator implements.
    Ver3,
}

impl Rule {
    pub fn id(self) -> &'static str {
        match self {
            Rule::Mod1 => "MOD-1",
            Rule::Ver3 => "VER-3",
        }
    }
    pub fn severity(self) -> Severity {
        Severity::Error
    }
}

/// One problem found in a plugin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub rule: Rule,
    pub message: String,
    /// Byte offset in the module, where there is one.
    pub offset: Option<usize>,
    /// The import, export or section involved.
    pub subject: Option<String>,
}

/// Everything the validator learned about a plugin.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub findings: Vec<Finding>,
    pub metadata: Option<Metadata>,
    pub abi: Option<AbiVersion>,
}

impl Report {
    pub fn has_errors(&self) -> bool {
        self.findings.iter().any(|f| f.rule.severity() == Severity::Error)
    }
}

/// Validates a plugin binary without running it.
pub fn validate(_wasm: &[u8]) -> Report {
    Report::default()
}
