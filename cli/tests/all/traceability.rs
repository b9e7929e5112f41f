//! Traceability between the spec and the code.
//!
//! - Every clause ID is defined once in `spec/abi.md`, as
//!   `<a id="area-n"></a>**[AREA-N]**`, and every link to a clause in the
//!   spec's documents lands on its anchor.
//! - Every MUST / MUST NOT clause is cited by at least one check (a validator
//!   rule, a conformance check or a host-conformance case) or carries an
//!   `(untestable: <reason>)` mark.
//! - No file of the tree cites an ID the spec does not define: Rust code and
//!   comments, the Node host, the PDKs, fixtures, snapshots and docs.
//! - `spec/coverage.md` (clause → checks) is current; `BLESS=1` rewrites it.
//! - Every byte-level example in the spec is a fixture file, identical, and
//!   means what the spec says.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// A normative clause of the spec.
#[derive(Debug)]
struct Clause {
    id: String,
    text: String,
    must: bool,
    untestable: Option<String>,
}

/// Clause definitions: a paragraph or bullet starting with `**[ID]**`.
fn clauses() -> Vec<Clause> {
    let text = std::fs::read_to_string(root().join("spec/abi.md")).expect("spec/abi.md exists");
    let mut out: Vec<Clause> = Vec::new();
    let mut current: Option<Clause> = None;
    for line in text.lines() {
        if let Some((id, body)) = pabi_abi::clause_definition(line) {
            out.extend(current.take());
            current = Some(Clause { id: id.to_string(), text: body.trim().to_string(), must: false, untestable: None });
            continue;
        }
        let ends_paragraph = line.trim().is_empty() || line.starts_with('#') || line.trim_start().starts_with("- ");
        match &mut current {
            Some(_) if ends_paragraph => out.extend(current.take()),
            Some(clause) => {
                clause.text.push(' ');
                clause.text.push_str(line.trim());
            }
            None => {}
        }
    }
    out.extend(current);
    for clause in &mut out {
        clause.must = clause.text.contains("MUST");
        if let Some((_, reason)) = clause.text.split_once("(untestable:") {
            clause.untestable = Some(reason.split(')').next().unwrap_or_default().trim().to_string());
        }
    }
    out
}

/// Every check and the clauses it cites.
fn checks() -> BTreeMap<String, BTreeSet<String>> {
    let mut checks: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for rule in pabi_validator::Rule::ALL {
        checks.entry(format!("validator rule {} ({:?})", rule.id(), rule)).or_default().insert(rule.id().to_string());
    }
    for check in pabi_conform::Check::ALL {
        let set = checks.entry(format!("conformance check {}", check.id())).or_default();
        set.extend(check.clauses().iter().map(|c| c.to_string()));
    }
    for (case, clauses) in host_conformance_cases() {
        checks.entry(format!("host case {case}")).or_default().extend(clauses);
    }
    checks
}

/// `fixtures/host-conformance/*.json`: each case file's `clauses`.
fn host_conformance_cases() -> Vec<(String, Vec<String>)> {
    let dir = root().join("fixtures/host-conformance");
    let Ok(entries) = std::fs::read_dir(&dir) else { return Vec::new() };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let case: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let clauses = case["clauses"].as_array().into_iter().flatten().filter_map(|c| c.as_str().map(String::from));
        out.push((name, clauses.collect()));
    }
    out.sort();
    out
}

