//! Results of a conformance run, and their human, JSON and JUnit forms.

use std::fmt::Write as _;
use std::time::Duration;

use std::path::Path;

use serde::Serialize;

use pabi_abi::Clause;
use pabi_testkit::hex::encode_hex;

use crate::coverage::{CoverageReport, FunctionCoverage};
use crate::reproducer::{Payload, Reproducer};
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

/// A failed check: what failed, on which (shrunk) input, and how to replay
/// it. `#[non_exhaustive]`: start from [`Failure::new`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Failure {
    pub message: String,
    pub function: Option<String>,
    /// A command that reproduces the failure, with the minimal failing
    /// input (shrunk by proptest) and any host-call table. Boxed: it is
    /// large, and most outcomes have none.
    pub reproducer: Option<Box<Reproducer>>,
}

impl Failure {
    pub fn new(message: impl Into<String>) -> Self {
        Failure { message: message.into(), function: None, reproducer: None }
    }

    /// The failing bytes: the input of the call, or the configuration when
    /// the failure was in `pabi_init`.
    pub fn input(&self) -> Option<&Payload> {
        let reproducer = self.reproducer.as_ref()?;
        reproducer.input.as_ref().or(reproducer.config.as_ref())
    }

    /// The host-call table of the reproducer, when it is in a file.
    pub fn host_calls_file(&self) -> Option<&Path> {
        self.reproducer.as_ref()?.host_calls.as_ref()?.file()
    }
}

/// The JSON of a failure: the fields of
/// `spec/schemas/conform-report.schema.json`, the input inline (hex) when
/// short and by its file when not.
impl Serialize for Failure {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Json<'a> {
            message: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            function: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            input_hex: Option<String>,
            #[serde(skip_serializing_if = "Option::is_none")]
            input_len: Option<usize>,
            #[serde(skip_serializing_if = "Option::is_none")]
            input_file: Option<&'a Path>,
            #[serde(skip_serializing_if = "Option::is_none")]
            host_calls_file: Option<&'a Path>,
            #[serde(skip_serializing_if = "Option::is_none")]
            reproducer: Option<&'a Reproducer>,
        }
        let input = self.input();
        Json {
            message: &self.message,
            function: self.function.as_deref(),
            input_hex: input.and_then(Payload::inline_hex),
            input_len: input.map(Payload::len),
            input_file: input.and_then(Payload::file),
            host_calls_file: self.host_calls_file(),
            reproducer: self.reproducer.as_deref(),
        }
        .serialize(serializer)
    }
}

#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct CheckResult {
    pub check: Check,
    pub clauses: &'static [Clause],
    #[serde(flatten)]
    pub outcome: CheckOutcome,
    /// How many of the plugin's test vectors ran (the `vectors` check;
    /// after a failure, up to and with the failing one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vectors: Option<u32>,
    /// The blocks the `explore` check reached. Boxed: most checks have
    /// none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coverage: Option<Box<crate::coverage::CoverageReport>>,
    #[serde(rename = "millis")]
    #[serde(serialize_with = "as_millis")]
    pub duration: Duration,
}

fn as_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

impl CheckResult {
    pub fn new(check: Check, outcome: CheckOutcome, duration: Duration) -> Self {
        CheckResult { check, clauses: check.clauses(), outcome, vectors: None, coverage: None, duration }
    }

    pub fn failed(&self) -> bool {
        matches!(self.outcome, CheckOutcome::Fail(_))
    }
}

/// The conformance of one plugin.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
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

/// The longest line [`human`] writes, in characters: a longer one is cut
/// with a note. Long inputs and tables go to files, so only a plugin's own
/// text (a message, a name) can reach it.
pub const MAX_LINE_CHARS: usize = 500;

