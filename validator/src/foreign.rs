//! Recognising modules built for another plugin ABI, so that the first thing
//! a user reads is what they have, not one finding per foreign import.

use serde::Serialize;

use crate::module::ModuleInfo;
use crate::Rule;

/// The plugin ABI a module was built for, when it is not pabi.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ForeignAbi {
    /// A component-model binary.
    Component,
    /// An Extism plugin: imports from `extism:host/env` (or older `env`
    /// imports named `extism_*`).
    Extism,
    /// A waPC guest: imports from `wapc`.
    Wapc,
    /// A WASI command: exports `_start`.
    WasiCommand,
}

impl ForeignAbi {
    /// A stable ID, as in the JSON report: `component`, `extism`, `wapc`,
    /// `wasi-command`.
    pub fn id(self) -> &'static str {
        match self {
            ForeignAbi::Component => "component",
            ForeignAbi::Extism => "extism",
            ForeignAbi::Wapc => "wapc",
            ForeignAbi::WasiCommand => "wasi-command",
        }
    }

    /// The clause the module breaks first because of its ABI.
    pub fn rule(self) -> Rule {
        match self {
            ForeignAbi::Component => Rule::InvalidModule,
            ForeignAbi::Extism | ForeignAbi::Wapc => Rule::ForeignImport,
            ForeignAbi::WasiCommand => Rule::CommandExport,
        }
    }

    /// One sentence: what the module is and how it shows.
    pub fn message(self) -> &'static str {
        match self {
            ForeignAbi::Component => {
                "this is a WebAssembly component, not a pabi plugin: pabi plugins are core modules"
            }
            ForeignAbi::Extism => {
                "this is an Extism plugin, not a pabi plugin: it imports Extism host functions, and pabi plugins import from `pabi`"
            }
            ForeignAbi::Wapc => {
                "this is a waPC module, not a pabi plugin: it imports from `wapc`, and pabi plugins import from `pabi`"
            }
            ForeignAbi::WasiCommand => {
                "this is a WASI command, not a pabi plugin: it exports `_start`, and a pabi plugin is a reactor exporting `pabi_fn_*` functions"
            }
        }
    }
}

impl std::fmt::Display for ForeignAbi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

/// The foreign ABI of a core module that has no `pabi` section. A module
/// with one was built for pabi, whatever else it gets wrong.
pub(crate) fn detect(module: &ModuleInfo) -> Option<ForeignAbi> {
    let imports = |test: &dyn Fn(&str, &str) -> bool| module.imports.iter().any(|i| test(&i.module, &i.name));
    if imports(&|module, name| module.starts_with("extism:") || module == "env" && name.starts_with("extism_")) {
        Some(ForeignAbi::Extism)
    } else if imports(&|module, _| module == "wapc") {
        Some(ForeignAbi::Wapc)
    } else if module.exports.iter().any(|e| e.name == "_start") {
        Some(ForeignAbi::WasiCommand)
    } else {
        None
    }
}
