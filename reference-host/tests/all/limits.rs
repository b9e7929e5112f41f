//! Limits per plugin: a host derived with [`Host::with_limits`] gives its
//! plugins other limits, within the bounds of the engine it shares.

use std::time::Duration;

use pabi_abi::Clause;
use pabi_host::{CompileCap, Error, Host, Limits, Unavailable};

use crate::{fixture, host_with};

fn limits_of(host: &Host, edit: impl FnOnce(&mut Limits)) -> Limits {
    let mut limits = host.config().limits().clone();
    edit(&mut limits);
    limits
}

fn refused_clause(error: Error) -> Clause {
    match error {
        Error::HostUnavailable(Unavailable::Unsupported { clause, .. }) => clause,
        other => panic!("expected an unsupported limit, got {other:?}"),
    }
}

#[test]
fn a_derived_host_gives_its_limits_to_its_plugins_and_leaves_the_first_its_own() {
    let host = host_with(|c| c.timeout(Duration::from_millis(50)));
    let patient = host.with_limits(limits_of(&host, |l| l.timeout = Duration::from_millis(150))).unwrap();
    let spin = fixture("hostile", "infinite-loop");
    // The same module, compiled once, under two deadlines.
    assert_eq!(
        patient.load(&spin).unwrap().call("spin", b"").unwrap_err(),
        Error::Timeout { timeout: Duration::from_millis(150) }
    );
    assert_eq!(
        host.load(&spin).unwrap().call("spin", b"").unwrap_err(),
        Error::Timeout { timeout: Duration::from_millis(50) }
    );

    let terse = host.with_limits(limits_of(&host, |l| l.max_output = 4)).unwrap();
    let good = fixture("good", "core");
    assert_eq!(terse.load(&good).unwrap().call("echo", b"too long").unwrap_err(), Error::OutputLimit { limit: 4 });
    assert_eq!(host.load(&good).unwrap().call("echo", b"too long").unwrap(), b"too long");
}

#[test]
fn a_cached_plugin_is_measured_against_the_derived_hosts_load_limits() {
    let host = host_with(|c| c);
    let good = fixture("good", "core");
    host.precompile(&good).unwrap();
    let len = good.len() as u64;
    let small = host.with_limits(limits_of(&host, |l| l.max_module_bytes = len - 1)).unwrap();
    assert_eq!(
        small.load(&good).unwrap_err(),
        Error::ModuleLimit { cap: CompileCap::ModuleBytes { bytes: len, cap: len - 1 } }
    );
    // The fixture's memory starts at two pages.
    let tight = host.with_limits(limits_of(&host, |l| l.max_memory = 64 << 10)).unwrap();
    assert_eq!(tight.load(&good).unwrap_err(), Error::MemoryLimit { limit: 64 << 10 });
    // The first host still loads it from the cache.
    host.load(&good).unwrap();
}

#[test]
fn the_engines_own_limits_bound_what_a_derived_host_may_ask() {
    let host = host_with(|c| c.max_memory(8 << 20).max_table_elements(100));
    let ask = |edit: fn(&mut Limits)| refused_clause(host.with_limits(limits_of(&host, edit)).unwrap_err());
    assert_eq!(ask(|l| l.fuel = Some(1_000)), Clause::Lim4);
    assert_eq!(ask(|l| l.max_wasm_stack *= 2), Clause::Lim7);
    assert_eq!(ask(|l| l.max_memory = 16 << 20), Clause::Lim1);
    assert_eq!(ask(|l| l.max_table_elements = 101), Clause::Lim8);
    // Without pooling, the store's limiter alone caps memory and tables.
    let unpooled = host_with(|c| c.max_memory(8 << 20).pooling(false));
    let roomy = unpooled.with_limits(limits_of(&unpooled, |l| l.max_memory = 16 << 20)).unwrap();
    assert_eq!(roomy.config().limits().max_memory, 16 << 20);
}

#[test]
fn fuel_per_plugin_needs_an_engine_that_counts_it() {
    let host = host_with(|c| c.fuel(Some(10_000)).timeout(Duration::from_millis(50)));
    let spin = fixture("hostile", "infinite-loop");
    assert_eq!(host.load(&spin).unwrap().call("spin", b"").unwrap_err(), Error::FuelExhausted { fuel: 10_000 });
    let more = host.with_limits(limits_of(&host, |l| l.fuel = Some(20_000))).unwrap();
    assert_eq!(more.load(&spin).unwrap().call("spin", b"").unwrap_err(), Error::FuelExhausted { fuel: 20_000 });
    // No fuel limit on an engine that counts fuel: the deadline ends it.
    let unmetered = host.with_limits(limits_of(&host, |l| l.fuel = None)).unwrap();
    assert_eq!(
        unmetered.load(&spin).unwrap().call("spin", b"").unwrap_err(),
        Error::Timeout { timeout: Duration::from_millis(50) }
    );
}