/// Plain text, one line per check, details under failures; no line is
/// longer than [`MAX_LINE_CHARS`].
pub fn human(report: &PluginReport) -> String {
    let mut out = format!("{} (seed {}, {} cases)\n", report.path, report.seed, report.cases);
    for r in &report.checks {
        let clauses = r.clauses.iter().map(|c| c.id()).collect::<Vec<_>>().join(", ");
        match &r.outcome {
            CheckOutcome::Pass => {
                let vectors = r.vectors.map(|n| format!("{n} vector{}, ", plural(n))).unwrap_or_default();
                writeln!(out, "  pass  {:<14} [{clauses}] {vectors}{} ms", r.check, r.duration.as_millis())
            }
            CheckOutcome::Skip { reason } => writeln!(out, "  skip  {:<14} [{clauses}] {reason}", r.check),
            CheckOutcome::Fail(f) => failure_lines(&mut out, r, &clauses, f),
        }
        .expect("writing to a String");
        if let Some(coverage) = &r.coverage {
            for line in coverage_lines(coverage) {
                out += &format!("        {line}\n");
            }
        }
    }
    let verdict = if report.conformant { "conformant" } else { "NOT conformant" };
    out += &format!("{}: {verdict} (replay with --seed {})\n", report.path, report.seed);
    out.lines().map(|line| clip(line) + "\n").collect()
}

/// How many of the least covered wasm functions a report names.
const LEAST_COVERED: usize = 5;

/// The coverage of the `explore` check in a few lines: the total, each
/// plugin function's blocks, the functions with the most blocks never
/// reached, and the corpus. A module can have thousands of functions; the
/// JSON report and the lcov file list them all.
pub fn coverage_lines(c: &CoverageReport) -> Vec<String> {
    let mut lines = vec![format!(
        "coverage: {}/{} blocks ({:.1}%), {}/{} wasm functions entered",
        c.blocks_reached,
        c.blocks_total,
        c.percent(),
        c.functions_reached(),
        c.functions.len()
    )];
    let by_function: Vec<String> = c
        .plugin_functions
        .iter()
        .map(|f| format!("{} {} blocks in {} calls", f.function, f.blocks_reached, f.cases))
        .collect();
    if !by_function.is_empty() {
        lines.push(format!("explored: {}", by_function.join(", ")));
    }
    let mut least: Vec<&FunctionCoverage> = c.functions.iter().filter(|f| f.blocks_reached < f.blocks_total).collect();
    least.sort_by_key(|f| std::cmp::Reverse(f.blocks_total - f.blocks_reached));
    let least: Vec<String> = least
        .iter()
        .take(LEAST_COVERED)
        .map(|f| format!("{} {}/{}", pabi_abi::text::escape_controls(&f.name), f.blocks_reached, f.blocks_total))
        .collect();
    if !least.is_empty() {
        lines.push(format!("most blocks missed: {}", least.join(", ")));
    }
    for f in c.plugin_functions.iter().filter_map(|f| f.unconfirmed.as_ref().map(|m| (&f.function, m))) {
        let first = f.1.lines().next().unwrap_or_default();
        lines.push(format!("not confirmed on the plugin ({}): {}", f.0, pabi_abi::text::escape_controls(first)));
    }
    if let Some(corpus) = &c.corpus {
        let mut line = format!("corpus: {} ({} read, {} new)", corpus.dir.display(), corpus.read, corpus.written);
        if let Some(error) = &corpus.write_error {
            line += &format!("; not written: {error}");
        }
        lines.push(line);
    }
    lines
}

/// The lines of a failed check.
fn failure_lines(out: &mut String, r: &CheckResult, clauses: &str, f: &Failure) -> std::fmt::Result {
    // A failure quotes the plugin's message and output
    // (`SEC-3`): each line escaped, and the lines after the
    // first (a backtrace) marked, so none can pass for a line
    // of the report.
    let mut lines = f.message.lines().map(pabi_abi::text::escape_controls);
    let first = lines.next().unwrap_or_default();
    writeln!(out, "  FAIL  {:<14} [{clauses}] {first}", r.check)?;
    for line in lines {
        writeln!(out, "        | {line}")?;
    }
    if let Some(function) = &f.function {
        writeln!(out, "        function: {function}")?;
    }
    if let Some(n) = r.vectors {
        writeln!(out, "        vectors run: {n}, the last failed")?;
    }
    match f.input() {
        Some(Payload::Inline(bytes)) => writeln!(out, "        minimal input (hex): {}", encode_hex(bytes))?,
        Some(Payload::File { path, len, prefix }) => writeln!(
            out,
            "        minimal input: {len} bytes, starting {}…, in {}",
            encode_hex(prefix),
            path.display()
        )?,
        None => {}
    }
    if let Some(path) = f.host_calls_file() {
        writeln!(out, "        host-call table: {}", path.display())?;
    }
    if let Some(cmd) = &f.reproducer {
        writeln!(out, "        reproduce: {cmd}")?;
    }
    Ok(())
}

