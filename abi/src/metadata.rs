use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{AbiVersion, Clause, VersionParseError};

mod schema;

/// The metadata JSON Schema (`META-3`), the same file the spec publishes.
/// [`Metadata::parse`] checks a document against it with code of its own,
/// which its tests hold to this text.
pub const METADATA_SCHEMA: &str = include_str!("../../spec/metadata.schema.json");

/// Largest metadata section payload a host must read (`META-2`).
pub const MAX_METADATA_BYTES: usize = 64 << 10;

/// The plugin's self-description, read from its `pabi` custom section.
/// `#[non_exhaustive]`: each minor version may add members; read one with
/// [`Metadata::parse`], or start from [`Metadata::new`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Metadata {
    /// The ABI version the plugin was written against (`VER-1`).
    pub abi: AbiVersion,
    pub name: String,
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub profile: Profile,
    pub functions: Vec<FunctionMeta>,
    /// Declared capabilities, in the order written (`WASI-3`).
    pub capabilities: Vec<Capability>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub statuses: BTreeMap<String, String>,
    /// The host calls the plugin makes (`CALL-1`, Since 1.1).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_calls: Vec<HostCallMeta>,
}

/// One declared host call (`CALL-1`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HostCallMeta {
    /// `namespace.name` (`CALL-2`).
    pub name: String,
    /// Whether a host that does not offer it refuses the plugin (`CALL-5`).
    pub required: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<String>,
}

impl Metadata {
    /// A plugin of ABI `abi` and `profile` named `name` at `version`, with
    /// nothing declared yet: set the public fields for the rest.
    pub fn new(abi: AbiVersion, name: impl Into<String>, version: impl Into<String>, profile: Profile) -> Metadata {
        Metadata {
            abi,
            name: name.into(),
            version: version.into(),
            description: None,
            profile,
            functions: Vec::new(),
            capabilities: Vec::new(),
            statuses: BTreeMap::new(),
            host_calls: Vec::new(),
        }
    }
}

impl FunctionMeta {
    /// The function `name`, with nothing else declared.
    pub fn new(name: impl Into<String>) -> FunctionMeta {
        FunctionMeta { name: name.into(), summary: None, input: None, output: None, deterministic: false }
    }
}

impl HostCallMeta {
    /// The host call `name`, required or optional, with nothing else
    /// declared.
    pub fn new(name: impl Into<String>, required: bool) -> HostCallMeta {
        HostCallMeta { name: name.into(), required, summary: None, request: None, reply: None }
    }
}

/// Whether `name` is a host-call name (`CALL-2`): two to four dot-separated
/// parts of `[a-z][a-z0-9_]{0,31}`. The reserved `pabi` namespace is a
/// separate rule.
pub fn is_valid_host_call_name(name: &str) -> bool {
    let parts: Vec<&str> = name.split('.').collect();
    (2..=4).contains(&parts.len())
        && parts.iter().all(|part| {
            let bytes = part.as_bytes();
            !bytes.is_empty()
                && bytes.len() <= 32
                && bytes[0].is_ascii_lowercase()
                && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_')
        })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    Core,
    Wasi,
}

impl Profile {
    pub fn name(self) -> &'static str {
        match self {
            Profile::Core => "core",
            Profile::Wasi => "wasi",
        }
    }
}

/// One declared function (`META-4`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FunctionMeta {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    #[serde(default)]
    pub deterministic: bool,
}

/// A WASI capability (`WASI-3`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Capability {
    /// The real wall and monotonic clocks, and real sleeps.
    Clock,
    /// Entropy from the host.
    Random,
    /// One environment variable.
    Env(String),
    /// A directory preopened at a guest path.
    Fs { guest_path: String, read_only: bool },
}

