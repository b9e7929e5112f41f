//! The `caps` check: output and error message stay within their caps, and
//! messages are UTF-8.

use pabi_abi::HostErrorKind;

use crate::harness::{show_bytes, Run};
use crate::report::CheckOutcome;
use crate::{PluginUnderTest, TestHost};

impl<H: TestHost + Sync> Run<'_, H> {
    pub(super) fn caps(&self, function: &str) -> CheckOutcome {
        let mut plugin = match self.load(b"") {
            Ok(p) => p,
            Err(outcome) => return outcome,
        };
        let (max_output, max_message) = (plugin.max_output(), plugin.max_error_message());
        self.property(function, self.options.cases, self.inputs(function), |input| {
            let got = plugin.call(function, input);
            let verdict = match &got {
                Ok(out) if out.len() as u64 > max_output => Err(format!("{} bytes of output pass the cap", out.len())),
                Err(f) if f.kind == Some(HostErrorKind::OutputLimit) => Err(format!("the output passed the cap: {f}")),
                Err(f) if f.message.len() as u64 > max_message => Err("the error message passes its cap".into()),
                Err(f) if std::str::from_utf8(&f.message).is_err() => {
                    Err(format!("the error message is not UTF-8: {}", show_bytes(&f.message)))
                }
                _ => Ok(()),
            };
            // As in `status`: a fresh instance after a failure, so that the
            // crash loop does not stand in for it.
            if got.as_ref().is_err_and(|f| !f.is_defined_plugin_error()) {
                if let Ok(fresh) = self.host.load(self.wasm, b"") {
                    plugin = fresh;
                }
            }
            verdict
        })
    }
}
