//! The harness the checks run in: one plugin's run, its seeded runners and
//! inputs, the property loop with its reproducers, and the outcomes and
//! descriptions the checks share.

use std::time::Instant;

use pabi_testkit::hex::{encode_hex, sha256_hex};
use proptest::strategy::BoxedStrategy;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};

use crate::report::{CheckOutcome, CheckResult, Failure, PluginReport};
use crate::{inputs, Check, HostResult, Options, Progress, TestHost};

/// A failure that names no function or input: the check's own message.
pub(crate) fn fail(message: impl Into<String>) -> CheckOutcome {
    CheckOutcome::Fail(Failure { message: message.into(), function: None, input_hex: None, reproducer: None })
}

/// A check that does not apply to the plugin, and why.
pub(crate) fn skip(reason: impl Into<String>) -> CheckOutcome {
    CheckOutcome::Skip { reason: reason.into() }
}

/// One plugin's run: what every check reads, and the results so far.
pub(crate) struct Run<'a, H: TestHost> {
    pub(crate) host: &'a H,
    pub(crate) path: &'a str,
    pub(crate) wasm: &'a [u8],
    pub(crate) options: &'a Options,
    results: Vec<CheckResult>,
    makes_host_calls: bool,
}

impl<'a, H: TestHost + Sync> Run<'a, H> {
    pub(crate) fn new(
        host: &'a H,
        path: &'a str,
        wasm: &'a [u8],
        options: &'a Options,
        makes_host_calls: bool,
    ) -> Self {
        Run { host, path, wasm, options, results: Vec::new(), makes_host_calls }
    }

    pub(crate) fn record(
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

    pub(crate) fn finish(self) -> PluginReport {
        PluginReport::new(self.path.to_string(), self.options.seed, self.options.cases, self.results)
    }

    pub(crate) fn runner(&self, cases: u32) -> TestRunner {
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&self.options.seed.to_le_bytes());
        let config = Config { cases, failure_persistence: None, max_shrink_iters: 1024, ..Config::default() };
        TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &seed))
    }

    /// The inputs of the property checks: smaller for a plugin that makes
    /// host calls ([`inputs::any_input_for_host_calls`]).
    pub(crate) fn inputs(&self) -> BoxedStrategy<Vec<u8>> {
        if self.makes_host_calls {
            inputs::any_input_for_host_calls()
        } else {
            inputs::any_input()
        }
    }

    pub(crate) fn costly_cases(&self) -> u32 {
        (self.options.cases / 10).max(16)
    }

    pub(crate) fn load(&self, config: &[u8]) -> Result<H::Plugin, CheckOutcome> {
        self.host.load(self.wasm, config).map_err(|e| fail(format!("the plugin does not load: {e}")))
    }

    /// Runs `check` on every function, on as many threads as the machine
    /// has cores: the functions' checks are independent (each loads its own
    /// instances, and each property has its own seeded runner), so the
    /// outcome is the sequential one, the first failure in function order.
    pub(crate) fn for_each_function<S: AsRef<str> + Sync>(
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
    pub(crate) fn property(
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
}

/// Whether two calls gave the same result: the same output, or the same
/// failure (kind, status and message).
pub(crate) fn same_result(a: &HostResult<Vec<u8>>, b: &HostResult<Vec<u8>>) -> bool {
    match (a, b) {
        (Ok(a), Ok(b)) => a == b,
        (Err(a), Err(b)) => a.kind == b.kind && a.status == b.status && a.message == b.message,
        _ => false,
    }
}

/// A call's result for a failure message; a long output by its digest.
pub(crate) fn describe(result: &HostResult<Vec<u8>>) -> String {
    match result {
        Ok(out) if out.len() <= 32 => format!("output {}", encode_hex(out)),
        Ok(out) => format!("{} bytes of output (sha256 {})", out.len(), sha256_hex(out)),
        Err(f) => f.to_string(),
    }
}
