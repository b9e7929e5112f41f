use std::path::PathBuf;

use anyhow::bail;
use pabi_validator::{Report, Rule};
use serde_json::json;

use super::read_input;

/// Show what a plugin declares and contains: metadata, functions, imports,
/// capabilities, feature profile and a size breakdown by section.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  pabi inspect plugin.wasm
  pabi inspect --format json plugin.wasm | jq .functions

Exit codes:
  0  the plugin was inspected (even if it is invalid; run `pabi validate`)
  2  usage or I/O error, or the file is not a WebAssembly module")]
pub struct Opts {
    /// The plugin file (`-` for standard input).
    file: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = InspectFormat::Human)]
    format: InspectFormat,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum InspectFormat {
    Human,
    Json,
}

impl Opts {
    pub fn run(self) -> anyhow::Result<u8> {
        let wasm = read_input(&self.file)?;
        let report = pabi_validator::validate(&wasm);
        let Some(module) = &report.module else {
            let reason = report.findings.first().map_or("it cannot be decoded", |f| f.message.as_str());
            bail!("`{}` is not a pabi-readable WebAssembly module: {reason}", self.file.display());
        };
        let value = inspection(&report, module, wasm.len());
        match self.format {
            InspectFormat::Json => println!("{value:#}"),
            InspectFormat::Human => print!("{}", human(&self.file.display().to_string(), &value)),
        }
        Ok(0)
    }
}

fn inspection(report: &Report, module: &pabi_validator::ModuleInfo, total: usize) -> serde_json::Value {
    let meta = report.metadata.as_ref();
    let functions: Vec<_> = report
        .functions()
        .into_iter()
        .map(|name| {
            let declared = meta.and_then(|m| m.function(&name));
            json!({
                "name": name,
                "summary": declared.and_then(|f| f.summary.clone()),
                "input": declared.and_then(|f| f.input.clone()),
                "output": declared.and_then(|f| f.output.clone()),
                "deterministic": declared.is_some_and(|f| f.deterministic),
            })
        })
        .collect();
    let imports: Vec<_> = module.imports.iter().map(|i| format!("{}.{}", i.module, i.name)).collect();
    let lifecycle: Vec<_> = module
        .exports
        .iter()
        .filter(|e| pabi_abi::EXPORTS.iter().any(|spec| spec.name == e.name))
        .map(|e| e.name.clone())
        .collect();
    let sections: Vec<_> = module.sections.iter().map(|s| json!({ "section": s.name, "bytes": s.size })).collect();
    let fits_profile = !report.breaks(Rule::FeatureOutsideProfile);
    json!({
        "name": meta.map(|m| m.name.clone()),
        "version": meta.map(|m| m.version.clone()),
        "abi": meta.map(|m| m.abi.clone()),
        "profile": meta.map(|m| m.profile.name()),
        "description": meta.and_then(|m| m.description.clone()),
        "capabilities": meta.map(|m| m.capabilities.clone()).unwrap_or_default(),
        "functions": functions,
        "lifecycle": lifecycle,
        "imports": imports,
        "features": { "profile": pabi_abi::PROFILE_NAME, "fits": fits_profile },
        "valid": !report.has_errors(),
        "size": { "total": total, "sections": sections },
    })
}

fn human(path: &str, v: &serde_json::Value) -> String {
    let text = |key: &str| v[key].as_str().unwrap_or("-").to_string();
    let mut out = format!(
        "{path}\n  plugin:       {} {}\n  abi:          {}\n  profile:      {}\n",
        text("name"),
        text("version"),
        text("abi"),
        text("profile")
    );
    let caps: Vec<_> = v["capabilities"].as_array().into_iter().flatten().filter_map(|c| c.as_str()).collect();
    out += &format!("  capabilities: {}\n", if caps.is_empty() { "none".to_string() } else { caps.join(", ") });
    out += &format!(
        "  features:     {} ({})\n",
        v["features"]["profile"].as_str().unwrap_or_default(),
        if v["features"]["fits"] == true { "fits" } else { "does NOT fit" }
    );
    out += &format!(
        "  valid:        {}\n  functions:\n",
        if v["valid"] == true { "yes" } else { "no (run `pabi validate`)" }
    );
    for f in v["functions"].as_array().into_iter().flatten() {
        let det = if f["deterministic"] == true { " [deterministic]" } else { "" };
        out += &format!(
            "    {:<16} {} -> {}{det}\n",
            f["name"].as_str().unwrap_or_default(),
            f["input"].as_str().unwrap_or("application/octet-stream"),
            f["output"].as_str().unwrap_or("application/octet-stream"),
        );
        if let Some(summary) = f["summary"].as_str() {
            out += &format!("      {summary}\n");
        }
    }
    let list = |key: &str| -> Vec<String> {
        v[key].as_array().into_iter().flatten().filter_map(|s| s.as_str().map(str::to_string)).collect()
    };
    out += &format!("  lifecycle:    {}\n", list("lifecycle").join(", "));
    out += "  imports:\n";
    for import in list("imports") {
        out += &format!("    {import}\n");
    }
    out += &format!("  size:         {} bytes\n", v["size"]["total"]);
    for s in v["size"]["sections"].as_array().into_iter().flatten() {
        out += &format!("    {:<24} {:>10}\n", s["section"].as_str().unwrap_or_default(), s["bytes"]);
    }
    out
}
