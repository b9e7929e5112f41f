//! Integration tests of the `pabi` binary: one test binary, one module per
//! subcommand.

mod cli;
mod embed;
mod inspect;
mod pipe;
mod run;
mod serve;
mod traceability;
mod validate;

use std::path::Path;
use std::process::{Command, Output};

/// Runs the built `pabi` binary.
pub fn pabi(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pabi")).args(args).output().expect("pabi runs")
}

/// The exit code, failing the test when a signal killed the process.
pub fn exit_code(out: &Output) -> i32 {
    out.status.code().unwrap_or_else(|| panic!("killed by a signal: {:?}", out.status))
}

pub fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.to_str().unwrap().to_string()
}
