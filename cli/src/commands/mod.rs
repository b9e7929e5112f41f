//! One module per subcommand, each with its `Opts` (arguments, help,
//! examples, exit codes) and `run`.

pub mod conform;
pub mod embed;
mod host_args;
pub mod host_test;
pub mod inspect;
pub mod pipe;
pub mod run;
pub mod validate;

use std::path::Path;

use anyhow::Context;

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    Validate(validate::Opts),
    Inspect(inspect::Opts),
    Embed(embed::Opts),
    Run(run::Opts),
    Pipe(pipe::Opts),
    Conform(conform::Opts),
    HostTest(host_test::Opts),
}

impl Command {
    /// Runs the subcommand and returns its exit code. `Err` means a usage or
    /// I/O error ([`crate::exit::USAGE`]).
    pub fn run(self) -> anyhow::Result<u8> {
        match self {
            Command::Validate(opts) => opts.run(),
            Command::Inspect(opts) => opts.run(),
            Command::Embed(opts) => opts.run(),
            Command::Run(opts) => opts.run(),
            Command::Pipe(opts) => opts.run(),
            Command::Conform(opts) => opts.run(),
            Command::HostTest(opts) => opts.run(),
        }
    }
}

/// Reads a whole file, or standard input for `-`.
pub fn read_input(path: &Path) -> anyhow::Result<Vec<u8>> {
    if path == Path::new("-") {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes).context("failed to read standard input")?;
        return Ok(bytes);
    }
    std::fs::read(path).with_context(|| format!("failed to read `{}`", path.display()))
}
