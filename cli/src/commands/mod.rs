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

/// Reads a plugin from a file, or standard input for `-`, within the
/// compile budget (`LIM-12`): a file larger than `max_module_bytes` is
/// refused by its size without being read, a stream once it is one byte
/// past the cap. The outer error is an I/O error (exit 2); the inner one
/// is the `MODULE_LIMIT` a host would return for the bytes, which `run`
/// and `pipe` report as the host error it is.
pub fn read_plugin(path: &Path, max_module_bytes: u64) -> anyhow::Result<Result<Vec<u8>, pabi_host::Error>> {
    use std::io::Read;
    let failed = || format!("failed to read `{}`", path.display());
    if path == Path::new("-") {
        let mut bytes = Vec::new();
        std::io::stdin()
            .lock()
            .take(max_module_bytes.saturating_add(1))
            .read_to_end(&mut bytes)
            .context("failed to read standard input")?;
        let read = bytes.len() as u64;
        if read > max_module_bytes {
            let cap = pabi_host::CompileCap::ModuleBytes { bytes: read, cap: max_module_bytes };
            return Ok(Err(pabi_host::Error::ModuleLimit { cap }));
        }
        return Ok(Ok(bytes));
    }
    match pabi_host::read_plugin_file(path, max_module_bytes) {
        Ok(bytes) => Ok(Ok(bytes)),
        Err(pabi_host::PluginFileError::ModuleLimit(error)) => Ok(Err(error)),
        Err(pabi_host::PluginFileError::Unreadable { error, .. }) => Err(error).with_context(failed),
        Err(error) => Err(error).with_context(failed),
    }
}

/// [`read_plugin`] for the commands that do not load it on a host
/// (`validate`, `inspect`, `conform`): a module past the cap is an error
/// of the command (exit 2), naming the file, and `hint` says how to raise
/// the cap where there is a way.
pub fn read_plugin_or_fail(path: &Path, max_module_bytes: u64, hint: &str) -> anyhow::Result<Vec<u8>> {
    match read_plugin(path, max_module_bytes)? {
        Ok(bytes) => Ok(bytes),
        Err(error) => anyhow::bail!("`{}`: {error}{hint}", path.display()),
    }
}

/// The spec's compile budget for a module's size (`LIM-12`, 32 MiB), the
/// one a default host applies.
pub fn default_max_module_bytes() -> u64 {
    pabi_host::Limits::default().max_module_bytes
}

pub fn read_input(path: &Path) -> anyhow::Result<Vec<u8>> {
    if path == Path::new("-") {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes).context("failed to read standard input")?;
        return Ok(bytes);
    }
    std::fs::read(path).with_context(|| format!("failed to read `{}`", path.display()))
}
