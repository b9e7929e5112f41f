//! The host conformance adapter protocol (`spec/host-guide.md`, "The adapter
//! command"): the arguments a runner gives a host's adapter, and the JSON
//! result lines the adapter prints. The runner and every host build and read
//! them through these types, and `spec/schemas/adapter-result.schema.json`
//! describes the lines for hosts written in other languages.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::hex::{decode_hex, encode_hex};
use crate::host_calls::HostCallRecord;
use pabi_abi::{AbiVersion, Clause, HostErrorKind, TrapKind};

/// The JSON Schema of one result line.
pub const RESULT_LINE_SCHEMA: &str = include_str!("../../spec/schemas/adapter-result.schema.json");

/// Byte strings longer than this travel as files (`--input FILE`): Linux
/// refuses one argument of 128 KiB or more, and hex doubles the size.
pub const MAX_HEX_ARGUMENT: usize = 16 << 10;

/// The first word of the pseudo-function that saves state (`@save`).
pub const SAVE_STATE: &str = "@save";
/// The pseudo-function that loads state (`@load`).
pub const LOAD_STATE: &str = "@load";

/// The limits a case asks the adapter to apply; `None` is the host's default.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct AdapterLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_memory: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
    /// The host-call request cap (`LIM-14`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_request: Option<u64>,
    /// The host-call reply cap (`LIM-14`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_reply: Option<u64>,
}

/// What the host's configuration allows a case's plugin (`WASI-5`): the
/// adapter's grant flags. A plugin gets only what it declares and these
/// allow.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AdapterGrants {
    /// `--allow-clock`.
    pub clock: bool,
    /// `--allow-random`.
    pub random: bool,
    /// `--env NAME=VALUE`, in order.
    pub env: Vec<(String, String)>,
    /// `--dir HOST:GUEST[:ro]`, in order.
    pub dirs: Vec<AdapterDir>,
}

/// One `--dir` grant: a host folder offered at a guest path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdapterDir {
    pub host: PathBuf,
    pub guest: String,
    pub read_only: bool,
}

/// One call of an invocation: a plugin function (or `@save` / `@load`) and
/// its input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdapterCall {
    pub function: String,
    pub input: Vec<u8>,
    /// A file that holds the input instead of `input`, passed as is with
    /// `--input FILE` or `--then FUNCTION:@FILE`: for inputs too large to
    /// hold in memory, such as one past the ABI's length (`LIM-13`).
    pub input_file: Option<PathBuf>,
}

/// Everything one run of an adapter is asked to do.
#[derive(Clone, Debug)]
pub struct Invocation {
    pub plugin: PathBuf,
    pub calls: Vec<AdapterCall>,
    pub config: Option<Vec<u8>>,
    pub limits: AdapterLimits,
    pub grants: AdapterGrants,
    /// The application's side of host calls, a host-call table file
    /// (`--host-calls FILE`, [`crate::host_calls`]).
    pub host_calls: Option<PathBuf>,
    /// The ABI version the host offers (`--abi 1.0`, `CALL-9`); `None` is
    /// the newest it implements.
    pub abi: Option<AbiVersion>,
}

