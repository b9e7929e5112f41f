//! `spec/metadata.schema.json` (`META-3`) as code: a typed checker that
//! accepts exactly what the schema accepts and words each problem with the
//! JSON pointer where it is (`at /functions/0/name: …`).
//!
//! Why not a JSON Schema validator: building one compiles a dozen regular
//! expressions and the 2020-12 meta-schema, which was most of a short
//! `pabi validate`; and the validator crate (regexes, meta-schemas) would be
//! compiled by every embedder of `pabi-host`, which reads metadata on each
//! load. The schema stays the published contract: the test
//! `the_checker_and_the_schema_agree` holds this module to it, both ways,
//! over hundreds of documents around the schema's edges, with the schema
//! validator as a dev-dependency only.
//!
//! Problems are listed in the schema's order of members, each once; a
//! member's type is checked before its length and grammar. Property-name
//! and uniqueness problems are reported at the object or array that holds
//! them, as JSON Schema does.

use std::fmt::Write as _;

use serde_json::{Map, Value};

/// The problems of `doc` against the schema; empty when it matches.
pub(crate) fn problems(doc: &Value) -> Vec<String> {
    let mut check = Check::default();
    check.document(doc);
    check.problems
}

/// The top-level members, in the schema's order, and whether each is
/// required.
const MEMBERS: [(&str, bool); 9] = [
    ("abi", true),
    ("name", true),
    ("version", true),
    ("description", false),
    ("profile", true),
    ("functions", true),
    ("host_calls", false),
    ("capabilities", true),
    ("statuses", false),
];

const FUNCTION_MEMBERS: [(&str, bool); 5] =
    [("name", true), ("summary", false), ("input", false), ("output", false), ("deterministic", false)];

const HOST_CALL_MEMBERS: [(&str, bool); 5] =
    [("name", true), ("required", true), ("summary", false), ("request", false), ("reply", false)];

// What each grammar is, as the problems say it.
const ABI_GRAMMAR: &str = "MAJOR.MINOR: two numbers of at most 5 digits, without leading zeros";
const PLUGIN_NAME_GRAMMAR: &str = "a plugin name: a lower-case letter, then lower-case letters, digits and `-`";
const SEMVER_GRAMMAR: &str =
    "a semantic version: MAJOR.MINOR.PATCH, then optionally `-PRERELEASE` and `+BUILD` of [0-9A-Za-z.-]";
const FUNCTION_NAME_GRAMMAR: &str = "a function name: a lower-case letter, then lower-case letters, digits and `_`";
const HOST_CALL_GRAMMAR: &str = "a host-call name: two to four parts joined by `.`, each a lower-case letter, \
     then up to 31 lower-case letters, digits and `_`";
const MEDIA_TYPE_GRAMMAR: &str =
    "a media type: `type/subtype` in lower case, then optionally `;` and parameters on one line";
const CAPABILITY_GRAMMAR: &str =
    "a capability: `clock`, `random`, `env:NAME` or `fs:/PATH:ro|rw` (no `:`, NUL or line break in PATH)";
const STATUS_CODE_GRAMMAR: &str = "a plugin status code, 64 to 127";

#[derive(Default)]
struct Check {
    /// The pointer's reference tokens, unescaped.
    at: Vec<String>,
    problems: Vec<String>,
}

impl Check {
    fn report(&mut self, what: impl std::fmt::Display) {
        let mut at = String::new();
        for token in &self.at {
            // RFC 6901: `~` is written `~0` and `/` `~1`.
            let _ = write!(at, "/{}", token.replace('~', "~0").replace('/', "~1"));
        }
        if at.is_empty() {
            at.push('/');
        }
        self.problems.push(format!("at {at}: {what}"));
    }

    /// Runs `f` one step down, at member or index `step`.
    fn within(&mut self, step: impl ToString, f: impl FnOnce(&mut Check)) {
        self.at.push(step.to_string());
        f(self);
        self.at.pop();
    }

    fn document(&mut self, doc: &Value) {
        let Some(doc) = self.object(doc) else { return };
        self.members(doc, &MEMBERS, "the metadata");
        for (key, value) in ordered(doc, &MEMBERS) {
            self.within(key, |check| match key {
                "abi" => check.grammar(value, None, ABI_GRAMMAR, is_abi_version),
                "name" => check.grammar(value, Some(64), PLUGIN_NAME_GRAMMAR, |s| is_name(s, b'-')),
                "version" => check.grammar(value, Some(128), SEMVER_GRAMMAR, is_semver),
                "description" => check.text(value, 4096),
                "profile" => check.profile(value),
                "functions" => check.items(value, 1, 1024, Check::function),
                "host_calls" => check.items(value, 0, 256, Check::host_call),
                "capabilities" => {
                    check.items(value, 0, 256, Check::capability);
                    check.unique(value);
                }
                "statuses" => check.statuses(value),
                _ => {}
            });
        }
    }

