//! Judging: the adapter's result lines against a case's expectations or a
//! vector's steps, and a case's granted folders against what they must hold
//! after the run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pabi_abi::HostErrorKind;
use pabi_testkit::adapter::{FailedLine, LineKind, ResultLine};
use pabi_testkit::hex::{decode_hex, encode_hex};
use pabi_testkit::host_calls::HostCallRecord;
use pabi_testkit::vectors::{Expect, Vector};
use serde::Serialize;

use crate::case::{Case, Expectation};
use crate::error::{Mismatch, VectorMismatch};
use crate::report::Verdict;

/// Compares the adapter's lines with the expectations. A failed load gives
/// one line, which answers every call.
pub fn judge(case: &Case, lines: &[ResultLine]) -> Verdict {
    if let Some(ResultLine::Failed(first)) = lines.first() {
        if first.kind == LineKind::NotSupported {
            return match (case.not_supported_allowed, first.clause) {
                (Some(allowed), Some(clause)) if allowed == clause => Verdict::NotSupported { clause },
                _ => Verdict::Fail {
                    reason: format!(
                        "the host answered NOT_SUPPORTED ({}) for a limit it must enforce",
                        json(&first.clause)
                    ),
                },
            };
        }
    }
    let failed_load = match lines {
        [line @ ResultLine::Failed(_)] => Some(line),
        _ => None,
    };
    for (i, expected) in case.expect.iter().enumerate() {
        let Some(got) = lines.get(i).or(failed_load) else {
            return Verdict::Fail {
                reason: format!("call {} ({}) printed no result line", i + 1, case.calls[i].function),
            };
        };
        if let Err(reason) = matches(expected, got) {
            return Verdict::Fail {
                reason: format!("call {} ({}): {reason}; got {}", i + 1, case.calls[i].function, got.to_json()),
            };
        }
    }
    Verdict::Pass
}

/// Every field `expected` gives must be the line's, except
/// `message_contains`, substrings of the line's message. The fields are
/// compared in the order of their names, so that the mismatch a reason
/// names does not depend on how the case file orders them.
fn matches(expected: &Expectation, got: &ResultLine) -> Result<(), Mismatch> {
    let failed: Option<&FailedLine> = match got {
        ResultLine::Ok { .. } => None,
        ResultLine::Failed(line) => Some(line),
    };
    let output = match got {
        ResultLine::Ok { output, .. } => Some(encode_hex(output)),
        ResultLine::Failed(_) => None,
    };
    same("clause", expected.clause, failed.and_then(|f| f.clause))?;
    same("host_calls", expected.host_calls.as_deref(), Some(host_calls(got)))?;
    same("kind", expected.kind.map(LineKind::name), failed.map(|f| f.kind.name()))?;
    same("message", expected.message.as_deref(), failed.map(|f| f.message.as_str()))?;
    let message = failed.map_or("", |f| f.message.as_str());
    if let Some(needle) = expected.message_contains.iter().find(|needle| !message.contains(needle.as_str())) {
        return Err(Mismatch::MessageLacks { needle: needle.clone() });
    }
    same("ok", Some(expected.ok), Some(failed.is_none()))?;
    same("output_hex", expected.output.as_deref().map(encode_hex), output)?;
    same("status", expected.status, failed.and_then(|f| f.status))?;
    same("trap", expected.trap, failed.and_then(|f| f.trap))
}

/// A field the expectation gives (`want`) must equal the line's (`got`,
/// `None` where the line has no such field).
fn same<T: PartialEq + Serialize>(key: &'static str, want: Option<T>, got: Option<T>) -> Result<(), Mismatch> {
    match want {
        Some(want) if got.as_ref() != Some(&want) => Err(Mismatch::Field { key, want: json(&want) }),
        _ => Ok(()),
    }
}

/// A value as the case file writes it, for a reason.
fn json(value: &impl Serialize) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// The host calls a line reports.
fn host_calls(line: &ResultLine) -> &[HostCallRecord] {
    match line {
        ResultLine::Ok { host_calls, .. } => host_calls,
        ResultLine::Failed(failed) => &failed.host_calls,
    }
}

/// Whether the result lines meet every step's expectation.
pub fn judge_vector(vector: &Vector, lines: &[ResultLine]) -> Result<(), VectorMismatch> {
    for (i, step) in vector.steps().enumerate() {
        let got =
            lines.get(i).ok_or_else(|| VectorMismatch::NoLine { step: i + 1, function: step.function.clone() })?;
        let ok = match (&step.expect, got) {
            (Expect::Output(expected), ResultLine::Ok { output, .. }) => expected.matches(output),
            (expect @ Expect::Status { .. }, ResultLine::Failed(failed)) => {
                failed.kind == LineKind::Error(HostErrorKind::PluginError)
                    && expect.failure_matches(failed.status, failed.message.as_bytes())
            }
            _ => false,
        };
        // The requests the application received, from the line's
        // `host_calls`, against the step's `requests`.
        let made: Vec<(String, Vec<u8>)> = host_calls(got)
            .iter()
            .map(|call| (call.name.clone(), decode_hex(&call.request_hex).unwrap_or_default()))
            .collect();
        if !(ok && step.requests_match(&made)) {
            return Err(VectorMismatch::Differs {
                step: i + 1,
                function: step.function.clone(),
                expected: format!("{:?}", step.expect),
                got: clip(&got.to_json(), 300),
            });
        }
    }
    Ok(())
}