fn plural(n: u32) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// `line` cut to [`MAX_LINE_CHARS`], saying how much was cut.
fn clip(line: &str) -> String {
    let total = line.chars().count();
    if total <= MAX_LINE_CHARS {
        return line.to_string();
    }
    // Room for the note: at most 40 characters.
    let kept = MAX_LINE_CHARS - 40;
    let head: String = line.chars().take(kept).collect();
    format!("{head}… ({} more characters)", total - kept)
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
        let mut properties = format!("<property name=\"seed\" value=\"{}\"/>", report.seed);
        if let Some(c) = report.checks.iter().find_map(|c| c.coverage.as_deref()) {
            properties += &format!(
                "<property name=\"coverage.blocks_reached\" value=\"{}\"/><property name=\"coverage.blocks_total\" \
                 value=\"{}\"/><property name=\"coverage.percent\" value=\"{:.1}\"/>",
                c.blocks_reached,
                c.blocks_total,
                c.percent()
            );
        }
        out += &format!("    <properties>{properties}</properties>\n");
        for c in &report.checks {
            out += &format!(
                "    <testcase classname=\"{}\" name=\"{} [{}]\" time=\"{:.3}\">",
                xml(&report.path),
                c.check,
                c.clauses.iter().map(|c| c.id()).collect::<Vec<_>>().join(","),
                c.duration.as_secs_f64()
            );
            let coverage = c.coverage.as_deref().map(|c| coverage_lines(c).join("\n"));
            match &c.outcome {
                CheckOutcome::Pass => {
                    if let Some(n) = c.vectors {
                        out += &format!("<system-out>{n} vector{} ran</system-out>", plural(n));
                    }
                }
                CheckOutcome::Skip { reason } => out += &format!("<skipped message=\"{}\"/>", xml(reason)),
                CheckOutcome::Fail(f) => {
                    // The attribute has the first line (a parser turns its
                    // line breaks into spaces); the body the whole message.
                    let first = f.message.lines().next().unwrap_or_default();
                    let body = [
                        Some(f.message.clone()),
                        f.function.as_ref().map(|v| format!("function: {v}")),
                        c.vectors.map(|n| format!("vectors run: {n}, the last failed")),
                        f.input().map(|input| match input {
                            Payload::Inline(bytes) => format!("input: {}", encode_hex(bytes)),
                            Payload::File { path, len, .. } => format!("input: {len} bytes in {}", path.display()),
                        }),
                        f.host_calls_file().map(|path| format!("host-call table: {}", path.display())),
                        f.reproducer.as_ref().map(|v| format!("reproduce: {v}")),
                    ]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join("\n");
                    out += &format!("<failure message=\"{}\">{}</failure>", xml(first), xml(&body));
                }
            }
            if let Some(coverage) = coverage {
                out += &format!("<system-out>{}</system-out>", xml(&coverage));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(message: &str) -> PluginReport {
        let outcome = CheckOutcome::Fail(Failure::new(message));
        PluginReport::new("p.wasm".into(), 1, 1, vec![CheckResult::new(Check::Status, outcome, Duration::ZERO)])
    }

    /// A message's lines (a backtrace) stay lines, marked so that text of
    /// the plugin's cannot pass for a line of the report (`SEC-3`).
    #[test]
    fn a_message_keeps_its_lines_and_cannot_forge_one() {
        let text = human(&failed("trapped\nwasm backtrace:\n  0: f\nreproduce: rm -rf \u{1b}[2J"));
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[1].ends_with("] trapped"), "{text}");
        assert_eq!(
            lines[2..5],
            ["        | wasm backtrace:", "        |   0: f", "        | reproduce: rm -rf \\u{1b}[2J"]
        );
        assert!(!text.lines().any(|line| line.trim_start().starts_with("reproduce:")), "{text}");
    }

    #[test]
    fn no_line_passes_the_limit() {
        let text = human(&failed(&"x".repeat(100_000)));
        assert!(text.lines().all(|line| line.chars().count() <= MAX_LINE_CHARS), "{text}");
        let cut = text.lines().nth(1).unwrap();
        assert!(cut.starts_with("  FAIL  status ") && cut.ends_with(" more characters)"), "{cut}");
    }
}