    /// The schema's `enum`, which holds for no value but these strings.
    fn profile(&mut self, value: &Value) {
        if !matches!(value.as_str(), Some("core" | "wasi")) {
            self.report(format_args!("{} is neither \"core\" nor \"wasi\"", shown(value)));
        }
    }

    fn function(&mut self, value: &Value) {
        let Some(function) = self.object(value) else { return };
        self.members(function, &FUNCTION_MEMBERS, "a function");
        for (key, value) in ordered(function, &FUNCTION_MEMBERS) {
            self.within(key, |check| match key {
                "name" => check.grammar(value, Some(64), FUNCTION_NAME_GRAMMAR, |s| is_name(s, b'_')),
                "summary" => check.text(value, 1024),
                "input" | "output" => check.media_type(value),
                "deterministic" => check.boolean(value),
                _ => {}
            });
        }
    }

    fn host_call(&mut self, value: &Value) {
        let Some(call) = self.object(value) else { return };
        self.members(call, &HOST_CALL_MEMBERS, "a host call");
        for (key, value) in ordered(call, &HOST_CALL_MEMBERS) {
            self.within(key, |check| match key {
                "name" => check.grammar(value, None, HOST_CALL_GRAMMAR, crate::is_valid_host_call_name),
                "required" => check.boolean(value),
                "summary" => check.text(value, 1024),
                "request" | "reply" => check.media_type(value),
                _ => {}
            });
        }
    }

    fn capability(&mut self, value: &Value) {
        // An `env:` capability is capped at 132 characters (a name of 128),
        // any other at 1030 (an `fs:` path of 1024).
        let max = if value.as_str().is_some_and(|s| s.starts_with("env:")) { 132 } else { 1030 };
        self.grammar(value, Some(max), CAPABILITY_GRAMMAR, is_capability);
    }

    fn statuses(&mut self, value: &Value) {
        let Some(statuses) = self.object(value) else { return };
        for code in statuses.keys().filter(|code| !is_status_code(code)) {
            self.report(format_args!("the key {} is not {STATUS_CODE_GRAMMAR}", shown(&Value::from(code.as_str()))));
        }
        for (code, text) in statuses {
            self.within(code, |check| check.text(text, 1024));
        }
    }

    /// Required members present; no member outside `known` but `x-`
    /// extensions (`META-7`).
    fn members(&mut self, object: &Map<String, Value>, known: &[(&str, bool)], what: &str) {
        for (key, _) in known.iter().filter(|(key, required)| *required && !object.contains_key(*key)) {
            self.report(format_args!("the required member `{key}` is missing"));
        }
        for key in object.keys().filter(|key| !key.starts_with("x-") && !known.iter().any(|(k, _)| k == key)) {
            self.report(format_args!("`{key}` is not a member of {what} (vendor extensions start with `x-`)"));
        }
    }

    fn object<'v>(&mut self, value: &'v Value) -> Option<&'v Map<String, Value>> {
        let object = value.as_object();
        if object.is_none() {
            self.wrong_type(value, "an object");
        }
        object
    }

    fn boolean(&mut self, value: &Value) {
        if !value.is_boolean() {
            self.wrong_type(value, "a boolean");
        }
    }

    fn string<'v>(&mut self, value: &'v Value, max_chars: Option<usize>) -> Option<&'v str> {
        let Some(s) = value.as_str() else {
            self.wrong_type(value, "a string");
            return None;
        };
        let length = s.chars().count();
        if let Some(max) = max_chars.filter(|max| length > *max) {
            self.report(format_args!("{length} characters long, more than {max}"));
        }
        Some(s)
    }

    /// Free text: a string of at most `max_chars` characters.
    fn text(&mut self, value: &Value, max_chars: usize) {
        self.string(value, Some(max_chars));
    }

    fn grammar(&mut self, value: &Value, max_chars: Option<usize>, grammar: &str, valid: fn(&str) -> bool) {
        if let Some(s) = self.string(value, max_chars) {
            if !valid(s) {
                self.report(format_args!("{} is not {grammar}", shown(value)));
            }
        }
    }

    fn media_type(&mut self, value: &Value) {
        self.grammar(value, Some(255), MEDIA_TYPE_GRAMMAR, is_media_type);
    }

    fn items(&mut self, value: &Value, min: usize, max: usize, item: fn(&mut Check, &Value)) {
        let Some(list) = value.as_array() else { return self.wrong_type(value, "an array") };
        if list.len() < min {
            self.report(format_args!("{} item(s), fewer than {min}", list.len()));
        }
        if list.len() > max {
            self.report(format_args!("{} items, more than {max}", list.len()));
        }
        for (index, value) in list.iter().enumerate() {
            self.within(index, |check| item(check, value));
        }
    }

    /// JSON Schema's `uniqueItems`, for an array of strings or not.
    fn unique(&mut self, value: &Value) {
        let Some(list) = value.as_array() else { return };
        let mut seen = std::collections::BTreeSet::new();
        // Each item once, as its JSON text: equal strings have equal texts.
        let twice: Vec<&Value> = list.iter().filter(|item| !seen.insert(item.to_string())).collect();
        if let Some(first) = twice.first() {
            self.report(format_args!("{} is listed more than once; items must be unique", shown(first)));
        }
    }

    fn wrong_type(&mut self, value: &Value, expected: &str) {
        let found = match value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            Value::Array(_) => "an array",
            Value::Object(_) => "an object",
        };
        self.report(format_args!("{} is {found}, not {expected}", shown(value)));
    }
}

