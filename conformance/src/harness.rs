//! The harness the checks run in: one plugin's run, its seeded runners and
//! inputs, the property loop with its reproducers, and the outcomes and
//! descriptions the checks share.

use std::time::Instant;

use pabi_testkit::hex::{encode_hex, sha256_hex};
use proptest::strategy::BoxedStrategy;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};

use pabi_abi::Metadata;

use crate::inputs::Shape;
use crate::report::{CheckOutcome, CheckResult, Failure, PluginReport};
use crate::reproducer::{Payload, ReportFolder, Reproducer};
use crate::{inputs, Check, HostResult, Options, Progress, TestHost};

/// A failure that names no function or input: the check's own message.
pub(crate) fn fail(message: impl Into<String>) -> CheckOutcome {
    CheckOutcome::Fail(Failure::new(message))
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
    /// The shape of each function's input, from its declared media type.
    shapes: std::collections::HashMap<String, Shape>,
    /// The largest input generated: the run's cap, lower for a plugin that
    /// makes host calls ([`inputs::MAX_INPUT_WITH_HOST_CALLS`]).
    max_input: usize,
    /// Where reproducers too long for a terminal are written.
    folder: ReportFolder,
    /// The check running, which names its reproducer files.
    current: Option<Check>,
    /// How many test vectors the `vectors` check ran, for its result.
    pub(crate) vectors_ran: Option<u32>,
    /// The instrumented copy, made beside the first checks.
    pub(crate) instrumented: Option<crate::coverage::Prepared>,
    /// What the `explore` check reached, for its result.
    pub(crate) coverage: Option<crate::coverage::CoverageReport>,
}

impl<'a, H: TestHost + Sync> Run<'a, H> {
    pub(crate) fn new(
        host: &'a H,
        path: &'a str,
        wasm: &'a [u8],
        options: &'a Options,
        meta: Option<&Metadata>,
    ) -> Self {
        let folder = ReportFolder::new(options.report_dir.clone(), path);
        let makes_host_calls = meta.is_some_and(|m| !m.host_calls.is_empty());
        let max_input =
            if makes_host_calls { options.max_input.min(inputs::MAX_INPUT_WITH_HOST_CALLS) } else { options.max_input };
        let shapes = meta
            .map(|m| m.functions.iter().map(|f| (f.name.clone(), Shape::of(f.input.as_deref()))).collect())
            .unwrap_or_default();
        Run {
            host,
            path,
            wasm,
            options,
            results: Vec::new(),
            shapes,
            max_input,
            folder,
            current: None,
            vectors_ran: None,
            coverage: None,
            instrumented: None,
        }
    }

    pub(crate) fn record(
        &mut self,
        check: Check,
        progress: &mut dyn FnMut(Progress),
        body: impl FnOnce(&mut Self) -> CheckOutcome,
    ) {
        progress(Progress::Started { check });
        self.current = Some(check);
        let started = Instant::now();
        let outcome = body(self);
        let mut result = CheckResult::new(check, outcome, started.elapsed());
        result.vectors = self.vectors_ran.take();
        result.coverage = self.coverage.take().map(Box::new);
        self.results.push(result);
    }

    pub(crate) fn finish(self) -> PluginReport {
        PluginReport::new(self.path.to_string(), self.options.seed, self.options.cases, self.results)
    }

    pub(crate) fn runner(&self, cases: u32) -> TestRunner {
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&self.options.seed.to_le_bytes());
        // Shrinking a failure that costs a deadline per step (a call that
        // times out) would take minutes: it stops after its time budget,
        // with the smallest input so far.
        let config = Config {
            cases,
            failure_persistence: None,
            max_shrink_iters: 1024,
            max_shrink_time: SHRINK_MILLIS,
            ..Config::default()
        };
        TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &seed))
    }

    /// The shape of `function`'s input, from its declared media type.
    pub(crate) fn shape(&self, function: &str) -> Shape {
        self.shapes.get(function).copied().unwrap_or(Shape::Bytes)
    }

    /// The inputs of the property checks for `function`: shaped by its
    /// declared input media type, up to the run's input cap (smaller for a
    /// plugin that makes host calls).
    pub(crate) fn inputs(&self, function: &str) -> BoxedStrategy<Vec<u8>> {
        inputs::for_shape(self.shape(function), self.max_input)
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
            Err(TestError::Fail(reason, input)) => {
                let message = reason.message().to_string();
                let (input, message) = minimise(input, message, |candidate| (property.borrow_mut())(candidate).err());
                self.reproduced(message, Some(function), function, |r| {
                    r.function = Some(function.to_string());
                    r.input = Some(Payload::Inline(input));
                })
            }
            Err(TestError::Abort(reason)) => fail(format!("generation aborted: {reason}")),
        }
    }
}

impl<H: TestHost> Run<'_, H> {
    /// A failure of the running check on `function`, with the reproducer
    /// `build` gives, its bytes inline; those too long for a report are
    /// written to files named `<plugin>-<check>-<name>…` of the report
    /// folder ([`ReportFolder::place`]). When a file cannot be written, the
    /// message says so in place of a reproducer.
    pub(crate) fn reproduced(
        &self,
        message: impl Into<String>,
        function: Option<&str>,
        name: &str,
        build: impl FnOnce(&mut Reproducer),
    ) -> CheckOutcome {
        let mut failure = Failure::new(message);
        failure.function = function.map(String::from);
        let mut reproducer = Reproducer::new(self.path, None);
        build(&mut reproducer);
        let check = self.current.map_or("check", Check::id);
        match self.folder.place(&mut reproducer, &format!("{check}-{name}")) {
            Ok(()) => failure.reproducer = Some(Box::new(reproducer)),
            Err(e) => failure.message += &format!(" (no reproducer: {e})"),
        }
        CheckOutcome::Fail(failure)
    }
}

