use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::bail;
use pabi_validator::{PluginShape, Report, Rule};
use serde::Serialize;

use super::{default_max_module_bytes, read_plugin_or_fail};
use crate::{exit, out, outln};

/// Show what a plugin declares and contains: metadata, functions, imports,
/// capabilities, feature profile and a size breakdown by section.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  pabi inspect plugin.wasm
  pabi inspect --format json plugin.wasm | jq .functions

Exit codes:
  0  the plugin was inspected (even if it is invalid; run `pabi validate`)
  2  usage or I/O error, or the file is not a WebAssembly module, or it is
     larger than the spec's compile budget of 32 MiB and not read
     (MODULE_LIMIT)")]
pub struct Opts {
    /// The plugin file (`-` for standard input).
    file: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = InspectFormat::Human)]
    format: InspectFormat,
}

/// The output formats of `pabi inspect`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum InspectFormat {
    /// An aligned summary.
    Human,
    /// The same fields as one JSON object.
    Json,
}

impl Opts {
    pub fn run(self) -> anyhow::Result<u8> {
        let wasm = read_plugin_or_fail(&self.file, default_max_module_bytes(), "")?;
        let report = pabi_validator::validate(&wasm);
        let Some(shape) = &report.shape else {
            let reason = report.findings.first().map_or("it cannot be decoded", |f| f.message.as_str());
            bail!("`{}` is not a pabi-readable WebAssembly module: {reason}", self.file.display());
        };
        let inspection = Inspection::new(&report, shape, wasm.len());
        match self.format {
            InspectFormat::Json => outln!("{:#}", serde_json::to_value(&inspection)?),
            InspectFormat::Human => out!("{}", inspection.human(&self.file.display().to_string())),
        }
        Ok(exit::OK)
    }
}

/// What `pabi inspect` shows, in both formats. Metadata fields are `None`
/// when the plugin has no readable metadata: nothing is guessed.
#[derive(Debug, Serialize)]
struct Inspection {
    name: Option<String>,
    version: Option<String>,
    abi: Option<String>,
    profile: Option<&'static str>,
    description: Option<String>,
    capabilities: Vec<String>,
    functions: Vec<FunctionInfo>,
    lifecycle: Vec<String>,
    imports: Vec<String>,
    features: Features,
    valid: bool,
    foreign_abi: Option<&'static str>,
    size: Size,
}

#[derive(Debug, Serialize)]
struct FunctionInfo {
    name: String,
    summary: Option<String>,
    input: Option<String>,
    output: Option<String>,
    deterministic: bool,
}

#[derive(Debug, Serialize)]
struct Features {
    profile: &'static str,
    fits: bool,
}

#[derive(Debug, Serialize)]
struct Size {
    total: usize,
    sections: Vec<SectionInfo>,
}

#[derive(Debug, Serialize)]
struct SectionInfo {
    section: String,
    bytes: usize,
}

impl Inspection {
    fn new(report: &Report, shape: &PluginShape, total: usize) -> Self {
        let meta = report.metadata.as_ref();
        let functions = shape
            .functions
            .iter()
            .map(|name| {
                let declared = meta.and_then(|m| m.function(name));
                FunctionInfo {
                    name: name.clone(),
                    summary: declared.and_then(|f| f.summary.clone()),
                    input: declared.and_then(|f| f.input.clone()),
                    output: declared.and_then(|f| f.output.clone()),
                    deterministic: declared.is_some_and(|f| f.deterministic),
                }
            })
            .collect();
        Inspection {
            name: meta.map(|m| m.name.clone()),
            version: meta.map(|m| m.version.clone()),
            abi: meta.map(|m| m.abi.to_string()),
            profile: meta.map(|m| m.profile.name()),
            description: meta.and_then(|m| m.description.clone()),
            capabilities: meta.map(|m| m.capabilities.iter().map(ToString::to_string).collect()).unwrap_or_default(),
            functions,
            lifecycle: shape
                .exports
                .iter()
                .filter(|e| pabi_abi::EXPORTS.iter().any(|spec| spec.name == e.name))
                .map(|e| e.name.clone())
                .collect(),
            imports: shape.imports.iter().map(|i| format!("{}.{}", i.module, i.name)).collect(),
            features: Features { profile: pabi_abi::PROFILE_NAME, fits: !report.breaks(Rule::FeatureOutsideProfile) },
            valid: !report.has_errors(),
            foreign_abi: report.foreign_abi.map(|f| f.id()),
            size: Size {
                total,
                sections: shape
                    .sections
                    .iter()
                    .map(|s| SectionInfo { section: s.name.clone(), bytes: s.size })
                    .collect(),
            },
        }
    }

    fn human(&self, path: &str) -> String {
        let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        let mut out = format!("{path}\n");
        if self.name.is_none() {
            out += "  metadata:     none (no readable `pabi` section)\n";
        } else {
            let _ = writeln!(out, "  plugin:       {} {}", or_dash(&self.name), or_dash(&self.version));
            let _ = writeln!(out, "  abi:          {}", or_dash(&self.abi));
            let _ = writeln!(out, "  profile:      {}", self.profile.unwrap_or("-"));
            let caps = if self.capabilities.is_empty() { "none".into() } else { self.capabilities.join(", ") };
            let _ = writeln!(out, "  capabilities: {caps}");
        }
        if let Some(foreign) = self.foreign_abi {
            let _ = writeln!(out, "  built for:    {foreign} (not pabi)");
        }
        let fits = if self.features.fits { "fits" } else { "does NOT fit" };
        let _ = writeln!(out, "  features:     {} ({fits})", self.features.profile);
        let _ = writeln!(out, "  valid:        {}", if self.valid { "yes" } else { "no (run `pabi validate`)" });
        if self.functions.is_empty() {
            out += "  functions:    none\n";
        } else {
            out += "  functions:\n";
        }
        for f in &self.functions {
            let det = if f.deterministic { " [deterministic]" } else { "" };
            // Media types are shown only as declared; a plugin that declares
            // none gets no made-up default.
            let types = match (&f.input, &f.output) {
                (None, None) => String::new(),
                (input, output) => format!(" {} -> {}", or_dash(input), or_dash(output)),
            };
            let line = format!("    {:<16}{types}{det}", f.name);
            let _ = writeln!(out, "{}", line.trim_end());
            if let Some(summary) = &f.summary {
                // Free text from the plugin: escaped before a terminal sees
                // it (`SEC-3`).
                let _ = writeln!(out, "      {}", pabi_abi::text::escape_controls(summary));
            }
        }
        if !self.lifecycle.is_empty() {
            let _ = writeln!(out, "  lifecycle:    {}", self.lifecycle.join(", "));
        }
        if self.imports.is_empty() {
            out += "  imports:      none\n";
        } else {
            out += "  imports:\n";
            for import in &self.imports {
                let _ = writeln!(out, "    {import}");
            }
        }
        let _ = writeln!(out, "  size:         {} bytes", self.size.total);
        for s in &self.size.sections {
            let _ = writeln!(out, "    {:<24} {:>10}", s.section, s.bytes);
        }
        out
    }
}
