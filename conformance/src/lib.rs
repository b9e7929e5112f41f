//! Conformance of pabi plugins: does a plugin honour the ABI under arbitrary
//! inputs, repeated calls, re-instantiation and state moves?
//!
//! Each check has a stable ID and cites the spec clauses it verifies
//! ([`Check`]). Inputs are generated with proptest from a seed, so a failure
//! comes with a shrunk minimal input and a one-line reproducer, and the whole
//! run can be replayed with the same seed.
//!
//! ```no_run
//! let wasm = std::fs::read("plugin.wasm").unwrap();
//! let host = pabi_conform::ReferenceHost::new().unwrap();
//! let options = pabi_conform::Options::default();
//! let report = pabi_conform::conform(&host, "plugin.wasm", &wasm, &options, &mut |_| {});
//! assert!(report.conformant, "{}", pabi_conform::report::human(&report));
//! ```

mod checks;
mod host;
pub mod inputs;
mod reference;
pub mod report;

use std::time::Instant;

use pabi_abi::vectors::{encode_hex, Expect, VectorFile};
use pabi_abi::{HostErrorKind, Metadata};
use proptest::prelude::Rng;
use proptest::strategy::BoxedStrategy;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};

pub use checks::{Check, UnknownCheck};
pub use host::{AnsweredCall, Application, HostFailure, HostResult, Offer, PluginUnderTest, ScriptedAnswer, TestHost};
pub use reference::{ReferenceHost, ReferencePlugin, Scratch, SCRATCH_QUOTA_BYTES, SCRATCH_QUOTA_ENTRIES};
use report::{CheckOutcome, CheckResult, Failure, PluginReport};

/// Calls of the leak check after its warm-up (`FN-7`).
pub const LEAK_CALLS: usize = 10_000;
const LEAK_WARMUP: usize = 100;
/// Growth the leak check allows in the second half of its calls: the larger
/// of 1 MiB and a quarter of the memory at the half-way point.
pub fn leak_bound(warm_bytes: u64) -> u64 {
    (1 << 20u64).max(warm_bytes / 4)
}

/// Options of a run.
#[derive(Clone, Debug)]
pub struct Options {
    /// Generated cases per function for the status and caps checks; the
    /// costlier checks use a tenth of it (at least 16).
    pub cases: u32,
    pub seed: u64,
    pub vectors: Option<VectorFile>,
    /// Run only this check.
    pub only: Option<Check>,
}

impl Default for Options {
    fn default() -> Self {
        Options { cases: 256, seed: 0x9ab1, vectors: None, only: None }
    }
}

/// Progress events, for a progress bar.
#[derive(Clone, Copy, Debug)]
pub enum Progress {
    Started { check: Check },
}

/// Runs every check on one plugin, in the order of [`Check::ALL`].
pub fn conform<H: TestHost + Sync>(
    host: &H,
    path: &str,
    wasm: &[u8],
    options: &Options,
    progress: &mut dyn FnMut(Progress),
) -> PluginReport {
    let report = pabi_validator::validate(wasm);
    let makes_host_calls = report.metadata.as_ref().is_some_and(|m| !m.host_calls.is_empty());
    let mut run = Run { host, path, wasm, options, results: Vec::new(), makes_host_calls };
    // Dynamic checks need a plugin that passes the static one.
    let meta = report.metadata.clone().filter(|_| !report.has_errors());
    for check in Check::ALL {
        if options.only.is_some_and(|only| only != check) {
            continue;
        }
        if check != Check::Static && meta.is_none() {
            break;
        }
        run.record(check, progress, |run| run.check(check, &report, meta.as_ref()));
    }
    run.finish()
}

/// The static check: the validator finds no error.
fn static_check(report: &pabi_validator::Report) -> CheckOutcome {
    let errors: Vec<String> = report.errors().map(|f| format!("[{}] {}", f.rule.id(), f.message)).collect();
    if errors.is_empty() {
        CheckOutcome::Pass
    } else {
        fail(format!("the static validator reports: {}", errors.join("; ")))
    }
}

