//! Integration tests of `pabi-validator`: one binary, one module per area.

mod embedding;
mod matrix;
mod order;
mod outputs;
mod robustness;
mod snapshots;

use pabi_validator::Report;

/// The rule IDs a report names, sorted and deduplicated.
pub fn rule_ids(report: &Report) -> Vec<&'static str> {
    let mut ids: Vec<_> = report.findings.iter().map(|f| f.rule.id()).collect();
    ids.sort();
    ids.dedup();
    ids
}
