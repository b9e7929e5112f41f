//! The suite's own conformance: every broken fixture fails the check that
//! cites its clause, every mutant fails statically, and good plugins pass.

use pabi_conform::report::{CheckOutcome, Failure, PluginReport};
use pabi_conform::reproducer::Payload;
use pabi_conform::{conform, Check, Options, ReferenceHost};

mod explore;

fn run(name: &str, wasm: &[u8]) -> PluginReport {
    run_with(name, wasm, Options::default())
}

fn run_with(name: &str, wasm: &[u8], mut options: Options) -> PluginReport {
    let engine = ReferenceHost::new().expect("the engine starts");
    options.cases = 64;
    conform(&engine, name, wasm, &options, &mut |_| {})
}

fn failure(report: &PluginReport, check: Check) -> &Failure {
    let result = report.checks.iter().find(|c| c.check == check).unwrap();
    let CheckOutcome::Fail(failure) = &result.outcome else { panic!("{check} did not fail") };
    failure
}

fn failing_checks(report: &PluginReport) -> Vec<&str> {
    report.checks.iter().filter(|c| matches!(c.outcome, CheckOutcome::Fail(_))).map(|c| c.check.id()).collect()
}

#[test]
fn each_broken_fixture_fails_exactly_its_own_check() {
    let fixtures = pabi_fixtures::wat_folder("broken").unwrap();
    assert!(fixtures.len() >= 6, "the broken fixtures are missing");
    for fixture in fixtures {
        // Reproducer files go to one folder, which the snapshot names by a
        // placeholder.
        let dir = tempfile::tempdir().unwrap();
        let report = run_with(&fixture.name, &fixture.wasm, Options::default().with_report_dir(dir.path()));
        assert!(!report.conformant, "{} passed", fixture.name);
        assert_eq!(
            failing_checks(&report),
            fixture.expect,
            "{}:\n{}",
            fixture.name,
            pabi_conform::report::human(&report)
        );
        // Messages may quote random output; the snapshot keeps the rest.
        let mut snapshot = report_json(&report);
        strip(&mut snapshot, "message");
        let snapshot = serde_json::to_string(&snapshot).unwrap().replace(dir.path().to_str().unwrap(), "[report-dir]");
        let snapshot: serde_json::Value = serde_json::from_str(&snapshot).unwrap();
        insta::assert_json_snapshot!(format!("broken-{}", fixture.name), snapshot);
    }
}

#[test]
fn every_error_mutant_fails_the_static_check() {
    let is_error =
        |clause| pabi_validator::Rule::from_id(clause).is_some_and(|r| r.severity() == pabi_validator::Severity::Error);
    let mutants: Vec<_> = pabi_fixtures::mutants().unwrap().into_iter().filter(|m| is_error(m.clause)).collect();
    assert!(mutants.len() >= 20, "only {} mutants", mutants.len());
    for mutant in mutants {
        let report = run(mutant.name, &mutant.wasm);
        assert_eq!(failing_checks(&report), ["static"], "{}", mutant.name);
    }
}

#[test]
fn good_fixtures_are_conformant() {
    for fixture in pabi_fixtures::wat_folder("good").unwrap() {
        let report = run(&fixture.name, &fixture.wasm);
        assert!(report.conformant, "{}", pabi_conform::report::human(&report));
    }
}

#[test]
fn a_failure_names_a_shrunk_input_and_a_reproducer() {
    let fixture = pabi_fixtures::compile_wat(&pabi_fixtures::fixtures_dir().join("broken/trap-on-empty.wat")).unwrap();
    let report = run("trap-on-empty.wasm", &fixture.wasm);
    let failure = failure(&report, Check::Status);
    assert_eq!(failure.input(), Some(&Payload::Inline(Vec::new())), "shrunk to the empty input");
    let reproducer = failure.reproducer.as_ref().unwrap().to_string();
    assert!(
        reproducer.starts_with("pabi run trap-on-empty.wasm ") && reproducer.ends_with("--input-hex ''"),
        "{reproducer}"
    );
}

