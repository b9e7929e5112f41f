use crate::{exit_code, pabi, write};

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
    assert!(text.contains("  lifecycle:    _initialize"), "{text}");
    assert_eq!(exit_code(&pabi(&["inspect", &write(dir.path(), "junk.wasm", b"junk")])), 2);
}

/// Without metadata nothing is known about media types or the plugin's
/// name, and nothing is made up; the human text and the JSON agree.
#[test]
fn inspect_without_metadata_invents_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = wat::parse_str(
        r#"(module
          (memory (export "memory") 1)
          (func (export "pabi_fn_upper") (param i32) (result i32) (i32.const 0)))"#,
    )
    .unwrap();
    let path = write(dir.path(), "bare.wasm", &wasm);
    let human = pabi(&["inspect", &path]);
    assert_eq!(exit_code(&human), 0);
    let text = String::from_utf8(human.stdout).unwrap();
    assert!(!text.contains("octet-stream") && !text.contains("->"), "{text}");
    assert!(!text.contains("lifecycle:"), "no empty lifecycle line:\n{text}");
    assert!(text.contains("metadata:     none"), "{text}");
    assert!(text.lines().any(|l| l.trim() == "upper"), "{text}");
    let json: serde_json::Value =
        serde_json::from_slice(&pabi(&["inspect", "--format", "json", &path]).stdout).unwrap();
    assert_eq!(json["functions"][0]["input"], serde_json::Value::Null);
    assert_eq!(json["name"], serde_json::Value::Null);
    assert_eq!(json["lifecycle"], serde_json::json!([]));
}
