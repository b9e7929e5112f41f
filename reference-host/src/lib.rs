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
//! assert_eq!(error.kind(), Some(pabi_abi::HostErrorKind::UnknownFunction));
//! # Ok(())
//! # }
//! ```
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

mod clock;
mod config;
mod engine;
mod error;
mod host;
mod imports;
mod plugin;
mod store;
mod wasi;

pub use config::{Allow, Config, ConfigBuilder, DirGrant, DirGrantError, Limits};
pub use error::{WasmTrace, Error, Frame, ModuleFinding, Unavailable};
pub use host::Host;
pub use plugin::{CancelHandle, Plugin};
