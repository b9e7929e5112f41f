use std::io::{BufRead, Read, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use pabi_host::testing::{HostCallLog, Reenter};
use pabi_host::Unavailable;

use super::host_args::HostArgs;
use super::read_plugin;
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
    #[arg(
        long,
        value_name = "SIZE",
        value_parser = super::host_args::parse_size,
        default_value = "16MiB",
        requires = "framing"
    )]
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
  tail -f events.log | pabi pipe --framing lines --host-calls kv.json enrich.wasm:enrich text.wasm:upper
  pabi pipe --framing lines --on-error reject=bad.txt text.wasm:upper < big.txt > out.txt

With --framing, instances are reused from record to record, memory stays
bounded by --max-record, and output is flushed whenever the input has no
complete record waiting. A rejected record is appended to the reject file
whole, as it came in, even past --max-record. A stage whose plugin has no
such function is refused before any record is read.

The host flags are those of `pabi run` and act on every stage: limits,
grants, --host-calls and --host-call-command for plugins that make host
calls, --abi. A host-call table's `reenter` answer is refused (CALL-8).

With --on-error skip or reject, each record is judged on its own: a record
that traps or breaks a limit fails alone, the next one runs on a fresh
instance, and no number of such records disables a stage (the host's
crash-loop rule, LIFE-7, is not applied across records).

What ends a pipe:
  - the end of the input, once every record is out;
  - the first failing stage without --framing, or the first failing record
    under --on-error stop (the default); the records before it are out;
  - before any input is read: a stage that is not PLUGIN:FUNCTION, an
    unreadable or refused plugin, no such function, a host flag the host
    cannot take (an unreadable host-call table), a reject file that cannot
    be opened;
  - a failed read of the input, or, with --framing length-prefixed, an
    input that ends inside a record or its length;
  - a write error on standard output or on the reject file; a reader that
    goes away (a closed pipe) ends it quietly with 0.

Exit codes:
  0  every stage returned OK (with --framing: for every record), or the
     reader of standard output went away
  1  a stage returned an error status (PLUGIN_ERROR); with --framing, also
     when records were skipped or rejected, whatever their failure
  2  usage or I/O error: bad arguments, a bad host-call table, an input
     cut short, a failed read or write
  3  host error in a stage (load, limit, trap, ABI violation), or a record
     past --max-record (INPUT_LIMIT) under --on-error stop"
}

