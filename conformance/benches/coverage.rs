//! Blocks reached by the `explore` check, guided by coverage, against the
//! same number of generated inputs without guidance, for each example
//! plugin (`target/plugins/<lang>/*.wasm`, built by ci/build-plugins).
//!
//!     cargo bench -p pabi-conform --bench coverage [-- --cases N] [-- DIR]
//!
//! DIR (or `PABI_PLUGINS`) is the folder of language folders; the default
//! is this checkout's `target/plugins`.

use std::path::PathBuf;
use std::time::Instant;

use pabi_conform::report::PluginReport;
use pabi_conform::{conform, Check, Options, ReferenceHost};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    if args.iter().any(|a| a == "--list") {
        return;
    }
    let mut cases = 256;
    let mut dir = std::env::var_os("PABI_PLUGINS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/plugins"));
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--cases" => cases = args.next().and_then(|n| n.parse().ok()).expect("--cases N"),
            _ => dir = PathBuf::from(arg),
        }
    }
    let mut plugins: Vec<PathBuf> = walk(&dir);
    plugins.sort();
    // A plugin whose input decides its path: a trap behind a magic prefix
    // compared byte by byte. The examples mostly ignore their input's
    // shape, so guidance has little to find in them.
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/broken/magic-prefix.wat");
    if plugins.is_empty() {
        eprintln!("no plugins under {}: run ci/build-plugins first", dir.display());
        std::process::exit(2);
    }
    let host = ReferenceHost::new().unwrap();
    println!("{cases} inputs per function; blocks reached (all functions together)");
    println!(
        "{:<16} {:>7} {:>15} {:>15} {:>6} {:>9} {:>9}",
        "plugin", "blocks", "random", "guided", "ratio", "random s", "guided s"
    );
    let fixture_wasm = std::fs::read_to_string(&fixture).ok().and_then(|text| wat::parse_str(text).ok());
    let examples = plugins.into_iter().map(|path| {
        let wasm = std::fs::read(&path).unwrap();
        (path, wasm)
    });
    for (path, wasm) in fixture_wasm.map(|wasm| (fixture.clone(), wasm)).into_iter().chain(examples) {
        let name = format!(
            "{}/{}",
            path.parent().and_then(|p| p.file_name()).unwrap_or_default().to_string_lossy(),
            path.file_stem().unwrap_or_default().to_string_lossy()
        );
        let (random, random_s) = explore(&host, &path, &wasm, cases, false);
        let (guided, guided_s) = explore(&host, &path, &wasm, cases, true);
        let (Some((r, total)), Some((g, _))) = (random, guided) else {
            println!("{name:<16} not explored");
            continue;
        };
        let pct = |n: u32| 100.0 * f64::from(n) / f64::from(total.max(1));
        println!(
            "{name:<16} {total:>7} {r:>7} ({:>4.1}%) {g:>7} ({:>4.1}%) {:>6.2} {random_s:>9.2} {guided_s:>9.2}",
            pct(r),
            pct(g),
            f64::from(g) / f64::from(r.max(1)),
        );
    }
}

/// Blocks reached and total, and seconds, of one `explore` run.
fn explore(
    host: &ReferenceHost,
    path: &std::path::Path,
    wasm: &[u8],
    cases: u32,
    guided: bool,
) -> (Option<(u32, u32)>, f64) {
    let mut options = Options::default();
    options.cases = cases;
    options.only = Some(Check::Explore);
    options.guided = guided;
    let started = Instant::now();
    let report: PluginReport = conform(host, &path.display().to_string(), wasm, &options, &mut |_| {});
    let seconds = started.elapsed().as_secs_f64();
    let coverage = report.checks.iter().find_map(|c| c.coverage.as_deref());
    (coverage.map(|c| (c.blocks_reached, c.blocks_total)), seconds)
}

fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries
        .flatten()
        .flat_map(|e| {
            let path = e.path();
            if path.is_dir() {
                walk(&path)
            } else if path.extension().is_some_and(|x| x == "wasm") {
                vec![path]
            } else {
                Vec::new()
            }
        })
        .collect()
}
