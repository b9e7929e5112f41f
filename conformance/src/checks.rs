//! The conformance checks, with the clauses each one verifies.

/// A conformance check: a stable ID and the spec clauses it verifies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckInfo {
    pub id: &'static str,
    pub clauses: &'static [&'static str],
    pub summary: &'static str,
}

/// Every check `pabi conform` runs, in order.
pub const CHECKS: &[CheckInfo] = &[
    CheckInfo { id: "static", clauses: &["HOST-1"], summary: "the plugin passes the static validator (pabi validate)" },
    CheckInfo {
        id: "status",
        clauses: &["FN-2", "FN-6", "ERR-1", "ERR-2", "ERR-4"],
        summary: "every call returns a defined status and never traps, for generated inputs",
    },
    CheckInfo {
        id: "caps",
        clauses: &["FN-4", "FN-8", "LIM-5", "LIM-6"],
        summary: "output and error message stay within the caps; messages are UTF-8",
    },
    CheckInfo {
        id: "determinism",
        clauses: &["FN-5"],
        summary: "a function declared deterministic gives the same result on fresh instances",
    },
    CheckInfo {
        id: "no-leak",
        clauses: &["FN-7"],
        summary: "10,000 calls after a warm-up grow memory by at most max(1 MiB, 25%)",
    },
    CheckInfo {
        id: "init-config",
        clauses: &["LIFE-1", "LIFE-2", "LIFE-3"],
        summary: "init with arbitrary config bytes gives a defined status and never traps",
    },
    CheckInfo {
        id: "shutdown",
        clauses: &["LIFE-4"],
        summary: "pabi_shutdown returns a defined status and never traps",
    },
    CheckInfo {
        id: "reinstantiate",
        clauses: &["LIFE-5", "LIFE-6"],
        summary: "after an aborted call, the next call runs on a fresh, working instance",
    },
    CheckInfo {
        id: "state",
        clauses: &["LIFE-9"],
        summary: "state save -> load -> save round-trips to the same bytes",
    },
    CheckInfo {
        id: "input-read",
        clauses: &["FN-1", "HOST-3", "HOST-4", "MEM-5"],
        summary: "the host serves input_read at any chunking and offset (host side, WAT fixture)",
    },
    CheckInfo { id: "vectors", clauses: &["FN-3"], summary: "the plugin's own test vectors (--vectors) all pass" },
];

/// The check with this ID.
pub fn check(id: &str) -> Option<&'static CheckInfo> {
    CHECKS.iter().find(|c| c.id == id)
}