impl Invocation {
    /// The adapter's arguments, after the adapter's own words, in the order
    /// the host guide gives. Byte strings longer than [`MAX_HEX_ARGUMENT`]
    /// are handed to `spill`, which writes them to a file and returns its
    /// path. Fails when there is no call or `spill` fails.
    pub fn args(&self, spill: &mut dyn FnMut(&[u8]) -> std::io::Result<PathBuf>) -> std::io::Result<Vec<String>> {
        let (first, rest) =
            self.calls.split_first().ok_or_else(|| std::io::Error::other("an invocation needs at least one call"))?;
        let mut args = vec![self.plugin.display().to_string(), first.function.clone()];
        let bytes = |data: &[u8],
                     hex_flag: &str,
                     file_flag: &str,
                     args: &mut Vec<String>,
                     spill: &mut dyn FnMut(&[u8]) -> std::io::Result<PathBuf>|
         -> std::io::Result<()> {
            if data.len() > MAX_HEX_ARGUMENT {
                args.extend([file_flag.to_string(), spill(data)?.display().to_string()]);
            } else {
                args.extend([hex_flag.to_string(), encode_hex(data)]);
            }
            Ok(())
        };
        match &first.input_file {
            Some(file) => args.extend(["--input".to_string(), file.display().to_string()]),
            None => bytes(&first.input, "--input-hex", "--input", &mut args, spill)?,
        }
        for call in rest {
            let value = if let Some(file) = &call.input_file {
                format!("@{}", file.display())
            } else if call.input.len() > MAX_HEX_ARGUMENT {
                format!("@{}", spill(&call.input)?.display())
            } else {
                encode_hex(&call.input)
            };
            args.extend(["--then".to_string(), format!("{}:{value}", call.function)]);
        }
        if let Some(config) = &self.config {
            bytes(config, "--config-hex", "--config", &mut args, spill)?;
        }
        let limits = [
            ("--timeout-ms", self.limits.timeout_ms),
            ("--max-memory", self.limits.max_memory),
            ("--max-output", self.limits.max_output),
            ("--fuel", self.limits.fuel),
            ("--max-request", self.limits.max_request),
            ("--max-reply", self.limits.max_reply),
        ];
        for (flag, value) in limits {
            if let Some(value) = value {
                args.extend([flag.to_string(), value.to_string()]);
            }
        }
        let grants = &self.grants;
        if grants.clock {
            args.push("--allow-clock".to_string());
        }
        if grants.random {
            args.push("--allow-random".to_string());
        }
        for (name, value) in &grants.env {
            args.extend(["--env".to_string(), format!("{name}={value}")]);
        }
        for dir in &grants.dirs {
            let mode = if dir.read_only { ":ro" } else { "" };
            args.extend(["--dir".to_string(), format!("{}:{}{mode}", dir.host.display(), dir.guest)]);
        }
        if let Some(table) = &self.host_calls {
            args.extend(["--host-calls".to_string(), table.display().to_string()]);
        }
        if let Some(abi) = self.abi {
            args.extend(["--abi".to_string(), abi.to_string()]);
        }
        args.extend(["--format".to_string(), "json".to_string()]);
        Ok(args)
    }
}

/// What a failed line reports: a host error kind, or that the host cannot
/// apply a requested limit (`LIM-4`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineKind {
    Error(HostErrorKind),
    NotSupported,
}

impl LineKind {
    pub fn name(self) -> &'static str {
        match self {
            LineKind::Error(kind) => kind.name(),
            LineKind::NotSupported => "NOT_SUPPORTED",
        }
    }

    pub fn from_name(name: &str) -> Option<LineKind> {
        match name {
            "NOT_SUPPORTED" => Some(LineKind::NotSupported),
            other => HostErrorKind::from_name(other).map(LineKind::Error),
        }
    }
}

/// One result line of an adapter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResultLine {
    /// The call returned `OK` with this output, after these host calls.
    Ok { output: Vec<u8>, host_calls: Vec<HostCallRecord> },
    /// The load or the call failed.
    Failed(FailedLine),
}

/// A failed load or call, as one line reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailedLine {
    pub kind: LineKind,
    /// For `PLUGIN_ERROR` the plugin's message, decoded lossily as UTF-8;
    /// otherwise the host's description. Empty for `NOT_SUPPORTED`.
    pub message: String,
    /// The returned value, for `PLUGIN_ERROR` and `UNKNOWN_STATUS`.
    pub status: Option<i32>,
    /// For `ABI_VIOLATION` and `NOT_SUPPORTED` (required), and for
    /// `INVALID_MODULE` (the first rule the module breaks, optional).
    pub clause: Option<Clause>,
    /// For `TRAP` (optional).
    pub trap: Option<TrapKind>,
    /// The host calls the application received in the call, in order: those
    /// whose handler ran (`CALL-4`), not those answered `E_UNAVAILABLE`,
    /// `E_ABSENT` or `E_LIMIT` for the request cap.
    pub host_calls: Vec<HostCallRecord>,
}

impl FailedLine {
    pub fn new(kind: LineKind, message: impl Into<String>) -> FailedLine {
        FailedLine { kind, message: message.into(), status: None, clause: None, trap: None, host_calls: Vec::new() }
    }
}

/// The line as JSON: the field names of the host guide.
#[derive(Serialize, Deserialize)]
struct Wire {
    ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    output_hex: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    status: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    clause: Option<Clause>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    trap: Option<TrapKind>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    host_calls: Vec<HostCallRecord>,
}

/// A line that does not follow the protocol.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a result line of the adapter protocol: {0}")]
pub struct LineError(pub String);