/// A failing input too long for a terminal is written to a file of the
/// report folder; the report gives its size, its start and the file, and
/// no line of it is longer than `MAX_LINE_CHARS`.
#[test]
fn a_long_failing_input_goes_to_a_file() {
    let fixture = broken("status-200-large-input");
    let dir = tempfile::tempdir().unwrap();
    let report = run_with("dir/large.wasm", &fixture.wasm, Options::default().with_report_dir(dir.path()));
    let failure = failure(&report, Check::Status);
    let Some(Payload::File { path, len, prefix }) = failure.input() else { panic!("inline: {failure:?}") };
    assert!(*len > 5000, "the fixture fails only past 5000 bytes: {len}");
    assert_eq!(path, &dir.path().join("large-status-f.input"));
    let written = std::fs::read(path).unwrap();
    assert_eq!((written.len(), &written[..prefix.len()]), (*len, prefix.as_slice()));
    let reproducer = failure.reproducer.as_ref().unwrap().to_string();
    assert_eq!(reproducer, format!("pabi run dir/large.wasm f --input {}", path.display()));

    let human = pabi_conform::report::human(&report);
    let longest = human.lines().map(|l| l.chars().count()).max().unwrap();
    assert!(longest <= pabi_conform::report::MAX_LINE_CHARS, "a line of {longest} characters:\n{human}");
    assert!(human.contains(&format!("{len} bytes")) && human.contains(&path.display().to_string()), "{human}");

    let json = report_json(&report);
    let status = &json["plugins"][0]["checks"][1];
    assert_eq!(status["input_file"], path.to_str().unwrap(), "{status}");
    assert_eq!(status["input_len"], *len, "{status}");
    assert!(status.get("input_hex").is_none(), "{status}");
    let junit = pabi_conform::report::junit(std::slice::from_ref(&report));
    assert!(junit.contains(&format!("input: {len} bytes in {}", path.display())), "{junit}");
}

/// Without a report folder, the run makes a temporary one, and only when a
/// reproducer needs a file.
#[test]
fn the_default_report_folder_is_made_when_needed() {
    let short = run("status-200", &broken("status-200").wasm);
    assert!(failure(&short, Check::Status).input().is_some_and(|input| input.file().is_none()));
    let long = run("large.wasm", &broken("status-200-large-input").wasm);
    let path = failure(&long, Check::Status).input().and_then(Payload::file).expect("a file").to_path_buf();
    let folder = path.parent().unwrap();
    assert!(path.is_file() && folder.starts_with(std::env::temp_dir()), "{}", path.display());
    std::fs::remove_dir_all(folder).unwrap();
}

/// A failing vector is reproduced with its host-call table: without it,
/// `pabi run` would not offer the required `kv.get` and the replay would
/// fail at load. Its message words the expected and actual output.
#[test]
fn a_failing_vector_reproduces_with_its_host_call_table() {
    let fixture = broken("host-call-traps-on-failure");
    let vectors = pabi_testkit::vectors::VectorFile::parse(
        br#"{"plugin":"p","vectors":[
          {"name":"first","host_calls":{"kv.get":[{"reply":"v"}]},"function":"f","input":{"text":""},"expect":{"output":{"text":""}}},
          {"name":"second","host_calls":{"kv.get":[{"reply":"v"}]},"function":"f","input":{"text":"hi"},"expect":{"output":{"text":"HI"}}},
          {"name":"third","function":"f","input":{"text":""},"expect":{"status":1}}
        ]}"#,
    )
    .unwrap();
    let mut options = Options::default();
    options.vectors = Some(vectors.clone());
    options.only = Some(Check::Vectors);
    let report = run_with("p.wasm", &fixture.wasm, options);
    let result = report.checks.iter().find(|c| c.check == Check::Vectors).unwrap();
    assert_eq!(result.vectors, Some(2), "the second vector fails");
    let failure = failure(&report, Check::Vectors);
    assert_eq!(failure.message, r#"vector `second`: expected output text "HI", got output (empty)"#);
    let reproducer = failure.reproducer.as_ref().unwrap();
    let table = match &reproducer.host_calls {
        Some(Payload::Inline(json)) => {
            pabi_testkit::host_calls::HostCallTable::parse(std::str::from_utf8(json).unwrap())
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(table.unwrap(), vectors.vectors[1].host_calls.clone().unwrap());
    assert!(reproducer
        .to_string()
        .starts_with("pabi run p.wasm f --input-hex '6869' --host-calls FILE, with FILE holding {"));
    let json = report_json(&report);
    assert_eq!(json["plugins"][0]["checks"][0]["vectors"], 2, "{json}");
    assert!(pabi_conform::report::human(&report).contains("vectors run: 2, the last failed"));
}

/// A passing `vectors` check says how many ran, in both forms.
#[test]
fn the_vectors_check_counts_its_vectors() {
    let vectors = pabi_testkit::vectors::VectorFile::parse(
        br#"{"plugin":"core","vectors":[
          {"name":"a","function":"echo","input":{"text":"hi"},"expect":{"output":{"text":"hi"}}},
          {"name":"b","function":"echo","input":{"text":""},"expect":{"output":{"text":""}}}
        ]}"#,
    )
    .unwrap();
    let mut options = Options::default();
    options.vectors = Some(vectors);
    options.only = Some(Check::Vectors);
    let report = run_with("core", &pabi_fixtures::good("core").unwrap(), options);
    assert!(report.conformant, "{}", pabi_conform::report::human(&report));
    assert_eq!(report_json(&report)["plugins"][0]["checks"][0]["vectors"], 2);
    assert!(pabi_conform::report::human(&report).contains("] 2 vectors, "), "{}", pabi_conform::report::human(&report));
}

