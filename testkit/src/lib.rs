//! Tooling for testing pabi plugins and hosts.
//!
//! [`pabi_abi`] is the ABI as data: what a plugin and a host must agree on.
//! This crate is what testing them agrees on, kept apart so that an
//! application embedding a host compiles none of it. Each module is a
//! format that crosses a process or a language boundary, with the JSON
//! Schema under `spec/schemas/` that describes it to tools written in other
//! languages.
//!
//! - [`vectors`]: the shared test vectors (`fixtures/vectors/*.json`), the
//!   inputs every language's example plugins must answer byte for byte the
//!   same. `pabi conform` runs them against a plugin (`pabi-conform`), and
//!   the host conformance suite against a host (`pabi-host-suite`).
//! - [`host_calls`]: the application's side of host calls as a table, so
//!   that a plugin that makes host calls runs without an application:
//!   `pabi run --host-calls FILE`, the conformance checks, host-suite cases
//!   and vectors all describe the application this way. `pabi-host` turns a
//!   table into host functions with its `testing` feature.
//! - [`adapter`]: the protocol between the host conformance suite and a
//!   host's adapter command (`spec/host-guide.md`): the arguments of one
//!   run, and the JSON result line printed per call. The suite builds and
//!   reads them (`pabi-host-suite`); `pabi run --format json` prints them.
//! - [`hex`]: byte strings as hex text, as all of the above write them.
//!
//! ```
//! use pabi_testkit::host_calls::{Answer, HostCallTable};
//!
//! let table = HostCallTable::parse(r#"{"kv.get": [{"request": "apple", "reply": "red"}]}"#).unwrap();
//! let (answer, _delay) = table.answer("kv.get", b"apple").unwrap();
//! assert_eq!(answer, Answer::Reply(b"red".to_vec()));
//! assert!(!table.offers("kv.put"));
//! ```

pub mod adapter;
pub mod hex;
pub mod host_calls;
pub mod vectors;
