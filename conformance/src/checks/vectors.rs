//! The `vectors` check: the plugin's own test vectors all pass.

use pabi_abi::HostErrorKind;
use pabi_testkit::hex::decode_hex;
use pabi_testkit::vectors::{Expect, ExpectedOutput};

use crate::harness::{describe, fail, show_bytes, skip, Run};
use crate::report::CheckOutcome;
use crate::reproducer::Payload;
use crate::{Application, Offer, PluginUnderTest, TestHost};

impl<H: TestHost + Sync> Run<'_, H> {
    pub(super) fn vectors(&mut self) -> CheckOutcome {
        let Some(file) = &self.options.vectors else {
            return skip("no vectors: no PLUGIN.vectors.json beside the plugin and no --vectors");
        };
        let mut ran = 0;
        let outcome = self.each_vector(file, &mut ran);
        self.vectors_ran = Some(ran);
        outcome
    }

    /// Runs the vectors in order up to the first that fails, counting them.
    fn each_vector(&self, file: &pabi_testkit::vectors::VectorFile, ran: &mut u32) -> CheckOutcome {
        for vector in &file.vectors {
            *ran += 1;
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
                        made.iter().map(|(name, request)| format!("{name}({})", show_bytes(request))).collect();
                    return fail(format!(
                        "vector `{}`: the plugin made the host calls [{}], not the ones the vector gives",
                        vector.name,
                        made.join(", ")
                    ));
                }
                let ok = match (&step.expect, &got) {
                    (Expect::Output(expected), Ok(out)) => expected.matches(out),
                    (expect @ Expect::Status { .. }, Err(f)) => {
                        f.kind == Some(HostErrorKind::PluginError) && expect.failure_matches(f.status, &f.message)
                    }
                    _ => false,
                };
                if !ok {
                    let message = format!(
                        "vector `{}`: expected {}, got {}",
                        vector.name,
                        expected(&step.expect),
                        describe(&got)
                    );
                    // The reproducer gives the vector's configuration and
                    // table, without which the call is another one (a
                    // required host call missing fails the load). A
                    // vector's earlier steps are not replayed.
                    let name = format!("{}-{}", vector.name, step.function);
                    return self.reproduced(message, Some(&step.function), &name, |r| {
                        r.function = Some(step.function.clone());
                        r.config = (!config.is_empty()).then(|| Payload::Inline(config.clone()));
                        r.input = Some(Payload::Inline(input));
                        r.host_calls =
                            vector.host_calls.as_ref().map(|table| Payload::Inline(table.to_json().into_bytes()));
                    });
                }
            }
        }
        CheckOutcome::Pass
    }
}

/// What a step expects, in words: the output as text or hex, or a status.
fn expected(expect: &Expect) -> String {
    match expect {
        Expect::Output(ExpectedOutput::Text(text)) => format!("output {}", show_bytes(text.as_bytes())),
        Expect::Output(ExpectedOutput::Hex(hex)) => match decode_hex(hex) {
            Some(bytes) => format!("output {}", show_bytes(&bytes)),
            None => "an output given as bad hex".to_string(),
        },
        Expect::Output(ExpectedOutput::Sha256(digest)) => format!("an output with sha256 {}", digest.to_lowercase()),
        Expect::Status { status, message: None } => format!("PLUGIN_ERROR with status {status}"),
        Expect::Status { status, message: Some(message) } => {
            format!("PLUGIN_ERROR with status {status} and the message {}", show_bytes(message.as_bytes()))
        }
    }
}
