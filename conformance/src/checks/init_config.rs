//! The `init-config` check: init with arbitrary configuration bytes gives a
//! defined status and never traps.

use proptest::test_runner::{TestCaseError, TestError};

use crate::harness::{fail, Run};
use crate::report::CheckOutcome;
use crate::reproducer::Payload;
use crate::{inputs, TestHost};

impl<H: TestHost + Sync> Run<'_, H> {
    pub(super) fn init_config(&mut self) -> CheckOutcome {
        let strategy = inputs::any_config();
        let result =
            self.runner(self.costly_cases()).run(&strategy, |config| match self.host.load(self.wasm, &config) {
                Ok(_) => Ok(()),
                Err(f) if f.is_defined_plugin_error() => Ok(()),
                Err(f) => Err(TestCaseError::fail(format!("init failed with {f}"))),
            });
        match result {
            Ok(()) => CheckOutcome::Pass,
            // `pabi_init` runs at load, before any function is called.
            Err(TestError::Fail(reason, config)) => {
                self.reproduced(reason.message(), Some("pabi_init"), "pabi_init", |r| {
                    r.config = Some(Payload::Inline(config));
                })
            }
            Err(TestError::Abort(reason)) => fail(format!("generation aborted: {reason}")),
        }
    }
}
