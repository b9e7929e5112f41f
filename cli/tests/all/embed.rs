use crate::{exit_code, pabi, write};

const META: &str = r#"{"abi":"1.0","name":"renamed","version":"2.0.0","profile":"core","functions":[{"name":"echo"},{"name":"count"}],"capabilities":[]}"#;

#[test]
fn embed_replaces_the_section_and_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let input = pabi_fixtures::good("core").unwrap();
    let path = write(dir.path(), "in.wasm", &input);
    let meta = write(dir.path(), "pabi.json", META.as_bytes());
    let out_path = dir.path().join("out.wasm");
    let out = pabi(&["embed", "--metadata", &meta, &path, "-o", out_path.to_str().unwrap()]);
    assert_eq!(exit_code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let written = std::fs::read(&out_path).unwrap();
    let report = pabi_validator::validate(&written);
    assert!(report.findings.is_empty(), "{:?}", report.findings);
    assert_eq!(report.metadata.unwrap().name, "renamed");
    // The name section survived.
    assert!(pabi_abi::find_custom_sections(&written, "name").unwrap().len() == 1);
}

#[test]
fn embed_refuses_invalid_metadata_and_non_wasm() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = write(dir.path(), "in.wasm", &pabi_fixtures::good("core").unwrap());
    let bad_meta = write(dir.path(), "bad.json", br#"{"abi":"1.0"}"#);
    let out = pabi(&["embed", "--metadata", &bad_meta, &wasm, "-o", "/dev/null"]);
    assert_eq!(exit_code(&out), 2);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("META-3") && stderr.contains("Caused by:"), "{stderr}");
    let meta = write(dir.path(), "pabi.json", META.as_bytes());
    let junk = write(dir.path(), "junk.wasm", b"not wasm");
    assert_eq!(exit_code(&pabi(&["embed", "--metadata", &meta, &junk, "-o", "/dev/null"])), 2);
}

/// Pretty-printed metadata is stored without its layout whitespace, with
/// its keys in the order written.
#[test]
fn embed_stores_minified_json() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "in.wasm", &pabi_fixtures::good("core").unwrap());
    let pretty = "{\n  \"abi\": \"1.0\",\n  \"name\": \"renamed\",\n  \"version\": \"2.0.0\",\n  \"profile\": \"core\",\n  \"functions\": [\n    { \"name\": \"echo\" },\n    { \"name\": \"count\" }\n  ],\n  \"capabilities\": []\n}\n";
    assert!(pretty.len() > META.len() + 40);
    let meta = write(dir.path(), "pabi.json", pretty.as_bytes());
    let out_path = dir.path().join("out.wasm");
    let out = pabi(&["embed", "--metadata", &meta, &input, "-o", out_path.to_str().unwrap()]);
    assert_eq!(exit_code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let written = std::fs::read(&out_path).unwrap();
    let sections = pabi_abi::find_custom_sections(&written, "pabi").unwrap();
    let stored = std::str::from_utf8(&written[sections[0].data.clone()]).unwrap();
    assert_eq!(stored, META);
}
