//! Static validation of pabi plugins, without running them.
//!
//! Every [`Finding`] names the [`Rule`] it breaks, and every rule's ID is the
//! spec clause it enforces.
//!
//! ```
//! let wasm = wat::parse_str(r#"(module (memory (export "memory") 1))"#).unwrap();
//! let report = pabi_validator::validate(&wasm);
//! assert!(report.has_errors());
//! let ids: Vec<_> = report.findings.iter().map(|f| f.rule.id()).collect();
//! assert!(ids.contains(&"META-1"));
//! ```

mod checks;
mod foreign;
mod module;
pub mod render;
mod rules;
mod shape;
mod since;
mod size;

use pabi_abi::{AbiVersion, Metadata};
use serde::Serialize;

pub use foreign::ForeignAbi;
pub use rules::{Rule, Severity};
pub use shape::{Export, ExternKind, Import, MemoryShape, PluginShape, SectionSize, TableShape};
pub use since::newer_than_declared;
pub use size::{code_size, CodeSize};

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

impl Finding {
    pub fn severity(&self) -> Severity {
        self.rule.severity()
    }
}

/// What the validator learned about a plugin: its findings and, where they
/// could be read, its metadata and shape.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub findings: Vec<Finding>,
    pub metadata: Option<Metadata>,
    pub abi: Option<AbiVersion>,
    /// What the plugin imports, exports and contains; `None` when the
    /// module could not be decoded.
    pub shape: Option<PluginShape>,
    /// Set when the module was built for another plugin ABI (Extism, a
    /// WASI command, …); front-ends say so before the findings.
    pub foreign_abi: Option<ForeignAbi>,
}

impl Report {
    pub fn has_errors(&self) -> bool {
        self.errors().next().is_some()
    }

    pub fn errors(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.severity() == Severity::Error)
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.severity() == Severity::Warning)
    }

    /// Whether a finding for `rule` is present.
    pub fn breaks(&self, rule: Rule) -> bool {
        self.findings.iter().any(|f| f.rule == rule)
    }

    /// The plugin function names, from the exports.
    pub fn functions(&self) -> Vec<String> {
        self.shape.as_ref().map(|s| s.functions.clone()).unwrap_or_default()
    }
}

/// Options of a validation run.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Rules whose findings are dropped (`--allow MOD-7`). Only warnings can
    /// be allowed.
    pub allow: Vec<Rule>,
    /// The ABI version of the host the plugin is checked for, when a host
    /// checks it: the newest version a plugin may declare, and the one a
    /// refusal names (`VER-4`, `CALL-9`). `None` checks against
    /// [`pabi_abi::HOST_ABI`], for this validator.
    pub host_abi: Option<AbiVersion>,
}

/// Validates a plugin binary without running it.
pub fn validate(wasm: &[u8]) -> Report {
    validate_with(wasm, &Options::default())
}

/// Validates a plugin binary with options.
pub fn validate_with(wasm: &[u8], options: &Options) -> Report {
    let mut report = checks::run(wasm, options);
    report.findings.retain(|f| f.severity() == Severity::Error || !options.allow.contains(&f.rule));
    // Errors first, each group in the order of `VER-8`'s steps, which the
    // checks give (the envelope, the metadata, the Since of what is used,
    // the module, the imports, the exports), and by offset within a step:
    // a host cites the first error.
    report.findings.sort_by_key(|f| std::cmp::Reverse(f.severity()));
    report
}

/// The JSON shape of one finding, as `pabi validate --format json` prints it.
#[derive(Clone, Debug, Serialize)]
pub struct FindingJson<'a> {
    pub rule: &'static str,
    pub severity: Severity,
    pub message: &'a str,
    pub offset: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<&'a str>,
}

impl<'a> From<&'a Finding> for FindingJson<'a> {
    fn from(f: &'a Finding) -> Self {
        FindingJson {
            rule: f.rule.id(),
            severity: f.severity(),
            message: &f.message,
            offset: f.offset,
            subject: f.subject.as_deref(),
        }
    }
}
