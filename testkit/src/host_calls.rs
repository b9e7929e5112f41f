//! The application side of host calls as data (`CALL-4`, `CALL-5`): which
//! names an application offers and what each answers. `pabi run
//! --host-calls FILE`, the conformance adapter, host-conformance cases and
//! vectors all describe the application this way, so a plugin that makes
//! host calls can be run and tested without writing an application.
//! `spec/schemas/host-calls.schema.json` describes the same JSON.
//!
//! ```json
//! {
//!   "kv.get": [
//!     {"request": "apple", "reply": "red"},
//!     {"request": "kiwi", "fail": "no such key"},
//!     {"reply_hex": ""}
//!   ],
//!   "kv.note": [{"reply": ""}]
//! }
//! ```
//!
//! Each name the table lists is offered; a name it does not list is not.
//! For a call, the first rule whose `request` (or `request_hex`) equals the
//! request answers; a rule without one matches any request. When no rule
//! matches (a name with no rules included), the handler fails (`E_FAILED`)
//! with exactly the message of [`no_rule_message`], which every host that
//! reads tables gives byte for byte: a plugin may pass it on (`enrich`
//! copies it into its own message), so a vector must not depend on the host.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};

use crate::hex::{decode_hex, encode_hex};

/// The JSON Schema of a host-call table.
pub const HOST_CALLS_SCHEMA: &str = include_str!("../../spec/schemas/host-calls.schema.json");

/// What the application answers, per host-call name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostCallTable {
    calls: BTreeMap<String, Vec<HostCallRule>>,
}

/// One rule: a request to match (any when `None`) and the answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostCallRule {
    pub request: Option<Vec<u8>>,
    pub answer: Answer,
    /// How long the handler takes before it answers (to test `CALL-7`).
    pub delay: Duration,
}

/// What a handler does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// It succeeds with these reply bytes.
    Reply(Vec<u8>),
    /// It fails with this message (`E_FAILED`, `CALL-4`).
    Fail(String),
    /// It calls this function of the same plugin, with the request as the
    /// input, from inside the handler: a host refuses that call (`CALL-8`),
    /// and the handler then fails with the message `refused`; had the call
    /// run, the handler would reply with its output.
    Reenter(String),
}

/// The message of a handler whose re-entrant call was refused (`CALL-8`).
pub const REENTRY_REFUSED: &str = "refused";

/// A host call as the application received it: the name and the request
/// bytes.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct HostCallRecord {
    pub name: String,
    /// The request, lowercase hex.
    pub request_hex: String,
}

impl HostCallRecord {
    pub fn new(name: &str, request: &[u8]) -> HostCallRecord {
        HostCallRecord { name: name.to_string(), request_hex: encode_hex(request) }
    }
}

impl HostCallTable {
    /// Reads a table from its JSON text.
    pub fn parse(text: &str) -> Result<HostCallTable, String> {
        serde_json::from_str(text).map_err(|e| format!("not a host-call table: {e}"))
    }

    /// The table as JSON, every byte string as hex: what `--host-calls`
    /// reads back as the same table.
    pub fn to_json(&self) -> String {
        let calls: serde_json::Map<String, serde_json::Value> = self
            .calls
            .iter()
            .map(|(name, rules)| {
                let rules = rules
                    .iter()
                    .map(|rule| {
                        let mut object = serde_json::Map::new();
                        if let Some(request) = &rule.request {
                            object.insert("request_hex".into(), encode_hex(request).into());
                        }
                        match &rule.answer {
                            Answer::Reply(reply) => object.insert("reply_hex".into(), encode_hex(reply).into()),
                            Answer::Fail(message) => object.insert("fail".into(), message.clone().into()),
                            Answer::Reenter(function) => object.insert("reenter".into(), function.clone().into()),
                        };
                        if !rule.delay.is_zero() {
                            object.insert("delay_ms".into(), (rule.delay.as_millis() as u64).into());
                        }
                        serde_json::Value::Object(object)
                    })
                    .collect();
                (name.clone(), serde_json::Value::Array(rules))
            })
            .collect();
        serde_json::Value::Object(calls).to_string()
    }

