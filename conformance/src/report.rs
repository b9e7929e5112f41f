//! Results of a conformance run, and their human, JSON and JUnit forms.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use pabi_abi::Clause;

use crate::Check;

/// Version of the JSON report shape (`spec/schemas/conform-report.schema.json`).
pub const JSON_SCHEMA_VERSION: &str = "pabi-conform/1";

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "outcome")]
pub enum CheckOutcome {
    Pass,
    Fail(Failure),
    /// The check does not apply (e.g. no state exports), with the reason.
    Skip {
        reason: String,
    },
}

/// A failed check: what failed, on which (shrunk) input, and how to replay it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Failure {
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    /// The minimal failing input, hex; shrunk by proptest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_hex: Option<String>,
    /// A command that reproduces the failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reproducer: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct CheckResult {
    pub check: Check,
    pub clauses: &'static [Clause],
    #[serde(flatten)]
    pub outcome: CheckOutcome,
    #[serde(rename = "millis")]
    #[serde(serialize_with = "as_millis")]
    pub duration: Duration,
}

fn as_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

impl CheckResult {
    pub fn new(check: Check, outcome: CheckOutcome, duration: Duration) -> Self {
        CheckResult { check, clauses: check.clauses(), outcome, duration }
    }

    pub fn failed(&self) -> bool {
        matches!(self.outcome, CheckOutcome::Fail(_))
    }
}

/// The conformance of one plugin.
#[derive(Clone, Debug, Serialize)]
pub struct PluginReport {
    pub path: String,
    pub conformant: bool,
    pub seed: u64,
    pub cases: u32,
    pub checks: Vec<CheckResult>,
}

impl PluginReport {
    pub fn new(path: String, seed: u64, cases: u32, checks: Vec<CheckResult>) -> Self {
        let conformant = !checks.iter().any(CheckResult::failed);
        PluginReport { path, conformant, seed, cases, checks }
    }
}

/// Plain text, one line per check, details under failures.
pub fn human(report: &PluginReport) -> String {
    let mut out = format!("{} (seed {}, {} cases)\n", report.path, report.seed, report.cases);
    for r in &report.checks {
        let clauses = r.clauses.iter().map(|c| c.id()).collect::<Vec<_>>().join(", ");
        match &r.outcome {
            CheckOutcome::Pass => writeln!(out, "  pass  {:<14} [{clauses}] {} ms", r.check, r.duration.as_millis()),
            CheckOutcome::Skip { reason } => writeln!(out, "  skip  {:<14} [{clauses}] {reason}", r.check),
            CheckOutcome::Fail(f) => {
                // A failure quotes the plugin's message and output (`SEC-3`).
                let message = pabi_abi::text::escape_controls(&f.message);
                let mut text = format!("  FAIL  {:<14} [{clauses}] {message}\n", r.check);
                if let Some(function) = &f.function {
                    text += &format!("        function: {function}\n");
                }
                if let Some(input) = &f.input_hex {
                    let shown = if input.len() > 128 {
                        format!("{}… ({} bytes)", &input[..128], input.len() / 2)
                    } else {
                        input.clone()
                    };
                    text += &format!("        minimal input (hex): {shown}\n");
                }
                if let Some(cmd) = &f.reproducer {
                    text += &format!("        reproduce: {cmd}\n");
                }
                out.push_str(&text);
                Ok(())
            }
        }
        .expect("writing to a String");
    }
    let verdict = if report.conformant { "conformant" } else { "NOT conformant" };
    out += &format!("{}: {verdict} (replay with --seed {})\n", report.path, report.seed);
    out
}

pub fn json(reports: &[PluginReport]) -> serde_json::Value {
    serde_json::json!({ "schema": JSON_SCHEMA_VERSION, "plugins": reports })
}

/// JUnit XML: one test suite per plugin, one test case per check.
pub fn junit(reports: &[PluginReport]) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"pabi conform\">\n");
    for report in reports {
        let failures = report.checks.iter().filter(|c| c.failed()).count();
        let skipped = report.checks.iter().filter(|c| matches!(c.outcome, CheckOutcome::Skip { .. })).count();
        let time: f64 = report.checks.iter().map(|c| c.duration.as_secs_f64()).sum();
        out += &format!(
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" skipped=\"{skipped}\" time=\"{time:.3}\">\n",
            xml(&report.path),
            report.checks.len()
        );
        out += &format!("    <properties><property name=\"seed\" value=\"{}\"/></properties>\n", report.seed);
        for c in &report.checks {
            out += &format!(
                "    <testcase classname=\"{}\" name=\"{} [{}]\" time=\"{:.3}\">",
                xml(&report.path),
                c.check,
                c.clauses.iter().map(|c| c.id()).collect::<Vec<_>>().join(","),
                c.duration.as_secs_f64()
            );
            match &c.outcome {
                CheckOutcome::Pass => {}
                CheckOutcome::Skip { reason } => out += &format!("<skipped message=\"{}\"/>", xml(reason)),
                CheckOutcome::Fail(f) => {
                    let body = [
                        f.function.as_ref().map(|v| format!("function: {v}")),
                        f.input_hex.as_ref().map(|v| format!("input: {v}")),
                        f.reproducer.as_ref().map(|v| format!("reproduce: {v}")),
                    ]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join("\n");
                    out += &format!("<failure message=\"{}\">{}</failure>", xml(&f.message), xml(&body));
                }
            }
            out += "</testcase>\n";
        }
        out += "  </testsuite>\n";
    }
    out + "</testsuites>\n"
}

fn xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\t' | '\r') => out.push_str(&format!("&#x{:x};", c as u32)),
            c => out.push(c),
        }
    }
    out
}
