//! The host conformance suite: cases in `fixtures/host-conformance/`, run
//! against any host through the adapter protocol of `spec/host-guide.md`.
//!
//! An adapter is a command. For each case the runner invokes
//! `ADAPTER PLUGIN.wasm FUNCTION [--input-hex HEX] [--then FUNCTION:HEX]...
//! [--config-hex HEX] [--timeout-ms N] [--max-memory BYTES]
//! [--max-output BYTES] [--fuel N] --format json` (built by
//! [`pabi_testkit::adapter::Invocation`]) and reads one JSON line per call. Every
//! line must follow the protocol: it is checked against
//! `spec/schemas/adapter-result.schema.json` and read as a
//! [`pabi_testkit::adapter::ResultLine`] before the case is judged.
//!
//! This suite checks hosts; `pabi-conform` checks plugins. The two share
//! nothing but the ABI.
//!
//! The modules follow a run: `case` reads the case files, `run` turns a
//! case into an invocation, `adapter` runs the adapter and reads its lines,
//! `judge` compares them with what the case expects, `vectors` runs the
//! shared test vectors, and `report` holds the verdicts. The public items
//! are all at the crate's root.

mod adapter;
mod case;
mod error;
mod judge;
mod report;
mod run;
mod vectors;

pub use adapter::{adapter_words, read_line};
pub use case::{load_cases, Call, Case, CaseDir, CaseGrants, DirMode, Expectation};
pub use error::{LineError, Mismatch, Pipe, SuiteError, VectorMismatch};
pub use judge::{judge, judge_vector};
pub use report::{CaseResult, Report, VectorSummary, Verdict, REPORT_SCHEMA_VERSION};
pub use run::{invocation, run_case};
pub use vectors::{run_vector, run_vector_files};
