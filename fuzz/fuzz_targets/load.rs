//! `pabi run`'s load path must never panic, hang or exhaust the host on any
//! bytes: compile budget, validation, compilation, instantiation, the
//! lifecycle exports, then one call of every function. The input shaping is
//! the validator target's, so most inputs are edits of real plugins and get
//! past the decoder into the host.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use pabi_host::{Config, Host};

/// One host for the whole run, as an embedding application keeps one. Tight
/// limits keep each execution short; a small cache keeps memory flat over
/// millions of distinct modules.
fn host() -> &'static Host {
    static HOST: OnceLock<Host> = OnceLock::new();
    HOST.get_or_init(|| {
        let config = Config::builder()
            .timeout(Duration::from_millis(20))
            .max_memory(16 << 20)
            .max_output(1 << 20)
            .max_log(64 << 10)
            .cache_capacity(8)
            .build();
        Host::new(config).expect("the engine starts")
    })
}

fuzz_target!(|data: &[u8]| {
    let wasm = pabi_fixtures::module_from_fuzz_input(data, pabi_fixtures::fuzz_bases());
    let Ok(mut plugin) = host().load(&wasm) else { return };
    for function in plugin.functions().to_vec() {
        // Every result is fine (a kind is the host keeping its promise);
        // a panic or a hang is the bug.
        let _ = plugin.call(&function, data);
    }
    if plugin.has_state() {
        if let Ok(state) = plugin.save_state() {
            let _ = plugin.load_state(&state);
        }
    }
});
