//! The case model: a case file of `fixtures/host-conformance/` as types,
//! what each call must give included, and loading a folder of them. A case
//! that does not fit the model is a load error that names it, before any
//! adapter runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pabi_abi::{Clause, TrapKind};
use pabi_testkit::adapter::{AdapterLimits, LineKind};
use pabi_testkit::hex::decode_hex;
use pabi_testkit::host_calls::{HostCallRecord, HostCallTable};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer};

/// A case file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    #[serde(skip)]
    pub name: String,
    pub description: String,
    /// The clauses the case checks; an ID the spec does not define fails to load.
    pub clauses: Vec<Clause>,
    /// A `.wat` file beside the case.
    pub plugin: String,
    #[serde(default)]
    pub config_hex: Option<String>,
    #[serde(default)]
    pub limits: AdapterLimits,
    /// What the host's configuration allows (the adapter's grant flags).
    #[serde(default)]
    pub grants: CaseGrants,
    /// The application's side of host calls: a host-call table
    /// (`spec/schemas/host-calls.schema.json`), passed as `--host-calls`.
    #[serde(default)]
    pub host_calls: Option<HostCallTable>,
    /// The ABI version the host is to offer (`--abi`), for hosts that can
    /// offer an older one (`CALL-9`).
    #[serde(default)]
    pub abi: Option<pabi_abi::AbiVersion>,
    pub calls: Vec<Call>,
    /// What each call must give, one per call.
    pub expect: Vec<Expectation>,
    /// A clause whose limit a host may lack: it may answer NOT_SUPPORTED.
    #[serde(default)]
    pub not_supported_allowed: Option<Clause>,
}

/// A case's `grants`: the capabilities the host's configuration allows.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseGrants {
    #[serde(default)]
    pub clock: bool,
    #[serde(default)]
    pub random: bool,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub dirs: Vec<CaseDir>,
}

/// A scratch folder the runner makes, fills with `files` and offers at
/// `guest`; after the run it must hold exactly `files_after`, when given.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseDir {
    pub guest: String,
    pub mode: DirMode,
    #[serde(default)]
    pub files: BTreeMap<String, String>,
    #[serde(default)]
    pub files_after: Option<BTreeMap<String, String>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DirMode {
    Ro,
    Rw,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Call {
    pub function: String,
    pub input_hex: String,
    /// Instead of `input_hex`: an input of this many zero bytes, passed as
    /// a sparse file (`--input FILE`), for lengths no argument or memory
    /// could hold.
    #[serde(default)]
    pub input_file_len: Option<u64>,
}

/// What one call must give: fields of its result line
/// (`spec/host-guide.md`, "Cases"). A field the expectation does not give
/// is not compared; one it gives must be the line's, except
/// `message_contains`, strings that must each occur in the line's message.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    /// Whether the call succeeds.
    pub ok: bool,
    /// The output of a successful call. The file writes it as lowercase
    /// hex, as the lines do, so that it reads as the line it must equal.
    #[serde(default, rename = "output_hex", deserialize_with = "lowercase_hex")]
    pub output: Option<Vec<u8>>,
    /// The kind of a failure.
    #[serde(default, deserialize_with = "line_kind")]
    pub kind: Option<LineKind>,
    #[serde(default)]
    pub status: Option<i32>,
    /// The whole message; most cases give `message_contains` instead, as
    /// a host words its own messages.
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub message_contains: Vec<String>,
    #[serde(default)]
    pub clause: Option<Clause>,
    #[serde(default)]
    pub trap: Option<TrapKind>,
    /// The host calls the application received, in order (`CALL-4`); `[]`
    /// checks that it received none.
    #[serde(default)]
    pub host_calls: Option<Vec<HostCallRecord>>,
}

impl Expectation {
    /// Why no line could meet the expectation, if none could: the fields
    /// of a failure on a success, or an output on a failure.
    fn contradiction(&self) -> Option<&'static str> {
        let failure_fields = self.kind.is_some()
            || self.status.is_some()
            || self.message.is_some()
            || !self.message_contains.is_empty()
            || self.clause.is_some()
            || self.trap.is_some();
        if self.ok && failure_fields {
            Some("a successful call has no `kind`, `status`, `message`, `message_contains`, `clause` or `trap`")
        } else if !self.ok && self.output.is_some() {
            Some("a failed call has no `output_hex`")
        } else {
            None
        }
    }
}

/// `output_hex`: hex in lowercase, as a result line writes it.
fn lowercase_hex<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Vec<u8>>, D::Error> {
    let text = String::deserialize(deserializer)?;
    decode_hex(&text)
        .filter(|_| !text.bytes().any(|b| b.is_ascii_uppercase()))
        .map(Some)
        .ok_or_else(|| D::Error::custom(format!("`output_hex` is not lowercase hex: {text:?}")))
}