impl Capability {
    /// Parses `clock`, `random`, `env:NAME` or `fs:/guest/path:ro|rw`.
    pub fn parse(text: &str) -> Option<Capability> {
        match text {
            "clock" => return Some(Capability::Clock),
            "random" => return Some(Capability::Random),
            _ => {}
        }
        if let Some(name) = text.strip_prefix("env:") {
            let mut chars = name.chars();
            let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
            let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
            return (first_ok && rest_ok).then(|| Capability::Env(name.to_string()));
        }
        let rest = text.strip_prefix("fs:")?;
        let (path, mode) = rest.rsplit_once(':')?;
        let read_only = match mode {
            "ro" => true,
            "rw" => false,
            _ => return None,
        };
        if !path.starts_with('/') || path.contains(['\0', ':']) {
            return None;
        }
        Some(Capability::Fs { guest_path: path.to_string(), read_only })
    }
}

impl Serialize for Capability {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Capability {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Capability::parse(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("`{text}` is not a capability (WASI-3)")))
    }
}

impl std::fmt::Display for Capability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Capability::Clock => f.write_str("clock"),
            Capability::Random => f.write_str("random"),
            Capability::Env(name) => write!(f, "env:{name}"),
            Capability::Fs { guest_path, read_only } => {
                write!(f, "fs:{guest_path}:{}", if *read_only { "ro" } else { "rw" })
            }
        }
    }
}

/// Why a metadata payload was refused. Each variant names its clause.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MetadataError {
    #[error("metadata is {0} bytes, more than the {MAX_METADATA_BYTES}-byte limit")]
    TooLarge(usize),
    #[error("metadata is not UTF-8 (invalid byte at offset {0})")]
    NotUtf8(usize),
    #[error("metadata is not JSON: {0}")]
    NotJson(String),
    #[error("metadata does not match the schema: {}", .0.join("; "))]
    Schema(Vec<String>),
    #[error("metadata lists function `{0}` more than once")]
    DuplicateFunction(String),
    #[error("metadata `abi`: {0}")]
    BadVersion(#[from] VersionParseError),
    #[error("capabilities are declared but the profile is `core`")]
    CapabilitiesInCore,
    /// A host call declared twice (`CALL-1`) or in the reserved `pabi`
    /// namespace (`CALL-2`).
    #[error("host call `{name}`: {reason}")]
    HostCall { name: String, reason: String, clause: Clause },
    /// An `fs:` guest path that is not normal, or two that overlap (`WASI-3`).
    #[error("capability `{capability}`: {reason}")]
    FsPath { capability: String, reason: String },
}

impl MetadataError {
    /// The spec clause the error breaks.
    pub fn clause(&self) -> Clause {
        match self {
            MetadataError::TooLarge(_) | MetadataError::NotUtf8(_) | MetadataError::NotJson(_) => Clause::Meta2,
            MetadataError::Schema(_) => Clause::Meta3,
            MetadataError::DuplicateFunction(_) => Clause::Meta5,
            MetadataError::BadVersion(_) => Clause::Ver1,
            MetadataError::CapabilitiesInCore => Clause::Wasi1,
            MetadataError::FsPath { .. } => Clause::Wasi3,
            MetadataError::HostCall { clause, .. } => *clause,
        }
    }
}

