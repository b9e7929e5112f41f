//! The `host-calls` check: across the space of what a conforming host and
//! application may do (`CALL-4` … `CALL-7`, `LIM-14`), every call returns a
//! defined status, never traps and calls only declared names, and a
//! deterministic function repeats for the same replies. Two parts:
//!
//! - per-call scripts: generated answers, one per host call, on a host
//!   offering every declared call and on one offering only the required
//!   ones ([`inputs::host_call_answers`]);
//! - held states, across several calls of one instance: the application is
//!   down (every host call fails), every optional call is absent, every
//!   reply is slow; then the application comes back, and the plugin must
//!   serve as a fresh instance does.

use std::time::Duration;

use pabi_abi::{FunctionMeta, HostErrorKind, Metadata};
use pabi_testkit::hex::encode_hex;
use pabi_testkit::host_calls::{Answer, HostCallRule, HostCallTable};
use proptest::strategy::{Just, Strategy};
use proptest::test_runner::{TestCaseError, TestError};

use crate::harness::{describe, fail, minimise, same_result, show_bytes, skip, Run};
use crate::inputs::{self, AnswerCaps, Shape};
use crate::report::CheckOutcome;
use crate::reproducer::Payload;
use crate::{reference, AnsweredCall, Application, HostFailure, HostResult, Offer, PluginUnderTest, TestHost};

/// The cap a host cuts a handler's failure message to (`CALL-4`).
const MESSAGE_CAP: usize = 65_536;

/// A state the application holds across calls.
#[derive(Clone, Debug)]
enum Held {
    /// Every host call fails with this message.
    Down(String),
    /// The host offers only the required calls: every optional one is
    /// `E_ABSENT` (`CALL-5`).
    Absent,
}

impl Held {
    fn offer(&self) -> Offer {
        match self {
            Held::Down(_) => Offer::All,
            Held::Absent => Offer::RequiredOnly,
        }
    }

    fn application(&self) -> Application {
        match self {
            Held::Down(message) => Application::Down(message.clone()),
            Held::Absent => Application::Echo,
        }
    }

