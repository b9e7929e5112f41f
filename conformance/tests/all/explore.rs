//! The `explore` check and its coverage: the instrumented copy behaves as
//! the plugin, its counters move, guidance finds what random inputs do
//! not, the corpus grows and is read back, and the coverage is reported.

use pabi_conform::coverage::{instrument, lcov, CoverageReport, COUNTER_PREFIX};
use pabi_conform::report::{CheckOutcome, PluginReport};
use pabi_conform::reproducer::Payload;
use pabi_conform::{conform, Check, Options, PluginUnderTest, ReferenceHost, TestHost};

use super::broken;

fn only(check: Check, options: &Options) -> Options {
    let mut options = options.clone();
    options.only = Some(check);
    options
}

fn run(wasm: &[u8], options: &Options) -> PluginReport {
    let host = ReferenceHost::new().unwrap();
    conform(&host, "plugin.wasm", wasm, options, &mut |_| {})
}

fn outcome(report: &PluginReport, check: Check) -> &CheckOutcome {
    &report.checks.iter().find(|c| c.check == check).unwrap().outcome
}

fn coverage(report: &PluginReport) -> &CoverageReport {
    report.checks.iter().find_map(|c| c.coverage.as_deref()).expect("a coverage report")
}

/// The instrumented copy passes the validator, keeps the metadata and the
/// names, and gives the same results as the plugin.
#[test]
fn the_instrumented_copy_behaves_as_the_plugin() {
    let wasm = pabi_fixtures::good("core").unwrap();
    let map = instrument(&wasm).unwrap();
    let report = pabi_validator::validate(&map.wasm);
    assert!(!report.has_errors(), "{:?}", report);
    assert_eq!(report.metadata, pabi_validator::validate(&wasm).metadata);
    assert!(map.functions.iter().any(|f| !f.name.starts_with("func[")), "names lost: {:?}", map.functions);
    let host = ReferenceHost::new().unwrap();
    let mut original = host.load(&wasm, b"").unwrap();
    let mut copy = host.load(&map.wasm, b"").unwrap();
    let metadata = report.metadata.unwrap();
    for function in metadata.functions.iter().map(|f| &f.name) {
        for input in [&b""[..], b"hi", b"{\"a\":[1,2]}", &[0xff; 300]] {
            assert_eq!(original.call(function, input), copy.call(function, input), "{function} on {input:?}");
        }
    }
}

/// Each comparison of the magic prefix reached is a block more; bits set
/// by a call that trapped are kept.
#[test]
fn counters_move_with_the_input_and_survive_a_trap() {
    let map = instrument(&broken("magic-prefix").wasm).unwrap();
    let host = ReferenceHost::new().unwrap();
    let mut plugin = host.load(&map.wasm, b"").unwrap();
    let mut seen = vec![0u64; map.blocks.len().div_ceil(64)];
    // Blocks the bits add to those seen so far.
    let mut add = |bits: Vec<u64>| -> u32 {
        bits.iter().zip(&mut seen).map(|(b, s)| (std::mem::replace(s, *s | b) ^ (*s)).count_ones()).sum()
    };
    assert_eq!(plugin.coverage().map(&mut add), Some(0), "pabi_init is not there: nothing ran");
    for input in ["", "P", "PA", "PAB"] {
        plugin.call("f", input.as_bytes()).unwrap();
        let new = plugin.coverage().map(&mut add).unwrap();
        assert!(new > 0, "{input:?} reached no new block");
    }
    plugin.call("f", b"PAB").unwrap();
    assert_eq!(plugin.coverage().map(&mut add), Some(0), "the same input again");
    assert!(plugin.call("f", b"PABI").is_err(), "the trap");
    assert!(plugin.coverage().map(&mut add).unwrap() > 0, "the trapping call's blocks were lost");
}

/// Within the default budget, exploration reaches the trap behind the
/// magic prefix and reports it shrunk to the prefix; as many random
/// inputs (the status check, and explore unguided) do not.
#[test]
fn guidance_finds_what_as_many_random_inputs_do_not() {
    let wasm = broken("magic-prefix").wasm;
    let defaults = Options::default();
    let report = run(&wasm, &only(Check::Explore, &defaults));
    let CheckOutcome::Fail(failure) = outcome(&report, Check::Explore) else { panic!("not found: {report:?}") };
    assert_eq!(failure.input(), Some(&Payload::Inline(b"PABI".to_vec())), "{}", failure.message);
    assert!(failure.message.contains("found by coverage-guided exploration"), "{}", failure.message);

    let random = run(&wasm, &only(Check::Status, &defaults));
    assert_eq!(outcome(&random, Check::Status), &CheckOutcome::Pass);
    let mut unguided = only(Check::Explore, &defaults);
    unguided.guided = false;
    let unguided = run(&wasm, &unguided);
    assert_eq!(outcome(&unguided, Check::Explore), &CheckOutcome::Pass);
    let guided_blocks = coverage(&report).blocks_reached;
    assert!(coverage(&unguided).blocks_reached < guided_blocks, "{guided_blocks}");
}

