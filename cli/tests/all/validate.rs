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

/// A folder holding a link to itself: each file is validated once, the
/// loop is named, and the walk ends.
#[cfg(unix)]
#[test]
fn a_symlink_loop_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "core.wasm", &pabi_fixtures::good("core").unwrap());
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    write(&dir.path().join("sub"), "wasi.wasm", &pabi_fixtures::good("wasi").unwrap());
    std::os::unix::fs::symlink(dir.path(), dir.path().join("sub/back")).unwrap();
    let out = pabi(&["validate", dir.path().to_str().unwrap()]);
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    assert_eq!(exit_code(&out), 0, "{stdout}");
    assert_eq!(stdout.matches(": valid").count(), 2, "{stdout}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("warning: skipping") && stderr.contains("back"), "{stderr}");
}

fn extism_like() -> Vec<u8> {
    let names = [
        "input_length",
        "input_load_u8",
        "input_load_u64",
        "output_set",
        "alloc",
        "free",
        "length",
        "load_u8",
        "load_u64",
        "store_u8",
        "store_u64",
        "error_set",
    ];
    let imports: String =
        names.iter().map(|n| format!(r#"(import "extism:host/env" "{n}" (func (param i64) (result i64)))"#)).collect();
    wat::parse_str(format!(
        r#"(module {imports}
          (memory (export "memory") 1)
          (func (export "greet") (result i32) (i32.const 0)))"#
    ))
    .unwrap()
}

/// A module built for another plugin ABI: one line saying so first, then
/// the missing metadata, then the imports as one grouped finding.
#[test]
fn a_foreign_plugin_is_named_first() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "extism.wasm", &extism_like());
    let out = pabi(&["validate", &path]);
    assert_eq!(exit_code(&out), 1);
    let stdout = String::from_utf8(out.stdout).unwrap();
    let mut lines = stdout.lines();
    assert!(lines.next().unwrap().starts_with("note: this is an Extism plugin, not a pabi plugin"), "{stdout}");
    let errors: Vec<&str> = stdout.lines().filter(|l| l.starts_with("error[")).collect();
    assert!(errors[0].starts_with("error[META-1]"), "{stdout}");
    let imports: Vec<&&str> = errors.iter().filter(|l| l.starts_with("error[IMP-1]")).collect();
    assert_eq!(imports.len(), 1, "{stdout}");
    assert!(imports[0].contains("12 imports come from module `extism:host/env`"), "{stdout}");
    assert!(imports[0].contains("`extism:host/env.input_length`") && imports[0].contains("and 9 more"), "{stdout}");

    let json = pabi(&["validate", "--format", "json", &path]);
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(report["files"][0]["foreign_abi"]["kind"], "extism");
    let sarif = pabi(&["validate", "--format", "sarif", &path]);
    let sarif: serde_json::Value = serde_json::from_slice(&sarif.stdout).unwrap();
    let first = &sarif["runs"][0]["results"][0];
    assert_eq!((first["level"].as_str(), first["ruleId"].as_str()), (Some("note"), Some("IMP-1")));
}

#[test]
fn a_wasi_command_is_named_first() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = wat::parse_str(
        r#"(module
          (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (func (export "_start")))"#,
    )
    .unwrap();
    let path = write(dir.path(), "command.wasm", &wasm);
    let stdout = String::from_utf8(pabi(&["validate", &path]).stdout).unwrap();
    assert!(stdout.starts_with("note: this is a WASI command, not a pabi plugin"), "{stdout}");
}

/// Symlinks back to parent folders end the walk instead of looping
/// forever; the plugins in the folder are still validated.
#[test]
fn validate_dir_survives_symlinks_to_parent_folders() {
    let dir = tempfile::tempdir().unwrap();
    let inner = dir.path().join("a").join("b");
    std::fs::create_dir_all(&inner).unwrap();
    std::os::unix::fs::symlink(dir.path(), inner.join("to-root")).unwrap();
    std::os::unix::fs::symlink(dir.path().join("a"), inner.join("to-a")).unwrap();
    let wasm = pabi_fixtures::good("core").unwrap();
    std::fs::write(inner.join("core.wasm"), wasm).unwrap();
    let out = crate::pabi(&["validate", dir.path().to_str().unwrap()]);
    assert_eq!(crate::exit_code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("a symlink back to one of its parent folders").count(), 2, "{stderr}");
}

/// A plugin of a future version gets exactly one finding, its version
/// (`VER-8`): not a cascade of schema, feature and import findings.
#[test]
fn a_future_version_gets_one_finding() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["version-1-7-future", "version-2-0", "version-2-0-reshaped", "version-2-0-feature"] {
        let path = pabi_fixtures::fixtures_dir().join("host-conformance").join(format!("{name}.wat"));
        let wasm = pabi_fixtures::compile_wat(&path).unwrap().wasm;
        let file = write(dir.path(), &format!("{name}.wasm"), &wasm);
        let out = pabi(&["validate", "--format", "json", &file]);
        assert_eq!(exit_code(&out), 1, "{name}");
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let rules: Vec<&str> = report["files"][0]["findings"]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: {report}"))
            .iter()
            .map(|f| f["rule"].as_str().unwrap())
            .collect();
        assert_eq!(rules, ["VER-3"], "{name}: {report}");
    }
}

#[test]
fn a_file_past_the_module_size_cap_is_refused_by_its_size() {
    let dir = tempfile::tempdir().unwrap();
    // Sparse, 1 TiB: reading it into memory would fail or take far longer
    // than a test.
    let big = dir.path().join("big.wasm");
    std::fs::File::create(&big).unwrap().set_len(1 << 40).unwrap();
    let out = pabi(&["validate", big.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(exit_code(&out), 2, "{stderr}");
    assert!(stderr.contains("MODULE_LIMIT") && stderr.contains("--max-module-size"), "{stderr}");

    // The cap is the option's: a file of 9 bytes is past `8`, and within `9`.
    let small = write(dir.path(), "small.wasm", b"\0asm\x01\0\0\0\0");
    let capped = pabi(&["validate", "--max-module-size", "8", &small]);
    assert_eq!(exit_code(&capped), 2, "{}", String::from_utf8_lossy(&capped.stderr));
    assert!(String::from_utf8_lossy(&capped.stderr).contains("MODULE_LIMIT"));
    let within = pabi(&["validate", "--max-module-size", "9", &small]);
    assert!(!String::from_utf8_lossy(&within.stderr).contains("MODULE_LIMIT"));
}
