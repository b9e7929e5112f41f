//! The human diagnostics of every broken fixture, snapshotted with insta.
//! Update with `INSTA_UPDATE=always` (or `BLESS=1`); CI runs with
//! `INSTA_UPDATE=no`, so a stale snapshot fails, and the last test fails on
//! snapshot files that no case writes.

use std::collections::BTreeSet;
use std::path::Path;

use pabi_validator::render::{human, FileReport};
use pabi_validator::validate;

fn cases() -> Vec<(String, Vec<u8>)> {
    let mut cases: Vec<(String, Vec<u8>)> =
        pabi_fixtures::mutants().unwrap().into_iter().map(|m| (format!("mutant-{}", m.name), m.wasm)).collect();
    for case in pabi_fixtures::wat_folder("invalid").unwrap() {
        cases.push((format!("wat-{}", case.name), case.wasm));
    }
    cases
}

fn settings() -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/all/snapshots"));
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    if std::env::var_os("BLESS").is_some() {
        // SAFETY of intent: only the test process reads this variable.
        std::env::set_var("INSTA_UPDATE", "always");
    }
    settings
}

#[test]
fn diagnostics_match_snapshots() {
    let settings = settings();
    for (name, wasm) in cases() {
        let report = validate(&wasm);
        let text = human(&FileReport { path: "plugin.wasm", report: &report }, false);
        settings.bind(|| insta::assert_snapshot!(name.clone(), text));
    }
}

#[test]
fn no_unreferenced_snapshots() {
    let expected: BTreeSet<String> = cases().into_iter().map(|(name, _)| format!("{name}.snap")).collect();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/all/snapshots");
    let found: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".snap"))
        .collect();
    let stale: Vec<_> = found.difference(&expected).collect();
    assert!(stale.is_empty(), "snapshots no case writes (delete them): {stale:?}");
}
