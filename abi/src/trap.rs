//! The trap kinds a `TRAP` error carries (`ERR-9`).

use std::fmt;

/// Why a plugin trapped, as every host names it (`ERR-9`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TrapKind {
    Unreachable,
    MemoryOutOfBounds,
    TableOutOfBounds,
    /// `call_indirect` on a null table entry.
    IndirectCallNull,
    /// `call_indirect` through an entry of the wrong type (and, on engines
    /// that cannot tell the two apart, on a null entry too).
    IndirectCallType,
    IntegerDivideByZero,
    IntegerOverflow,
    /// A float-to-integer conversion of NaN or of a value out of range.
    InvalidConversion,
    StackOverflow,
    NullReference,
    /// Anything else: `proc_exit`, an engine-specific trap.
    Other,
}

impl TrapKind {
    pub const ALL: [TrapKind; 11] = [
        TrapKind::Unreachable,
        TrapKind::MemoryOutOfBounds,
        TrapKind::TableOutOfBounds,
        TrapKind::IndirectCallNull,
        TrapKind::IndirectCallType,
        TrapKind::IntegerDivideByZero,
        TrapKind::IntegerOverflow,
        TrapKind::InvalidConversion,
        TrapKind::StackOverflow,
        TrapKind::NullReference,
        TrapKind::Other,
    ];

    /// The name `ERR-9` gives the kind.
    pub fn name(self) -> &'static str {
        match self {
            TrapKind::Unreachable => "unreachable",
            TrapKind::MemoryOutOfBounds => "memory_out_of_bounds",
            TrapKind::TableOutOfBounds => "table_out_of_bounds",
            TrapKind::IndirectCallNull => "indirect_call_null",
            TrapKind::IndirectCallType => "indirect_call_type",
            TrapKind::IntegerDivideByZero => "integer_divide_by_zero",
            TrapKind::IntegerOverflow => "integer_overflow",
            TrapKind::InvalidConversion => "invalid_conversion",
            TrapKind::StackOverflow => "stack_overflow",
            TrapKind::NullReference => "null_reference",
            TrapKind::Other => "other",
        }
    }

    pub fn from_name(name: &str) -> Option<TrapKind> {
        TrapKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

impl fmt::Display for TrapKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_specs_and_round_trip() {
        let spec = include_str!("../../spec/abi.md");
        let err9 = spec.split("**[ERR-9]**").nth(1).and_then(|s| s.split("**[").next()).unwrap();
        for kind in TrapKind::ALL {
            assert!(err9.contains(&format!("`{}`", kind.name())), "ERR-9 does not name {kind}");
            assert_eq!(TrapKind::from_name(kind.name()), Some(kind));
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.name());
        }
    }
}