    /// The names the application offers.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.calls.keys().map(String::as_str)
    }

    /// Whether the application offers `name`.
    pub fn offers(&self, name: &str) -> bool {
        self.calls.contains_key(name)
    }

    /// Adds rules for `name`, offering it.
    pub fn insert(&mut self, name: impl Into<String>, rules: Vec<HostCallRule>) {
        self.calls.insert(name.into(), rules);
    }

    /// What the handler of `name` does with `request`, or `None` when the
    /// application does not offer `name`.
    pub fn answer(&self, name: &str, request: &[u8]) -> Option<(Answer, Duration)> {
        let rules = self.calls.get(name)?;
        let rule = rules.iter().find(|rule| rule.request.as_deref().is_none_or(|r| r == request));
        Some(match rule {
            Some(rule) => (rule.answer.clone(), rule.delay),
            None => (Answer::Fail(no_rule_message(name, request)), Duration::ZERO),
        })
    }
}

/// The failure message of a request that no rule of `name` matches, as
/// `spec/schemas/host-calls.schema.json` fixes it: ``the table has no reply
/// for `NAME` with the request R``, where R is the request as a JSON string
/// when it is UTF-8 without a control character (U+0000 to U+001F, U+007F
/// to U+009F), else `0x` and its bytes in lowercase hex.
pub fn no_rule_message(name: &str, request: &[u8]) -> String {
    format!("the table has no reply for `{name}` with the request {}", shown(request))
}

/// A request as R of [`no_rule_message`]. Without control characters, a
/// JSON string escapes only `"` and `\`, so every JSON encoder writes it
/// alike; Rust's `{:?}` would also escape characters such as U+200B, which
/// another host's encoder keeps.
fn shown(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) if !text.chars().any(char::is_control) => {
            serde_json::to_string(text).unwrap_or_else(|_| format!("0x{}", encode_hex(bytes)))
        }
        _ => format!("0x{}", encode_hex(bytes)),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleJson {
    request: Option<String>,
    request_hex: Option<String>,
    reply: Option<String>,
    reply_hex: Option<String>,
    fail: Option<String>,
    reenter: Option<String>,
    #[serde(default)]
    delay_ms: u64,
}

impl<'de> Deserialize<'de> for HostCallRule {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let json = RuleJson::deserialize(deserializer)?;
        let hex = |text: &str, field: &str| {
            decode_hex(text).ok_or_else(|| D::Error::custom(format!("`{field}` is not hex: {text:?}")))
        };
        let request = match (json.request, json.request_hex) {
            (Some(_), Some(_)) => return Err(D::Error::custom("give `request` or `request_hex`, not both")),
            (Some(text), None) => Some(text.into_bytes()),
            (None, Some(hex_text)) => Some(hex(&hex_text, "request_hex")?),
            (None, None) => None,
        };
        let answer = match (json.reply, json.reply_hex, json.fail, json.reenter) {
            (Some(text), None, None, None) => Answer::Reply(text.into_bytes()),
            (None, Some(hex_text), None, None) => Answer::Reply(hex(&hex_text, "reply_hex")?),
            (None, None, Some(message), None) => Answer::Fail(message),
            (None, None, None, Some(function)) => Answer::Reenter(function),
            _ => return Err(D::Error::custom("give exactly one of `reply`, `reply_hex`, `fail` and `reenter`")),
        };
        Ok(HostCallRule { request, answer, delay: Duration::from_millis(json.delay_ms) })
    }
}