/// How a failing conformance check is reported, after the table; the sizes
/// are the conformance crate's own.
fn conform_reports() -> String {
    use pabi_conform::reproducer::{INLINE_BYTES, INLINE_TABLE_BYTES};
    let max_line = pabi_conform::report::MAX_LINE_CHARS;
    format!(
        "\nA conformance check that fails reports the shrunk failing input and a `pabi run` command that replays \
         it. An input or configuration of up to {INLINE_BYTES} bytes is given inline as hex, and a host-call table \
         (the conversation of the `host-calls` check, or a test vector's table) of up to {INLINE_TABLE_BYTES} bytes \
         of JSON is quoted; a longer one is written to a file of `pabi conform --report-dir` (by default a new \
         temporary folder, made only then), and the report gives its size, its first bytes and the file, so that \
         no line of it is longer than {max_line} characters. The `vectors` check reports how many vectors ran.\n\
         \n\
         ## What the `explore` check explores\n\
         \n\
         The `explore` check verifies the property of `status` (every call returns a defined status and never \
         traps) on inputs chosen by coverage, as a coverage-guided fuzzer chooses them. It makes an instrumented \
         copy of the plugin: a probe at the entry of every *block* sets that block's bit in an exported mutable \
         `i64` global named `{prefix}<k>` (bit `b` of global `k` is block `64k + b`; the name does not start with \
         the reserved `pabi_`, `EXP-2`, and other exports are allowed, `EXP-9`). A block starts at the start of \
         every structured sequence (a function body; the body of a `block`, `loop` or `try_table`; both arms of an \
         `if`, a missing `else` included) and after every nested `block`, `loop`, `if` or `try_table` (where it \
         ends or is branched out of) and every conditional branch (`br_if`, `br_on_null`, `br_on_non_null`: its \
         fall-through). The copy keeps the plugin's exports, metadata and name section, passes the validator, and \
         is used for guidance only: the plugin under test runs unchanged, and every failure is confirmed on it \
         and minimised there (the shortest failing prefix, then chunks removed while it still fails) before it \
         is reported; a failure the plugin does not repeat (the probes cost time and fuel) is noted, not \
         reported. The host reads the bits after each call, and before it drops an instance that trapped, so a \
         trapping call's blocks count; those of a `pabi_init` that traps while re-instantiating do not.\n\
         \n\
         Per plugin function, within `--cases` calls: the seeds are the function's corpus \
         (`--corpus DIR`: `DIR/<plugin>/<function>/<sha256>`, in file-name order), the empty input, inputs as long as the small \
         constants the code compares against (a length check; at most 16) and a quarter \
         of the budget (at most 64) of generated inputs; then, every other call, another generated input (up to half \
         the budget in all), and otherwise a mutant of an input that reached new blocks (bit and \
         byte flips, inserted, deleted and duplicated ranges, splices of two entries, interesting integers, \
         ASCII-digit and JSON-token edits, lengths around powers of two, and tokens of the plugin's dictionary: \
         the constants its code compares against and the strings of its data segments), and each new entry is \
         continued by every byte the code compares against (a magic number checked byte by byte). Inputs that \
         reach new blocks are written to the corpus, so a CI that keeps the folder explores further each run. \
         The report gives the blocks reached in total, per plugin function and per wasm function (names from the \
         name section); `--coverage-report FILE` writes an lcov tracefile of every block reached and missed, whose \
         line numbers are the blocks' byte offsets in the module (DWARF line tables are not read); \
         `--min-coverage PCT` fails the check below PCT percent of the blocks.\n",
        prefix = pabi_conform::coverage::COUNTER_PREFIX,
    )
}

/// What each conformance check explores, after the reports: its line of
/// `pabi conform --help`, then the space of inputs and host behaviour the
/// generators cover, with the conformance crate's own sizes.
fn conform_explores() -> String {
    use pabi_conform::inputs::{boundary_sizes, MAX_INPUT, MAX_INPUT_WITH_HOST_CALLS, SLOW_ANSWER};
    let mut out =
        String::from("\n## What the conformance checks explore\n\n| check | clauses | explores |\n|---|---|---|\n");
    for check in pabi_conform::Check::ALL {
        let clauses: Vec<&str> = check.clauses().iter().map(|c| c.id()).collect();
        out += &format!("| `{}` | {} | {} |\n", check.id(), clauses.join(", "), check.summary());
    }
    let sizes = boundary_sizes(4096).iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
    out += &format!(
        "\nInputs are shaped by the function's declared input media type (`META-4`): `application/json` and \
         `application/…+json` get JSON documents (nested up to 100,000 levels, a few hundred elements, edge numbers \
         such as `1e309` and `9007199254740993`, escapes, surrogate pairs and lone surrogates, duplicate and \
         non-ASCII keys) and a tenth that are almost JSON (cut short, a trailing comma, single quotes); `text/*` \
         gets UTF-8 text with edge characters (NUL, every line end, a byte-order mark, combining marks, characters \
         of two to four bytes, joiners, direction marks, non-characters, U+10FFFF); anything else gets bytes. A \
         quarter of the inputs are of the other shapes, invalid UTF-8 included, since a client may send anything. \
         Every shape also comes at the boundary sizes: 0, 1, one either side of every power of two and of 64 KiB, \
         up to the input cap of the run (`pabi conform --max-input`, {MAX_INPUT} bytes by default; {} bytes for \
         a plugin that makes host calls), e.g. {sizes} up to 4 KiB. A failing input is shrunk by proptest, then \
         cut to its shortest failing prefix and then by removing halves, quarters and so on while it still \
         fails.\n\n\
         The `host-calls` check plays every legal application (`CALL-4` … `CALL-7`, `LIM-14`). Per call, a script \
         of answers: replies of the declared reply media type at every boundary size from empty up to the reply \
         cap of `LIM-14` (1 MiB) and one byte past it (`E_LIMIT`), failures with messages up to the message cap and \
         past it (the host cuts them), and at times one answer that takes {} ms; on a host offering every \
         declared call and on one offering only the required ones (`E_ABSENT`). Held across one to four calls of \
         one instance: the application down (every host call fails), and every optional call absent; after the \
         state ends, the next call must give a defined status and, for a deterministic function, what a fresh \
         instance gives. And one call with every reply taking an eighth of the deadline: `TIMEOUT` is allowed \
         only when the application's own time reached the deadline.\n",
        MAX_INPUT_WITH_HOST_CALLS,
        SLOW_ANSWER.as_millis()
    );
    out
}