/// The `host-calls` check words which calls it offered, and a backtrace in
/// its message keeps its lines.
#[test]
fn a_host_call_failure_is_worded_and_keeps_its_backtrace_lines() {
    let report = run("traps.wasm", &broken("host-call-traps-on-failure").wasm);
    let failure = failure(&report, Check::HostCalls);
    assert!(failure.message.starts_with("with every declared host call offered: "), "{}", failure.message);
    let human = pabi_conform::report::human(&report);
    assert!(!human.contains("offered All") && !human.contains("\\n"), "{human}");
    assert!(failure.message.contains("backtrace:\n"), "{}", failure.message);
    assert!(human.lines().any(|line| line.starts_with("        | ") && line.contains("backtrace")), "{human}");
}

#[test]
fn the_same_seed_gives_the_same_report() {
    let fixture = pabi_fixtures::compile_wat(&pabi_fixtures::fixtures_dir().join("broken/status-200.wat")).unwrap();
    assert_eq!(report_json(&run("a", &fixture.wasm)), report_json(&run("a", &fixture.wasm)));
}

#[test]
fn the_json_report_follows_its_schema() {
    let schema_path = pabi_fixtures::fixtures_dir().join("../spec/schemas/conform-report.schema.json");
    let schema: serde_json::Value = serde_json::from_slice(&std::fs::read(schema_path).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
    let mut reports = Vec::new();
    for fixture in pabi_fixtures::wat_folder("broken").unwrap().into_iter().take(3) {
        reports.push(run(&fixture.name, &fixture.wasm));
    }
    reports.push(run("core", &pabi_fixtures::good("core").unwrap()));
    // With the fields of a reproducer file and of a vector count.
    let dir = tempfile::tempdir().unwrap();
    let large = broken("status-200-large-input");
    reports.push(run_with("large", &large.wasm, Options::default().with_report_dir(dir.path())));
    let mut options = Options::default();
    options.vectors = Some(
        pabi_testkit::vectors::VectorFile::parse(
            br#"{"plugin":"p","vectors":[{"name":"a","function":"f","input":{"text":""},"expect":{"status":1}}]}"#,
        )
        .unwrap(),
    );
    reports.push(run_with("vectors", &large.wasm, options));
    // With a corpus and every coverage field.
    let corpus = tempfile::tempdir().unwrap();
    let mut options = Options::default();
    options.corpus = Some(corpus.path().to_path_buf());
    options.only = Some(Check::Explore);
    reports.push(run_with("corpus", &pabi_fixtures::good("core").unwrap(), options));
    let json = pabi_conform::report::json(&reports);
    let text = json.to_string();
    assert!(text.contains("\"input_file\"") && text.contains("\"vectors\":1"), "{text}");
    assert!(text.contains("\"coverage\"") && text.contains("\"written\""), "{text}");
    let errors: Vec<String> = validator.iter_errors(&json).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    assert!(errors.is_empty(), "{errors:#?}");
    let mut broken = json.clone();
    broken["plugins"][0]["conformant"] = serde_json::json!("yes");
    assert!(!validator.is_valid(&broken), "the schema must reject a bad report");
}

pub(crate) fn broken(name: &str) -> pabi_fixtures::Fixture {
    pabi_fixtures::compile_wat(&pabi_fixtures::fixtures_dir().join(format!("broken/{name}.wat"))).unwrap()
}

/// The JSON report without timings, which vary from run to run.
fn report_json(report: &PluginReport) -> serde_json::Value {
    let mut value = pabi_conform::report::json(std::slice::from_ref(report));
    strip(&mut value, "millis");
    value
}

fn strip(value: &mut serde_json::Value, key: &str) {
    match value {
        serde_json::Value::Object(map) => {
            map.remove(key);
            map.values_mut().for_each(|v| strip(v, key));
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(|v| strip(v, key)),
        _ => {}
    }
}
