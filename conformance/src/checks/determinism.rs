//! The `determinism` check: a function declared deterministic gives the same
//! result on fresh instances and after other calls.

use pabi_abi::Metadata;

use crate::harness::{describe, same_result, skip, Run};
use crate::report::CheckOutcome;
use crate::{PluginUnderTest, TestHost};

impl<H: TestHost + Sync> Run<'_, H> {
    pub(super) fn determinism(&self, meta: &Metadata) -> CheckOutcome {
        let deterministic: Vec<&str> =
            meta.functions.iter().filter(|f| f.deterministic).map(|f| f.name.as_str()).collect();
        if deterministic.is_empty() {
            return skip("no function is declared deterministic");
        }
        let all: Vec<&str> = meta.functions.iter().map(|f| f.name.as_str()).collect();
        self.for_each_function(&deterministic, |run, function| {
            run.property(function, run.costly_cases(), run.inputs(function), |input| {
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
}

/// One to four earlier calls, drawn from `input`: which functions (any of
/// the plugin's) and with which inputs (suffixes of `input`).
fn history<'a>(functions: &[&'a str], input: &[u8]) -> Vec<(&'a str, Vec<u8>)> {
    let seed = input.first().copied().unwrap_or(0) as usize;
    (0..1 + seed % 4)
        .map(|i| (functions[(seed / 4 + i) % functions.len()], input.get(i..).unwrap_or_default().to_vec()))
        .collect()
}
