//! The `explore` check: the property of `status` (every call returns a
//! defined status and never traps), on inputs found by coverage-guided
//! exploration. An instrumented copy of the plugin tells which blocks each
//! input reaches; inputs that reach new blocks are kept (and written to
//! the corpus folder, when there is one) and mutated further, within the
//! case budget. Every failure is confirmed on the original plugin and
//! minimised there before it is reported.

use std::sync::{Arc, Mutex};

use proptest::strategy::{Strategy, ValueTree};

use crate::coverage::corpus::CorpusDir;
use crate::coverage::mutate::{mutate, Rng};
use crate::coverage::{instrument, Bits, CorpusStats, CoverageReport, ExploredFunction, Instrumented};
use crate::harness::{fail, skip, Run};
use crate::report::CheckOutcome;
use crate::reproducer::Payload;
use crate::{HostResult, PluginUnderTest, TestHost};

/// The property of `status`: a defined status, or the message of the
/// failure.
fn property(result: &HostResult<Vec<u8>>) -> Result<(), String> {
    match result {
        Ok(_) => Ok(()),
        Err(f) if f.is_defined_plugin_error() => Ok(()),
        Err(f) => Err(format!("the call failed with {f}")),
    }
}

/// What exploring one function gave.
struct Explored {
    outcome: CheckOutcome,
    reached: Bits,
    summary: Option<ExploredFunction>,
    corpus: Option<CorpusStats>,
}

