//! The pabi reference host, on wasmtime: load, limit, call and hot-reload
//! pabi plugins.
//!
//! ```
//! # fn main() -> anyhow::Result<()> {
//! let wasm = wat::parse_str(r#"(module
//!     (import "pabi" "input_read" (func $read (param i32 i32 i32) (result i32)))
//!     (import "pabi" "output_write" (func $write (param i32 i32) (result i32)))
//!     (memory (export "memory") 1)
//!     (func (export "pabi_fn_echo") (param $len i32) (result i32)
//!       (drop (call $read (i32.const 0) (i32.const 0) (local.get $len)))
//!       (drop (call $write (i32.const 0) (local.get $len)))
//!       (i32.const 0))
//!     (@custom "pabi" "{\"abi\":\"1.0\",\"name\":\"echo\",\"version\":\"1.0.0\",\"profile\":\"core\",\"functions\":[{\"name\":\"echo\"}],\"capabilities\":[]}"))"#)?;
//!
//! let host = pabi_host::Host::new(pabi_host::Config::default())?;
//! let mut plugin = host.load(&wasm)?;
//! assert_eq!(plugin.call("echo", b"hello")?, b"hello");
//!
//! // Every failure is one of the spec's host error kinds.
//! let error = plugin.call("nope", b"").unwrap_err();
//! assert_eq!(error.kind(), Some(pabi_host::HostErrorKind::UnknownFunction));
//! # Ok(())
//! # }
//! ```
//!
//! # Which type do I use?
//!
//! | you want to | use |
//! |---|---|
//! | call a plugin from one thread, one call at a time (a CLI, a test, a script) | [`Plugin`], from [`Host::load`] |
//! | call a plugin from many threads or async tasks, with a bounded queue | [`Pool`], from [`Pool::builder`] |
//! | the same, with each plugin in a worker process of its own, with OS limits (`SEC-1`) | [`Pool`] with [`PoolBuilder::isolation`] set to [`Isolation::WorkerProcess`] (cargo feature `worker-process`) |
//! | stop a call early, from another thread | [`CancelHandle`]: [`Plugin::cancel_handle`], or [`CancelHandle::new`] for one call of a [`Pool`] |
//! | give one plugin a longer deadline, more fuel or less memory than the rest | [`Host::with_limits`], then load or build the pool from that host |
//! | pass text or JSON rather than bytes | [`Plugin::call_as`] and [`Pool::call_as`], with [`Json`] (module [`typed`]) |
//! | give plugins a function of your application | [`HostFunction`], offered by [`ConfigBuilder::host_function`] |
//! | bound the calls running at once across plugins, so that a light plugin keeps its latency beside CPU-heavy ones | a [`CpuGate`], given to every host by [`ConfigBuilder::cpu_gate`] |
//! | serve the plugins of a folder over HTTP | the `pabi-serve` crate, a server over [`Pool`] |
//!
//! A [`Host`] holds the configuration, the engine and the cache of
//! compiled plugins; [`Plugin`] is one instance of one plugin; [`Pool`] is
//! the one way to share instances: its instances run in this process or in
//! a worker process, and both behave the same (the same errors, queue,
//! cancellation, reload and shutdown). Every failure is an [`Error`].
//!
//! ## Beside Extism
//!
//! The same program, a plugin that calls `kv.get` on its host, run from a
//! pool of 4 instances, with one call cancelled, in Extism's Rust SDK
//! (1.21) and in pabi:
//!
//! ```text
//! // Extism
//! host_fn!(kv_get(_data: (); key: String) -> String {
//!     Ok(if key == "apple" { "red".into() } else { String::new() })
//! });
//! let manifest = Manifest::new([Wasm::data(wasm)]);
//! let pool = PoolBuilder::new().with_max_instances(4).build(move || {
//!     PluginBuilder::new(manifest.clone())
//!         .with_function("kv_get", [PTR], [PTR], UserData::default(), kv_get)
//!         .build()
//! });
//! let mut plugin = pool.get(Duration::from_secs(5))?.expect("an instance");
//! let cancel = plugin.cancel_handle();
//! let out: String = plugin.call("lookup", "apple")?;
//!
//! // pabi
//! let kv_get = HostFunction::new("kv.get", |_cx, key| Ok(if key == b"apple" { b"red".to_vec() } else { vec![] }));
//! let host = Host::new(Config::builder().host_function(kv_get).build())?;
//! let pool = Pool::builder().instances(4).build(&host, &wasm)?;
//! let cancel = CancelHandle::new();
//! let out = pool.call_cancellable("lookup", b"apple", &cancel)?;
//! ```
//!
//! pabi's is shorter, and the difference is more than lines: the pool
//! holds the queue (a checkout with a timeout is the caller's job in
//! Extism), the cancel handle is the call's, not an instance's, so it
//! cannot reach someone else's next call, the host function's signature
//! is fixed by the ABI (bytes in, bytes out) rather than declared per
//! function, and moving the pool to a worker process is one setter.
//!
//! # Configuring a host
//!
//! [`Config::builder`] starts from the spec's defaults (`LIM-1` … `LIM-8`)
//! with no capability granted; each setter of [`ConfigBuilder`] documents
//! its default. A setting added in a later version is a new setter, never a
//! breaking change.
//!
//! ```
//! use std::time::Duration;
//! use pabi_host::{Config, DirGrant, Host};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::builder()
//!     .timeout(Duration::from_millis(250))
//!     .max_memory(32 << 20)
//!     .allow_env("LANG", "C")
//!     .allow_dir(DirGrant::new("/srv/data", "/data", true)?)
//!     .build();
//! let host = Host::new(config)?;
//! # drop(host);
//! # Ok(())
//! # }
//! ```
//!
//! A plugin gets only what it declares *and* the host allows (`WASI-5`):
//! one that declares `env:HOME` on the host above fails to load with
//! [`Error::MissingCapability`].
//!
//! A host's limits apply to every plugin it loads. To give one plugin
//! other limits (a longer deadline, more fuel, a smaller memory), load it,
//! or build its [`Pool`], from [`Host::with_limits`]: a host that shares
//! the engine, the compiled plugins and the host functions, and differs
//! only in its limits. The limits the engine itself holds bound the
//! others; the method's documentation says which.
//!
//! # Errors
//!
//! Every failure of a load or a call is an [`Error`] whose [`Error::kind`]
//! is one of the spec's host error kinds (`ERR-6`), with the details that
//! kind carries: the clause of an [`Error::AbiViolation`], the trap kind and
//! a [`WasmTrace`] of an [`Error::Trap`], the plugin's status and message of
//! an [`Error::PluginError`]. A host that cannot serve, whatever the plugin,
//! reports [`Error::HostUnavailable`] (`HOST_FAILURE`); only a configuration
//! it cannot apply has no kind.
//!
//! After an abort or a trap the instance is dead; the next call runs on a
//! fresh one with the same configuration (`LIFE-5`, `LIFE-6`), and a plugin
//! that keeps dying is disabled with [`Error::CrashLoop`] (`LIFE-7`).
//!
//! # Cancelling a call
//!
//! Every call has its deadline. To stop one earlier, from another thread,
//! take a [`CancelHandle`] before the call:
//!
//! ```
//! # fn main() -> anyhow::Result<()> {
//! # let wasm = wat::parse_str(r#"(module (memory (export "memory") 1)
//! #   (func (export "pabi_fn_spin") (param i32) (result i32) (loop (br 0)) (i32.const 0))
//! #   (@custom "pabi" "{\"abi\":\"1.0\",\"name\":\"spin\",\"version\":\"1.0.0\",\"profile\":\"core\",\"functions\":[{\"name\":\"spin\"}],\"capabilities\":[]}"))"#)?;
//! let host = pabi_host::Host::new(pabi_host::Config::default())?;
//! let mut plugin = host.load(&wasm)?;
//! let cancel = plugin.cancel_handle();
//! std::thread::spawn(move || {
//!     std::thread::sleep(std::time::Duration::from_millis(20));
//!     cancel.cancel();
//! });
//! assert_eq!(plugin.call("spin", b"").unwrap_err(), pabi_host::Error::Cancelled);
//! # Ok(())
//! # }
//! ```
//!
//! # Host functions
//!
//! A plugin of ABI 1.1 calls its application through host calls it
//! declares (`CALL-1`). The application offers each one as a closure; the
//! host copies the request out and the reply in, so no buffer changes owner:
//!
//! ```
//! # fn main() -> anyhow::Result<()> {
//! use pabi_host::{Config, Host, HostCallError, HostFunction};
//!
//! let wasm = wat::parse_str(r#"(module
//!     (import "pabi" "input_read" (func $read (param i32 i32 i32) (result i32)))
//!     (import "pabi" "output_write" (func $write (param i32 i32) (result i32)))
//!     (import "pabi" "host_call" (func $host_call (param i32 i32 i32 i32) (result i32)))
//!     (import "pabi" "reply_read" (func $reply_read (param i32 i32 i32) (result i32)))
//!     (memory (export "memory") 1)
//!     (data (i32.const 0) "kv.get")
//!     (func (export "pabi_fn_lookup") (param $len i32) (result i32) (local $n i32)
//!       (drop (call $read (i32.const 16) (i32.const 0) (local.get $len)))
//!       (local.set $n (call $host_call (i32.const 0) (i32.const 6) (i32.const 16) (local.get $len)))
//!       (if (i32.lt_s (local.get $n) (i32.const 0)) (then (return (i32.const 3))))
//!       (drop (call $write (i32.const 1024) (call $reply_read (i32.const 1024) (i32.const 0) (local.get $n))))
//!       (i32.const 0))
//!     (@custom "pabi" "{\"abi\":\"1.1\",\"name\":\"lookup\",\"version\":\"1.0.0\",\"profile\":\"core\",\"functions\":[{\"name\":\"lookup\"}],\"capabilities\":[],\"host_calls\":[{\"name\":\"kv.get\",\"required\":true}]}"))"#)?;
//!
//! let kv_get = HostFunction::new("kv.get", |cx, key| {
//!     assert_eq!((cx.plugin(), cx.function()), ("lookup", "lookup"));
//!     match key {
//!         b"apple" => Ok(b"red".to_vec()),
//!         _ => Err(HostCallError::new("no such key")),
//!     }
//! });
//! let host = Host::new(Config::builder().host_function(kv_get).build())?;
//! let mut plugin = host.load(&wasm)?;
//! assert_eq!(plugin.call("lookup", b"apple")?, b"red");
//! // The handler failed; the plugin chose to return FAILED.
//! assert_eq!(plugin.call("lookup", b"pear").unwrap_err().status(), Some(3));
//!
//! // A host that does not offer a required call refuses the plugin.
//! let bare = Host::new(Config::default())?;
//! assert_eq!(bare.load(&wasm).unwrap_err().kind(), Some(pabi_host::HostErrorKind::MissingCapability));
//! # Ok(())
//! # }
//! ```
//!
//! [`HostFunction::only_for`] offers a function to named plugins only, and
//! [`ConfigBuilder::abi_version`] set to 1.0 keeps host calls off entirely
//! (`CALL-9`). With the `testing` feature, `testing::table_functions`
//! answers from a host-call table, as `pabi run --host-calls` does.
//!
//! # Caching and reloading
//!
//! A host validates and compiles each distinct binary once and keeps it in
//! one cache of [`ConfigBuilder::cache_capacity`] entries, least recently
//! used first out; [`ConfigBuilder::cache_dir`] also keeps compiled code on
//! disk between processes. [`Host::precompile`] fills the cache ahead of
//! time, and [`Plugin::reload`] swaps in a new version through the same
//! cache, moving the plugin's state when both versions can (`LIFE-10`).
//!
//! # Isolation
//!
//! Each instance has its own `Store`: its own linear memory, tables, fuel,
//! deadline and limits. A plugin cannot read host memory or another
//! plugin's memory, and a trap, timeout or limit ends only its own call.
//! What an in-process host cannot bound: the host process's own address
//! space reservations, CPU time spent compiling a hostile module before its
//! first call, and bugs in the engine itself. Hosts that run plugins from
//! untrusted parties should also run them in a separate, OS-sandboxed
//! process (`SEC-1`).