impl ResultLine {
    /// The line as printed: one JSON object, no newline.
    pub fn to_json(&self) -> String {
        let wire = match self {
            ResultLine::Ok { output, host_calls } => Wire {
                ok: true,
                output_hex: Some(encode_hex(output)),
                kind: None,
                status: None,
                message: None,
                clause: None,
                trap: None,
                host_calls: host_calls.clone(),
            },
            ResultLine::Failed(line) => Wire {
                ok: false,
                output_hex: None,
                kind: Some(line.kind.name().to_string()),
                status: line.status,
                message: (line.kind != LineKind::NotSupported || !line.message.is_empty())
                    .then(|| line.message.clone()),
                clause: line.clause,
                trap: line.trap,
                host_calls: line.host_calls.clone(),
            },
        };
        serde_json::to_string(&wire).expect("a result line always serializes")
    }

    /// Reads one line, checking the rules of the host guide that a type can
    /// hold: the fields each kind requires, a known kind, clause and trap.
    /// Fields starting with `x-` are vendor extensions and ignored.
    pub fn parse(text: &str) -> Result<ResultLine, LineError> {
        let err = |why: String| LineError(format!("{why}: {text}"));
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| err(format!("not JSON ({e})")))?;
        let object = value.as_object().ok_or_else(|| err("not a JSON object".into()))?;
        const KNOWN: [&str; 8] = ["ok", "output_hex", "kind", "status", "message", "clause", "trap", "host_calls"];
        if let Some(extra) = object.keys().find(|k| !KNOWN.contains(&k.as_str()) && !k.starts_with("x-")) {
            return Err(err(format!("unknown field `{extra}` (vendor fields start with `x-`)")));
        }
        let mut known = object.clone();
        known.retain(|k, _| KNOWN.contains(&k.as_str()));
        let wire: Wire = serde_json::from_value(serde_json::Value::Object(known)).map_err(|e| err(e.to_string()))?;
        if wire.ok {
            if wire.kind.is_some() || wire.status.is_some() || wire.clause.is_some() || wire.trap.is_some() {
                return Err(err("a successful line has only `output_hex`".into()));
            }
            let hex = wire.output_hex.ok_or_else(|| err("`output_hex` is missing".into()))?;
            if hex.bytes().any(|b| b.is_ascii_uppercase()) {
                return Err(err("`output_hex` must be lowercase".into()));
            }
            let output = decode_hex(&hex).ok_or_else(|| err("`output_hex` is not hex".into()))?;
            return Ok(ResultLine::Ok { output, host_calls: wire.host_calls });
        }
        if wire.output_hex.is_some() {
            return Err(err("a failed line has no `output_hex`".into()));
        }
        let name = wire.kind.ok_or_else(|| err("`kind` is missing".into()))?;
        let kind = LineKind::from_name(&name).ok_or_else(|| err(format!("`{name}` is not an error kind")))?;
        let needs_status =
            matches!(kind, LineKind::Error(HostErrorKind::PluginError) | LineKind::Error(HostErrorKind::UnknownStatus));
        if needs_status != wire.status.is_some() {
            return Err(err(format!("`status` is given exactly for PLUGIN_ERROR and UNKNOWN_STATUS, not {name}")));
        }
        let needs_clause = matches!(kind, LineKind::Error(HostErrorKind::AbiViolation) | LineKind::NotSupported);
        let may_clause = needs_clause || kind == LineKind::Error(HostErrorKind::InvalidModule);
        if (needs_clause && wire.clause.is_none()) || (!may_clause && wire.clause.is_some()) {
            return Err(err(format!("`clause` does not fit {name}")));
        }
        if wire.trap.is_some() && kind != LineKind::Error(HostErrorKind::Trap) {
            return Err(err(format!("`trap` does not fit {name}")));
        }
        if wire.message.is_none() && kind != LineKind::NotSupported {
            return Err(err("`message` is missing".into()));
        }
        Ok(ResultLine::Failed(FailedLine {
            kind,
            message: wire.message.unwrap_or_default(),
            status: wire.status,
            clause: wire.clause,
            trap: wire.trap,
            host_calls: wire.host_calls,
        }))
    }
}

