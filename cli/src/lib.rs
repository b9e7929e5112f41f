//! `pabi`: validate, inspect, embed, run and conform pabi plugins.
//!
//! The logic lives in the library crates; this binary parses arguments,
//! calls them and prints.

mod commands;

use std::process::ExitCode;

use clap::Parser;

/// Exit code for usage and I/O errors, shared by every subcommand.
pub const EXIT_USAGE: u8 = 2;

#[derive(Parser, Debug)]
#[command(name = "pabi", version, about = "Tools for pabi, the Portable Plugin ABI for WebAssembly")]
#[command(after_help = "Run `pabi <command> --help` for the examples and exit codes of each command.")]
struct Cli {
    #[command(subcommand)]
    command: commands::Command,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let code = if err.use_stderr() { EXIT_USAGE } else { 0 };
            let _ = err.print();
            return ExitCode::from(code);
        }
    };
    init_logging();
    match cli.command.run() {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            print_error(&err);
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// Logs, plugin `log` records included, go to stderr; `PABI_LOG` sets the
/// filter (e.g. `PABI_LOG=info`), default `error`.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PABI_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

/// `error: …` then a `Caused by:` chain, as wasm-tools prints.
fn print_error(err: &anyhow::Error) {
    eprintln!("error: {err}");
    let causes: Vec<_> = err.chain().skip(1).collect();
    if !causes.is_empty() {
        eprintln!("\nCaused by:");
        for (i, cause) in causes.iter().enumerate() {
            eprintln!("    {i}: {cause}");
        }
    }
}
