//! The order of `VER-8`: an unreadable envelope is one finding citing the
//! clause of step 2 it breaks; the findings of step 4 come in its order,
//! so that a host, which cites the first, cites the clause every host does.

use pabi_validator::{validate, validate_with, Options};

fn plugin(imports: &str, body: &str, metadata: &str) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(module
            {imports}
            (memory (export "memory") 1)
            (func (export "pabi_fn_f") (param i32) (result i32) {body})
            (func $g (param i32) (result i32) (i32.const 0))
            (@custom "pabi" "{}"))"#,
        metadata.replace('"', "\\\"")
    ))
    .unwrap()
}

fn meta(abi: &str, extra: &str) -> String {
    format!(
        r#"{{"abi":"{abi}","name":"p","version":"1.0.0","profile":"wasi","functions":[{{"name":"f"}}],"capabilities":[]{extra}}}"#
    )
}

const OK: &str = "(i32.const 0)";
const TAIL_CALL: &str = "(return_call $g (local.get 0))";
const HOST_CALL: &str = r#"(import "pabi" "host_call" (func (param i32 i32 i32 i32) (result i32)))"#;

/// Every error finding's rule ID, in the order the report gives them.
fn errors(wasm: &[u8]) -> Vec<&'static str> {
    validate(wasm).errors().map(|f| f.rule.id()).collect()
}

#[test]
fn an_unreadable_envelope_is_one_finding_citing_its_clause() {
    // The unknown import would be an IMP-2 finding at a lower offset.
    let unknown = r#"(import "pabi" "input_size" (func (result i32)))"#;
    let no_abi = r#"{"name":"p","version":"1.0.0","profile":"core","functions":[{"name":"f"}],"capabilities":[]}"#;
    assert_eq!(errors(&plugin(unknown, OK, no_abi)), ["VER-1"]);
    assert_eq!(errors(&plugin(unknown, OK, &meta("1.0", "").replace(r#""1.0""#, "1.0"))), ["VER-1"]);
    assert_eq!(errors(&plugin(unknown, OK, &meta("1.700000", ""))), ["VER-1"]);
    assert_eq!(errors(&plugin(unknown, OK, &format!("[{}]", meta("1.0", "")))), ["META-2"]);
    let large = format!(r#"{{"abi":"2.0","x-pad":"{}"}}"#, "a".repeat(66 * 1024));
    assert_eq!(errors(&plugin(unknown, OK, &large)), ["META-2"]);
}

#[test]
fn the_since_of_what_is_used_comes_before_the_feature_profile() {
    assert_eq!(errors(&plugin(HOST_CALL, TAIL_CALL, &meta("1.0", ""))), ["IMP-4", "MOD-2"]);
    let field = r#","host_calls":[{"name":"kv.get","required":false}]"#;
    assert_eq!(errors(&plugin("", TAIL_CALL, &meta("1.0", field))), ["VER-9", "MOD-2"]);
    assert_eq!(errors(&plugin(HOST_CALL, OK, &meta("1.0", field))), ["IMP-4", "VER-9"]);
}

#[test]
fn an_import_that_wasi_4_refuses_is_refused_for_that_before_its_type() {
    let mistyped = r#"(import "wasi_snapshot_preview1" "path_open" (func (param i32) (result i32)))"#;
    assert_eq!(errors(&plugin(mistyped, OK, &meta("1.0", ""))), ["WASI-4", "WASI-11"]);
}

#[test]
fn an_imp_2_finding_names_both_versions_as_the_host_offers_them() {
    let unknown = r#"(import "pabi" "input_size" (func (result i32)))"#;
    let wasm = plugin(unknown, OK, &meta("1.0", ""));
    let message = |options: &Options| validate_with(&wasm, options).errors().next().unwrap().message.clone();
    let own = message(&Options::default());
    assert!(own.contains("declares ABI 1.0") && own.contains("this validator implements ABI 1.1"), "{own}");
    let host = message(&Options { host_abi: Some(pabi_abi::AbiVersion::new(1, 0)), ..Options::default() });
    assert!(host.contains("declares ABI 1.0") && host.contains("this host implements ABI 1.0"), "{host}");
    assert!(!host.contains("1.1"), "{host}");
    // Every such import is named, not the first three.
    let many: String = (0..5).map(|i| format!(r#"(import "pabi" "size_{i}" (func (result i32)))"#)).collect();
    let wasm = plugin(&many, OK, &meta("1.0", ""));
    let message = validate(&wasm).errors().next().unwrap().message.clone();
    assert!((0..5).all(|i| message.contains(&format!("`pabi.size_{i}`"))), "{message}");
}
