//! The `input-read` check: the host serves `input_read` at any chunking
//! and offset. It checks the host side, with a WAT fixture of its own.

use proptest::test_runner::{TestCaseError, TestError};

use crate::harness::{fail, Run};
use crate::report::CheckOutcome;
use crate::{PluginUnderTest, TestHost};

impl<H: TestHost + Sync> Run<'_, H> {
    /// Host side: the built-in chunked reader asks for the input in a
    /// generated plan of (offset, length) reads; the output must be exactly
    /// the bytes each read should return (`HOST-3`, `HOST-4`, `MEM-5`).
    pub(super) fn input_read(&mut self) -> CheckOutcome {
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
}

/// The reader fixture of the `input-read` check.
const CHUNKED_READER: &str = include_str!("../../../fixtures/conformance/chunked-reader.wat");
