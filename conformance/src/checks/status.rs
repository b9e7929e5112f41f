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
            Err(f) => {
                // The shrinking goes on with a fresh instance: on this one,
                // five failures in a row end in the crash loop (`LIFE-7`),
                // which would stand in for the failure it shrinks.
                if let Ok(fresh) = self.host.load(self.wasm, b"") {
                    plugin = fresh;
                }
                Err(format!("the call failed with {f}"))
            }
        })
    }
}
