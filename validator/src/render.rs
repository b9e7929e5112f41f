//! Output formats of `pabi validate`: human (rustc style), JSON and SARIF.

use serde::Serialize;
use serde_json::json;

use crate::{FindingJson, ForeignAbi, Report, Rule, Severity};

/// Version of the JSON report shape; bumped on any incompatible change.
pub const JSON_SCHEMA_VERSION: &str = "pabi-validate/1";

/// One validated file.
#[derive(Debug)]
pub struct FileReport<'a> {
    pub path: &'a str,
    pub report: &'a Report,
}

impl FileReport<'_> {
    /// Valid means no errors, and no warnings when they are denied.
    pub fn valid(&self, deny_warnings: bool) -> bool {
        !(self.report.has_errors() || deny_warnings && self.report.warnings().next().is_some())
    }
}

/// rustc-style diagnostics for one file, then a one-line summary.
pub fn human(file: &FileReport<'_>, deny_warnings: bool) -> String {
    let mut out = String::new();
    if let Some(foreign) = file.report.foreign_abi {
        out.push_str(&format!("note: {foreign}\n  --> {}\n\n", file.path));
    }
    for finding in &file.report.findings {
        let level = finding.severity().name();
        // Messages quote names from the module: plugin-chosen text (`SEC-3`).
        let message = pabi_abi::text::escape_controls(&finding.message);
        out.push_str(&format!("{level}[{}]: {message}\n", finding.rule.id()));
        match finding.offset {
            Some(offset) => out.push_str(&format!("  --> {} @ {offset:#x}\n", file.path)),
            None => out.push_str(&format!("  --> {}\n", file.path)),
        }
        if let Some(subject) = &finding.subject {
            out.push_str(&format!("   = at: {}\n", pabi_abi::text::escape_controls(subject)));
        }
        out.push_str(&format!("   = help: {}; see {}\n\n", finding.rule.title(), finding.rule.spec_anchor()));
    }
    let errors = file.report.errors().count();
    let warnings = file.report.warnings().count();
    let abi = file.report.abi.map_or_else(|| "ABI unknown".to_string(), |v| format!("ABI {v}"));
    let functions = file.report.functions().len();
    if file.valid(deny_warnings) {
        let extra = if warnings > 0 { format!(", {warnings} warning(s)") } else { String::new() };
        out.push_str(&format!("{}: valid ({abi}, {functions} function(s){extra})\n", file.path));
    } else {
        out.push_str(&format!("{}: invalid ({errors} error(s), {warnings} warning(s))\n", file.path));
    }
    out
}

#[derive(Serialize)]
struct FileJson<'a> {
    path: &'a str,
    valid: bool,
    abi: Option<String>,
    foreign_abi: Option<ForeignAbiJson>,
    findings: Vec<FindingJson<'a>>,
}

#[derive(Serialize)]
struct ForeignAbiJson {
    kind: &'static str,
    rule: &'static str,
    message: &'static str,
}

impl From<ForeignAbi> for ForeignAbiJson {
    fn from(foreign: ForeignAbi) -> Self {
        ForeignAbiJson { kind: foreign.id(), rule: foreign.rule().id(), message: foreign.message() }
    }
}

/// The JSON report for all files (`spec/schemas/validate-report.schema.json`).
pub fn json(files: &[FileReport<'_>], deny_warnings: bool) -> serde_json::Value {
    let files: Vec<FileJson<'_>> = files
        .iter()
        .map(|f| FileJson {
            path: f.path,
            valid: f.valid(deny_warnings),
            abi: f.report.abi.map(|v| v.to_string()),
            foreign_abi: f.report.foreign_abi.map(ForeignAbiJson::from),
            findings: f.report.findings.iter().map(FindingJson::from).collect(),
        })
        .collect();
    json!({ "schema": JSON_SCHEMA_VERSION, "files": files })
}

/// A SARIF 2.1.0 log for GitHub code scanning. Binary files have no lines,
/// so locations are byte offsets.
pub fn sarif(files: &[FileReport<'_>], tool_version: &str) -> serde_json::Value {
    let rules: Vec<_> = Rule::ALL
        .iter()
        .map(|rule| {
            json!({
                "id": rule.id(),
                "name": format!("{:?}", rule),
                "shortDescription": { "text": rule.title() },
                "helpUri": format!("https://github.com/pabi-dev/pabi/blob/main/{}", rule.spec_anchor()),
                "defaultConfiguration": { "level": sarif_level(rule.severity()) },
            })
        })
        .collect();
    let mut results = Vec::new();
    for file in files {
        if let Some(foreign) = file.report.foreign_abi {
            results.push(json!({
                "ruleId": foreign.rule().id(),
                "ruleIndex": Rule::ALL.iter().position(|r| *r == foreign.rule()).unwrap_or(0),
                "level": "note",
                "message": { "text": foreign.message() },
                "locations": [{ "physicalLocation": { "artifactLocation": { "uri": file.path } } }],
            }));
        }
        for finding in &file.report.findings {
            let mut location = json!({ "artifactLocation": { "uri": file.path } });
            if let Some(offset) = finding.offset {
                location["region"] = json!({ "byteOffset": offset, "byteLength": 1 });
            }
            results.push(json!({
                "ruleId": finding.rule.id(),
                "ruleIndex": Rule::ALL.iter().position(|r| *r == finding.rule).unwrap_or(0),
                "level": sarif_level(finding.severity()),
                "message": { "text": finding.message },
                "locations": [{ "physicalLocation": location }],
            }));
        }
    }
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": "pabi",
                "version": tool_version,
                "informationUri": "https://github.com/pabi-dev/pabi",
                "rules": rules,
            }},
            "results": results,
        }],
    })
}

fn sarif_level(severity: Severity) -> &'static str {
    match severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    }
}
