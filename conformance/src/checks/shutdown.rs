//! The `shutdown` check: `pabi_shutdown` returns a defined status and never
//! traps.

use crate::harness::{fail, Run};
use crate::report::CheckOutcome;
use crate::{PluginUnderTest, TestHost};

impl<H: TestHost + Sync> Run<'_, H> {
    pub(super) fn shutdown(&mut self, function: &str) -> CheckOutcome {
        let mut plugin = match self.load(b"") {
            Ok(p) => p,
            Err(outcome) => return outcome,
        };
        let _ = plugin.call(function, b"");
        match plugin.shutdown() {
            Ok(()) => CheckOutcome::Pass,
            Err(f) if f.is_defined_plugin_error() => CheckOutcome::Pass,
            Err(f) => fail(format!("pabi_shutdown failed with {f}")),
        }
    }
}
