use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context};
use pabi_abi::HostErrorKind;
use pabi_testkit::adapter::{FailedLine, LineKind, ResultLine};
use std::sync::{Arc, OnceLock};

use pabi_host::testing::{HostCallLog, SharedPlugin};
use pabi_host::{Error, Plugin};

use super::host_args::{parse_hex, HostArgs};
use super::{read_payload, read_plugin, Payload};

/// Run one plugin function under the reference host: output to stdout, the
/// error kind and message to stderr.
#[derive(clap::Args, Debug)]
#[command(after_help = run_help())]
pub struct Opts {
    /// The plugin (.wasm).
    #[arg(value_name = "PLUGIN")]
    plugin: PathBuf,
    /// The function to call, or `@save` / `@load` for the state exports.
    #[arg(value_name = "FUNCTION")]
    function: String,
    /// Input from a file, or `-` for standard input [default: empty].
    #[arg(long, visible_alias = "input-file", value_name = "FILE", conflicts_with = "input_hex")]
    input: Option<PathBuf>,
    /// Input as hex digits, for small inputs: the OS limits one argument to
    /// 128 KiB, so give larger ones with `--input FILE` or `--input -`
    /// (standard input).
    #[arg(long, value_name = "HEX")]
    input_hex: Option<String>,
    /// Configuration bytes for `pabi_init`, from a file.
    #[arg(long, value_name = "FILE", conflicts_with = "config_hex")]
    config: Option<PathBuf>,
    /// Configuration bytes as hex digits.
    #[arg(long, value_name = "HEX")]
    config_hex: Option<String>,
    /// A further call on the same plugin, `FUNCTION:HEX` or
    /// `FUNCTION:@FILE`; repeatable.
    #[arg(long = "then", value_name = "FUNCTION:HEX")]
    then: Vec<String>,
    #[command(flatten)]
    host: HostArgs,
    /// `raw` writes the output bytes; `json` writes one result line per
    /// call (the host conformance adapter protocol).
    #[arg(long, value_enum, default_value_t = RunFormat::Raw)]
    format: RunFormat,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum RunFormat {
    Raw,
    Json,
}

const fn run_help() -> &'static str {
    "\
Examples:
  pabi run text.wasm upper --input-hex 6869          # prints HI
  echo -n hello | pabi run text.wasm reverse --input -
  pabi run greet.wasm greet --config prefix.txt --input name.txt
  pabi run counter.wasm counter --then counter: --then @save:
  pabi run slow.wasm f --timeout 100ms --max-memory 16MiB --fuel 1000000
  pabi run reader.wasm f --dir ./data:/data:ro --env LANG=C

Exit codes:
  0  the call returned OK (with --format json: the calls ran, whatever
     their results)
  1  the plugin returned an error status (PLUGIN_ERROR)
  2  usage or I/O error
  3  host error: the plugin did not load, broke a limit, trapped, broke
     the ABI or returned an undefined status"
}

/// Exit codes of `run` and `pipe`.
pub const EXIT_PLUGIN_ERROR: u8 = crate::exit::FAILURE;
pub const EXIT_HOST_ERROR: u8 = crate::exit::HOST_ERROR;

/// The exit code for a failed call.
pub fn exit_code(error: &Error) -> u8 {
    if error.kind() == Some(HostErrorKind::PluginError) {
        EXIT_PLUGIN_ERROR
    } else {
        EXIT_HOST_ERROR
    }
}