impl<'de> Deserialize<'de> for HostCallTable {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let calls = BTreeMap::<String, Vec<HostCallRule>>::deserialize(deserializer)?;
        if let Some(bad) = calls.keys().find(|name| !pabi_abi::is_valid_host_call_name(name)) {
            return Err(D::Error::custom(format!("`{bad}` is not a host-call name (CALL-2)")));
        }
        // A host offers no name in the reserved namespace (CALL-2).
        if let Some(bad) = calls.keys().find(|name| name.starts_with("pabi.")) {
            return Err(D::Error::custom(format!("`{bad}` is in the reserved `pabi` namespace (CALL-2)")));
        }
        Ok(HostCallTable { calls })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"{
        "kv.get": [
            {"request": "apple", "reply": "red"},
            {"request_hex": "00ff", "fail": "no such key", "delay_ms": 5},
            {"request": "again", "reenter": "lookup"},
            {"reply_hex": "0a0b"}
        ],
        "kv.note": []
    }"#;

    #[test]
    fn rules_answer_in_order_and_unlisted_names_are_not_offered() {
        let table = HostCallTable::parse(EXAMPLE).unwrap();
        assert_eq!(table.answer("kv.get", b"apple"), Some((Answer::Reply(b"red".to_vec()), Duration::ZERO)));
        assert_eq!(
            table.answer("kv.get", &[0, 0xff]),
            Some((Answer::Fail("no such key".into()), Duration::from_millis(5)))
        );
        assert_eq!(table.answer("kv.get", b"pear"), Some((Answer::Reply(vec![10, 11]), Duration::ZERO)));
        assert_eq!(
            table.answer("kv.note", b"x").map(|(answer, _)| answer),
            Some(Answer::Fail(no_rule_message("kv.note", b"x")))
        );
        assert_eq!(table.answer("kv.put", b""), None);
        assert!(table.offers("kv.note") && !table.offers("kv.put"));
    }

    /// The message of an unmatched request is fixed to the byte: a JSON
    /// string escaping only `"` and `\\`, or hex.
    #[test]
    fn an_unmatched_request_fails_with_the_fixed_message() {
        let table = HostCallTable::parse(EXAMPLE).unwrap();
        let failure = |name: &str, request: &[u8]| match table.answer(name, request) {
            Some((Answer::Fail(message), delay)) if delay.is_zero() => message,
            other => panic!("{other:?}"),
        };
        assert_eq!(failure("kv.note", b"x"), "the table has no reply for `kv.note` with the request \"x\"");
        assert_eq!(failure("kv.note", b""), "the table has no reply for `kv.note` with the request \"\"");
        assert_eq!(
            failure("kv.note", "a\"b\\c\u{200b}\u{e9}".as_bytes()),
            "the table has no reply for `kv.note` with the request \"a\\\"b\\\\c\u{200b}\u{e9}\""
        );
        assert_eq!(failure("kv.note", b"a\nb"), "the table has no reply for `kv.note` with the request 0x610a62");
        assert_eq!(failure("kv.note", &[0xff]), "the table has no reply for `kv.note` with the request 0xff");
        // A name whose rules all name other requests fails the same way.
        let table = HostCallTable::parse(r#"{"kv.get": [{"request": "apple", "reply": "red"}]}"#).unwrap();
        assert_eq!(
            table.answer("kv.get", b"pear").map(|(answer, _)| answer),
            Some(Answer::Fail("the table has no reply for `kv.get` with the request \"pear\"".into()))
        );
    }

    #[test]
    fn json_round_trips() {
        let table = HostCallTable::parse(EXAMPLE).unwrap();
        assert_eq!(HostCallTable::parse(&table.to_json()).unwrap(), table);
    }

    #[test]
    fn malformed_tables_are_refused() {
        for bad in [
            r#"{"kv.get": [{"reply": "a", "fail": "b"}]}"#,
            r#"{"kv.get": [{}]}"#,
            r#"{"kv.get": [{"request": "a", "request_hex": "61", "reply": ""}]}"#,
            r#"{"kv.get": [{"reply_hex": "zz"}]}"#,
            r#"{"kv.get": [{"reply": "", "extra": 1}]}"#,
            r#"{"KV": [{"reply": ""}]}"#,
            r#"[]"#,
        ] {
            assert!(HostCallTable::parse(bad).is_err(), "{bad}");
        }
    }

    /// The schema accepts exactly what the type accepts.
    #[test]
    fn schema_agrees_with_the_type() {
        let schema: serde_json::Value = serde_json::from_str(HOST_CALLS_SCHEMA).unwrap();
        let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
        for text in [
            EXAMPLE,
            r#"{}"#,
            r#"{"kv.get": [{"reply": "a", "fail": "b"}]}"#,
            r#"{"kv.get": [{"reply": "a", "reenter": "f"}]}"#,
            r#"{"kv.get": [{}]}"#,
            r#"{"kv.get": [{"request": "a", "request_hex": "61", "reply": ""}]}"#,
            r#"{"kv.get": [{"reply_hex": "zz"}]}"#,
            r#"{"kv.get": [{"reply": "", "extra": 1}]}"#,
            r#"{"KV": [{"reply": ""}]}"#,
            r#"{"a.b.c.d.e": [{"reply": ""}]}"#,
            r#"{"pabi.time": [{"reply": ""}]}"#,
            r#"[]"#,
        ] {
            let value: serde_json::Value = serde_json::from_str(text).unwrap();
            assert_eq!(validator.is_valid(&value), HostCallTable::parse(text).is_ok(), "{text}");
        }
    }
}