impl Metadata {
    /// Parses and checks a `pabi` section payload: size, UTF-8, JSON, schema,
    /// unique function names and profile/capability agreement.
    pub fn parse(bytes: &[u8]) -> Result<Metadata, MetadataError> {
        if bytes.len() > MAX_METADATA_BYTES {
            return Err(MetadataError::TooLarge(bytes.len()));
        }
        let text = std::str::from_utf8(bytes).map_err(|e| MetadataError::NotUtf8(e.valid_up_to()))?;
        crate::ijson::check(text).map_err(|e| MetadataError::NotJson(e.to_string()))?;
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| MetadataError::NotJson(e.to_string()))?;
        // The schema, checked by code that words each problem with its
        // place (`schema.rs` says why it is not a schema validator).
        let problems = schema::problems(&value);
        if !problems.is_empty() {
            return Err(MetadataError::Schema(problems));
        }
        // The version first, so that a malformed one is a VER-1 error and not
        // a failure to read the document.
        if let Some(abi) = value.get("abi").and_then(|v| v.as_str()) {
            abi.parse::<AbiVersion>()?;
        }
        let meta: Metadata = serde_json::from_value(value).map_err(|e| MetadataError::Schema(vec![e.to_string()]))?;
        let mut seen = std::collections::BTreeSet::new();
        if let Some(dup) = meta.functions.iter().find(|f| !seen.insert(f.name.as_str())) {
            return Err(MetadataError::DuplicateFunction(dup.name.clone()));
        }
        if meta.profile == Profile::Core && !meta.capabilities.is_empty() {
            return Err(MetadataError::CapabilitiesInCore);
        }
        check_fs_paths(&meta.capabilities)?;
        check_host_calls(&meta.host_calls)?;
        Ok(meta)
    }

    pub fn function(&self, name: &str) -> Option<&FunctionMeta> {
        self.functions.iter().find(|f| f.name == name)
    }
}

/// The guest-path rules of `WASI-3`: each `fs:` path is `/` or components
/// that are not empty, `.` or `..`, with no trailing `/`; no two paths are
/// the same or one inside the other. An outer grant reaches an inner one's
/// files through a path relative to itself, so two overlapping modes could
/// not both be enforced.
fn check_fs_paths(capabilities: &[Capability]) -> Result<(), MetadataError> {
    let paths: Vec<(&Capability, Vec<&str>)> = capabilities
        .iter()
        .filter_map(|c| match c {
            Capability::Fs { guest_path, .. } => Some((c, guest_path.split('/').skip(1).collect())),
            _ => None,
        })
        .collect();
    let bad = |capability: &Capability, reason: &str| MetadataError::FsPath {
        capability: capability.to_string(),
        reason: reason.to_string(),
    };
    for (capability, parts) in &paths {
        // `/` alone splits into one empty component: the guest root.
        if parts.as_slice() == [""] {
            continue;
        }
        if let Some(part) = parts.iter().find(|p| matches!(**p, "" | "." | "..")) {
            let reason = match *part {
                "" => "the guest path has an empty component (a doubled or trailing `/`)",
                "." => "the guest path has a `.` component",
                _ => "the guest path has a `..` component",
            };
            return Err(bad(capability, reason));
        }
    }
    let components = |parts: &[&str]| if parts == [""] { 0 } else { parts.len() };
    for (i, (first, a)) in paths.iter().enumerate() {
        for (second, b) in &paths[i + 1..] {
            let (short, long) = if components(a) <= components(b) { (a, b) } else { (b, a) };
            if long[..components(short)] == short[..components(short)] {
                let reason = if components(a) == components(b) {
                    format!("`{second}` names the same guest path")
                } else {
                    format!("it overlaps `{second}`: one guest path is inside the other")
                };
                return Err(bad(first, &reason));
            }
        }
    }
    Ok(())
}

/// Unique names (`CALL-1`) outside the reserved namespace (`CALL-2`).
fn check_host_calls(calls: &[HostCallMeta]) -> Result<(), MetadataError> {
    let mut seen = std::collections::BTreeSet::new();
    for call in calls {
        if !seen.insert(call.name.as_str()) {
            return Err(MetadataError::HostCall {
                name: call.name.clone(),
                reason: "declared more than once".to_string(),
                clause: Clause::Call1,
            });
        }
        if call.name.starts_with("pabi.") {
            return Err(MetadataError::HostCall {
                name: call.name.clone(),
                reason: "the `pabi` namespace is reserved for calls a later ABI version defines".to_string(),
                clause: Clause::Call2,
            });
        }
    }
    Ok(())
}