fn coverage_markdown(clauses: &[Clause], checks: &BTreeMap<String, BTreeSet<String>>) -> String {
    let mut out = String::from(
        "# Clause coverage\n\nGenerated by `BLESS=1 cargo test -p pabi-cli traceability`; CI fails when it is stale.\n\
         Each normative clause of `abi.md`, and the checks that verify it.\n\n\
         | clause | kind | checked by |\n|---|---|---|\n",
    );
    let (mut covered, mut untestable) = (0, 0);
    for clause in clauses {
        let by: Vec<&str> =
            checks.iter().filter(|(_, ids)| ids.contains(&clause.id)).map(|(name, _)| name.as_str()).collect();
        let kind = if clause.must { "MUST" } else { "SHOULD/MAY" };
        let cell = match (&clause.untestable, by.is_empty()) {
            (_, false) => {
                covered += 1;
                by.join("<br>")
            }
            (Some(reason), true) => {
                untestable += 1;
                format!("untestable: {reason}")
            }
            (None, true) => "—".to_string(),
        };
        out.push_str(&format!("| {} | {kind} | {cell} |\n", clause.id));
    }
    out.push_str(&format!(
        "\n{} clauses: {covered} checked, {untestable} marked untestable, {} neither (none of them MUST).\n",
        clauses.len(),
        clauses.len() - covered - untestable
    ));
    out.push_str(&conform_reports());
    out.push_str(&conform_explores());
    out
}

/// Every clause-ID-shaped word of `text` (`MEM-3`, `HOST-10`): an area
/// prefix of the spec, a dash and a number, standing alone as a word.
fn cited_ids(text: &str) -> Vec<(usize, String)> {
    let bytes = text.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut out = Vec::new();
    for area in pabi_abi::Clause::ALL.iter().map(|c| c.area().prefix()).collect::<BTreeSet<_>>() {
        let needle = format!("{area}-");
        for (at, _) in text.match_indices(&needle) {
            if at > 0 && word(bytes[at - 1]) {
                continue;
            }
            let digits = text[at + needle.len()..].bytes().take_while(u8::is_ascii_digit).count();
            let end = at + needle.len() + digits;
            if digits == 0 || bytes.get(end).is_some_and(|b| word(*b)) {
                continue;
            }
            let line = text[..at].lines().count().max(1);
            out.push((line, text[at..end].to_string()));
        }
    }
    out
}

/// The files of the tree, as git knows them (tracked and new, not ignored).
fn tree_files() -> Vec<PathBuf> {
    let output = std::process::Command::new("git")
        .args(["ls-files", "--cached", "--others", "--exclude-standard", "-z"])
        .current_dir(root())
        .output()
        .expect("git runs");
    assert!(output.status.success(), "git ls-files failed: {}", String::from_utf8_lossy(&output.stderr));
    output
        .stdout
        .split(|b| *b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| root().join(String::from_utf8_lossy(p).as_ref()))
        .filter(|p| p.is_file())
        .collect()
}

/// IDs cited anywhere in the tree that the spec does not define, as
/// `path:line: ID`. The spec's own clause list is the reference. A line
/// that holds a made-up ID on purpose (a negative test) says so with the
/// marker [`NOT_A_CLAUSE`].
/// Ends a line that cites a made-up ID on purpose.
const NOT_A_CLAUSE: &str = concat!("not a ", "clause ID on purpose");

