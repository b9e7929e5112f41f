//! The suite's own conformance: every broken fixture fails the check that
//! cites its clause, every mutant fails statically, and good plugins pass.

use pabi_conform::report::{CheckOutcome, PluginReport};
use pabi_conform::{conform, Options, ReferenceHost};

fn run(name: &str, wasm: &[u8]) -> PluginReport {
    let engine = ReferenceHost::new().expect("the engine starts");
    let mut options = Options::default();
    options.cases = 64;
    conform(&engine, name, wasm, &options, &mut |_| {})
}

fn failing_checks(report: &PluginReport) -> Vec<&str> {
    report.checks.iter().filter(|c| matches!(c.outcome, CheckOutcome::Fail(_))).map(|c| c.check.id()).collect()
}

#[test]
fn each_broken_fixture_fails_exactly_its_own_check() {
    let fixtures = pabi_fixtures::wat_folder("broken").unwrap();
    assert!(fixtures.len() >= 6, "the broken fixtures are missing");
    for fixture in fixtures {
        let report = run(&fixture.name, &fixture.wasm);
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
    let status = report.checks.iter().find(|c| c.check == pabi_conform::Check::Status).unwrap();
    let CheckOutcome::Fail(failure) = &status.outcome else { panic!("status passed") };
    assert_eq!(failure.input_hex.as_deref(), Some(""), "shrunk to the empty input");
    let reproducer = failure.reproducer.as_deref().unwrap();
    assert!(
        reproducer.starts_with("pabi run trap-on-empty.wasm ") && reproducer.ends_with("--input-hex ''"),
        "{reproducer}"
    );
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
    let json = pabi_conform::report::json(&reports);
    let errors: Vec<String> = validator.iter_errors(&json).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    assert!(errors.is_empty(), "{errors:#?}");
    let mut broken = json.clone();
    broken["plugins"][0]["conformant"] = serde_json::json!("yes");
    assert!(!validator.is_valid(&broken), "the schema must reject a bad report");
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
