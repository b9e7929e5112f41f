//! The `status` check: every call returns a defined status and never
//! traps, for generated inputs.

use crate::harness::Run;
use crate::report::CheckOutcome;
use crate::{PluginUnderTest, TestHost};

impl<H: TestHost + Sync> Run<'_, H> {
    pub(super) fn status(&self, function: &str) -> CheckOutcome {
        let mut plugin = match self.load(b"") {
            Ok(p) => p,
            Err(outcome) => return outcome,
        };
        self.property(function, self.options.cases, self.inputs(function), |input| match plugin.call(function, input) {
            Ok(_) => Ok(()),
            Err(f) if f.is_defined_plugin_error() => Ok(()),
            Err(f) => Err(format!("the call failed with {f}")),
        })
    }
}