mod cancel;
mod classify;
mod clock;
#[cfg(unix)]
mod command;
#[cfg(unix)]
pub mod command_reaper;
mod config;
mod cpu_gate;
mod engine;
mod error;
mod host;
mod host_fn;
mod imports;
mod in_process_pool;
mod log;
mod plugin;
mod plugin_file;
mod pool;
mod pool_settings;
mod pool_stats;
mod store;
pub mod testing;
pub mod typed;
mod wasi;
#[cfg(feature = "worker-process")]
pub mod worker;

pub use cancel::CancelHandle;
pub use config::{Allow, Config, ConfigBuilder, DirGrant, DirGrantError, Limits, LogRate};
pub use cpu_gate::CpuGate;
pub use error::{CompileCap, Error, Frame, ModuleFinding, Unavailable, WasmTrace};
pub use host::Host;
pub use host_fn::{AsyncCallContext, CallContext, HostCallError, HostFunction};
pub use plugin::Plugin;
pub use plugin_file::{read_plugin_file, FileStamp, PluginFile, PluginFileError};
pub use pool::{Pool, PoolBuilder};
pub use pool_settings::Isolation;
pub use pool_stats::{PoolStats, WorkerStats};
pub use typed::{Json, TypedCallError};

// The ABI's types an embedder meets, so that `pabi-host` is the one
// dependency it needs.
pub use pabi_abi::{AbiVersion, Capability, Clause, HostErrorKind, Metadata, TrapKind};