fn fail(message: impl Into<String>) -> CheckOutcome {
    CheckOutcome::Fail(Failure { message: message.into(), function: None, input_hex: None, reproducer: None })
}

fn skip(reason: impl Into<String>) -> CheckOutcome {
    CheckOutcome::Skip { reason: reason.into() }
}

struct Run<'a, H: TestHost> {
    host: &'a H,
    path: &'a str,
    wasm: &'a [u8],
    options: &'a Options,
    results: Vec<CheckResult>,
    makes_host_calls: bool,
}

impl<H: TestHost + Sync> Run<'_, H> {
    fn record(
        &mut self,
        check: Check,
        progress: &mut dyn FnMut(Progress),
        body: impl FnOnce(&mut Self) -> CheckOutcome,
    ) {
        progress(Progress::Started { check });
        let started = Instant::now();
        let outcome = body(self);
        self.results.push(CheckResult::new(check, outcome, started.elapsed()));
    }

    /// Runs one check. Only the static check runs without metadata.
    fn check(&mut self, check: Check, report: &pabi_validator::Report, meta: Option<&Metadata>) -> CheckOutcome {
        let Some(meta) = meta.filter(|_| check != Check::Static) else { return static_check(report) };
        let functions: Vec<String> = meta.functions.iter().map(|f| f.name.clone()).collect();
        match check {
            Check::Static => static_check(report),
            Check::Status => self.for_each_function(&functions, |run, f| run.status(f)),
            Check::Caps => self.for_each_function(&functions, |run, f| run.caps(f)),
            Check::Determinism => self.determinism(meta),
            Check::NoLeak => self.for_each_function(&functions, |run, f| run.no_leak(f)),
            Check::InitConfig => self.init_config(),
            Check::Shutdown => self.shutdown(&functions[0]),
            Check::Reinstantiate => self.reinstantiate(meta),
            Check::State => self.state(&functions),
            Check::HostCalls => self.host_calls(meta),
            Check::InputRead => self.input_read(),
            Check::Vectors => self.vectors(),
        }
    }

    fn finish(self) -> PluginReport {
        PluginReport::new(self.path.to_string(), self.options.seed, self.options.cases, self.results)
    }

    fn runner(&self, cases: u32) -> TestRunner {
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&self.options.seed.to_le_bytes());
        let config = Config { cases, failure_persistence: None, max_shrink_iters: 1024, ..Config::default() };
        TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &seed))
    }

    /// The inputs of the property checks: smaller for a plugin that makes
    /// host calls ([`inputs::any_input_for_host_calls`]).
    fn inputs(&self) -> BoxedStrategy<Vec<u8>> {
        if self.makes_host_calls {
            inputs::any_input_for_host_calls()
        } else {
            inputs::any_input()
        }
    }

    fn costly_cases(&self) -> u32 {
        (self.options.cases / 10).max(16)
    }

    fn load(&self, config: &[u8]) -> Result<H::Plugin, CheckOutcome> {
        self.host.load(self.wasm, config).map_err(|e| fail(format!("the plugin does not load: {e}")))
    }

    /// Runs `check` on every function, on as many threads as the machine
    /// has cores: the functions' checks are independent (each loads its own
    /// instances, and each property has its own seeded runner), so the
    /// outcome is the sequential one, the first failure in function order.
    fn for_each_function<S: AsRef<str> + Sync>(
        &self,
        functions: &[S],
        check: impl Fn(&Self, &str) -> CheckOutcome + Sync,
    ) -> CheckOutcome {
        let threads = std::thread::available_parallelism().map_or(1, usize::from).min(functions.len());
        let next = std::sync::atomic::AtomicUsize::new(0);
        let outcomes: Vec<std::sync::Mutex<Option<CheckOutcome>>> =
            functions.iter().map(|_| std::sync::Mutex::new(None)).collect();
        let work = || loop {
            let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(function) = functions.get(index) else { break };
            let outcome = check(self, function.as_ref());
            *outcomes[index].lock().unwrap_or_else(|p| p.into_inner()) = Some(outcome);
        };
        if threads <= 1 {
            work();
        } else {
            std::thread::scope(|scope| {
                for _ in 0..threads {
                    scope.spawn(work);
                }
            });
        }
        outcomes
            .into_iter()
            .filter_map(|o| o.into_inner().unwrap_or_else(|p| p.into_inner()))
            .find(|o| *o != CheckOutcome::Pass)
            .unwrap_or(CheckOutcome::Pass)
    }

    /// Runs a property over generated inputs to `function`; a failure comes
    /// back shrunk, with a reproducer.
    fn property(
        &self,
        function: &str,
        cases: u32,
        strategy: BoxedStrategy<Vec<u8>>,
        property: impl FnMut(&[u8]) -> Result<(), String>,
    ) -> CheckOutcome {
        let property = std::cell::RefCell::new(property);
        let result =
            self.runner(cases).run(&strategy, |input| (property.borrow_mut())(&input).map_err(TestCaseError::fail));
        match result {
            Ok(()) => CheckOutcome::Pass,
            Err(TestError::Fail(reason, input)) => CheckOutcome::Fail(Failure {
                message: reason.message().to_string(),
                function: Some(function.to_string()),
                reproducer: Some(format!("pabi run {} {function} --input-hex '{}'", self.path, encode_hex(&input))),
                input_hex: Some(encode_hex(&input)),
            }),
            Err(TestError::Abort(reason)) => fail(format!("generation aborted: {reason}")),
        }
    }

    fn status(&self, function: &str) -> CheckOutcome {
        let mut plugin = match self.load(b"") {
            Ok(p) => p,
            Err(outcome) => return outcome,
        };
        self.property(function, self.options.cases, self.inputs(), |input| match plugin.call(function, input) {
            Ok(_) => Ok(()),
            Err(f) if f.is_defined_plugin_error() => Ok(()),
            Err(f) => Err(format!("the call failed with {f}")),
        })
    }

    fn caps(&self, function: &str) -> CheckOutcome {
        let mut plugin = match self.load(b"") {
            Ok(p) => p,
            Err(outcome) => return outcome,
        };
        let (max_output, max_message) = (plugin.max_output(), plugin.max_error_message());
        self.property(function, self.options.cases, self.inputs(), |input| match plugin.call(function, input) {
            Ok(out) if out.len() as u64 > max_output => Err(format!("{} bytes of output pass the cap", out.len())),
            Err(f) if f.kind == Some(HostErrorKind::OutputLimit) => Err(format!("the output passed the cap: {f}")),
            Err(f) if f.message.len() as u64 > max_message => Err("the error message passes its cap".into()),
            Err(f) if std::str::from_utf8(&f.message).is_err() => {
                Err(format!("the error message is not UTF-8: {}", encode_hex(&f.message)))
            }
            _ => Ok(()),
        })
    }

    fn determinism(&self, meta: &Metadata) -> CheckOutcome {
        let deterministic: Vec<&str> =
            meta.functions.iter().filter(|f| f.deterministic).map(|f| f.name.as_str()).collect();
        if deterministic.is_empty() {
            return skip("no function is declared deterministic");
        }
        let all: Vec<&str> = meta.functions.iter().map(|f| f.name.as_str()).collect();
        self.for_each_function(&deterministic, |run, function| {
            run.property(function, run.costly_cases(), run.inputs(), |input| {
                let first = run.host.load(run.wasm, b"").and_then(|mut p| p.call(function, input));
                let second = run.host.load(run.wasm, b"").and_then(|mut p| p.call(function, input));
                if !same_result(&first, &second) {
                    return Err(format!("two fresh instances disagree: {} vs {}", describe(&first), describe(&second)));
                }
                // The result may depend on the input and the configuration
                // only, not on the calls an instance served before (FN-5):
                // the same call after other calls, the function itself
                // included, on one instance. The history comes from the
                // input, so a failure shrinks and replays with it.
                let history = history(&all, input);
                let after = run.host.load(run.wasm, b"").and_then(|mut p| {
                    for (other, other_input) in &history {
                        let _ = p.call(other, other_input);
                    }
                    p.call(function, input)
                });
                if same_result(&first, &after) {
                    Ok(())
                } else {
                    let calls: Vec<&str> = history.iter().map(|(f, _)| *f).collect();
                    Err(format!(
                        "the result depends on earlier calls: {} on a fresh instance, {} after calls of {}",
                        describe(&first),
                        describe(&after),
                        calls.join(", ")
                    ))
                }
            })
        })
    }

    fn no_leak(&self, function: &str) -> CheckOutcome {
        let mut plugin = match self.load(b"") {
            Ok(p) => p,
            Err(outcome) => return outcome,
        };
        let mut rng = self.runner(1).new_rng();
        let mut input = vec![0u8; 4096];
        let mut call = |plugin: &mut H::Plugin, rng: &mut TestRng| {
            let len = rand_below(rng, input.len() + 1);
            rng.fill_bytes(&mut input[..len]);
            let _ = plugin.call(function, &input[..len]);
        };
        for _ in 0..LEAK_WARMUP {
            call(&mut plugin, &mut rng);
        }
        // Two halves: a garbage-collected runtime grows its heap once and
        // then plateaus; a leak keeps growing, or runs into the memory cap.
        let warm = plugin.memory_bytes();
        for _ in 0..LEAK_CALLS / 2 {
            call(&mut plugin, &mut rng);
        }
        let middle = plugin.memory_bytes();
        for _ in 0..LEAK_CALLS / 2 {
            call(&mut plugin, &mut rng);
        }
        let after = plugin.memory_bytes();
        let still_growing = after.saturating_sub(middle) > leak_bound(middle);
        let at_cap = after > plugin.max_memory() / 10 * 9;
        if still_growing || at_cap {
            let why = if at_cap { "ran into the memory cap" } else { "was still growing in the second half" };
            CheckOutcome::Fail(Failure {
                message: format!(
                    "memory {why}: {warm} bytes after warm-up, {middle} after {} calls, {after} after {LEAK_CALLS} \
                     (inputs of at most 4 KiB; a second half may grow by at most {} bytes)",
                    LEAK_CALLS / 2,
                    leak_bound(middle)
                ),
                function: Some(function.to_string()),
                input_hex: None,
                reproducer: None,
            })
        } else {
            CheckOutcome::Pass
        }
    }

    fn init_config(&mut self) -> CheckOutcome {
        let strategy = inputs::any_config();
        let result =
            self.runner(self.costly_cases()).run(&strategy, |config| match self.host.load(self.wasm, &config) {
                Ok(_) => Ok(()),
                Err(f) if f.is_defined_plugin_error() => Ok(()),
                Err(f) => Err(TestCaseError::fail(format!("init failed with {f}"))),
            });
        match result {
            Ok(()) => CheckOutcome::Pass,
            Err(TestError::Fail(reason, config)) => CheckOutcome::Fail(Failure {
                message: reason.message().to_string(),
                function: Some("pabi_init".into()),
                reproducer: Some(format!("pabi run {} <function> --config-hex '{}'", self.path, encode_hex(&config))),
                input_hex: Some(encode_hex(&config)),
            }),
            Err(TestError::Abort(reason)) => fail(format!("generation aborted: {reason}")),
        }
    }

    fn shutdown(&mut self, function: &str) -> CheckOutcome {
        let mut plugin = match self.load(b"") {
            Ok(p) => p,
            Err(outcome) => return outcome,
        };
        let _ = plugin.call(function, b"");
        match plugin.shutdown() {
            Ok(()) => CheckOutcome::Pass,
            Err(f) if f.is_defined_plugin_error() => CheckOutcome::Pass,
            Err(f) => fail(format!("pabi_shutdown failed with {f}")),
        }
    }

    /// After an aborted call the next call works on a fresh instance, or
    /// fails as it did on the first fresh one. (Outputs are not compared:
    /// that is the determinism check's job.)
    fn reinstantiate(&mut self, meta: &Metadata) -> CheckOutcome {
        let function = meta.functions[0].name.as_str();
        let mut plugin = match self.load(b"") {
            Ok(p) => p,
            Err(outcome) => return outcome,
        };
        let before = plugin.call(function, b"");
        plugin.abort_next_call();
        if let Ok(out) = plugin.call(function, b"") {
            return fail(format!("a call that should have been aborted returned {} bytes", out.len()));
        }
        let after = plugin.call(function, b"");
        let works = after.as_ref().map_or_else(HostFailure::is_defined_plugin_error, |_| true)
            || matches!((&before, &after), (Err(a), Err(b)) if a.kind == b.kind);
        if !works {
            fail(format!(
                "after an aborted call, `{function}` gave {} instead of {}",
                describe(&after),
                describe(&before)
            ))
        } else {
            CheckOutcome::Pass
        }
    }

    fn state(&mut self, functions: &[String]) -> CheckOutcome {
        let probe = match self.load(b"") {
            Ok(p) => p,
            Err(outcome) => return outcome,
        };
        if !probe.has_state() {
            return skip("the plugin exports no state functions");
        }
        let history = proptest::collection::vec((0..functions.len(), inputs::bounded_input()), 0..6);
        let result = self.runner(self.costly_cases()).run(&history, |history| {
            let round_trip = || -> HostOutcomeResult {
                let mut first = self.host.load(self.wasm, b"")?;
                for (index, input) in &history {
                    let _ = first.call(&functions[*index], input);
                }
                let saved = first.save_state()?;
                let mut second = self.host.load(self.wasm, b"")?;
                second.load_state(&saved)?;
                Ok((saved, second.save_state()?))
            };
            match round_trip() {
                Ok((a, b)) if a == b => Ok(()),
                Ok((a, b)) => Err(TestCaseError::fail(format!(
                    "saved {} but re-saved {} after loading it",
                    encode_hex(&a),
                    encode_hex(&b)
                ))),
                Err(f) => Err(TestCaseError::fail(format!("the state round trip failed: {f}"))),
            }
        });
        match result {
            Ok(()) => CheckOutcome::Pass,
            Err(TestError::Fail(reason, history)) => {
                let calls: Vec<String> =
                    history.iter().map(|(i, input)| format!("{}({})", functions[*i], encode_hex(input))).collect();
                fail(format!("{} (calls before the save: [{}])", reason.message(), calls.join(", ")))
            }
            Err(TestError::Abort(reason)) => fail(format!("generation aborted: {reason}")),
        }
    }

    /// Host side: the built-in chunked reader asks for the input in a
    /// generated plan of (offset, length) reads; the output must be exactly
    /// the bytes each read should return (`HOST-3`, `HOST-4`, `MEM-5`).
    fn input_read(&mut self) -> CheckOutcome {
        let reader = match wat::parse_str(CHUNKED_READER) {
            Ok(wasm) => wasm,
            Err(e) => return fail(format!("the built-in reader does not compile: {e}")),
        };
        let strategy = (
            proptest::collection::vec(proptest::num::u8::ANY, 0..70_000),
            proptest::collection::vec((0u32..80_000, 0u32..80_000), 0..12),
        );
        let result = self.runner(self.costly_cases()).run(&strategy, |(input, plan)| {
            let config: Vec<u8> =
                plan.iter().flat_map(|(o, l)| o.to_le_bytes().into_iter().chain(l.to_le_bytes())).collect();
            let expected: Vec<u8> = plan
                .iter()
                .flat_map(|(offset, len)| {
                    let start = (*offset as usize).min(input.len());
                    let end = start.saturating_add(*len as usize).min(input.len());
                    input[start..end].to_vec()
                })
                .collect();
            let got = self.host.load(&reader, &config).and_then(|mut p| p.call("copy", &input));
            match got {
                Ok(out) if out == expected => Ok(()),
                Ok(out) => Err(TestCaseError::fail(format!(
                    "the host served {} bytes where {} were due",
                    out.len(),
                    expected.len()
                ))),
                Err(f) => Err(TestCaseError::fail(format!("the reader failed: {f}"))),
            }
        });
        match result {
            Ok(()) => CheckOutcome::Pass,
            Err(TestError::Fail(reason, (input, plan))) => {
                fail(format!("{} (input of {} bytes, plan {plan:?})", reason.message(), input.len()))
            }
            Err(TestError::Abort(reason)) => fail(format!("generation aborted: {reason}")),
        }
    }

    /// Plays the application with random answers (`CALL-4`, `CALL-5`): on a
    /// host offering every declared call and on one offering only the
    /// required ones, each call must give a defined status without a trap
    /// or a violation, and a deterministic function must repeat for the
    /// same inputs and replies (`FN-5`, `FN-6`).
    fn host_calls(&mut self, meta: &Metadata) -> CheckOutcome {
        if meta.host_calls.is_empty() {
            return skip("the plugin declares no host calls");
        }
        let cases = self.costly_cases();
        for offer in [Offer::All, Offer::RequiredOnly] {
            for function in &meta.functions {
                // A fresh instance per case: a failure then shows as itself,
                // not as the crash loop that failures on one plugin end in.
                if let Err(e) = self.host.load_offering(self.wasm, b"", &offer) {
                    return fail(format!("the plugin does not load when offered {offer:?}: {e}"));
                }
                let deterministic = function.deterministic;
                let strategy = (self.inputs(), inputs::host_call_answers());
                let outcome = self.runner(cases).run(&strategy, |(input, script)| {
                    let mut plugin = self.host.load_offering(self.wasm, b"", &offer).map_err(|e| {
                        TestCaseError::fail(format!("the plugin does not load when offered {offer:?}: {e}"))
                    })?;
                    plugin.set_application(Application::Script(script.clone()));
                    let got = plugin.call(&function.name, &input);
                    let calls = plugin.take_host_calls();
                    let conversation = || conversation(&calls);
                    match &got {
                        Ok(_) => {}
                        Err(f) if f.is_defined_plugin_error() => {}
                        Err(f) => {
                            return Err(TestCaseError::fail(format!(
                                "offered {offer:?}: the call failed with {f} after the host calls {}",
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
                                "offered {offer:?}: deterministic, but the same input and replies gave {} then {} \
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
                        return CheckOutcome::Fail(Failure {
                            message: reason.message().to_string(),
                            function: Some(function.name.clone()),
                            reproducer: Some(format!(
                                "pabi run {} {} --input-hex '{}' --max-reply {} --host-calls FILE, with FILE holding \
                                 {table}{}",
                                self.path,
                                function.name,
                                encode_hex(&input),
                                reference::HOST_CALL_REPLY_CAP,
                                if offer == Offer::RequiredOnly {
                                    " (optional calls not in it are absent)"
                                } else {
                                    ""
                                }
                            )),
                            input_hex: Some(encode_hex(&input)),
                        });
                    }
                    Err(TestError::Abort(reason)) => return fail(format!("generation aborted: {reason}")),
                }
            }
        }
        CheckOutcome::Pass
    }

    fn vectors(&mut self) -> CheckOutcome {
        let Some(file) = &self.options.vectors else {
            return skip("no vectors: no PLUGIN.vectors.json beside the plugin and no --vectors");
        };
        for vector in &file.vectors {
            let config = vector.config.as_ref().map(|c| c.resolve().unwrap_or_default()).unwrap_or_default();
            // The vector's table is the application: it offers the names it
            // lists and no others.
            let offer = match &vector.host_calls {
                Some(table) => Offer::Only(table.names().map(String::from).collect()),
                None => Offer::Only(Vec::new()),
            };
            let mut plugin = match self.host.load_offering(self.wasm, &config, &offer) {
                Ok(p) => p,
                Err(e) => return fail(format!("vector `{}`: the plugin does not load: {e}", vector.name)),
            };
            if let Some(table) = &vector.host_calls {
                plugin.set_application(Application::Table(table.clone()));
            }
            for step in vector.steps() {
                let input = step.input.resolve().unwrap_or_default();
                let got = plugin.call(&step.function, &input);
                let made: Vec<(String, Vec<u8>)> =
                    plugin.take_host_calls().into_iter().map(|call| (call.name, call.request)).collect();
                if !step.requests_match(&made) {
                    let made: Vec<String> =
                        made.iter().map(|(name, request)| format!("{name}({})", encode_hex(request))).collect();
                    return fail(format!(
                        "vector `{}`: the plugin made the host calls [{}], not the ones the vector gives",
                        vector.name,
                        made.join(", ")
                    ));
                }
                let ok = match (&step.expect, &got) {
                    (Expect::Output(expected), Ok(out)) => expected.matches(out),
                    (Expect::Status(status), Err(f)) => {
                        f.kind == Some(HostErrorKind::PluginError) && f.status == Some(*status)
                    }
                    _ => false,
                };
                if !ok {
                    return CheckOutcome::Fail(Failure {
                        message: format!(
                            "vector `{}`: expected {:?}, got {}",
                            vector.name,
                            step.expect,
                            describe(&got)
                        ),
                        function: Some(step.function.clone()),
                        input_hex: Some(encode_hex(&input)),
                        reproducer: Some(format!(
                            "pabi run {} {} --input-hex '{}'",
                            self.path,
                            step.function,
                            encode_hex(&input)
                        )),
                    });
                }
            }
        }
        CheckOutcome::Pass
    }
}

type HostOutcomeResult = Result<(Vec<u8>, Vec<u8>), HostFailure>;

/// The reader fixture of the `input-read` check.
const CHUNKED_READER: &str = include_str!("../../fixtures/conformance/chunked-reader.wat");

/// One to four earlier calls, drawn from `input`: which functions (any of
/// the plugin's) and with which inputs (suffixes of `input`).
fn history<'a>(functions: &[&'a str], input: &[u8]) -> Vec<(&'a str, Vec<u8>)> {
    let seed = input.first().copied().unwrap_or(0) as usize;
    (0..1 + seed % 4)
        .map(|i| (functions[(seed / 4 + i) % functions.len()], input.get(i..).unwrap_or_default().to_vec()))
        .collect()
}

/// A host-call table that gives a plugin the answers it got, for a
/// reproducer: one rule per distinct request, the first answer it got.
/// Every offered name is in it, so that the replay offers what the run did.
fn reproducer_table(calls: &[AnsweredCall], offered: &[&str]) -> String {
    use pabi_abi::host_calls::{HostCallRule, HostCallTable};
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
                pabi_abi::host_calls::Answer::Reply(reply) if reply.len() <= 32 => {
                    format!("reply {}", encode_hex(reply))
                }
                pabi_abi::host_calls::Answer::Reply(reply) => format!("a {}-byte reply", reply.len()),
                pabi_abi::host_calls::Answer::Fail(message) => format!("failure {message:?}"),
                pabi_abi::host_calls::Answer::Reenter(function) => format!("a call back into `{function}`"),
            };
            format!("{}({}) -> {answer}", call.name, encode_hex(&call.request))
        })
        .collect();
    shown.join(", ")
}

fn same_result(a: &HostResult<Vec<u8>>, b: &HostResult<Vec<u8>>) -> bool {
    match (a, b) {
        (Ok(a), Ok(b)) => a == b,
        (Err(a), Err(b)) => a.kind == b.kind && a.status == b.status && a.message == b.message,
        _ => false,
    }
}

fn describe(result: &HostResult<Vec<u8>>) -> String {
    match result {
        Ok(out) if out.len() <= 32 => format!("output {}", encode_hex(out)),
        Ok(out) => format!("{} bytes of output (sha256 {})", out.len(), pabi_abi::vectors::sha256_hex(out)),
        Err(f) => f.to_string(),
    }
}

fn rand_below(rng: &mut TestRng, bound: usize) -> usize {
    (rng.next_u64() % bound as u64) as usize
}