/// How many runs [`minimise`] may spend.
const MINIMISE_RUNS: usize = 1024;

/// How long proptest may shrink one failure, in milliseconds; [`minimise`]
/// takes at most a third of it more.
const SHRINK_MILLIS: u32 = 12_000;

/// `input`, which fails with `failure`, made smaller while it still
/// fails: after proptest's shrinking, which takes a byte vector apart one
/// element at a time and stops at its iteration cap, leaving inputs of
/// kilobytes. First the shortest failing prefix a bisection finds (a
/// failure past a length, a buffer that overflows, would take a run per
/// byte to reach by chunks); then chunks are removed, halves, then
/// quarters, and so on (delta debugging). Within [`MINIMISE_RUNS`] runs
/// and a third of [`SHRINK_MILLIS`]. `fails` gives a candidate's failure,
/// or `None`; the result is the smallest input that failed, with its
/// failure.
pub(crate) fn minimise<T>(
    mut input: Vec<u8>,
    mut failure: T,
    mut fails: impl FnMut(&[u8]) -> Option<T>,
) -> (Vec<u8>, T) {
    let deadline = Instant::now() + std::time::Duration::from_millis(u64::from(SHRINK_MILLIS / 3));
    let mut runs = 0;
    let spent = |runs: &mut usize| {
        *runs += 1;
        *runs > MINIMISE_RUNS || Instant::now() > deadline
    };
    let (mut short, mut long) = (0, input.len());
    while short < long && !spent(&mut runs) {
        let mid = short + (long - short) / 2;
        match fails(&input[..mid]) {
            Some(f) => (long, failure) = (mid, f),
            None => short = mid + 1,
        }
    }
    input.truncate(long);
    let mut chunk = input.len().div_ceil(2).max(1);
    while !input.is_empty() {
        let mut start = 0;
        let mut progress = false;
        while start < input.len() {
            if spent(&mut runs) {
                return (input, failure);
            }
            let end = (start + chunk).min(input.len());
            let candidate: Vec<u8> = input[..start].iter().chain(&input[end..]).copied().collect();
            match fails(&candidate) {
                Some(f) => (input, failure, progress) = (candidate, f, true),
                None => start = end,
            }
        }
        if !progress {
            if chunk == 1 {
                break;
            }
            chunk = chunk.div_ceil(2);
        }
    }
    (input, failure)
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

/// A call's result for a failure message: its output as text or hex (a
/// long one cut, with its length and digest), or its failure.
pub(crate) fn describe(result: &HostResult<Vec<u8>>) -> String {
    match result {
        Ok(out) => format!("output {}", show_bytes(out)),
        Err(f) => f.to_string(),
    }
}

/// How many bytes of output or input a failure message quotes.
const SHOWN_BYTES: usize = 64;

/// Bytes for a failure message: `text "…"` when they are printable UTF-8,
/// else `hex …`; past [`SHOWN_BYTES`], the start, the length and the
/// digest. A report escapes what the text holds (`SEC-3`).
pub(crate) fn show_bytes(bytes: &[u8]) -> String {
    let text = std::str::from_utf8(bytes)
        .ok()
        .filter(|text| !text.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\t' | '\r')));
    let shown = match text {
        Some(text) => {
            let mut end = text.len().min(SHOWN_BYTES);
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            let quoted = pabi_abi::text::escape_controls(&text[..end]).replace('"', "\\\"");
            format!("text \"{quoted}\"")
        }
        None => format!("hex {}", encode_hex(&bytes[..bytes.len().min(SHOWN_BYTES)])),
    };
    if bytes.len() <= SHOWN_BYTES {
        return if bytes.is_empty() { "(empty)".to_string() } else { shown };
    }
    format!("{shown}… ({} bytes, sha256 {})", bytes.len(), sha256_hex(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimising_keeps_only_what_the_failure_needs() {
        let input = b"xxxxPxxAxxBxxIxxxxxxxxx".to_vec();
        let fails = |i: &[u8]| {
            let keep: Vec<u8> = i.iter().copied().filter(|b| *b != b'x').collect();
            (keep == b"PABI").then(|| format!("fails at {}", i.len()))
        };
        let (minimal, failure) = minimise(input, "fails at 23".to_string(), fails);
        assert_eq!((minimal.as_slice(), failure.as_str()), (&b"PABI"[..], "fails at 4"));
    }

    /// A failure past a length is found by bisecting the prefix, in a few
    /// runs, not one run per byte.
    #[test]
    fn a_failure_past_a_length_is_cut_to_it_in_few_runs() {
        let mut lengths = Vec::new();
        let (minimal, ()) = minimise(vec![7; 1 << 20], (), |i: &[u8]| {
            lengths.push(i.len());
            (i.len() > 1000).then_some(())
        });
        assert_eq!(minimal.len(), 1001);
        let found = lengths.iter().position(|&len| len == 1001);
        assert!(found.is_some_and(|runs| runs < 25), "1001 bytes tried after {found:?} runs");
    }
}
