//! One module per subcommand, each with its `Opts` (arguments, help,
//! examples, exit codes) and `run`.

pub mod conform;
pub mod embed;
mod host_args;
pub mod host_test;
pub mod inspect;
pub mod pipe;
pub mod run;
pub mod serve;
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
    Serve(serve::Opts),
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
            Command::Serve(opts) => opts.run(),
        }
    }
}

/// Reads a whole file, or standard input for `-`.
/// Bytes for a plugin to read: an input, a configuration or a state.
#[derive(Debug)]
pub enum Payload {
    Bytes(Vec<u8>),
    /// Longer than the ABI can address (`LIM-13`): not read at all, so a
    /// huge file costs nothing; the call it was for fails with
    /// `INPUT_LIMIT`. The length, where a file's size told it; a stream is
    /// read only up to the limit.
    TooLong(Option<u64>),
}

impl Payload {
    pub fn bytes(self) -> Result<Vec<u8>, pabi_host::Error> {
        match self {
            Payload::Bytes(bytes) => Ok(bytes),
            Payload::TooLong(len) => Err(pabi_host::Error::InputLimit { len, limit: pabi_abi::MAX_INPUT_LEN }),
        }
    }
}

/// Reads a payload from a file or `-` (standard input), stopping once it is
/// longer than [`pabi_abi::MAX_INPUT_LEN`].
pub fn read_payload(path: &Path) -> anyhow::Result<Payload> {
    use std::io::Read;
    let limit = pabi_abi::MAX_INPUT_LEN;
    let mut reader: Box<dyn Read> = if path == Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        let file = std::fs::File::open(path).with_context(|| format!("failed to read `{}`", path.display()))?;
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        if len > limit {
            return Ok(Payload::TooLong(Some(len)));
        }
        Box::new(file)
    };
    let mut bytes = Vec::new();
    reader
        .by_ref()
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("failed to read `{}`", path.display()))?;
    if bytes.len() as u64 > limit {
        // A stream may never end (`/dev/zero`, a pipe): stop here.
        return Ok(Payload::TooLong(None));
    }
    Ok(Payload::Bytes(bytes))
}

pub fn read_input(path: &Path) -> anyhow::Result<Vec<u8>> {
    if path == Path::new("-") {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes).context("failed to read standard input")?;
        return Ok(bytes);
    }
    std::fs::read(path).with_context(|| format!("failed to read `{}`", path.display()))
}
