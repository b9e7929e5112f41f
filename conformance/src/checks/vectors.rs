//! The `vectors` check: the plugin's own test vectors all pass.

use pabi_abi::HostErrorKind;
use pabi_testkit::hex::encode_hex;
use pabi_testkit::vectors::Expect;

use crate::harness::{describe, fail, skip, Run};
use crate::report::{CheckOutcome, Failure};
use crate::{Application, Offer, PluginUnderTest, TestHost};

impl<H: TestHost + Sync> Run<'_, H> {
    pub(super) fn vectors(&mut self) -> CheckOutcome {
        let Some(file) = &self.options.vectors else {
            return skip("no vectors: no PLUGIN.vectors.json beside the plugin and no --vectors");
        };
        for vector in &file.vectors {
            let config = vector.config.as_ref().map(|c| c.resolve().unwrap_or_default()).unwrap_or_default();
            // The vector's table is the application: it offers the names it
            // lists and no others.
            let offer = match &vector.host_calls {
                Some(table) => Offer::Only(table.names().map(String::from).collect()),
                None => Offer::Only(Vec::new()),
            };
            let mut plugin = match self.host.load_offering(self.wasm, &config, &offer) {
                Ok(p) => p,
                Err(e) => return fail(format!("vector `{}`: the plugin does not load: {e}", vector.name)),
            };
            if let Some(table) = &vector.host_calls {
                plugin.set_application(Application::Table(table.clone()));
            }
            for step in vector.steps() {
                let input = step.input.resolve().unwrap_or_default();
                let got = plugin.call(&step.function, &input);
                let made: Vec<(String, Vec<u8>)> =
                    plugin.take_host_calls().into_iter().map(|call| (call.name, call.request)).collect();
                if !step.requests_match(&made) {
                    let made: Vec<String> =
                        made.iter().map(|(name, request)| format!("{name}({})", encode_hex(request))).collect();
                    return fail(format!(
                        "vector `{}`: the plugin made the host calls [{}], not the ones the vector gives",
                        vector.name,
                        made.join(", ")
                    ));
                }
                let ok = match (&step.expect, &got) {
                    (Expect::Output(expected), Ok(out)) => expected.matches(out),
                    (Expect::Status(status), Err(f)) => {
                        f.kind == Some(HostErrorKind::PluginError) && f.status == Some(*status)
                    }
                    _ => false,
                };
                if !ok {
                    return CheckOutcome::Fail(Failure {
                        message: format!(
                            "vector `{}`: expected {:?}, got {}",
                            vector.name,
                            step.expect,
                            describe(&got)
                        ),
                        function: Some(step.function.clone()),
                        input_hex: Some(encode_hex(&input)),
                        reproducer: Some(format!(
                            "pabi run {} {} --input-hex '{}'",
                            self.path,
                            step.function,
                            encode_hex(&input)
                        )),
                    });
                }
            }
        }
        CheckOutcome::Pass
    }
}