fn undefined_citations(files: &[PathBuf], defined: &BTreeSet<String>) -> Vec<String> {
    let mut out = Vec::new();
    for path in files {
        // Binary files (compiled fixtures, images) cite nothing.
        let Ok(text) = std::fs::read_to_string(path) else { continue };
        let marked: BTreeSet<usize> =
            text.lines().enumerate().filter(|(_, l)| l.contains(NOT_A_CLAUSE)).map(|(i, _)| i + 1).collect();
        for (line, id) in cited_ids(&text) {
            if !defined.contains(&id) && !marked.contains(&line) {
                let shown = path.strip_prefix(root()).unwrap_or(path);
                out.push(format!("{}:{line}: {id}", shown.display()));
            }
        }
    }
    out
}

#[test]
fn every_cited_id_in_the_tree_exists() {
    let defined: BTreeSet<String> = pabi_abi::Clause::ALL.iter().map(|c| c.id().to_string()).collect();
    let files = tree_files();
    assert!(files.iter().any(|f| f.ends_with("spec/abi.md")), "the tree walk missed the spec");
    let undefined = undefined_citations(&files, &defined);
    assert!(undefined.is_empty(), "IDs that are not clauses of spec/abi.md:\n{}", undefined.join("\n"));
}

/// The scan finds a made-up ID in each kind of file it must cover, and
/// nothing in words that only look similar.
#[test]
fn the_scan_catches_made_up_ids() {
    let defined: BTreeSet<String> = ["MEM-3".to_string()].into();
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<PathBuf> = [
        ("a.rs", "// the host checks ranges (MEM-3, MEM-99)\n"), // not a clause ID on purpose
        ("b.js", "throw invalid('HOST-77', 'x');\n"),            // not a clause ID on purpose
        ("c.json", "{\"clauses\": [\"LIFE-12\"]}\n"),            // not a clause ID on purpose
        ("d.md", "XMEM-4, MEM-3a, sha-256, MEM-3 and nothing else\n"),
        ("e.rs", "assert!(parse(\"MEM-98\").is_err()); // not a clause ID on purpose\n"),
    ]
    .into_iter()
    .map(|(name, text)| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    })
    .collect();
    let found: Vec<String> =
        undefined_citations(&files, &defined).iter().map(|f| f.rsplit(": ").next().unwrap().to_string()).collect();
    assert_eq!(found, ["MEM-99", "HOST-77", "LIFE-12"]); // not a clause ID on purpose
}

#[test]
fn traceability() {
    let clauses = clauses();
    assert!(clauses.len() >= 60, "only {} clauses in spec/abi.md", clauses.len());
    let mut defined = BTreeSet::new();
    for clause in &clauses {
        assert!(defined.insert(clause.id.clone()), "{} is defined twice", clause.id);
    }
    let checks = checks();
    let cited: BTreeSet<&String> = checks.values().flatten().collect();
    let undefined: Vec<_> = cited.iter().filter(|id| !defined.contains(**id)).collect();
    assert!(undefined.is_empty(), "code cites clauses the spec does not define: {undefined:?}");
    let unchecked: Vec<&str> = clauses
        .iter()
        .filter(|c| c.must && c.untestable.is_none() && !cited.contains(&c.id))
        .map(|c| c.id.as_str())
        .collect();
    assert!(unchecked.is_empty(), "MUST clauses with no check and no `(untestable: …)` mark: {unchecked:?}");

    let path = root().join("spec/coverage.md");
    let expected = coverage_markdown(&clauses, &checks);
    if std::env::var_os("BLESS").is_some() {
        std::fs::write(&path, &expected).unwrap();
    }
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(current == expected, "spec/coverage.md is stale: run `BLESS=1 cargo test -p pabi-cli traceability`");
}

