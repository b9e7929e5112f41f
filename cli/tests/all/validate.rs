use crate::{exit_code, pabi, write};

#[test]
fn good_fixtures_exit_0() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["core", "wasi", "lifecycle"] {
        write(dir.path(), &format!("{name}.wasm"), &pabi_fixtures::good(name).unwrap());
    }
    let out = pabi(&["validate", "--deny-warnings", dir.path().to_str().unwrap()]);
    assert_eq!(exit_code(&out), 0, "{}", String::from_utf8_lossy(&out.stdout));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.matches(": valid (ABI 1.0").count(), 3, "{stdout}");
}

#[test]
fn each_mutant_exits_1_naming_its_clause() {
    let dir = tempfile::tempdir().unwrap();
    for mutant in pabi_fixtures::mutants().unwrap() {
        let path = write(dir.path(), &format!("{}.wasm", mutant.name), &mutant.wasm);
        let deny = if mutant.clause.starts_with("MOD-5") || mutant.clause.starts_with("MOD-6") {
            "--deny-warnings"
        } else {
            "--format=human"
        };
        let out = pabi(&["validate", deny, &path]);
        assert_eq!(exit_code(&out), 1, "{}", mutant.name);
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert!(stdout.contains(&format!("[{}]", mutant.clause)), "{}: {stdout}", mutant.name);
    }
}

#[test]
fn json_output_names_rules_and_validity() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(dir.path(), "good.wasm", &pabi_fixtures::good("core").unwrap());
    let bad = pabi_fixtures::mutants().unwrap().into_iter().find(|m| m.clause == "IMP-3").unwrap();
    let bad = write(dir.path(), "bad.wasm", &bad.wasm);
    let out = pabi(&["validate", "--format", "json", &good, &bad]);
    assert_eq!(exit_code(&out), 1);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["files"][0]["valid"], true);
    assert_eq!(report["files"][1]["valid"], false);
    assert_eq!(report["files"][1]["findings"][0]["rule"], "IMP-3");
    assert_eq!(report["files"][0]["abi"], "1.0");
}

#[test]
fn usage_and_io_errors_exit_2() {
    let missing = pabi(&["validate", "/nonexistent/plugin.wasm"]);
    assert_eq!(exit_code(&missing), 2);
    let stderr = String::from_utf8(missing.stderr).unwrap();
    assert!(stderr.starts_with("error: failed to read"), "{stderr}");
    assert!(stderr.contains("Caused by:"), "{stderr}");
    assert_eq!(exit_code(&pabi(&["validate"])), 2);
    assert_eq!(exit_code(&pabi(&["validate", "--format", "xml", "x.wasm"])), 2);
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "core.wasm", &pabi_fixtures::good("core").unwrap());
    let allow_error = pabi(&["validate", "--allow", "MOD-3", &path]);
    assert_eq!(exit_code(&allow_error), 2);
    assert!(String::from_utf8_lossy(&allow_error.stderr).contains("only warnings can be allowed"));
}

#[test]
fn help_documents_exit_codes_and_examples() {
    let out = pabi(&["validate", "--help"]);
    assert_eq!(exit_code(&out), 0);
    let help = String::from_utf8(out.stdout).unwrap();
    for needle in ["Examples:", "Exit codes:", "0  every plugin is valid", "2  usage or I/O error"] {
        assert!(help.contains(needle), "missing {needle:?} in:\n{help}");
    }
}

/// Every invalid or malformed module of the spec testsuite: exit 1, never a
/// panic (101) or a signal.
#[test]
fn spec_testsuite_rejects_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let modules = pabi_fixtures::spec_testsuite_rejects();
    for (i, (_, wasm)) in modules.iter().enumerate() {
        write(dir.path(), &format!("{i:05}.wasm"), wasm);
    }
    let out = pabi(&["validate", "--format", "json", dir.path().to_str().unwrap()]);
    assert_eq!(exit_code(&out), 1, "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let files = report["files"].as_array().unwrap();
    assert_eq!(files.len(), modules.len());
    assert!(files.iter().all(|f| f["valid"] == false));
}

#[test]
fn inspect_shows_functions_and_sections() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "lifecycle.wasm", &pabi_fixtures::good("lifecycle").unwrap());
    let out = pabi(&["inspect", "--format", "json", &path]);
    assert_eq!(exit_code(&out), 0);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["name"], "lifecycle-fixture");
    assert_eq!(v["functions"][0]["name"], "get");
    assert_eq!(v["lifecycle"].as_array().unwrap().len(), 5);
    assert!(v["size"]["sections"].as_array().unwrap().iter().any(|s| s["section"] == "custom \"pabi\""));
    let human = pabi(&["inspect", &path]);
    let text = String::from_utf8(human.stdout).unwrap();
    assert!(text.contains("get") && text.contains("pabi.input_read"), "{text}");
    assert_eq!(exit_code(&pabi(&["inspect", &write(dir.path(), "junk.wasm", b"junk")])), 2);
}
