//! The JSON and SARIF outputs validate against their schemas.

use std::path::{Path, PathBuf};

use pabi_validator::render::{json, sarif, FileReport};
use pabi_validator::validate;

fn reports() -> Vec<(String, pabi_validator::Report)> {
    let mut out: Vec<_> = pabi_fixtures::mutants()
        .unwrap()
        .into_iter()
        .map(|m| (format!("{}.wasm", m.name), validate(&m.wasm)))
        .collect();
    out.push(("core.wasm".into(), validate(&pabi_fixtures::good("core").unwrap())));
    out.push(("garbage.wasm".into(), validate(b"\0asm\x01\0\0\0\x01\xff")));
    out
}

fn load_schema(path: &Path) -> jsonschema::Validator {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let schema: serde_json::Value = serde_json::from_str(&text).unwrap();
    jsonschema::validator_for(&schema).unwrap()
}

fn assert_valid(validator: &jsonschema::Validator, value: &serde_json::Value) {
    let errors: Vec<String> = validator.iter_errors(value).map(|e| format!("{}: {e}", e.instance_path())).collect();
    assert!(errors.is_empty(), "{errors:#?}");
}

#[test]
fn json_report_matches_its_schema() {
    let reports = reports();
    let files: Vec<_> = reports.iter().map(|(path, report)| FileReport { path, report }).collect();
    let value = json(&files, false);
    let schema =
        load_schema(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../spec/schemas/validate-report.schema.json"));
    assert_valid(&schema, &value);
    assert_eq!(value["files"].as_array().unwrap().len(), files.len());
    // The schema is strict enough to notice a broken report.
    let mut broken = value.clone();
    broken["files"][0]["findings"] = serde_json::json!([{ "rule": "nope" }]);
    assert!(!schema.is_valid(&broken));
}

/// The SARIF 2.1.0 schema shipped inside the `serde-sarif` crate.
fn sarif_schema_path() -> PathBuf {
    let out = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON");
    let package = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "serde-sarif")
        .expect("serde-sarif is a dev-dependency");
    Path::new(package["manifest_path"].as_str().unwrap()).parent().unwrap().join("src/schema.json")
}

#[test]
fn sarif_log_matches_the_sarif_2_1_0_schema() {
    let reports = reports();
    let files: Vec<_> = reports.iter().map(|(path, report)| FileReport { path, report }).collect();
    let value = sarif(&files, "0.1.0");
    // The official schema's `language` pattern has a stray `]` that ECMA
    // regexes read as a literal and Rust's regex rejects; escape it.
    let text = std::fs::read_to_string(sarif_schema_path()).unwrap().replace("{2}]?$", "{2}\\\\]?$");
    let schema: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_valid(&jsonschema::validator_for(&schema).unwrap(), &value);
    let results = value["runs"][0]["results"].as_array().unwrap();
    assert!(results.len() >= files.len() - 1);
    // And it parses as SARIF for consumers using the typed model.
    let typed: serde_sarif::sarif::Sarif = serde_json::from_value(value).unwrap();
    assert_eq!(typed.runs.len(), 1);
}