/// The links to a clause in `text`: (link text, the anchor it points to).
/// `own` is true for `abi.md` itself, whose links are `(#mem-3)`.
fn clause_links(text: &str, own: bool) -> Vec<(String, String)> {
    let prefix = if own { "](#" } else { "](abi.md#" };
    let mut out = Vec::new();
    for (at, _) in text.match_indices(prefix) {
        let Some(open) = text[..at].rfind('[') else { continue };
        let rest = &text[at + prefix.len()..];
        let Some(close) = rest.find(')') else { continue };
        let anchor = &rest[..close];
        // A section heading's anchor (`#imp-imports`) is not a clause's.
        let clause_shaped = anchor
            .split_once('-')
            .is_some_and(|(area, n)| !area.is_empty() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if clause_shaped {
            out.push((text[open + 1..at].to_string(), anchor.to_string()));
        }
    }
    out
}

/// Every link to a clause in the spec's documents, `[MEM-3](abi.md#mem-3)`
/// or, in `abi.md`, `[MEM-3](#mem-3)`, lands on a clause's anchor and
/// names that clause.
#[test]
fn clause_links_land_on_their_clause() {
    let mut checked = 0;
    let mut wrong = Vec::new();
    for entry in std::fs::read_dir(root().join("spec")).unwrap().flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "md") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let own = path.ends_with("abi.md");
        for (label, anchor) in clause_links(&text, own) {
            checked += 1;
            match pabi_abi::Clause::ALL.iter().find(|c| c.anchor() == anchor) {
                Some(clause) if clause.id() == label => {}
                _ => wrong.push(format!("{}: [{label}](…#{anchor})", path.display())),
            }
        }
    }
    assert!(checked >= 500, "only {checked} clause links in spec/");
    assert!(wrong.is_empty(), "links that do not land on the clause they name:\n{}", wrong.join("\n"));
}

#[test]
fn the_link_scan_finds_clause_links_only() {
    let text = "see [MEM-3](#mem-3), [MEM-4](#mem-3) and [IMP](#imp-imports), not `MEM-3`";
    assert_eq!(
        clause_links(text, true),
        [("MEM-3".to_string(), "mem-3".to_string()), ("MEM-4".to_string(), "mem-3".to_string())]
    );
    assert!(clause_links("[MEM-3](abi.md#mem-3)", true).is_empty());
    assert_eq!(clause_links("[MEM-3](abi.md#mem-3)", false).len(), 1);
}

/// Fenced blocks whose info string names a fixture: ```` ```hex fixture=PATH ````.
fn spec_examples() -> Vec<(String, String, PathBuf)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(root().join("spec")).unwrap().flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "md") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let mut lines = text.lines();
        while let Some(line) = lines.next() {
            let Some(info) = line.trim().strip_prefix("```") else { continue };
            let Some((lang, fixture)) = info.split_once(" fixture=") else { continue };
            let body: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
            out.push((lang.trim().to_string(), body.join("\n") + "\n", root().join(fixture.trim())));
        }
    }
    out
}

#[test]
fn spec_byte_examples_are_checked_fixtures() {
    let examples = spec_examples();
    assert!(!examples.is_empty(), "the spec has no byte-level example marked with fixture=");
    for (lang, body, fixture) in examples {
        let file = std::fs::read_to_string(&fixture).unwrap_or_else(|e| panic!("{}: {e}", fixture.display()));
        assert_eq!(body.trim_end(), file.trim_end(), "{} differs from the spec's block", fixture.display());
        match lang.as_str() {
            "hex" => {
                let hex: String = body.split_whitespace().collect();
                let bytes = pabi_testkit::hex::decode_hex(&hex).expect("the example is hex");
                // A custom section standing alone: check it by wrapping it in
                // an empty module and reading it back as metadata.
                let mut module = b"\0asm\x01\0\0\0".to_vec();
                module.extend_from_slice(&bytes);
                let sections = pabi_abi::find_custom_sections(&module, "pabi").expect("decodes");
                assert_eq!(sections.len(), 1, "{}: not one `pabi` section", fixture.display());
                assert_eq!(sections[0].section.end, module.len(), "{}: trailing bytes", fixture.display());
                pabi_abi::Metadata::parse(&module[sections[0].data.clone()]).expect("the example metadata is valid");
            }
            "wat" => {
                let wasm = wat::parse_str(&body).expect("the example compiles");
                let report = pabi_validator::validate(&wasm);
                assert!(!report.has_errors(), "{}: {:#?}", fixture.display(), report.findings);
            }
            // A plugin's metadata as the spec shows it to a port (examples.md).
            "json" => {
                pabi_abi::Metadata::parse(body.as_bytes())
                    .unwrap_or_else(|e| panic!("{}: not valid metadata: {e}", fixture.display()));
            }
            other => panic!("unknown example language {other}"),
        }
    }
}
