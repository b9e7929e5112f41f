//! Each broken fixture yields exactly the clause it breaks; good ones none.

use pabi_fixtures::{mutants, wat_folder};
use pabi_validator::validate;

use crate::rule_ids;

#[test]
fn good_fixtures_have_no_findings() {
    for fixture in wat_folder("good").unwrap() {
        let report = validate(&fixture.wasm);
        assert!(report.findings.is_empty(), "{}: {:#?}", fixture.name, report.findings);
        assert!(report.metadata.is_some(), "{}", fixture.name);
    }
}

#[test]
fn each_mutant_breaks_exactly_its_clause() {
    let mutants = mutants().unwrap();
    assert!(mutants.len() >= 30, "only {} mutants", mutants.len());
    for mutant in mutants {
        let report = validate(&mutant.wasm);
        assert_eq!(rule_ids(&report), [mutant.clause], "mutant {}: {:#?}", mutant.name, report.findings);
    }
}

#[test]
fn each_hand_written_case_breaks_exactly_its_clauses() {
    let cases = wat_folder("invalid").unwrap();
    assert!(!cases.is_empty());
    for case in cases {
        assert!(!case.expect.is_empty(), "{} has no `;; expect:` line", case.name);
        let report = validate(&case.wasm);
        assert_eq!(rule_ids(&report), case.expect, "{}: {:#?}", case.name, report.findings);
    }
}

#[test]
fn allowing_a_warning_drops_only_that_warning() {
    let case =
        pabi_fixtures::compile_wat(&pabi_fixtures::fixtures_dir().join("invalid/float-deterministic.wat")).unwrap();
    let options =
        pabi_validator::Options { allow: vec![pabi_validator::Rule::FloatInDeterministic], ..Default::default() };
    assert!(pabi_validator::validate_with(&case.wasm, &options).findings.is_empty());
    let options =
        pabi_validator::Options { allow: vec![pabi_validator::Rule::MissingNameSection], ..Default::default() };
    assert_eq!(rule_ids(&pabi_validator::validate_with(&case.wasm, &options)), ["MOD-7"]);
}

#[test]
fn every_error_rule_has_a_fixture() {
    let mut covered: Vec<&str> = mutants().unwrap().iter().map(|m| m.clause).collect();
    let hand: Vec<String> = wat_folder("invalid").unwrap().into_iter().flat_map(|c| c.expect).collect();
    covered.extend(hand.iter().map(String::as_str));
    for rule in pabi_validator::Rule::ALL {
        assert!(covered.contains(&rule.id()), "no fixture breaks {}", rule.id());
    }
}

/// Dynamic misbehaviours must pass the static validator, so that only the
/// conformance check that cites their clause catches them.
#[test]
fn dynamically_broken_fixtures_pass_static_validation() {
    let mut fixtures = wat_folder("broken").unwrap();
    fixtures.extend(wat_folder("conformance").unwrap());
    assert!(fixtures.len() >= 8);
    for fixture in fixtures {
        let report = validate(&fixture.wasm);
        assert!(!report.has_errors(), "{}: {:#?}", fixture.name, report.findings);
    }
}
