//! Integration tests of the reference host.

/// Defines each test as a function of the isolation, and a `#[test]` per
/// isolation that runs it: the suites of `pool` and `command`.
macro_rules! both_isolations {
    ($($(#[doc = $doc:literal])* fn $name:ident($isolation:ident) $body:block)*) => {
        $($(#[doc = $doc])* fn $name($isolation: Isolation) $body)*

        mod in_process {
            $(#[test]
            fn $name() {
                super::$name(pabi_host::Isolation::InProcess)
            })*
        }

        #[cfg(feature = "worker-process")]
        mod worker_process {
            $(#[test]
            fn $name() {
                super::$name(pabi_host::Isolation::WorkerProcess)
            })*
        }
    };
}

mod command;
mod gate;
mod host_calls;
mod hostile;
mod layering;
mod lifecycle;
mod limits;
mod pool;
mod readme;
mod rss;
#[cfg(feature = "worker-process")]
mod worker;

use pabi_host::{Config, ConfigBuilder, Host};

/// A fixture plugin, compiled from `fixtures/<folder>/<name>.wat`.
pub fn fixture(folder: &str, name: &str) -> Vec<u8> {
    let path = pabi_fixtures::fixtures_dir().join(folder).join(format!("{name}.wat"));
    pabi_fixtures::compile_wat(&path).unwrap_or_else(|e| panic!("{e:#}")).wasm
}

pub fn host_with(edit: impl FnOnce(ConfigBuilder) -> ConfigBuilder) -> Host {
    Host::new(edit(Config::builder()).build()).expect("the engine starts")
}

/// The host still serves a well-behaved plugin normally.
pub fn assert_serves_good_plugin(host: &Host) {
    let mut good = host.load(&fixture("good", "core")).expect("the good plugin loads");
    assert_eq!(good.call("echo", b"still here").unwrap(), b"still here");
}
