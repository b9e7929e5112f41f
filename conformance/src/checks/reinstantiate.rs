//! The `reinstantiate` check: after an aborted call, the next call runs on a
//! fresh, working instance.

use pabi_abi::Metadata;

use crate::harness::{describe, fail, Run};
use crate::report::CheckOutcome;
use crate::{HostFailure, PluginUnderTest, TestHost};

impl<H: TestHost + Sync> Run<'_, H> {
    /// After an aborted call the next call works on a fresh instance, or
    /// fails as it did on the first fresh one. (Outputs are not compared:
    /// that is the determinism check's job.)
    pub(super) fn reinstantiate(&mut self, meta: &Metadata) -> CheckOutcome {
        let function = meta.functions[0].name.as_str();
        let mut plugin = match self.load(b"") {
            Ok(p) => p,
            Err(outcome) => return outcome,
        };
        let before = plugin.call(function, b"");
        plugin.abort_next_call();
        if let Ok(out) = plugin.call(function, b"") {
            return fail(format!("a call that should have been aborted returned {} bytes", out.len()));
        }
        let after = plugin.call(function, b"");
        let works = after.as_ref().map_or_else(HostFailure::is_defined_plugin_error, |_| true)
            || matches!((&before, &after), (Err(a), Err(b)) if a.kind == b.kind);
        if !works {
            fail(format!(
                "after an aborted call, `{function}` gave {} instead of {}",
                describe(&after),
                describe(&before)
            ))
        } else {
            CheckOutcome::Pass
        }
    }
}