/// The members of `object` that `known` names, in `known`'s order.
fn ordered<'o>(object: &'o Map<String, Value>, known: &[(&'static str, bool)]) -> Vec<(&'static str, &'o Value)> {
    known.iter().filter_map(|(key, _)| object.get(*key).map(|value| (*key, value))).collect()
}

/// A value as JSON, cut short when long: a problem names the value, it
/// does not repeat a 4096-character description.
fn shown(value: &Value) -> String {
    const MAX: usize = 48;
    let text = value.to_string();
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// `^[a-z][a-z0-9<extra>]*$`.
fn is_name(s: &str, extra: u8) -> bool {
    let bytes = s.as_bytes();
    bytes.first().is_some_and(u8::is_ascii_lowercase)
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == extra)
}

/// `0` or a digit string without a leading zero, of at most `max` digits
/// (`None`: no cap).
fn is_number(s: &str, max: Option<usize>) -> bool {
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes.iter().all(u8::is_ascii_digit)
        && (bytes == b"0" || bytes[0] != b'0')
        && max.is_none_or(|max| bytes.len() <= max)
}

fn is_abi_version(s: &str) -> bool {
    s.split_once('.').is_some_and(|(major, minor)| is_number(major, Some(5)) && is_number(minor, Some(5)))
}

/// `MAJOR.MINOR.PATCH(-PRE)?(+BUILD)?` with `PRE` and `BUILD` of
/// `[0-9A-Za-z.-]+`.
fn is_semver(s: &str) -> bool {
    let tag = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    let (rest, build) = match s.split_once('+') {
        Some((rest, build)) => (rest, Some(build)),
        None => (s, None),
    };
    let (core, pre) = match rest.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (rest, None),
    };
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3 && parts.iter().all(|p| is_number(p, None)) && pre.is_none_or(tag) && build.is_none_or(tag)
}

/// `^[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+(;.*)?$` with no `\n`: the
/// pattern's `.` matches no line terminator (ECMA-262), which the schema
/// validator follows.
fn is_media_type(s: &str) -> bool {
    let token = |t: &str| {
        !t.is_empty() && t.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$&^_.+-".contains(&b))
    };
    let (essence, parameters) = match s.split_once(';') {
        Some((essence, parameters)) => (essence, Some(parameters)),
        None => (s, None),
    };
    essence.split_once('/').is_some_and(|(kind, sub)| token(kind) && token(sub))
        && parameters.is_none_or(|p| !p.contains(['\n', '\r', '\u{2028}', '\u{2029}']))
}

/// The capability pattern and the schema's "no line break"; lengths are
/// checked apart.
fn is_capability(s: &str) -> bool {
    if s == "clock" || s == "random" {
        return true;
    }
    if let Some(name) = s.strip_prefix("env:") {
        let bytes = name.as_bytes();
        return bytes.first().is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_')
            && bytes.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_');
    }
    let Some(path) = s.strip_prefix("fs:/") else { return false };
    let Some(path) = path.strip_suffix(":ro").or_else(|| path.strip_suffix(":rw")) else { return false };
    !path.contains([':', '\0', '\n'])
}

/// `64` … `127`, written without a leading zero.
fn is_status_code(code: &str) -> bool {
    is_number(code, Some(3)) && code.parse::<u32>().is_ok_and(|n| (64..=127).contains(&n))
}