/// Where large byte strings of a run go: a file per string in `dir`.
pub fn spill_into<'a>(dir: &'a Path, stem: &str) -> impl FnMut(&[u8]) -> std::io::Result<PathBuf> + 'a {
    let stem: String = stem.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    let mut count = 0;
    move |data| {
        count += 1;
        let path = dir.join(format!("{stem}.{count}.bin"));
        std::fs::write(&path, data)?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(line: ResultLine) {
        let text = line.to_json();
        assert_eq!(ResultLine::parse(&text), Ok(line), "{text}");
    }

    #[test]
    fn lines_round_trip() {
        roundtrip(ResultLine::Ok { output: vec![1, 0, 0xab], host_calls: vec![] });
        roundtrip(ResultLine::Ok { output: vec![], host_calls: vec![HostCallRecord::new("kv.get", b"apple")] });
        let mut plugin_error = FailedLine::new(LineKind::Error(HostErrorKind::PluginError), "bad input");
        plugin_error.status = Some(1);
        roundtrip(ResultLine::Failed(plugin_error));
        let mut violation = FailedLine::new(LineKind::Error(HostErrorKind::AbiViolation), "x");
        violation.clause = Some(Clause::Mem3);
        roundtrip(ResultLine::Failed(violation));
        let mut trap = FailedLine::new(LineKind::Error(HostErrorKind::Trap), "the plugin trapped");
        trap.trap = Some(TrapKind::StackOverflow);
        roundtrip(ResultLine::Failed(trap));
        let mut unsupported = FailedLine::new(LineKind::NotSupported, "");
        unsupported.clause = Some(Clause::Lim4);
        roundtrip(ResultLine::Failed(unsupported));
    }

    #[test]
    fn bad_lines_are_refused() {
        for bad in [
            r#"{"ok":true}"#,
            r#"{"ok":true,"output_hex":"0G"}"#,
            r#"{"ok":true,"output_hex":"AB"}"#,
            r#"{"ok":false,"kind":"PLUGIN_ERROR","message":"m"}"#,
            r#"{"ok":false,"kind":"TRAP","message":"m","status":1}"#,
            r#"{"ok":false,"kind":"ABI_VIOLATION","message":"m"}"#,
            r#"{"ok":false,"kind":"ABI_VIOLATION","message":"m","clause":"MEM-99"}"#, // not a clause ID on purpose
            r#"{"ok":false,"kind":"TIMEOUT","message":"m","clause":"LIM-3"}"#,
            r#"{"ok":false,"kind":"TRAP","message":"m","trap":"bad_signature"}"#,
            r#"{"ok":false,"kind":"NOPE","message":"m"}"#,
            r#"{"ok":false,"kind":"TIMEOUT"}"#,
            r#"{"ok":false,"kind":"TIMEOUT","message":"m","extra":1}"#,
            "[1]",
            "not json",
        ] {
            assert!(ResultLine::parse(bad).is_err(), "{bad} was accepted");
        }
        assert!(ResultLine::parse(r#"{"ok":false,"kind":"TIMEOUT","message":"m","x-took-ms":3}"#).is_ok());
        assert!(ResultLine::parse(r#"{"ok":false,"kind":"INVALID_MODULE","message":"m","clause":"EXP-1"}"#).is_ok());
    }

    /// The schema and [`ResultLine::parse`] agree on the same lines.
    #[test]
    fn schema_agrees_with_the_type() {
        let schema: serde_json::Value = serde_json::from_str(RESULT_LINE_SCHEMA).unwrap();
        let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
        for text in [
            r#"{"ok":true,"output_hex":"00ff"}"#,
            r#"{"ok":false,"kind":"PLUGIN_ERROR","status":1,"message":"bad input"}"#,
            r#"{"ok":false,"kind":"NOT_SUPPORTED","clause":"LIM-4"}"#,
            r#"{"ok":false,"kind":"TRAP","message":"m","trap":"unreachable"}"#,
            r#"{"ok":true}"#,
            r#"{"ok":false,"kind":"PLUGIN_ERROR","message":"m"}"#,
            r#"{"ok":false,"kind":"ABI_VIOLATION","message":"m"}"#,
            r#"{"ok":false,"kind":"TIMEOUT","message":"m","extra":1}"#,
            r#"{"ok":false,"kind":"TRAP","message":"m","trap":"bad_signature"}"#,
        ] {
            let value: serde_json::Value = serde_json::from_str(text).unwrap();
            assert_eq!(validator.is_valid(&value), ResultLine::parse(text).is_ok(), "{text}");
        }
    }
}
