//! The `state` check: state save, load and save again round-trips to the
//! same bytes.

use pabi_testkit::hex::encode_hex;
use proptest::strategy::{Just, Strategy};
use proptest::test_runner::{TestCaseError, TestError};

use crate::harness::{fail, skip, Run};
use crate::report::CheckOutcome;
use crate::{inputs, HostFailure, PluginUnderTest, TestHost};

impl<H: TestHost + Sync> Run<'_, H> {
    pub(super) fn state(&mut self, functions: &[String]) -> CheckOutcome {
        let probe = match self.load(b"") {
            Ok(p) => p,
            Err(outcome) => return outcome,
        };
        if !probe.has_state() {
            return skip("the plugin exports no state functions");
        }
        // Each earlier call's input is of its function's shape.
        let shapes: Vec<_> = functions.iter().map(|f| self.shape(f)).collect();
        let call = (0..functions.len()).prop_flat_map(move |index| (Just(index), inputs::bounded_input(shapes[index])));
        let history = proptest::collection::vec(call, 0..6);
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
}

type HostOutcomeResult = Result<(Vec<u8>, Vec<u8>), HostFailure>;
