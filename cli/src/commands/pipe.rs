use std::io::{Read, Write};

use anyhow::{bail, Context};

use super::host_args::HostArgs;
use super::read_input;
use super::run::exit_code;

/// Chain plugin functions: standard input goes to the first, each output
/// to the next, and the last output to standard output.
#[derive(clap::Args, Debug)]
#[command(after_help = pipe_help())]
pub struct Opts {
    /// Stages, `PLUGIN.wasm:FUNCTION`, in order.
    #[arg(required = true, value_name = "PLUGIN:FUNCTION")]
    stages: Vec<String>,
    #[command(flatten)]
    host: HostArgs,
}

const fn pipe_help() -> &'static str {
    "\
Examples:
  echo -n hello | pabi pipe text.wasm:upper text.wasm:reverse   # OLLEH
  pabi pipe text.wasm:lines text.wasm:fnv1a64 < notes.txt
  printf '\\x15\\0\\0\\0' | pabi pipe math.wasm:double math.wasm:double | xxd

Exit codes:
  0  every stage returned OK
  1  a stage returned an error status (PLUGIN_ERROR)
  2  usage or I/O error
  3  host error in a stage (load, limit, trap, ABI violation)"
}

impl Opts {
    pub fn run(self) -> anyhow::Result<u8> {
        // Every stage holds an instance for the whole pipe: size the pool to
        // the pipe, at least the default.
        let slots = u32::try_from(self.stages.len()).unwrap_or(u32::MAX);
        let config = self.host.config();
        let config = config.to_builder().max_instances(slots.max(config.max_instances())).build();
        let host = pabi_host::Host::new(config).context("cannot start the reference host")?;
        let mut stages = Vec::new();
        for stage in &self.stages {
            let Some((path, function)) = stage.rsplit_once(':').filter(|(p, f)| !p.is_empty() && !f.is_empty()) else {
                bail!("`{stage}` is not PLUGIN:FUNCTION");
            };
            let wasm = read_input(path.as_ref())?;
            match host.load(&wasm) {
                Ok(plugin) => stages.push((stage, plugin, function)),
                Err(error) => {
                    eprintln!("error: stage `{stage}`: {error}");
                    return Ok(exit_code(&error));
                }
            }
        }
        let mut data = Vec::new();
        std::io::stdin().read_to_end(&mut data).context("failed to read standard input")?;
        for (stage, plugin, function) in &mut stages {
            match plugin.call(function, &data) {
                Ok(output) => data = output,
                Err(error) => {
                    eprintln!("error: stage `{stage}`: {error}");
                    return Ok(exit_code(&error));
                }
            }
        }
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(&data).and_then(|_| stdout.flush()).context("cannot write to standard output")?;
        Ok(crate::exit::OK)
    }
}