/// `kind`: a host error kind, or `NOT_SUPPORTED`.
fn line_kind<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<LineKind>, D::Error> {
    let name = String::deserialize(deserializer)?;
    LineKind::from_name(&name).map(Some).ok_or_else(|| D::Error::custom(format!("`{name}` is not an error kind")))
}

/// Reads every case of a folder, sorted by name.
pub fn load_cases(dir: &Path) -> anyhow::Result<Vec<Case>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    paths.iter().map(|path| load_case(path)).collect()
}

/// Reads one case file; every error names the file, and so the case.
fn load_case(path: &Path) -> anyhow::Result<Case> {
    let mut case: Case =
        serde_json::from_slice(&std::fs::read(path)?).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    case.name = path.file_stem().unwrap_or_default().to_string_lossy().into_owned();
    anyhow::ensure!(case.calls.len() == case.expect.len(), "{}: calls and expect differ in length", path.display());
    anyhow::ensure!(!case.calls.is_empty(), "{}: no calls", path.display());
    for (i, expected) in case.expect.iter().enumerate() {
        if let Some(why) = expected.contradiction() {
            anyhow::bail!("{}: expectation {} ({}): {why}", path.display(), i + 1, case.calls[i].function);
        }
    }
    Ok(case)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A case of one call per expectation, each `f` with input `00`.
    pub(crate) fn case(expect: Vec<serde_json::Value>, allowed: Option<&str>) -> Case {
        let expect: Vec<Expectation> =
            expect.into_iter().map(|e| serde_json::from_value(e).expect("a well-formed expectation")).collect();
        Case {
            name: "t".into(),
            description: String::new(),
            clauses: vec![Clause::Lim4],
            plugin: "io.wat".into(),
            config_hex: None,
            limits: serde_json::from_str(r#"{"fuel": 5}"#).unwrap(),
            grants: CaseGrants::default(),
            host_calls: None,
            abi: None,
            calls: expect
                .iter()
                .map(|_| Call { function: "f".into(), input_hex: "00".into(), input_file_len: None })
                .collect(),
            expect,
            not_supported_allowed: allowed.map(|c| c.parse().unwrap()),
        }
    }

    #[test]
    fn cases_with_an_undefined_clause_do_not_load() {
        let text = r#"{"description":"d","clauses":["MEM-99"],"plugin":"p.wat","calls":[],"expect":[]}"#; // not a clause ID on purpose
        let error = serde_json::from_str::<Case>(text).unwrap_err().to_string();
        assert!(error.contains("MEM-99"), "{error}"); // not a clause ID on purpose
    }

    /// Every case the suite ships fits the model.
    #[test]
    fn every_shipped_case_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/host-conformance");
        let cases = load_cases(&dir).unwrap();
        assert!(cases.len() > 100, "only {} cases", cases.len());
        assert!(cases.iter().any(|c| c.host_calls.is_some()));
        assert!(cases.iter().flat_map(|c| &c.expect).any(|e| e.host_calls.is_some() && e.output.is_some()));
    }

    /// A misspelt expectation field is a load error that names the case
    /// and the field, not an expectation that matches every line.
    #[test]
    fn a_misspelt_expectation_field_does_not_load() {
        let dir = tempfile::tempdir().unwrap();
        let text = r#"{"description":"d","clauses":["ERR-4"],"plugin":"io.wat",
            "calls":[{"function":"f","input_hex":""}],
            "expect":[{"ok":false,"kind":"PLUGIN_ERROR","mesage_contains":["bad"]}]}"#;
        std::fs::write(dir.path().join("misspelt.json"), text).unwrap();
        let error = load_cases(dir.path()).unwrap_err().to_string();
        assert!(error.contains("misspelt.json"), "{error}");
        assert!(error.contains("unknown field `mesage_contains`"), "{error}");
    }

    #[test]
    fn malformed_expectations_do_not_load() {
        for bad in [
            r#"{"ok":true,"output_hex":"0A"}"#,
            r#"{"ok":true,"output_hex":"0"}"#,
            r#"{"ok":false,"kind":"NOPE"}"#,
            r#"{"ok":false,"trap":"bad_signature"}"#,
            r#"{"ok":false,"clause":"MEM-99"}"#, // not a clause ID on purpose
            r#"{"kind":"TRAP"}"#,
        ] {
            assert!(serde_json::from_str::<Expectation>(bad).is_err(), "{bad} was accepted");
        }
        // Fields that no line could have together.
        for contradictory in [r#"{"ok":true,"kind":"TRAP"}"#, r#"{"ok":false,"output_hex":"00"}"#] {
            let expectation: Expectation = serde_json::from_str(contradictory).unwrap();
            assert!(expectation.contradiction().is_some(), "{contradictory}");
        }
    }
}