/// Text for a reason, cut after `max` characters.
pub(crate) fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// A passing case whose granted folders must end as `files_after` fails
/// when they do not: a read-only grant that let a file through, say.
/// `folders` are the granted folders, in the order of the case's grants.
pub(crate) fn judge_folders(case: &Case, folders: &[PathBuf]) -> Verdict {
    for (dir, folder) in case.grants.dirs.iter().zip(folders) {
        let Some(expected) = &dir.files_after else { continue };
        match folder_files(folder) {
            Ok(found) if &found == expected => {}
            Ok(found) => {
                return Verdict::Fail {
                    reason: format!("the folder granted at {} holds {found:?}, expected {expected:?}", dir.guest),
                }
            }
            Err(e) => return Verdict::Fail { reason: format!("cannot read {}: {e}", folder.display()) },
        }
    }
    Verdict::Pass
}

/// What a granted folder holds after the run: file names and contents.
fn folder_files(folder: &Path) -> std::io::Result<BTreeMap<String, String>> {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(folder)? {
        let entry = entry?;
        let text = std::fs::read(entry.path())?;
        files.insert(entry.file_name().to_string_lossy().into_owned(), String::from_utf8_lossy(&text).into_owned());
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use pabi_abi::Clause;
    use serde_json::{json, Value};

    use super::*;
    use crate::case::tests::case;

    fn line(value: Value) -> ResultLine {
        ResultLine::parse(&value.to_string()).expect("a line of the protocol")
    }

    #[test]
    fn judges_fields_messages_and_not_supported() {
        let c =
            case(vec![json!({"ok": false, "kind": "PLUGIN_ERROR", "status": 1, "message_contains": ["bad"]})], None);
        assert_eq!(
            judge(&c, &[line(json!({"ok": false, "kind": "PLUGIN_ERROR", "status": 1, "message": "bad input"}))]),
            Verdict::Pass
        );
        assert!(matches!(
            judge(&c, &[line(json!({"ok": false, "kind": "PLUGIN_ERROR", "status": 2, "message": "bad"}))]),
            Verdict::Fail { .. }
        ));
        assert!(matches!(
            judge(&c, &[line(json!({"ok": false, "kind": "PLUGIN_ERROR", "status": 1, "message": "oops"}))]),
            Verdict::Fail { .. }
        ));
        assert!(matches!(judge(&c, &[]), Verdict::Fail { .. }));
        let unsupported = line(json!({"ok": false, "kind": "NOT_SUPPORTED", "clause": "LIM-4"}));
        assert!(matches!(judge(&c, std::slice::from_ref(&unsupported)), Verdict::Fail { .. }));
        let c = case(vec![json!({"ok": true})], Some("LIM-4"));
        assert_eq!(judge(&c, &[unsupported]), Verdict::NotSupported { clause: Clause::Lim4 });
    }

    #[test]
    fn a_failed_load_answers_every_call() {
        let c = case(vec![json!({"ok": false, "kind": "TRAP"}), json!({"ok": false, "kind": "TRAP"})], None);
        assert_eq!(judge(&c, &[line(json!({"ok": false, "kind": "TRAP", "message": "m"}))]), Verdict::Pass);
    }

    #[test]
    fn host_calls_and_outputs_are_compared() {
        let c = case(
            vec![json!({"ok": true, "output_hex": "6869", "host_calls": [{"name": "kv.get", "request_hex": "61"}]})],
            None,
        );
        let good = json!({"ok": true, "output_hex": "6869", "host_calls": [{"name": "kv.get", "request_hex": "61"}]});
        assert_eq!(judge(&c, &[line(good)]), Verdict::Pass);
        let Verdict::Fail { reason } = judge(&c, &[line(json!({"ok": true, "output_hex": "6869"}))]) else {
            panic!("a missing host call passed")
        };
        assert!(reason.starts_with("call 1 (f): expected host_calls = [{\"name\":\"kv.get\""), "{reason}");
        let other = json!({"ok": true, "output_hex": "00", "host_calls": [{"name": "kv.get", "request_hex": "61"}]});
        let Verdict::Fail { reason } = judge(&c, &[line(other)]) else { panic!("another output passed") };
        assert!(reason.contains("expected output_hex = \"6869\""), "{reason}");
    }
}