impl Opts {
    pub fn run(self) -> anyhow::Result<u8> {
        // Every stage holds an instance for the whole pipe: size the pool to
        // the pipe, at least the default.
        let slots = u32::try_from(self.stages.len()).unwrap_or(u32::MAX);
        let slots = slots.max(pabi_host::Config::default().max_instances());
        // Under `skip` and `reject` each record is judged on its own: a
        // record that kills its instance leaves the next record a fresh
        // one, however many did so before, instead of the host disabling
        // the stage after 5 (LIFE-7) and failing every good record after
        // them. A zero window forgets each failure at the next one, so
        // the host's count stays small on an endless input. Under
        // `stop` the first failure ends the pipe anyway.
        let judged_alone = !matches!(self.on_error, Policy::Stop);
        // The pipe prints no host-call transcript, so it keeps none. A
        // table's `reenter` answer would call back the stage whose host
        // call it serves, which the host refuses (CALL-8), as in `pabi run`.
        let refuse: Reenter =
            Arc::new(|_: &str, _: &[u8]| Err(pabi_host::Error::HostUnavailable(Unavailable::Reentrant)));
        let host = self.host.host(&HostCallLog::off(), Some(refuse), |config| {
            let config = config.max_instances(slots);
            if judged_alone {
                config.crash_limit(u32::MAX, Duration::ZERO)
            } else {
                config
            }
        })?;
        let mut stages = Vec::new();
        for stage in &self.stages {
            let Some((path, function)) = stage.rsplit_once(':').filter(|(p, f)| !p.is_empty() && !f.is_empty()) else {
                bail!("`{stage}` is not PLUGIN:FUNCTION");
            };
            let loaded = read_plugin(path.as_ref(), host.config().limits().max_module_bytes)?;
            match loaded.and_then(|wasm| host.load(&wasm)) {
                Ok(plugin) if !plugin.functions().iter().any(|f| f == function) => {
                    // Refused now rather than at every record, or never
                    // when the input is empty.
                    let error = pabi_host::Error::UnknownFunction {
                        name: function.to_string(),
                        available: plugin.functions().to_vec(),
                    };
                    eprintln!("error: stage `{stage}`: {error}");
                    return Ok(exit_code(&error));
                }
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
        let (mut failed, mut total) = (0u64, 0u64);
        for number in 1u64.. {
            // An over-long record goes to the reject file as it is read:
            // whole, without holding more than --max-record of it.
            let overflow = reject.as_mut().map(|file| file as &mut dyn Write);
            let read = read_record(&mut input, framing, self.max_record, &mut record, number, overflow, &mut stdout)?;
            let terminated = match read {
                Incoming::End => break,
                Incoming::Record { terminated } => terminated,
                Incoming::TooLong => false,
            };
            total += 1;
            let original = (reject.is_some() && read != Incoming::TooLong).then(|| record.clone());
            let outcome = if read == Incoming::TooLong {
                Err(("(input)".to_string(), pabi_host::Error::InputLimit { len: None, limit: self.max_record }))
            } else {
                run_record(stages, &mut record, &mut next)
            };
            match outcome {
                Ok(()) => write_record(&mut stdout, framing, &record).context("cannot write to standard output")?,
                Err((stage, error)) => {
                    eprintln!("error: record {number}: stage `{stage}`: {error}");
                    failed += 1;
                    match (&self.on_error, &mut reject) {
                        (Policy::Stop, _) => {
                            stdout.flush().context("cannot write to standard output")?;
                            return Ok(exit_code(&error));
                        }
                        (Policy::Reject(path), Some(file)) => {
                            let written = match original {
                                Some(original) => write_original(file, framing, &original, terminated),
                                None => Ok(()), // written while it was read
                            };
                            written
                                .and_then(|_| file.flush())
                                .with_context(|| format!("cannot write to `{}`", path.display()))?
                        }
                        _ => {}
                    }
                }
            }
        }
        stdout.flush().context("cannot write to standard output")?;
        if failed > 0 {
            eprintln!("{failed} of {total} records failed");
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

/// What [`read_record`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Incoming {
    /// The end of the input.
    End,
    /// A record; `terminated` unless it was the input's last line (or
    /// NUL-ended record) without its end byte.
    Record { terminated: bool },
    /// A record longer than `--max-record`: not kept, but passed whole to
    /// the overflow writer, if any, and read past so the next one is found.
    TooLong,
}

/// Whether `buffered` holds a whole length-prefixed record.
fn whole_prefixed_record(buffered: &[u8]) -> bool {
    buffered.get(..4).is_some_and(|len| {
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]);
        (buffered.len() - 4) as u64 >= u64::from(len)
    })
}

/// Reads record `number` into `record`, keeping at most `max` bytes of it.
/// A longer one is written, as it came in, to `overflow` when given.
/// `done` (the output) is flushed before any read that may block, so
/// finished records never wait on the input, even while part of the next
/// one is in.
fn read_record(
    input: &mut std::io::BufReader<impl Read>,
    framing: Framing,
    max: u64,
    record: &mut Vec<u8>,
    number: u64,
    mut overflow: Option<&mut dyn Write>,
    done: &mut impl Write,
) -> anyhow::Result<Incoming> {
    record.clear();
    let io = |e: std::io::Error| anyhow::Error::new(e).context("failed to read standard input");
    let over = |e: std::io::Error| anyhow::Error::new(e).context("cannot write to the reject file");
    let mut flush = || done.flush().context("cannot write to standard output");
    match framing {
        Framing::Lines | Framing::Nul => {
            let end = if framing == Framing::Lines { b'\n' } else { 0 };
            let (mut too_long, mut any, mut terminated) = (false, false, false);
            loop {
                if input.buffer().is_empty() {
                    flush()?;
                }
                let available = input.fill_buf().map_err(io)?;
                if available.is_empty() {
                    break;
                }
                any = true;
                let (chunk, found) = match available.iter().position(|b| *b == end) {
                    Some(at) => (&available[..at], Some(at)),
                    None => (available, None),
                };
                let room = (max as usize).saturating_sub(record.len());
                if !too_long && chunk.len() > room {
                    too_long = true;
                    // From here on, the record streams to the overflow.
                    if let Some(out) = overflow.as_mut() {
                        out.write_all(record).map_err(over)?;
                    }
                }
                if too_long {
                    if let Some(out) = overflow.as_mut() {
                        out.write_all(chunk).map_err(over)?;
                    }
                } else {
                    record.extend_from_slice(chunk);
                }
                terminated = found.is_some();
                let used = found.map_or(chunk.len(), |at| at + 1);
                input.consume(used);
                if terminated {
                    break;
                }
            }
            if too_long && terminated {
                if let Some(out) = overflow.as_mut() {
                    out.write_all(&[end]).map_err(over)?;
                }
            }
            Ok(match (any, too_long) {
                (false, _) => Incoming::End,
                (true, true) => Incoming::TooLong,
                (true, false) => Incoming::Record { terminated },
            })
        }
        Framing::LengthPrefixed => {
            if !whole_prefixed_record(input.buffer()) {
                flush()?;
            }
            if input.fill_buf().map_err(io)?.is_empty() {
                return Ok(Incoming::End);
            }
            let mut len = [0u8; 4];
            match input.read_exact(&mut len) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    bail!("record {number}: the input ends inside its 4-byte length")
                }
                Err(e) => return Err(io(e)),
            }
            let len = u64::from(u32::from_le_bytes(len));
            let too_long = len > max;
            let mut body = input.by_ref().take(len);
            let copied = match (too_long, overflow) {
                (false, _) => body.read_to_end(record).map_err(io)? as u64,
                (true, Some(out)) => {
                    out.write_all(&(len as u32).to_le_bytes()).map_err(over)?;
                    std::io::copy(&mut body, out).map_err(io)?
                }
                (true, None) => std::io::copy(&mut body, &mut std::io::sink()).map_err(io)?,
            };
            if copied < len {
                bail!("record {number}: the input ends inside it, after {copied} of its {len} bytes");
            }
            Ok(if too_long { Incoming::TooLong } else { Incoming::Record { terminated: true } })
        }
    }
}

/// Writes a record to the reject file as it came in: the last line keeps
/// its missing end byte missing.
fn write_original(out: &mut impl Write, framing: Framing, record: &[u8], terminated: bool) -> std::io::Result<()> {
    match framing {
        Framing::Lines | Framing::Nul if !terminated => out.write_all(record),
        _ => write_record(out, framing, record),
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
