//! The `pabi` command line: validate, inspect, embed, run and conform pabi
//! plugins.
//!
//! The logic lives in the library crates; this crate parses arguments,
//! calls them and prints. It is a library too so that its tests can check
//! the argument definitions ([`Cli`]) and share the exit codes ([`exit`]).

pub mod commands;
pub mod exit;
pub mod output;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

#[derive(Parser, Debug)]
#[command(name = "pabi", version, about = "Tools for pabi, the Portable Plugin ABI for WebAssembly")]
#[command(after_help = "Run `pabi <command> --help` for the examples and exit codes of each command.")]
pub struct Cli {
    #[command(subcommand)]
    pub command: commands::Command,
}

/// Parses the arguments, runs the subcommand and prints its error, if any.
pub fn main() -> ExitCode {
    // `pabi serve --isolation worker_process` starts its workers from this
    // executable, and `--host-call-command` the reaper of the commands;
    // neither is a command a user types.
    if pabi_host::command_reaper::is_command_reaper() {
        return ExitCode::from(u8::try_from(pabi_host::command_reaper::run_command_reaper()).unwrap_or(exit::USAGE));
    }
    if pabi_host::worker::is_worker() {
        init_logging(false, "info");
        return ExitCode::from(u8::try_from(pabi_host::worker::run()).unwrap_or(exit::USAGE));
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let code = if err.use_stderr() { exit::USAGE } else { exit::OK };
            let _ = err.print();
            return ExitCode::from(code);
        }
    };
    init_logging(
        matches!(cli.command, commands::Command::Conform(_)),
        // A server says what it loads, reloads and refuses.
        if matches!(cli.command, commands::Command::Serve(_)) { "info" } else { "error" },
    );
    let code = match cli.command.run() {
        Ok(code) => code,
        // The reader of our output went away; nothing left to say.
        Err(err) if output::is_closed_pipe(&err) => exit::OK,
        Err(err) => {
            print_error(&err);
            exit::USAGE
        }
    };
    match output::finish() {
        Ok(()) => ExitCode::from(code),
        Err(err) => {
            print_error(&anyhow::Error::new(err).context("cannot write to standard output"));
            ExitCode::from(exit::USAGE)
        }
    }
}

/// Logs, plugin `log` records included, go to stderr; `PABI_LOG` sets the
/// filter (e.g. `PABI_LOG=info`), default `error` (`info` for `pabi serve`). Colours only on a
/// terminal, so that redirected logs hold no escape codes.
///
/// `pabi conform` provokes traps and crash loops on purpose, and the
/// reference host logs each (a crash loop as an error); the report already
/// says what failed, so the host's own records are off unless `PABI_LOG`
/// names `pabi_host` itself, and the plugin's unless it names
/// `pabi::plugin`.
fn init_logging(conform: bool, default: &str) {
    let spec = std::env::var("PABI_LOG").unwrap_or_default();
    let mut filter = tracing_subscriber::EnvFilter::try_new(if spec.is_empty() { default } else { &spec })
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    if conform && !spec.contains("pabi_host") {
        if let Ok(quiet) = "pabi_host=off".parse() {
            filter = filter.add_directive(quiet);
        }
    }
    // The plugin's own records, too: a conformance run calls a plugin
    // thousands of times, and its report names a plugin that logs past the
    // log cap of a call (`LIM-11`).
    if conform && !spec.contains("pabi::plugin") {
        if let Ok(quiet) = "pabi::plugin=off".parse() {
            filter = filter.add_directive(quiet);
        }
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// `error: …` then the causes, as wasm-tools prints: one cause on its own
/// line, several as a numbered list.
fn print_error(err: &anyhow::Error) {
    eprintln!("error: {err}");
    let causes: Vec<_> = err.chain().skip(1).collect();
    match causes.as_slice() {
        [] => {}
        [cause] => eprintln!("\nCaused by:\n    {cause}"),
        causes => {
            eprintln!("\nCaused by:");
            for (i, cause) in causes.iter().enumerate() {
                eprintln!("    {i}: {cause}");
            }
        }
    }
}