impl Opts {
    pub fn run(self) -> anyhow::Result<u8> {
        let input = match (&self.input, &self.input_hex) {
            (Some(path), _) => read_payload(path)?,
            (None, Some(hex)) => Payload::Bytes(parse_hex(hex).context("bad --input-hex")?),
            (None, None) => Payload::Bytes(Vec::new()),
        };
        let config = match (&self.config, &self.config_hex) {
            (Some(path), _) => read_payload(path)?,
            (None, Some(hex)) => Payload::Bytes(parse_hex(hex).context("bad --config-hex")?),
            (None, None) => Payload::Bytes(Vec::new()),
        };
        let mut calls = vec![(self.function.clone(), input)];
        for then in &self.then {
            let Some((function, hex)) = then.split_once(':') else {
                bail!("`--then {then}`: give FUNCTION:HEX (the hex may be empty: `count:`)");
            };
            let input = match hex.strip_prefix('@') {
                Some(path) => read_payload(path.as_ref())?,
                None => Payload::Bytes(parse_hex(hex).with_context(|| format!("bad hex in `--then {then}`"))?),
            };
            calls.push((function.to_string(), input));
        }
        // A host-call table's `reenter` answers call the plugin back
        // through this shared handle, which the host refuses (CALL-8).
        let shared: Arc<OnceLock<SharedPlugin>> = Arc::default();
        let slot = shared.clone();
        let reenter: pabi_host::testing::Reenter = Arc::new(move |function: &str, input: &[u8]| match slot.get() {
            Some(plugin) => plugin.call(function, input),
            None => Err(Error::HostUnavailable(pabi_host::Unavailable::Reentrant)),
        });
        let transcript = HostCallLog::default();
        let host = self.host.host(&transcript, Some(reenter), |config| config)?;
        // Past the host's compile budget, the file is not read: the load
        // below reports the MODULE_LIMIT the host would have.
        let wasm = read_plugin(&self.plugin, host.config().limits().max_module_bytes)?;
        let mut stdout = std::io::stdout().lock();
        let loaded =
            wasm.and_then(|wasm| config.bytes().and_then(|config| host.load_with_plugin_config(&wasm, &config)));
        let plugin = match loaded {
            Ok(plugin) => shared.get_or_init(|| SharedPlugin::new(plugin)).clone(),
            Err(error) => return self.report(&mut stdout, Err(error), transcript.take()),
        };
        let mut code = crate::exit::OK;
        for (function, input) in calls {
            let result = input.bytes().and_then(|input| plugin.with(|plugin| call(plugin, &function, &input)));
            code = self.report(&mut stdout, result, transcript.take())?;
            if code != crate::exit::OK && self.format == RunFormat::Raw {
                break;
            }
        }
        Ok(code)
    }

    /// Prints one call's result; returns the exit code it deserves.
    fn report(
        &self,
        stdout: &mut impl Write,
        result: Result<Vec<u8>, Error>,
        host_calls: Vec<pabi_testkit::host_calls::HostCallRecord>,
    ) -> anyhow::Result<u8> {
        match self.format {
            RunFormat::Json => {
                let mut line = result_line(&result)?;
                match &mut line {
                    ResultLine::Ok { host_calls: made, .. } => *made = host_calls,
                    ResultLine::Failed(failed) => failed.host_calls = host_calls,
                }
                writeln!(stdout, "{}", line.to_json()).context("cannot write to standard output")?;
                Ok(crate::exit::OK)
            }
            RunFormat::Raw => match result {
                Ok(output) => {
                    stdout
                        .write_all(&output)
                        .and_then(|_| stdout.flush())
                        .context("cannot write to standard output")?;
                    Ok(crate::exit::OK)
                }
                Err(error) => {
                    eprintln!("error: {error}");
                    Ok(exit_code(&error))
                }
            },
        }
    }
}

/// A plugin function, or `@save` / `@load` for the state exports.
pub fn call(plugin: &mut Plugin, function: &str, input: &[u8]) -> Result<Vec<u8>, Error> {
    match function {
        pabi_testkit::adapter::SAVE_STATE => plugin.save_state(),
        pabi_testkit::adapter::LOAD_STATE => plugin.load_state(input).map(|()| Vec::new()),
        name => plugin.call(name, input),
    }
}

/// One result line of the adapter protocol (`spec/host-guide.md`).
/// A host that cannot serve is a `HOST_FAILURE` line like any other kind;
/// a configuration the host cannot apply becomes `NOT_SUPPORTED` with its
/// clause.
pub fn result_line(result: &Result<Vec<u8>, Error>) -> anyhow::Result<ResultLine> {
    let error = match result {
        Ok(output) => return Ok(ResultLine::Ok { output: output.clone(), host_calls: Vec::new() }),
        Err(error) => error,
    };
    let kind = match (error.kind(), error.clause()) {
        (Some(kind), _) => LineKind::Error(kind),
        (None, Some(_)) => LineKind::NotSupported,
        (None, None) => bail!("{error}"),
    };
    let message = match error.message() {
        Some(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        None => error.to_string(),
    };
    let mut line = FailedLine::new(kind, message);
    line.status = error.status();
    line.clause = error.clause();
    line.trap = error.trap();
    Ok(ResultLine::Failed(line))
}