/// The inputs that reached new blocks are written to the corpus folder,
/// and a second run starts from them.
#[test]
fn the_corpus_is_written_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = only(Check::Explore, &Options::default());
    options.cases = 64;
    options.corpus = Some(dir.path().to_path_buf());
    let wasm = pabi_fixtures::good("core").unwrap();
    let first = run(&wasm, &options);
    let written = coverage(&first).corpus.clone().unwrap();
    assert!(written.written > 0 && written.read == 0, "{written:?}");
    let files: usize = walk(dir.path());
    assert_eq!(files, written.written as usize);
    // Under DIR/<plugin>/<function>/<sha256>.
    let echo = dir.path().join("plugin").join("echo");
    let name = std::fs::read_dir(&echo).unwrap().next().unwrap().unwrap().file_name();
    let bytes = std::fs::read(echo.join(&name)).unwrap();
    assert_eq!(name.to_str().unwrap(), pabi_testkit::hex::sha256_hex(&bytes));

    let second = run(&wasm, &options);
    let read = coverage(&second).corpus.clone().unwrap();
    assert_eq!(read.read, written.written, "{read:?}");
    assert!(coverage(&second).blocks_reached >= coverage(&first).blocks_reached);
}

fn walk(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).unwrap().flatten().map(|e| if e.path().is_dir() { walk(&e.path()) } else { 1 }).sum()
}

/// `--min-coverage` fails a run below it, and only below it.
#[test]
fn min_coverage_fails_below_it() {
    // Its lifecycle functions are code no plugin call reaches, so no
    // number of cases reaches every block.
    let wasm = pabi_fixtures::good("lifecycle").unwrap();
    let mut options = only(Check::Explore, &Options::default());
    options.cases = 32;
    options.min_coverage = Some(100.0);
    let report = run(&wasm, &options);
    let CheckOutcome::Fail(failure) = outcome(&report, Check::Explore) else { panic!("passed: {report:?}") };
    assert!(failure.message.contains("below --min-coverage 100%"), "{}", failure.message);
    assert!(!report.conformant);
    options.min_coverage = Some(coverage(&report).percent().floor());
    assert!(run(&wasm, &options).conformant);
}

/// The human report gives the coverage in a few short lines, the JSON every
/// function, the lcov file every block, named.
#[test]
fn coverage_is_reported_in_every_form() {
    let wasm = broken("magic-prefix").wasm;
    let mut options = only(Check::Explore, &Options::default());
    options.cases = 64;
    let report = run(&wasm, &options);
    let c = coverage(&report);
    assert!(c.blocks_reached > 0 && c.blocks_reached <= c.blocks_total, "{c:?}");
    let human = pabi_conform::report::human(&report);
    assert!(human.contains(&format!("coverage: {}/{} blocks", c.blocks_reached, c.blocks_total)), "{human}");
    assert!(human.lines().all(|l| l.chars().count() <= pabi_conform::report::MAX_LINE_CHARS));
    let json = pabi_conform::report::json(std::slice::from_ref(&report));
    let functions = &json["plugins"][0]["checks"][0]["coverage"]["functions"];
    assert_eq!(functions[0]["name"], "f", "{json}");
    assert_eq!(functions[0]["blocks_total"], c.blocks_total);
    let junit = pabi_conform::report::junit(std::slice::from_ref(&report));
    assert!(junit.contains("name=\"coverage.blocks_total\"") && junit.contains("coverage: "), "{junit}");
    let lcov = lcov(c, "plugin.wasm");
    assert!(lcov.starts_with("TN:explore\nSF:plugin.wasm\nFN:") && lcov.ends_with("end_of_record\n"), "{lcov}");
    assert!(lcov.contains(",f\n") && lcov.contains("FNDA:1,f"), "{lcov}");
    let lines = lcov.lines().filter(|l| l.starts_with("DA:")).count();
    assert!(lines > 4 && lcov.contains(&format!("LF:{lines}")), "{lcov}");
}

/// A plugin that cannot be instrumented is skipped, saying why.
#[test]
fn a_plugin_that_cannot_be_instrumented_is_skipped() {
    let wat = format!(
        r#"(module
          (memory (export "memory") 1)
          (global (export "{COUNTER_PREFIX}0") (mut i64) (i64.const 0))
          (func (export "pabi_fn_f") (param i32) (result i32) (i32.const 0))
          (@custom "pabi" "{{\"abi\":\"1.0\",\"name\":\"p\",\"version\":\"1.0.0\",\"profile\":\"core\",\"functions\":[{{\"name\":\"f\"}}],\"capabilities\":[]}}"))"#
    );
    let wasm = wat::parse_str(wat).unwrap();
    let report = run(&wasm, &only(Check::Explore, &Options::default()));
    let CheckOutcome::Skip { reason } = outcome(&report, Check::Explore) else { panic!("{report:?}") };
    assert!(reason.contains("cannot be instrumented") && reason.contains(COUNTER_PREFIX), "{reason}");
}
