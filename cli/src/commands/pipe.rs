use std::io::{BufRead, Read, Write};
use std::path::PathBuf;

use anyhow::{bail, Context};

use super::host_args::HostArgs;
use super::read_input;
use super::run::exit_code;

/// Chain plugin functions: standard input goes to the first, each output
/// to the next, and the last output to standard output. With `--framing`,
/// each record of the input goes through the chain on its own, streaming.
#[derive(clap::Args, Debug)]
#[command(after_help = pipe_help())]
pub struct Opts {
    /// Stages, `PLUGIN.wasm:FUNCTION`, in order.
    #[arg(required = true, value_name = "PLUGIN:FUNCTION")]
    stages: Vec<String>,
    /// Call the stages once per record instead of once on the whole input,
    /// writing each result as a record of the same framing as soon as it is
    /// done: `lines` (records end with `\n`), `nul` (with a 0 byte) or
    /// `length-prefixed` (a 4-byte little-endian length, then the bytes).
    #[arg(long, value_name = "FRAMING")]
    framing: Option<Framing>,
    /// What a record that fails does, with `--framing`: `stop` (the
    /// default), `skip` it, or `reject=FILE` to append it, as it came in,
    /// to FILE. Every failure is reported on standard error with its record
    /// number, whatever the policy.
    #[arg(long, value_name = "POLICY", value_parser = parse_policy, default_value = "stop", requires = "framing")]
    on_error: Policy,
    /// The longest record accepted with `--framing`, e.g. `16MiB`; a longer
    /// one fails like a failing call (`INPUT_LIMIT`).
    #[arg(long, value_name = "SIZE", value_parser = super::host_args::parse_size, default_value = "16MiB")]
    max_record: u64,
    #[command(flatten)]
    host: HostArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Framing {
    Lines,
    Nul,
    LengthPrefixed,
}

#[derive(Clone, Debug)]
pub enum Policy {
    Stop,
    Skip,
    Reject(PathBuf),
}

fn parse_policy(text: &str) -> Result<Policy, String> {
    match text {
        "stop" => Ok(Policy::Stop),
        "skip" => Ok(Policy::Skip),
        _ => match text.strip_prefix("reject=") {
            Some(path) if !path.is_empty() => Ok(Policy::Reject(PathBuf::from(path))),
            _ => Err(format!("`{text}` is not stop, skip or reject=FILE")),
        },
    }
}

const fn pipe_help() -> &'static str {
    "\
Examples:
  echo -n hello | pabi pipe text.wasm:upper text.wasm:reverse   # OLLEH
  pabi pipe text.wasm:lines text.wasm:fnv1a64 < notes.txt
  printf '\\x15\\0\\0\\0' | pabi pipe math.wasm:double math.wasm:double | xxd
  tail -f events.log | pabi pipe --framing lines enrich.wasm:enrich text.wasm:upper
  pabi pipe --framing lines --on-error reject=bad.txt text.wasm:upper < big.txt > out.txt

With --framing, instances are reused from record to record, memory stays
bounded by the longest record, and output is flushed whenever the input has
no complete record waiting.

Exit codes:
  0  every stage returned OK (with --framing: for every record)
  1  a stage returned an error status (PLUGIN_ERROR); with --framing, also
     when records were skipped or rejected
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
                Ok(plugin) => stages.push(Stage { name: stage.clone(), plugin, function: function.to_string() }),
                Err(error) => {
                    eprintln!("error: stage `{stage}`: {error}");
                    return Ok(exit_code(&error));
                }
            }
        }
        if let Some(framing) = self.framing {
            return self.stream(framing, &mut stages);
        }
        let mut data = Vec::new();
        std::io::stdin().read_to_end(&mut data).context("failed to read standard input")?;
        for stage in &mut stages {
            match stage.plugin.call(&stage.function, &data) {
                Ok(output) => data = output,
                Err(error) => {
                    eprintln!("error: stage `{}`: {error}", stage.name);
                    return Ok(exit_code(&error));
                }
            }
        }
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(&data).and_then(|_| stdout.flush()).context("cannot write to standard output")?;
        Ok(crate::exit::OK)
    }

    /// Each record through every stage, in order, with two buffers passed
    /// back and forth: no allocation per record once they have grown.
    fn stream(&self, framing: Framing, stages: &mut [Stage]) -> anyhow::Result<u8> {
        let stdin = std::io::stdin().lock();
        let mut input = std::io::BufReader::with_capacity(1 << 16, stdin);
        let mut stdout = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
        let mut reject = match &self.on_error {
            Policy::Reject(path) => Some(std::io::BufWriter::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .with_context(|| format!("cannot open the reject file `{}`", path.display()))?,
            )),
            _ => None,
        };
        let (mut record, mut next) = (Vec::new(), Vec::new());
        let mut failed = 0u64;
        for number in 1u64.. {
            if input.buffer().is_empty() {
                // Nothing complete is waiting: what is done goes out now,
                // before the read that may block.
                stdout.flush().context("cannot write to standard output")?;
            }
            let Some(too_long) = read_record(&mut input, framing, self.max_record, &mut record)? else { break };
            let original = reject.is_some().then(|| record.clone());
            let outcome = if too_long {
                Err(("(input)".to_string(), pabi_host::Error::InputLimit { len: None, limit: self.max_record }))
            } else {
                run_record(stages, &mut record, &mut next)
            };
            match outcome {
                Ok(()) => write_record(&mut stdout, framing, &record).context("cannot write to standard output")?,
                Err((stage, error)) => {
                    eprintln!("error: record {number}: stage `{stage}`: {error}");
                    failed += 1;
                    match (&self.on_error, &mut reject, original) {
                        (Policy::Stop, ..) => {
                            stdout.flush().context("cannot write to standard output")?;
                            return Ok(exit_code(&error));
                        }
                        (Policy::Reject(path), Some(file), Some(original)) => write_record(file, framing, &original)
                            .and_then(|_| file.flush())
                            .with_context(|| format!("cannot write to `{}`", path.display()))?,
                        _ => {}
                    }
                }
            }
        }
        stdout.flush().context("cannot write to standard output")?;
        if failed > 0 {
            eprintln!("{failed} records failed");
            return Ok(crate::exit::FAILURE);
        }
        Ok(crate::exit::OK)
    }
}

