//! `cargo bench -p pabi-validator`: MB/s of `pabi_validator::validate`
//! (every ABI rule, bodies validated in parallel) against plain
//! `wasmparser::Validator::validate_all` (one thread, no ABI rules), on the
//! largest plugin found. Ratios come from one run, rounds interleaved.
//!
//! Usage: cargo bench -p pabi-validator [-- FILE.wasm]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn largest_plugin() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/plugins");
    let mut best: Option<(u64, PathBuf)> = None;
    let mut stack = vec![root];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "wasm") {
                let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
                if best.as_ref().is_none_or(|(s, _)| size > *s) {
                    best = Some((size, path));
                }
            }
        }
    }
    best.map(|(_, p)| p)
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    let arg = std::env::args().skip(1).find(|a| a.ends_with(".wasm"));
    let path = arg.map(PathBuf::from).or_else(largest_plugin);
    let (label, wasm) = match path {
        Some(path) => (path.display().to_string(), std::fs::read(&path).expect("plugin readable")),
        None => {
            eprintln!("no plugin given and none under target/plugins (run ci/build-plugins); using the core fixture");
            ("fixtures/good/core.wat".to_string(), pabi_fixtures::good("core").unwrap())
        }
    };
    let mb = wasm.len() as f64 / 1e6;
    let rounds = if wasm.len() > 1 << 20 { 15 } else { 200 };
    let (mut plain, mut pabi) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let started = Instant::now();
        wasmparser::Validator::new_with_features(pabi_abi::feature_profile()).validate_all(&wasm).expect("valid wasm");
        plain.push(started.elapsed());
        let started = Instant::now();
        let report = pabi_validator::validate(&wasm);
        pabi.push(started.elapsed());
        std::hint::black_box(report);
    }
    let (plain, pabi) = (median(plain), median(pabi));
    let rate = |d: Duration| mb / d.as_secs_f64();
    println!("plugin: {label} ({:.2} MB), {} threads, median of {rounds} rounds", mb, rayon::current_num_threads());
    println!("wasmparser validate_all : {:>8.1} MB/s ({plain:?})", rate(plain));
    println!("pabi validate (all rules): {:>8.1} MB/s ({pabi:?})", rate(pabi));
    println!("ratio pabi/wasmparser    : {:>8.2}x  (goal >= 1.00x)", rate(pabi) / rate(plain));
}
