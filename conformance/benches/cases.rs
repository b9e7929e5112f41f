//! Time for a conformance run with 1,000 cases per function over each Rust
//! example plugin (target/plugins/rust, built by ci/build-plugins). Goal:
//! under 2 s per plugin.
//!
//!     cargo bench -p pabi-conform --bench cases

use std::time::Instant;

use pabi_conform::{conform, Options, ReferenceHost};

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/plugins/rust");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        eprintln!("no {}: run ci/build-plugins first", dir.display());
        std::process::exit(2);
    };
    let mut plugins: Vec<_> =
        entries.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "wasm")).collect();
    plugins.sort();
    let engine = ReferenceHost::new().unwrap();
    println!("{:<14} {:>9} {:>10} {:>10}  goal < 2 s", "plugin", "functions", "time", "verdict");
    for path in plugins {
        let wasm = std::fs::read(&path).unwrap();
        let mut options = Options::default();
        options.cases = 1000;
        let started = Instant::now();
        let report = conform(&engine, &path.display().to_string(), &wasm, &options, &mut |_| {});
        let elapsed = started.elapsed();
        let functions = pabi_validator::validate(&wasm).functions().len();
        let name = path.file_stem().unwrap().to_string_lossy();
        let verdict = if report.conformant { "conformant" } else { "FAILED" };
        println!("{name:<14} {functions:>9} {:>9.2}s {verdict:>10}", elapsed.as_secs_f64());
    }
}