    fn describe(&self) -> String {
        match self {
            Held::Down(message) => {
                format!("with the application down (every host call failing with {})", show_bytes(message.as_bytes()))
            }
            Held::Absent => "with every optional host call absent".to_string(),
        }
    }
}

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
        let caps = AnswerCaps { reply: reference::HOST_CALL_REPLY_CAP as usize, message: MESSAGE_CAP };
        let reply_shape = Shape::common(meta.host_calls.iter().map(|call| call.reply.as_deref()));
        for offer in [Offer::All, Offer::RequiredOnly] {
            for function in &meta.functions {
                // A fresh instance per case: a failure then shows as itself,
                // not as the crash loop that failures on one plugin end in.
                if let Err(e) = self.host.load_offering(self.wasm, b"", &offer) {
                    return fail(format!("the plugin does not load with {offer}: {e}"));
                }
                let deterministic = function.deterministic;
                let strategy = (self.inputs(&function.name), inputs::host_call_answers(reply_shape, caps));
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
                        // The same answers on a smaller input, while the
                        // call still fails as it did.
                        let (input, ()) = minimise(input, (), |candidate| {
                            self.host
                                .load_offering(self.wasm, b"", &offer)
                                .is_ok_and(|mut plugin| {
                                    plugin.set_application(Application::Script(script.clone()));
                                    plugin.call(&function.name, candidate).is_err_and(|f| !f.is_defined_plugin_error())
                                })
                                .then_some(())
                        });
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
                                reproducer_table(&plugin.take_host_calls(), &offered, Duration::ZERO)
                            })
                            .unwrap_or_default();
                        let name = match offer {
                            Offer::RequiredOnly => format!("{}-required-only", function.name),
                            _ => function.name.clone(),
                        };
                        return self.reproduced(reason.message(), Some(&function.name), &name, |r| {
                            r.function = Some(function.name.clone());
                            r.input = Some(Payload::Inline(input));
                            r.host_calls = Some(Payload::Inline(table.into_bytes()));
                            r.required_calls_only = offer == Offer::RequiredOnly;
                        });
                    }
                    Err(TestError::Abort(reason)) => return fail(format!("generation aborted: {reason}")),
                }
            }
        }
        for function in &meta.functions {
            let outcome = self.held_states(meta, function, caps);
            if outcome != CheckOutcome::Pass {
                return outcome;
            }
            let outcome = self.slow_application(meta, function);
            if outcome != CheckOutcome::Pass {
                return outcome;
            }
        }
        CheckOutcome::Pass
    }

    /// Holds a state of the application ([`Held`]) for one to four calls of
    /// `function` on one instance; each must give a defined status. Then
    /// the application comes back (it echoes), and the next call must give
    /// a defined status, and for a deterministic function the result and
    /// host calls of a fresh instance: an outage may not outlive itself in
    /// the plugin's state (`FN-5`, `FN-6`, `CALL-4`, `CALL-5`).
    fn held_states(&self, meta: &Metadata, function: &FunctionMeta, caps: AnswerCaps) -> CheckOutcome {
        let has_optional = meta.host_calls.iter().any(|call| !call.required);
        let held = inputs::down_message(caps).prop_flat_map(move |message| {
            if has_optional {
                proptest::prop_oneof![Just(Held::Down(message)), Just(Held::Absent)].boxed()
            } else {
                Just(Held::Down(message)).boxed()
            }
        });
        let strategy = (held, proptest::collection::vec(self.inputs(&function.name), 1..=4));
        let name = function.name.as_str();
        let outcome = self.runner((self.costly_cases() / 2).max(8)).run(&strategy, |(held, calls)| {
            let offer = held.offer();
            let load = || {
                self.host
                    .load_offering(self.wasm, b"", &offer)
                    .map_err(|e| TestCaseError::fail(format!("the plugin does not load with {offer}: {e}")))
            };
            let mut plugin = load()?;
            plugin.set_application(held.application());
            for (i, input) in calls.iter().enumerate() {
                let got = plugin.call(name, input);
                if let Err(f) = &got {
                    if !f.is_defined_plugin_error() {
                        return Err(TestCaseError::fail(format!(
                            "{}: call {} of {} failed with {f} (host calls {})",
                            held.describe(),
                            i + 1,
                            calls.len(),
                            conversation(&plugin.take_host_calls())
                        )));
                    }
                }
                plugin.take_host_calls();
            }
            plugin.set_application(Application::Echo);
            let after = plugin.call(name, &calls[0]);
            let after_calls = plugin.take_host_calls();
            if let Err(f) = &after {
                if !f.is_defined_plugin_error() {
                    return Err(TestCaseError::fail(format!(
                        "after the application came back from a state {}, the next call failed with {f}",
                        held.describe()
                    )));
                }
            }
            if function.deterministic {
                let mut fresh = load()?;
                fresh.set_application(Application::Echo);
                let expected = fresh.call(name, &calls[0]);
                let expected_calls = fresh.take_host_calls();
                if !same_result(&after, &expected) || after_calls != expected_calls {
                    return Err(TestCaseError::fail(format!(
                        "deterministic, but after a state {} ended, the call gave {} (host calls {}) where a fresh \
                         instance gives {} (host calls {}): the outage outlived itself in the plugin's state",
                        held.describe(),
                        describe(&after),
                        conversation(&after_calls),
                        describe(&expected),
                        conversation(&expected_calls)
                    )));
                }
            }
            Ok(())
        });
        match outcome {
            Ok(()) => CheckOutcome::Pass,
            Err(TestError::Fail(reason, (held, calls))) => {
                let offered: Vec<&str> = meta
                    .host_calls
                    .iter()
                    .filter(|call| matches!(held, Held::Down(_)) || call.required)
                    .map(|call| call.name.as_str())
                    .collect();
                // The replay is the last call of the state: the table holds
                // the state (every offered call failing), or echoes.
                let table = match &held {
                    Held::Down(message) => held_table(&offered, &Answer::Fail(message.clone())),
                    Held::Absent => {
                        // Replay the calls once more for the last one's
                        // conversation.
                        let mut last = Vec::new();
                        if let Ok(mut plugin) = self.host.load_offering(self.wasm, b"", &Offer::RequiredOnly) {
                            for input in &calls {
                                plugin.take_host_calls();
                                let _ = plugin.call(name, input);
                            }
                            last = plugin.take_host_calls();
                        }
                        reproducer_table(&last, &offered, Duration::ZERO)
                    }
                };
                let file_name = format!("{name}-held");
                let input = calls.last().cloned().unwrap_or_default();
                self.reproduced(reason.message(), Some(name), &file_name, |r| {
                    r.function = Some(name.to_string());
                    r.input = Some(Payload::Inline(input));
                    r.host_calls = Some(Payload::Inline(table.into_bytes()));
                    r.required_calls_only = matches!(held, Held::Absent);
                })
            }
            Err(TestError::Abort(reason)) => fail(format!("generation aborted: {reason}")),
        }
    }

    /// One call of `function` while every reply takes an eighth of the
    /// deadline (`CALL-7`). It must give a defined status, or `TIMEOUT`
    /// when the application's own time reached the deadline; a plugin that
    /// times out after fewer replies spent the deadline itself, waiting or
    /// retrying. The next call, the application back, must give a defined
    /// status.
    fn slow_application(&self, meta: &Metadata, function: &FunctionMeta) -> CheckOutcome {
        let name = function.name.as_str();
        let mut plugin = match self.load(b"") {
            Ok(plugin) => plugin,
            Err(outcome) => return outcome,
        };
        let deadline = plugin.deadline();
        let delay = deadline / 8;
        // A small input of the function's shape: the test is the time the
        // plugin itself spends around slow replies, not its input.
        let input = inputs::fill(self.shape(name), 16, self.options.seed);
        plugin.set_application(Application::Slow(delay));
        let got = plugin.call(name, &input);
        let calls = plugin.take_host_calls();
        let waited = delay * calls.len() as u32;
        let timed_out_early = |f: &HostFailure| f.kind == Some(HostErrorKind::Timeout) && waited + delay < deadline;
        let problem = match &got {
            Ok(_) => None,
            Err(f) if f.is_defined_plugin_error() => None,
            Err(f) if f.kind == Some(HostErrorKind::Timeout) && !timed_out_early(f) => None,
            Err(f) => Some(format!(
                "with every reply taking {} ms, the call failed with {f} after {} host calls ({} ms of the {} ms \
                 deadline spent by the application)",
                delay.as_millis(),
                calls.len(),
                waited.as_millis(),
                deadline.as_millis()
            )),
        };
        let problem = problem.or_else(|| {
            plugin.set_application(Application::Echo);
            let after: HostResult<Vec<u8>> = plugin.call(name, &input);
            plugin.take_host_calls();
            match after {
                Err(f) if !f.is_defined_plugin_error() => {
                    Some(format!("after a call with slow replies, the next call failed with {f}"))
                }
                _ => None,
            }
        });
        let Some(message) = problem else { return CheckOutcome::Pass };
        let offered: Vec<&str> = meta.host_calls.iter().map(|call| call.name.as_str()).collect();
        let table = reproducer_table(&calls, &offered, delay);
        self.reproduced(message, Some(name), &format!("{name}-slow"), |r| {
            r.function = Some(name.to_string());
            r.input = Some(Payload::Inline(input));
            r.host_calls = Some(Payload::Inline(table.into_bytes()));
        })
    }
}

/// A table in which every named call gives `answer`, whatever its request.
fn held_table(names: &[&str], answer: &Answer) -> String {
    let mut table = HostCallTable::default();
    for name in names {
        table.insert(
            name.to_string(),
            vec![HostCallRule { request: None, answer: answer.clone(), delay: Duration::ZERO }],
        );
    }
    table.to_json()
}

/// A host-call table that gives a plugin the answers it got, each after
/// `delay`, for a reproducer: one rule per distinct request, the first
/// answer it got.
/// Every offered name is in it, so that the replay offers what the run did.
fn reproducer_table(calls: &[AnsweredCall], offered: &[&str], delay: Duration) -> String {
    use pabi_testkit::host_calls::{HostCallRule, HostCallTable};
    let mut rules: std::collections::BTreeMap<String, Vec<HostCallRule>> =
        offered.iter().map(|name| (name.to_string(), Vec::new())).collect();
    for call in calls {
        let named = rules.entry(call.name.clone()).or_default();
        if !named.iter().any(|rule| rule.request.as_deref() == Some(call.request.as_slice())) {
            named.push(HostCallRule { request: Some(call.request.clone()), answer: call.answer.clone(), delay });
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