struct Stage {
    name: String,
    plugin: pabi_host::Plugin,
    function: String,
}

/// Runs one record through the stages; `record` holds the result.
fn run_record(
    stages: &mut [Stage],
    record: &mut Vec<u8>,
    next: &mut Vec<u8>,
) -> Result<(), (String, pabi_host::Error)> {
    for stage in stages {
        stage.plugin.call_into(&stage.function, record, next).map_err(|e| (stage.name.clone(), e))?;
        std::mem::swap(record, next);
    }
    Ok(())
}

/// Reads the next record into `record`: `None` at the end of the input,
/// `Some(true)` for a record longer than `max` (kept only up to `max`
/// bytes; the rest is read and dropped so the next record is found).
fn read_record(
    input: &mut impl BufRead,
    framing: Framing,
    max: u64,
    record: &mut Vec<u8>,
) -> anyhow::Result<Option<bool>> {
    record.clear();
    match framing {
        Framing::Lines | Framing::Nul => {
            let end = if framing == Framing::Lines { b'\n' } else { 0 };
            let mut too_long = false;
            let mut any = false;
            loop {
                let available = input.fill_buf().context("failed to read standard input")?;
                if available.is_empty() {
                    break;
                }
                any = true;
                let (chunk, found) = match available.iter().position(|b| *b == end) {
                    Some(at) => (&available[..at], Some(at)),
                    None => (available, None),
                };
                let room = (max as usize).saturating_sub(record.len());
                too_long |= chunk.len() > room;
                record.extend_from_slice(&chunk[..chunk.len().min(room)]);
                let used = found.map_or(chunk.len(), |at| at + 1);
                input.consume(used);
                if found.is_some() {
                    break;
                }
            }
            Ok(any.then_some(too_long))
        }
        Framing::LengthPrefixed => {
            let mut len = [0u8; 4];
            match input.read_exact(&mut len) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
                Err(e) => return Err(e).context("failed to read standard input"),
            }
            let len = u64::from(u32::from_le_bytes(len));
            let kept = len.min(max);
            input.by_ref().take(kept).read_to_end(record).context("failed to read standard input")?;
            if (record.len() as u64) < kept {
                bail!("the input ends inside a record of {len} bytes");
            }
            std::io::copy(&mut input.by_ref().take(len - kept), &mut std::io::sink())
                .context("failed to read standard input")?;
            Ok(Some(len > max))
        }
    }
}

fn write_record(out: &mut impl Write, framing: Framing, record: &[u8]) -> std::io::Result<()> {
    match framing {
        Framing::Lines => out.write_all(record).and_then(|_| out.write_all(b"\n")),
        Framing::Nul => out.write_all(record).and_then(|_| out.write_all(&[0])),
        Framing::LengthPrefixed => {
            let len = u32::try_from(record.len()).map_err(|_| std::io::Error::other("a record past 4 GiB"))?;
            out.write_all(&len.to_le_bytes()).and_then(|_| out.write_all(record))
        }
    }
}
