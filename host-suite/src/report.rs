//! The report of a run: the verdict on each case, the vector summaries and
//! the whole run's shape (`spec/schemas/host-test-report.schema.json`).

use pabi_abi::Clause;
use serde::Serialize;

/// Version of the JSON report shape (`spec/schemas/host-test-report.schema.json`).
pub const REPORT_SCHEMA_VERSION: &str = "pabi-host-test/1";

/// The verdict on one case.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "verdict")]
pub enum Verdict {
    Pass,
    Fail {
        reason: String,
    },
    /// The host said it cannot enforce the limit of this clause.
    NotSupported {
        clause: Clause,
    },
}

#[derive(Clone, Debug, Serialize)]
pub struct CaseResult {
    pub case: String,
    pub clauses: Vec<Clause>,
    #[serde(flatten)]
    pub verdict: Verdict,
    pub millis: u64,
}

/// The shared vectors of one plugin, run on every language's build.
#[derive(Clone, Debug, Serialize)]
pub struct VectorSummary {
    pub plugin: String,
    pub languages: Vec<String>,
    pub passed: u32,
    pub total: u32,
}

/// A whole `pabi host-test` run (`spec/schemas/host-test-report.schema.json`).
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub schema: &'static str,
    pub adapter: String,
    pub cases: Vec<CaseResult>,
    pub vectors: Vec<VectorSummary>,
    pub vector_failures: Vec<String>,
}

impl Report {
    pub fn new(adapter: String, cases: Vec<CaseResult>, vectors: Vec<VectorSummary>, failures: Vec<String>) -> Report {
        Report { schema: REPORT_SCHEMA_VERSION, adapter, cases, vectors, vector_failures: failures }
    }

    pub fn failed_cases(&self) -> usize {
        self.cases.iter().filter(|r| matches!(r.verdict, Verdict::Fail { .. })).count()
    }

    pub fn unsupported_cases(&self) -> usize {
        self.cases.iter().filter(|r| matches!(r.verdict, Verdict::NotSupported { .. })).count()
    }

    /// Every case passed or is allowed to be unsupported, and every vector
    /// passed identically in every language.
    pub fn passed(&self) -> bool {
        self.failed_cases() == 0 && self.vector_failures.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    #[test]
    fn the_report_follows_its_schema() {
        let schema: Value =
            serde_json::from_str(include_str!("../../spec/schemas/host-test-report.schema.json")).unwrap();
        let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
        let result = |verdict| CaseResult { case: "c".into(), clauses: vec![Clause::Lim4], verdict, millis: 3 };
        let report = Report::new(
            "pabi run".into(),
            vec![
                result(Verdict::Pass),
                result(Verdict::Fail { reason: "r".into() }),
                result(Verdict::NotSupported { clause: Clause::Lim4 }),
            ],
            vec![VectorSummary { plugin: "text".into(), languages: vec!["c".into()], passed: 1, total: 2 }],
            vec!["c/text `x`: differs".into()],
        );
        let value = serde_json::to_value(&report).unwrap();
        let errors: Vec<String> = validator.iter_errors(&value).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{errors:?}");
        assert!(!report.passed());
        let mut broken = value.clone();
        broken["cases"][0]["verdict"] = "maybe".into();
        assert!(!validator.is_valid(&broken), "the schema must refuse an unknown verdict");
    }
}
