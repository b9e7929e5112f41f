//! The `init-config` check: init with arbitrary configuration bytes gives a
//! defined status and never traps.

use pabi_testkit::hex::encode_hex;
use proptest::test_runner::{TestCaseError, TestError};

use crate::harness::{fail, Run};
use crate::report::{CheckOutcome, Failure};
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
            Err(TestError::Fail(reason, config)) => CheckOutcome::Fail(Failure {
                message: reason.message().to_string(),
                function: Some("pabi_init".into()),
                reproducer: Some(format!("pabi run {} <function> --config-hex '{}'", self.path, encode_hex(&config))),
                input_hex: Some(encode_hex(&config)),
            }),
            Err(TestError::Abort(reason)) => fail(format!("generation aborted: {reason}")),
        }
    }
}
