//! What every subcommand shares: argument definitions, exit codes, error
//! printing and a closed standard output.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use clap::CommandFactory;

use crate::{exit_code, pabi, write};

#[test]
fn clap_definitions_are_consistent() {
    pabi_cli::Cli::command().debug_assert();
}

const SUBCOMMANDS: &[&str] = &["validate", "inspect", "embed", "run", "pipe", "conform", "host-test"];

#[test]
fn every_help_lists_examples_and_the_shared_exit_codes() {
    let usage = format!("{}  usage or I/O error", pabi_cli::exit::USAGE);
    for sub in SUBCOMMANDS {
        let out = pabi(&[sub, "--help"]);
        assert_eq!(exit_code(&out), i32::from(pabi_cli::exit::OK), "{sub}");
        let help = String::from_utf8(out.stdout).unwrap();
        for needle in ["Examples:", "Exit codes:", &format!("{}  ", pabi_cli::exit::OK), &usage] {
            assert!(help.contains(needle), "`pabi {sub} --help` lacks {needle:?}:\n{help}");
        }
    }
    for sub in ["run", "pipe"] {
        let help = String::from_utf8(pabi(&[sub, "--help"]).stdout).unwrap();
        assert!(help.contains(&format!("{}  host error", pabi_cli::exit::HOST_ERROR)), "{sub}: {help}");
    }
}

#[test]
fn each_format_flag_takes_only_its_own_formats() {
    let dir = tempfile::tempdir().unwrap();
    // Its lifecycle functions are code no plugin call reaches: below 100%.
    let path = write(dir.path(), "lifecycle.wasm", &pabi_fixtures::good("lifecycle").unwrap());
    assert_eq!(exit_code(&pabi(&["validate", "--format", "sarif", &path])), 0);
    assert_eq!(exit_code(&pabi(&["validate", "--format", "junit", &path])), 2);
    assert_eq!(exit_code(&pabi(&["inspect", "--format", "sarif", &path])), 2);
    assert_eq!(exit_code(&pabi(&["conform", "--format", "sarif", &path])), 2);
}

#[test]
fn an_error_with_one_cause_prints_no_numbered_list() {
    let out = pabi(&["validate", "/nonexistent/plugin.wasm"]);
    assert_eq!(exit_code(&out), 2);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.starts_with("error: failed to read `/nonexistent/plugin.wasm`"), "{stderr}");
    assert!(stderr.contains("\nCaused by:\n    No such file"), "{stderr}");
    assert!(!stderr.contains("0: "), "{stderr}");
}

/// `pabi validate DIR | head -1`: the reader closes the pipe after one
/// line. The report is larger than a pipe's buffer, so pabi is still
/// writing when it goes.
#[test]
fn a_closed_stdout_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let mutant = pabi_fixtures::mutants().unwrap().into_iter().find(|m| m.clause == "IMP-3").unwrap();
    for i in 0..600 {
        write(dir.path(), &format!("{i:04}.wasm"), &mutant.wasm);
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_pabi"))
        .args(["validate", dir.path().to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    assert!(first.starts_with("error[IMP-3]"), "{first}");
    // The reader is dropped here: the pipe is closed.
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked") && !stderr.contains("Broken pipe"), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
    assert_eq!(exit_code(&out), 1, "the usual code: the plugins are invalid");
}

/// `pabi conform --min-coverage` fails (exit 1) below it and refuses a
/// value that is not a percentage (exit 2); `--coverage-report` writes the
/// lcov file and `--corpus` the inputs that reached new blocks.
#[test]
fn conform_reports_and_enforces_coverage() {
    let dir = tempfile::tempdir().unwrap();
    // Its lifecycle functions are code no plugin call reaches: below 100%.
    let path = write(dir.path(), "lifecycle.wasm", &pabi_fixtures::good("lifecycle").unwrap());
    let lcov = dir.path().join("out/lifecycle.lcov");
    let corpus = dir.path().join("corpus");
    let base = ["conform", "--only", "explore", "--cases", "32"];
    let args = [&base[..], &["--coverage-report", lcov.to_str().unwrap(), "--corpus", corpus.to_str().unwrap(), &path]]
        .concat();
    let out = pabi(&args);
    assert_eq!(exit_code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("        coverage: ") && stdout.contains(" blocks ("), "{stdout}");
    assert!(stdout.lines().all(|l| l.chars().count() <= 500), "{stdout}");
    let lcov = std::fs::read_to_string(lcov).unwrap();
    assert!(lcov.starts_with("TN:explore\n") && lcov.contains(&format!("SF:{path}\n")), "{lcov}");
    assert!(corpus.join("lifecycle").is_dir(), "no corpus written");

    let out = pabi(&[&base[..], &["--min-coverage", "100", &path]].concat());
    assert_eq!(exit_code(&out), 1);
    assert!(String::from_utf8(out.stdout).unwrap().contains("below --min-coverage 100%"));
    assert_eq!(exit_code(&pabi(&[&base[..], &["--min-coverage", "0", &path]].concat())), 0);
    assert_eq!(exit_code(&pabi(&[&base[..], &["--min-coverage", "101", &path]].concat())), 2);
}
