//! The `host-calls` check: with generated replies, handler failures,
//! replies past the cap, a slow reply and absent optional calls, every call
//! returns a defined status, never traps and calls only declared names.

use pabi_abi::Metadata;
use pabi_testkit::hex::encode_hex;
use proptest::test_runner::{TestCaseError, TestError};

use crate::harness::{describe, fail, same_result, show_bytes, skip, Run};
use crate::report::CheckOutcome;
use crate::reproducer::Payload;
use crate::{inputs, reference, AnsweredCall, Application, Offer, PluginUnderTest, TestHost};

impl<H: TestHost + Sync> Run<'_, H> {
    /// Plays the application with random answers (`CALL-4`, `CALL-5`): on a
    /// host offering every declared call and on one offering only the
    /// required ones, each call must give a defined status without a trap
    /// or a violation, and a deterministic function must repeat for the
    /// same inputs and replies (`FN-5`, `FN-6`).
    pub(super) fn host_calls(&mut self, meta: &Metadata) -> CheckOutcome {
        if meta.host_calls.is_empty() {
            return skip("the plugin declares no host calls");
        }
        let cases = self.costly_cases();
        for offer in [Offer::All, Offer::RequiredOnly] {
            for function in &meta.functions {
                // A fresh instance per case: a failure then shows as itself,
                // not as the crash loop that failures on one plugin end in.
                if let Err(e) = self.host.load_offering(self.wasm, b"", &offer) {
                    return fail(format!("the plugin does not load with {offer}: {e}"));
                }
                let deterministic = function.deterministic;
                let strategy = (self.inputs(), inputs::host_call_answers());
                let outcome = self.runner(cases).run(&strategy, |(input, script)| {
                    let mut plugin = self
                        .host
                        .load_offering(self.wasm, b"", &offer)
                        .map_err(|e| TestCaseError::fail(format!("the plugin does not load with {offer}: {e}")))?;
                    plugin.set_application(Application::Script(script.clone()));
                    let got = plugin.call(&function.name, &input);
                    let calls = plugin.take_host_calls();
                    let conversation = || conversation(&calls);
                    match &got {
                        Ok(_) => {}
                        Err(f) if f.is_defined_plugin_error() => {}
                        Err(f) => {
                            return Err(TestCaseError::fail(format!(
                                "with {offer}: after the host calls {}, the call failed with {f}",
                                conversation()
                            )))
                        }
                    }
                    if deterministic {
                        let mut fresh = self
                            .host
                            .load_offering(self.wasm, b"", &offer)
                            .map_err(|e| TestCaseError::fail(format!("the plugin does not load a second time: {e}")))?;
                        fresh.set_application(Application::Script(script.clone()));
                        let again = fresh.call(&function.name, &input);
                        let again_calls = fresh.take_host_calls();
                        if !same_result(&got, &again) || again_calls != calls {
                            return Err(TestCaseError::fail(format!(
                                "with {offer}: deterministic, but the same input and replies gave {} then {} \
                                 (host calls {} then {})",
                                describe(&got),
                                describe(&again),
                                conversation(),
                                self::conversation(&again_calls)
                            )));
                        }
                    }
                    Ok(())
                });
                match outcome {
                    Ok(()) => {}
                    Err(TestError::Fail(reason, (input, script))) => {
                        // Replay the shrunk case once more for its
                        // conversation, and give it as a host-call table.
                        let table = self
                            .host
                            .load_offering(self.wasm, b"", &offer)
                            .map(|mut plugin| {
                                plugin.set_application(Application::Script(script));
                                let _ = plugin.call(&function.name, &input);
                                let offered: Vec<&str> = meta
                                    .host_calls
                                    .iter()
                                    .filter(|call| offer == Offer::All || call.required)
                                    .map(|call| call.name.as_str())
                                    .collect();
                                reproducer_table(&plugin.take_host_calls(), &offered)
                            })
                            .unwrap_or_default();
                        let name = match offer {
                            Offer::RequiredOnly => format!("{}-required-only", function.name),
                            _ => function.name.clone(),
                        };
                        return self.reproduced(reason.message(), Some(&function.name), &name, |r| {
                            r.function = Some(function.name.clone());
                            r.input = Some(Payload::Inline(input));
                            r.max_reply = Some(reference::HOST_CALL_REPLY_CAP);
                            r.host_calls = Some(Payload::Inline(table.into_bytes()));
                            r.required_calls_only = offer == Offer::RequiredOnly;
                        });
                    }
                    Err(TestError::Abort(reason)) => return fail(format!("generation aborted: {reason}")),
                }
            }
        }
        CheckOutcome::Pass
    }
}

/// A host-call table that gives a plugin the answers it got, for a
/// reproducer: one rule per distinct request, the first answer it got.
/// Every offered name is in it, so that the replay offers what the run did.
fn reproducer_table(calls: &[AnsweredCall], offered: &[&str]) -> String {
    use pabi_testkit::host_calls::{HostCallRule, HostCallTable};
    let mut rules: std::collections::BTreeMap<String, Vec<HostCallRule>> =
        offered.iter().map(|name| (name.to_string(), Vec::new())).collect();
    for call in calls {
        let named = rules.entry(call.name.clone()).or_default();
        if !named.iter().any(|rule| rule.request.as_deref() == Some(call.request.as_slice())) {
            named.push(HostCallRule {
                request: Some(call.request.clone()),
                answer: call.answer.clone(),
                delay: std::time::Duration::ZERO,
            });
        }
    }
    let mut table = HostCallTable::default();
    for (name, rules) in rules {
        table.insert(name, rules);
    }
    table.to_json()
}

/// The host calls of a call and their answers, for a failure message.
fn conversation(calls: &[AnsweredCall]) -> String {
    if calls.is_empty() {
        return "(none)".to_string();
    }
    let shown: Vec<String> = calls
        .iter()
        .map(|call| {
            let answer = match &call.answer {
                pabi_testkit::host_calls::Answer::Reply(reply) if reply.len() <= 32 => {
                    format!("reply {}", encode_hex(reply))
                }
                pabi_testkit::host_calls::Answer::Reply(reply) => format!("a {}-byte reply", reply.len()),
                pabi_testkit::host_calls::Answer::Fail(message) => {
                    format!("failure {}", show_bytes(message.as_bytes()))
                }
                pabi_testkit::host_calls::Answer::Reenter(function) => format!("a call back into `{function}`"),
            };
            format!("{}({}) -> {answer}", call.name, show_bytes(&call.request))
        })
        .collect();
    shown.join(", ")
}