/// Whether `name` is a valid plugin function name, `[a-z][a-z0-9_]{0,63}`
/// (`EXP-4`).
pub fn is_valid_function_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 64
        && bytes[0].is_ascii_lowercase()
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"abi":"1.0","name":"text-tools","version":"0.1.0","profile":"core",
        "functions":[{"name":"upper","input":"text/plain","deterministic":true}],"capabilities":[]}"#;

    #[test]
    fn fs_guest_paths_are_normal_and_do_not_overlap() {
        let doc = |caps: &[&str]| {
            let caps: Vec<String> = caps.iter().map(|c| format!("\"{c}\"")).collect();
            format!(
                r#"{{"abi":"1.0","name":"x","version":"1.0.0","profile":"wasi","functions":[{{"name":"a"}}],"capabilities":[{}]}}"#,
                caps.join(",")
            )
        };
        for good in [
            &["fs:/:ro"][..],
            &["fs:/data:ro", "fs:/database:rw"],
            &["fs:/a/b:ro", "fs:/a/c:rw"],
            &["fs:/data..x:ro"],
            &["clock", "fs:/data:ro"],
        ] {
            assert!(Metadata::parse(doc(good).as_bytes()).is_ok(), "{good:?}");
        }
        for bad in [
            &["fs:/data/:ro"][..],
            &["fs:/a//b:ro"],
            &["fs:/data/../etc:ro"],
            &["fs:/./data:ro"],
            &["fs:/data:ro", "fs:/data:rw"],
            &["fs:/data:rw", "fs:/data/keys:ro"],
            &["fs:/data/keys:ro", "fs:/data:rw"],
            &["fs:/:ro", "fs:/data:rw"],
        ] {
            let error = Metadata::parse(doc(bad).as_bytes()).unwrap_err();
            assert_eq!(error.clause(), Clause::Wasi3, "{bad:?}: {error}");
        }
    }

    #[test]
    fn accepts_a_good_document() {
        let meta = Metadata::parse(GOOD.as_bytes()).unwrap();
        assert_eq!(meta.functions[0].name, "upper");
        assert!(meta.functions[0].deterministic);
        assert_eq!(meta.abi, AbiVersion::new(1, 0));
    }

    #[test]
    fn refuses_each_defect_with_its_clause() {
        let cases: &[(&[u8], &str)] = &[
            (b"\xff{}", "META-2"),
            (b"{", "META-2"),
            (br#"{"abi":"1.0"}"#, "META-3"),
            (
                br#"{"abi":"1.0","name":"x","version":"1","profile":"core","functions":[{"name":"a"}],"capabilities":[]}"#,
                "META-3",
            ),
            (
                br#"{"abi":"1.0","name":"x","version":"1.0.0","profile":"core","functions":[{"name":"a"},{"name":"a"}],"capabilities":[]}"#,
                "META-5",
            ),
            (
                br#"{"abi":"1.0","name":"x","version":"1.0.0","profile":"core","functions":[{"name":"a"}],"capabilities":["clock"]}"#,
                "WASI-1",
            ),
        ];
        for (bytes, clause) in cases {
            let err = Metadata::parse(bytes).unwrap_err();
            assert_eq!(err.clause().id(), *clause, "{err}");
        }
        let big = vec![b' '; MAX_METADATA_BYTES + 1];
        assert_eq!(Metadata::parse(&big).unwrap_err().clause(), Clause::Meta2);
    }

    #[test]
    fn capabilities_parse_and_print_back() {
        for text in ["clock", "random", "env:HOME", "env:_X1", "fs:/data:ro", "fs:/:rw"] {
            assert_eq!(Capability::parse(text).unwrap().to_string(), text);
        }
        for bad in ["", "net", "env:", "env:1X", "fs:data:ro", "fs:/data:rx", "fs:/a:b:ro"] {
            assert_eq!(Capability::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_schema_caps_lengths_at_exactly_the_grammar_s_bounds() {
        // The schema states these caps as lengths rather than bounded
        // repetitions (cheaper to compile); each must still fall exactly
        // where the grammar puts it. A path of 1023 'é' after '/' is 1024
        // code points but 2047 bytes: lengths count code points (META-2).
        let doc = |name: &str, function: &str, capability: &str| {
            format!(
                r#"{{"abi":"1.0","name":"{name}","version":"1.0.0","profile":"wasi","functions":[{{"name":"{function}"}}],"capabilities":["{capability}"]}}"#
            )
        };
        let ok =
            |name: &str, function: &str, capability: &str| Metadata::parse(doc(name, function, capability).as_bytes());
        let (a64, a65) = ("a".repeat(64), "a".repeat(65));
        let (env127, env128) = (format!("env:X{}", "a".repeat(127)), format!("env:X{}", "a".repeat(128)));
        let (fs1023, fs1024) = (format!("fs:/{}:ro", "é".repeat(1023)), format!("fs:/{}:ro", "é".repeat(1024)));
        assert!(ok(&a64, "f", "clock").is_ok());
        assert!(ok(&a65, "f", "clock").is_err());
        assert!(ok("p", &a64, "clock").is_ok());
        assert!(ok("p", &a65, "clock").is_err());
        assert!(ok("p", "f", &env127).is_ok());
        assert_eq!(ok("p", "f", &env128).unwrap_err().clause(), Clause::Meta3);
        assert!(ok("p", "f", &fs1023).is_ok());
        assert_eq!(ok("p", "f", &fs1024).unwrap_err().clause(), Clause::Meta3);
        // An fs: path as long as an env: name may be is not capped by the
        // env: cap.
        assert!(ok("p", "f", &format!("fs:/{}:rw", "a".repeat(500))).is_ok());
    }

    /// Documents around the schema's edges: every field replaced by values
    /// on both sides of its rules, removed, or joined by an unknown key.
    fn mutated_documents() -> Vec<serde_json::Value> {
        use serde_json::json;
        let base = json!({
            "abi": "1.1", "name": "text-tools", "version": "1.2.3-rc.1+b.5", "profile": "wasi",
            "description": "d", "x-vendor": {"any": [1]},
            "functions": [{"name": "upper", "summary": "s", "input": "text/plain; charset=utf-8",
                           "output": "application/json", "deterministic": true, "x-f": 1}],
            "host_calls": [{"name": "kv.get", "required": false, "summary": "s", "request": "text/plain",
                            "reply": "application/octet-stream", "x-h": null}],
            "capabilities": ["clock", "random", "env:HOME", "fs:/data:ro"],
            "statuses": {"64": "not found", "127": "last"}
        });
        let strings = [
            "",
            "a",
            "A",
            "1",
            "a-b",
            "a_b",
            "a.b",
            "a.b.c.d.e",
            "é",
            "a\n",
            "a\r",
            "-a",
            "_a",
            "x-",
            "0",
            "00",
            "01",
            "1.0",
            "1.0.0",
            "01.0",
            "1.01",
            "123456.0",
            "99999.99999",
            "1.0.0-",
            "1.0.0+",
            "1.0.0-a+b",
            "1.0.0-a-b.c",
            "1.0.0+a+b",
            "1.0",
            "1.0.0.0",
            "v1.0.0",
            "core",
            "wasi",
            "other",
            "clock",
            "random",
            "env:",
            "env:1A",
            "env:_a1",
            "env:A-B",
            "fs:/",
            "fs:/:ro",
            "fs:/a:rw",
            "fs:/a:rx",
            "fs:/a:b:ro",
            "fs:a:ro",
            "fs:/a\n:ro",
            "fs:/\u{0}:ro",
            "text/plain",
            "text/plain;",
            "text/plain; a\nb",
            "text/plain;\r",
            "text/plain; a\u{2028}b",
            "text/plain; a\u{85}b",
            "text/plain\r",
            "Text/plain",
            "text/",
            "/plain",
            "text/plain/x",
            "text/pl ain",
            "a.b",
            "ab.cd",
            "pabi.x",
            "a.b.c.d",
            "a.b.c.d.e",
            "a..b",
            "64",
            "63",
            "128",
            "127",
            "064",
            "100",
            "6/4",
            "~1",
        ];
        let long = |n: usize| "a".repeat(n);
        let mut values: Vec<serde_json::Value> = strings.iter().map(|s| json!(s)).collect();
        values.extend([
            json!(null),
            json!(true),
            json!(1),
            json!(1.5),
            json!([]),
            json!({}),
            json!(["clock", "clock"]),
        ]);
        values.extend([64, 65, 128, 129, 255, 256, 1024, 1025, 4096, 4097].iter().map(|n| json!(long(*n))));
        values.push(json!(format!("env:A{}", long(127))));
        values.push(json!(format!("env:A{}", long(128))));
        values.push(json!(format!("text/{}", long(250))));
        values.push(json!(format!("fs:/{}:ro", "é".repeat(1024))));
        let mut docs = vec![base.clone()];
        let paths: Vec<Vec<serde_json::Value>> = vec![
            vec![json!("abi")],
            vec![json!("name")],
            vec![json!("version")],
            vec![json!("profile")],
            vec![json!("description")],
            vec![json!("functions")],
            vec![json!("functions"), json!(0)],
            vec![json!("functions"), json!(0), json!("name")],
            vec![json!("functions"), json!(0), json!("summary")],
            vec![json!("functions"), json!(0), json!("input")],
            vec![json!("functions"), json!(0), json!("deterministic")],
            vec![json!("functions"), json!(0), json!("other")],
            vec![json!("host_calls")],
            vec![json!("host_calls"), json!(0)],
            vec![json!("host_calls"), json!(0), json!("name")],
            vec![json!("host_calls"), json!(0), json!("required")],
            vec![json!("host_calls"), json!(0), json!("reply")],
            vec![json!("host_calls"), json!(0), json!("other")],
            vec![json!("capabilities")],
            vec![json!("capabilities"), json!(0)],
            vec![json!("capabilities"), json!(3)],
            vec![json!("statuses")],
            vec![json!("statuses"), json!("64")],
            vec![json!("other")],
            vec![json!("x-other")],
        ];
        fn at<'a>(doc: &'a mut serde_json::Value, path: &[serde_json::Value]) -> &'a mut serde_json::Value {
            path.iter().fold(doc, |node, step| match step {
                serde_json::Value::String(key) => {
                    node.as_object_mut().unwrap().entry(key.clone()).or_insert(serde_json::Value::Null)
                }
                other => &mut node[other.as_u64().unwrap() as usize],
            })
        }
        for path in &paths {
            for value in &values {
                let mut doc = base.clone();
                *at(&mut doc, path) = value.clone();
                docs.push(doc);
            }
            let mut removed = base.clone();
            let (last, parent) = path.split_last().unwrap();
            if let (Some(key), Some(object)) = (last.as_str(), at(&mut removed, parent).as_object_mut()) {
                object.remove(key);
                docs.push(removed);
            }
        }
        // A status code as a key rather than a value.
        for code in strings {
            let mut doc = base.clone();
            doc["statuses"] = json!({ code: "x" });
            docs.push(doc);
        }
        docs
    }

    /// The schema, compiled by the schema validator this crate keeps out
    /// of its dependencies: the reference the checker is held to.
    fn schema_validator() -> &'static jsonschema::Validator {
        static VALIDATOR: std::sync::OnceLock<jsonschema::Validator> = std::sync::OnceLock::new();
        VALIDATOR.get_or_init(|| {
            let schema: serde_json::Value = serde_json::from_str(METADATA_SCHEMA).expect("the shipped schema is JSON");
            jsonschema::validator_for(&schema).expect("the shipped schema compiles")
        })
    }

    /// The checker accepts exactly what the schema accepts, and puts each
    /// problem where the schema validator does.
    #[test]
    fn the_checker_and_the_schema_agree() {
        let docs = mutated_documents();
        let (mut accepted, mut refused) = (0, 0);
        for doc in &docs {
            let problems = schema::problems(doc);
            let schema_places: std::collections::BTreeSet<String> = schema_validator()
                .iter_errors(doc)
                .map(|e| match e.instance_path().to_string() {
                    at if at.is_empty() => "/".to_string(),
                    at => at,
                })
                .collect();
            assert_eq!(problems.is_empty(), schema_places.is_empty(), "{doc}: {problems:?}");
            let places: std::collections::BTreeSet<String> = problems
                .iter()
                .map(|p| p.strip_prefix("at ").and_then(|p| p.split_once(": ")).expect("`at /…: `").0.to_string())
                .collect();
            assert_eq!(places, schema_places, "{doc}: {problems:?}");
            if problems.is_empty() {
                accepted += 1;
            } else {
                refused += 1;
            }
        }
        // Both sides are exercised.
        assert!(refused > docs.len() / 2, "{refused} of {}", docs.len());
        assert!(accepted > 100, "{accepted}");
        let good: serde_json::Value = serde_json::from_str(GOOD).unwrap();
        assert_eq!(schema::problems(&good), Vec::<String>::new());
    }

    #[test]
    fn problems_name_their_place_and_the_rule() {
        let doc = serde_json::json!({
            "abi": "1", "name": "text-tools", "version": "1.0.0", "profile": "core", "extra": 1,
            "functions": [{"name": "Upper", "deterministic": "yes"}], "capabilities": ["clock", "clock"],
            "statuses": {"200": "x", "a/b~": "y"}
        });
        assert_eq!(
            schema::problems(&doc),
            [
                "at /: `extra` is not a member of the metadata (vendor extensions start with `x-`)",
                "at /abi: \"1\" is not MAJOR.MINOR: two numbers of at most 5 digits, without leading zeros",
                "at /functions/0/name: \"Upper\" is not a function name: a lower-case letter, then lower-case \
                 letters, digits and `_`",
                "at /functions/0/deterministic: \"yes\" is a string, not a boolean",
                "at /capabilities: \"clock\" is listed more than once; items must be unique",
                "at /statuses: the key \"200\" is not a plugin status code, 64 to 127",
                "at /statuses: the key \"a/b~\" is not a plugin status code, 64 to 127",
            ]
        );
        let long = serde_json::json!({"abi": "1.0", "name": "n", "version": "1.0.0", "profile": "core",
            "description": "d".repeat(4097), "functions": [{"name": "f", "summary": 1}], "capabilities": []});
        assert_eq!(
            schema::problems(&long),
            [
                "at /description: 4097 characters long, more than 4096",
                "at /functions/0/summary: 1 is a number, not a string"
            ]
        );
        let missing = serde_json::json!({"abi": "1.0", "statuses": {"x/~y": 1}});
        assert_eq!(
            schema::problems(&missing),
            [
                "at /: the required member `name` is missing",
                "at /: the required member `version` is missing",
                "at /: the required member `profile` is missing",
                "at /: the required member `functions` is missing",
                "at /: the required member `capabilities` is missing",
                "at /statuses: the key \"x/~y\" is not a plugin status code, 64 to 127",
                "at /statuses/x~1~0y: 1 is a number, not a string",
            ]
        );
    }

    #[test]
    fn function_names_follow_exp_4() {
        assert!(is_valid_function_name("a"));
        assert!(is_valid_function_name("fnv1a64"));
        assert!(is_valid_function_name(&"a".repeat(64)));
        assert!(!is_valid_function_name(&"a".repeat(65)));
        for bad in ["", "1a", "_a", "A", "a-b", "é"] {
            assert!(!is_valid_function_name(bad), "{bad}");
        }
    }
}