impl<H: TestHost + Sync> Run<'_, H> {
    pub(super) fn explore(&mut self, functions: &[String]) -> CheckOutcome {
        let prepared = self.instrumented.take().map(|p| p.into_inner().unwrap_or_else(|e| e.into_inner()));
        let made = match prepared.and_then(|prepared| prepared.recv().ok()) {
            Some(made) => made,
            None => instrument(self.wasm).map(Arc::new),
        };
        let map = match made {
            Ok(map) => map,
            Err(e) => return skip(format!("the plugin cannot be instrumented for coverage: {e}")),
        };
        let results: Mutex<Vec<(String, Explored)>> = Mutex::default();
        let outcome = self.for_each_function(functions, |run, function| {
            let explored = run.explore_function(function, &map);
            let outcome = explored.outcome.clone();
            results.lock().unwrap_or_else(|p| p.into_inner()).push((function.to_string(), explored));
            outcome
        });
        let mut results = results.into_inner().unwrap_or_else(|p| p.into_inner());
        // In function order, whichever thread finished first.
        results.sort_by_key(|(name, _)| functions.iter().position(|f| f == name));
        if let Some((_, skipped)) = results.iter().find(|(_, e)| matches!(e.outcome, CheckOutcome::Skip { .. })) {
            if outcome == CheckOutcome::Pass {
                return skipped.outcome.clone();
            }
        }
        let mut reached = Bits::new(map.blocks.len());
        let mut corpus: Option<CorpusStats> = None;
        let mut summaries = Vec::new();
        for (_, explored) in results {
            reached.merge(&explored.reached);
            summaries.extend(explored.summary);
            if let Some(stats) = explored.corpus {
                // The plugin's folder, over its functions' folders.
                let dir = stats.dir.parent().map_or_else(|| stats.dir.clone(), Into::into);
                let total = corpus.get_or_insert_with(|| CorpusStats { dir, ..Default::default() });
                total.read += stats.read;
                total.written += stats.written;
                total.write_error = total.write_error.take().or(stats.write_error);
            }
        }
        let report = CoverageReport::new(map, reached, summaries, corpus);
        let percent = report.percent();
        self.coverage = Some(report);
        match self.options.min_coverage {
            Some(min) if outcome == CheckOutcome::Pass && percent < min => fail(format!(
                "coverage {percent:.1}% of blocks is below --min-coverage {min}%; the coverage report lists the \
                 blocks never reached"
            )),
            _ => outcome,
        }
    }

    /// Explores one function within the case budget.
    fn explore_function(&self, function: &str, map: &Instrumented) -> Explored {
        let mut explored =
            Explored { outcome: CheckOutcome::Pass, reached: Bits::new(map.blocks.len()), summary: None, corpus: None };
        let load = || self.host.load(&map.wasm, b"");
        let mut plugin = match load() {
            Ok(plugin) => plugin,
            Err(e) => {
                explored.outcome = skip(format!("the instrumented copy of the plugin does not load: {e}"));
                return explored;
            }
        };
        // The first read starts the count: it holds what `pabi_init` reached.
        let Some(init) = plugin.coverage() else {
            explored.outcome = skip("the host reads no coverage counters");
            return explored;
        };
        explored.reached.merge(&Bits(init));
        let corpus_dir = self.options.corpus.as_ref().map(|dir| CorpusDir::new(dir, self.path, function));
        let mut stats =
            corpus_dir.as_ref().map(|dir| CorpusStats { dir: dir.path().to_path_buf(), ..Default::default() });
        let budget = self.options.cases as usize;
        let mut rng = Rng::new(self.options.seed ^ fnv(function));
        let mut seeds: Vec<Vec<u8>> = Vec::new();
        if let Some(dir) = &corpus_dir {
            let read = dir.read();
            if let Some(stats) = &mut stats {
                stats.read = read.len() as u32;
            }
            seeds.extend(read);
        }
        let guided = self.options.guided;
        // Half the budget, a quarter (at most 64) of it first and the rest
        // every other call among the mutants: the generator's shapes (large
        // inputs above all) reach code that mutating small inputs does not.
        let generated = if guided { budget.div_ceil(2) } else { budget };
        let mut fresh: std::collections::VecDeque<Vec<u8>> = self.generated_inputs(function, generated).into();
        if guided {
            seeds.push(Vec::new());
            // Inputs as long as a constant the code compares against: a
            // length check (`input_len != 4`) is a branch random lengths
            // seldom take.
            seeds.extend(lengths(&map.tokens).into_iter().map(|n| vec![b'0'; n]));
        }
        let first = if guided { (budget / 4).clamp(1, 64) } else { budget };
        seeds.extend(fresh.drain(..fresh.len().min(first)));
        let singles: Vec<Vec<u8>> = map.tokens.iter().filter(|t| t.len() == 1).take(32).cloned().collect();
        // Inputs that reached new blocks, the newest last.
        let mut kept: Vec<Vec<u8>> = Vec::new();
        let mut pending: std::collections::VecDeque<Vec<u8>> = seeds.into();
        // Calls spent appending single-byte tokens to new entries, at most
        // a third of the budget and 16.
        let mut appended = 0;
        let mut ran = 0;
        let mut unconfirmed = None;
        while ran < budget {
            let input = match pending.pop_front() {
                Some(input) => input,
                None if kept.is_empty() || !guided => break,
                None if ran % 2 == 0 && !fresh.is_empty() => fresh.pop_front().unwrap_or_default(),
                None => {
                    let base = if rng.chance(2) { kept.len() - 1 } else { rng.below(kept.len()) };
                    let other = &kept[rng.below(kept.len())];
                    mutate(&mut rng, &kept[base], other, &map.tokens)
                }
            };
            ran += 1;
            let result = plugin.call(function, &input);
            let bits = Bits(plugin.coverage().unwrap_or_default());
            if let Err(message) = property(&result) {
                match self.confirm(function, &input) {
                    Some(outcome) => {
                        explored.outcome = outcome;
                        break;
                    }
                    // The instrumented copy failed where the plugin does
                    // not (its probes cost time and fuel): a fresh copy
                    // goes on, so that its failures cannot add up to a
                    // crash loop (`LIFE-7`).
                    None => {
                        unconfirmed = Some(message);
                        match load() {
                            Ok(fresh) => plugin = fresh,
                            Err(_) => break,
                        }
                    }
                }
            }
            if explored.reached.merge(&bits) > 0 && guided {
                if let (Some(dir), Some(stats)) = (&corpus_dir, &mut stats) {
                    match dir.write(&input) {
                        Ok(written) => stats.written += u32::from(written),
                        Err(e) => {
                            stats.write_error.get_or_insert_with(|| format!("{}: {e}", dir.path().display()));
                        }
                    }
                }
                // A prefix the code accepted so far, continued by each
                // byte the code compares against (a magic number checked
                // byte by byte).
                if input.len() <= 64 && appended + singles.len() <= budget / 3 + 16 {
                    appended += singles.len();
                    for token in &singles {
                        let mut next = input.clone();
                        next.extend_from_slice(token);
                        pending.push_front(next);
                    }
                }
                kept.push(input);
            }
        }
        explored.summary = Some(ExploredFunction {
            function: function.to_string(),
            blocks_reached: explored.reached.count(),
            cases: ran as u32,
            unconfirmed,
        });
        explored.corpus = stats;
        explored
    }

    /// `n` inputs of the generator, shaped by `function`'s declared media
    /// type, for seeds (or, unguided, for all of the cases); the one place
    /// the check draws on [`Run::inputs`].
    fn generated_inputs(&self, function: &str, n: usize) -> Vec<Vec<u8>> {
        let strategy = self.inputs(function);
        let mut runner = self.runner(n as u32);
        (0..n).filter_map(|_| strategy.new_tree(&mut runner).ok().map(|tree| tree.current())).collect()
    }

    /// The failure of `input` on the original plugin, minimised, when the
    /// original fails too.
    fn confirm(&self, function: &str, input: &[u8]) -> Option<CheckOutcome> {
        let mut original = match self.load(b"") {
            Ok(plugin) => plugin,
            Err(outcome) => return Some(outcome),
        };
        let mut fails = |input: &[u8]| property(&original.call(function, input)).err();
        let message = fails(input)?;
        let (minimal, message) = crate::harness::minimise(input.to_vec(), message, &mut fails);
        let message = format!("{message} (found by coverage-guided exploration)");
        Some(self.reproduced(message, Some(function), function, |r| {
            r.function = Some(function.to_string());
            r.input = Some(Payload::Inline(minimal));
        }))
    }
}

/// The most inputs [`lengths`] gives.
const LENGTH_SEEDS: usize = 16;

/// Small integers among the dictionary's tokens (a byte, or 2 or 4
/// little-endian bytes, from 2 to 4096), the first [`LENGTH_SEEDS`] in
/// order.
fn lengths(tokens: &[Vec<u8>]) -> Vec<usize> {
    let mut lengths: Vec<usize> = tokens
        .iter()
        .filter_map(|t| match t.as_slice() {
            [b] => Some(usize::from(*b)),
            [a, b] => Some(usize::from(u16::from_le_bytes([*a, *b]))),
            [a, b, c, d] => usize::try_from(u32::from_le_bytes([*a, *b, *c, *d])).ok(),
            _ => None,
        })
        .filter(|n| (2..=4096).contains(n))
        .collect();
    lengths.sort_unstable();
    lengths.dedup();
    lengths.truncate(LENGTH_SEEDS);
    lengths
}

/// FNV-1a of a function name: each function explores from its own seed.
fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}
