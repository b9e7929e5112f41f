//! The `static` check: the plugin passes the static validator.

use crate::harness::fail;
use crate::report::CheckOutcome;

/// The static check: the validator finds no error.
pub(super) fn static_check(report: &pabi_validator::Report) -> CheckOutcome {
    let errors: Vec<String> = report.errors().map(|f| format!("[{}] {}", f.rule.id(), f.message)).collect();
    if errors.is_empty() {
        CheckOutcome::Pass
    } else {
        fail(format!("the static validator reports: {}", errors.join("; ")))
    }
}
