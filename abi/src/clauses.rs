//! The clauses of `spec/abi.md`, as a type.
//!
//! Every validator finding, host error and conformance check cites a clause.
//! Citing a [`Clause`] rather than a string means a misspelt ID does not
//! compile; a test checks that this list is exactly the spec's.

use std::fmt;
use std::str::FromStr;

/// The areas of the spec, in the order it presents them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Area {
    Mod,
    Mem,
    Imp,
    Exp,
    Fn,
    Err,
    Ver,
    Life,
    Meta,
    Wasi,
    Call,
    Lim,
    Sec,
    Host,
}

impl Area {
    /// The area's prefix, e.g. `MEM`.
    pub fn prefix(self) -> &'static str {
        match self {
            Area::Mod => "MOD",
            Area::Mem => "MEM",
            Area::Imp => "IMP",
            Area::Exp => "EXP",
            Area::Fn => "FN",
            Area::Err => "ERR",
            Area::Ver => "VER",
            Area::Life => "LIFE",
            Area::Meta => "META",
            Area::Wasi => "WASI",
            Area::Call => "CALL",
            Area::Lim => "LIM",
            Area::Sec => "SEC",
            Area::Host => "HOST",
        }
    }
}

macro_rules! clauses {
    ($($variant:ident = $id:literal in $area:ident;)*) => {
        /// One normative clause of the spec, such as `MEM-3`.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum Clause {
            $(#[doc = $id] $variant,)*
        }

        impl Clause {
            /// Every clause, in spec order.
            pub const ALL: &'static [Clause] = &[$(Clause::$variant),*];

            /// The stable ID, as the spec writes it (`MEM-3`).
            pub fn id(self) -> &'static str {
                match self {
                    $(Clause::$variant => $id,)*
                }
            }

            /// The area the clause belongs to.
            pub fn area(self) -> Area {
                match self {
                    $(Clause::$variant => Area::$area,)*
                }
            }
        }
    };
}

clauses! {
    Mod1 = "MOD-1" in Mod;
    Mod2 = "MOD-2" in Mod;
    Mod3 = "MOD-3" in Mod;
    Mod4 = "MOD-4" in Mod;
    Mod5 = "MOD-5" in Mod;
    Mod6 = "MOD-6" in Mod;
    Mod7 = "MOD-7" in Mod;
    Mem1 = "MEM-1" in Mem;
    Mem2 = "MEM-2" in Mem;
    Mem3 = "MEM-3" in Mem;
    Mem4 = "MEM-4" in Mem;
    Mem5 = "MEM-5" in Mem;
    Mem6 = "MEM-6" in Mem;
    Mem7 = "MEM-7" in Mem;
    Imp1 = "IMP-1" in Imp;
    Imp2 = "IMP-2" in Imp;
    Imp3 = "IMP-3" in Imp;
    Imp4 = "IMP-4" in Imp;
    Exp1 = "EXP-1" in Exp;
    Exp2 = "EXP-2" in Exp;
    Exp3 = "EXP-3" in Exp;
    Exp4 = "EXP-4" in Exp;
    Exp5 = "EXP-5" in Exp;
    Exp6 = "EXP-6" in Exp;
    Exp7 = "EXP-7" in Exp;
    Exp8 = "EXP-8" in Exp;
    Exp9 = "EXP-9" in Exp;
    Fn1 = "FN-1" in Fn;
    Fn2 = "FN-2" in Fn;
    Fn3 = "FN-3" in Fn;
    Fn4 = "FN-4" in Fn;
    Fn5 = "FN-5" in Fn;
    Fn6 = "FN-6" in Fn;
    Fn7 = "FN-7" in Fn;
    Fn8 = "FN-8" in Fn;
    Err1 = "ERR-1" in Err;
    Err2 = "ERR-2" in Err;
    Err3 = "ERR-3" in Err;
    Err4 = "ERR-4" in Err;
    Err5 = "ERR-5" in Err;
    Err6 = "ERR-6" in Err;
    Err7 = "ERR-7" in Err;
    Err8 = "ERR-8" in Err;
    Err9 = "ERR-9" in Err;
    Ver1 = "VER-1" in Ver;
    Ver2 = "VER-2" in Ver;
    Ver3 = "VER-3" in Ver;
    Ver4 = "VER-4" in Ver;
    Ver5 = "VER-5" in Ver;
    Ver6 = "VER-6" in Ver;
    Ver7 = "VER-7" in Ver;
    Ver8 = "VER-8" in Ver;
    Ver9 = "VER-9" in Ver;
    Life1 = "LIFE-1" in Life;
    Life2 = "LIFE-2" in Life;
    Life3 = "LIFE-3" in Life;
    Life4 = "LIFE-4" in Life;
    Life5 = "LIFE-5" in Life;
    Life6 = "LIFE-6" in Life;
    Life7 = "LIFE-7" in Life;
    Life8 = "LIFE-8" in Life;
    Life9 = "LIFE-9" in Life;
    Life10 = "LIFE-10" in Life;
    Life11 = "LIFE-11" in Life;
    Meta1 = "META-1" in Meta;
    Meta2 = "META-2" in Meta;
    Meta3 = "META-3" in Meta;
    Meta4 = "META-4" in Meta;
    Meta5 = "META-5" in Meta;
    Meta6 = "META-6" in Meta;
    Meta7 = "META-7" in Meta;
    Meta8 = "META-8" in Meta;
    Wasi1 = "WASI-1" in Wasi;
    Wasi2 = "WASI-2" in Wasi;
    Wasi3 = "WASI-3" in Wasi;
    Wasi4 = "WASI-4" in Wasi;
    Wasi5 = "WASI-5" in Wasi;
    Wasi6 = "WASI-6" in Wasi;
    Wasi7 = "WASI-7" in Wasi;
    Wasi8 = "WASI-8" in Wasi;
    Wasi9 = "WASI-9" in Wasi;
    Wasi10 = "WASI-10" in Wasi;
    Wasi11 = "WASI-11" in Wasi;
    Call1 = "CALL-1" in Call;
    Call2 = "CALL-2" in Call;
    Call3 = "CALL-3" in Call;
    Call4 = "CALL-4" in Call;
    Call5 = "CALL-5" in Call;
    Call6 = "CALL-6" in Call;
    Call7 = "CALL-7" in Call;
    Call8 = "CALL-8" in Call;
    Call9 = "CALL-9" in Call;
    Lim1 = "LIM-1" in Lim;
    Lim2 = "LIM-2" in Lim;
    Lim3 = "LIM-3" in Lim;
    Lim4 = "LIM-4" in Lim;
    Lim5 = "LIM-5" in Lim;
    Lim6 = "LIM-6" in Lim;
    Lim7 = "LIM-7" in Lim;
    Lim8 = "LIM-8" in Lim;
    Lim9 = "LIM-9" in Lim;
    Lim10 = "LIM-10" in Lim;
    Lim11 = "LIM-11" in Lim;
    Lim12 = "LIM-12" in Lim;
    Lim13 = "LIM-13" in Lim;
    Lim14 = "LIM-14" in Lim;
    Sec1 = "SEC-1" in Sec;
    Sec2 = "SEC-2" in Sec;
    Sec3 = "SEC-3" in Sec;
    Sec4 = "SEC-4" in Sec;
    Host1 = "HOST-1" in Host;
    Host2 = "HOST-2" in Host;
    Host3 = "HOST-3" in Host;
    Host4 = "HOST-4" in Host;
    Host5 = "HOST-5" in Host;
    Host6 = "HOST-6" in Host;
    Host7 = "HOST-7" in Host;
    Host8 = "HOST-8" in Host;
    Host9 = "HOST-9" in Host;
    Host10 = "HOST-10" in Host;
}

impl Clause {
    /// The clause with this ID, if the spec defines one.
    pub fn from_id(id: &str) -> Option<Clause> {
        Clause::ALL.iter().copied().find(|c| c.id() == id)
    }

    /// The HTML anchor of the clause in `spec/abi.md`, its ID in lower case
    /// (`mem-3`), so that `spec/abi.md#mem-3` lands on the clause.
    pub fn anchor(self) -> String {
        self.id().to_ascii_lowercase()
    }
}

/// The IDs a spec text defines, in order: each line that starts a clause,
/// `- <a id="mem-3"></a>**[MEM-3]** …`, gives its ID. The anchor is optional
/// here, so that a clause added without one is still found (and then
/// refused by the anchor check, not silently skipped).
pub fn defined_ids(spec: &str) -> Vec<&str> {
    spec.lines().filter_map(|line| clause_definition(line).map(|(id, _)| id)).collect()
}

/// The ID and the rest of the line when `line` starts a clause.
pub fn clause_definition(line: &str) -> Option<(&str, &str)> {
    let rest = line.trim_start().strip_prefix("- ").unwrap_or(line.trim_start());
    let rest = match rest.strip_prefix("<a id=\"") {
        Some(anchored) => anchored.split_once("\"></a>")?.1,
        None => rest,
    };
    rest.strip_prefix("**[")?.split_once("]**")
}

impl fmt::Display for Clause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.id())
    }
}

/// An ID the spec does not define.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a clause of the pabi spec")]
pub struct UnknownClause(pub String);

impl FromStr for Clause {
    type Err = UnknownClause;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Clause::from_id(s).ok_or_else(|| UnknownClause(s.to_string()))
    }
}

impl serde::Serialize for Clause {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.id())
    }
}

impl<'de> serde::Deserialize<'de> for Clause {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let id = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Clause::from_id(&id).ok_or_else(|| serde::de::Error::custom(UnknownClause(id.into_owned())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The list above is the spec's list: same IDs, same order, nothing
    /// missing and nothing extra.
    #[test]
    fn matches_the_spec() {
        let spec = include_str!("../../spec/abi.md");
        let defined = defined_ids(spec);
        let ours: Vec<&str> = Clause::ALL.iter().map(|c| c.id()).collect();
        assert_eq!(ours, defined, "abi/src/clauses.rs and spec/abi.md list different clauses");
    }

    /// Every anchor `<a id="…">` of spec/abi.md.
    fn anchors(spec: &str) -> Vec<&str> {
        spec.split("<a id=\"").skip(1).map(|rest| rest.split('"').next().unwrap_or_default()).collect()
    }

    /// Every clause has exactly one anchor, on the line that defines it, and
    /// every anchor of spec/abi.md is a clause's: a tool that prints
    /// `spec/abi.md#imp-3` (the validator's help) lands on the clause. A
    /// clause added to the spec without its anchor fails here.
    #[test]
    fn every_clause_has_one_anchor_and_every_anchor_is_a_clause() {
        let spec = include_str!("../../spec/abi.md");
        let anchors = anchors(spec);
        for clause in Clause::ALL {
            let anchor = clause.anchor();
            let count = anchors.iter().filter(|a| **a == anchor).count();
            assert_eq!(count, 1, "{clause} has {count} anchors `{anchor}` in spec/abi.md, not one");
            let definition = format!("- <a id=\"{anchor}\"></a>**[{}]**", clause.id());
            assert!(
                spec.lines().any(|line| line.trim_start().starts_with(&definition)),
                "{clause} is not defined as `{definition}`"
            );
        }
        for anchor in anchors {
            assert!(
                Clause::ALL.iter().any(|c| c.anchor() == anchor),
                "spec/abi.md has the anchor `{anchor}`, which is not a clause's"
            );
        }
    }

    /// The parser finds a clause with or without its anchor, and nothing in
    /// prose that only mentions a clause.
    #[test]
    fn definitions_are_found_with_or_without_an_anchor() {
        let text = "- <a id=\"mem-3\"></a>**[MEM-3]** A host MUST …\n- **[MEM-4]** Pointers …\n\
                    Each clause starts with an ID, such as **[MEM-3]** (MEM-3).\n  (see [MEM-3](#mem-3))\n";
        assert_eq!(defined_ids(text), ["MEM-3", "MEM-4"]);
        assert_eq!(anchors(text), ["mem-3"]);
        assert_eq!(Clause::Imp3.anchor(), "imp-3");
    }

    #[test]
    fn ids_round_trip() {
        for clause in Clause::ALL {
            assert_eq!(clause.id().parse::<Clause>(), Ok(*clause));
            assert!(clause.id().starts_with(clause.area().prefix()));
            assert_eq!(serde_json::to_string(clause).unwrap(), format!("\"{}\"", clause.id()));
        }
        assert!("MEM-99".parse::<Clause>().is_err()); // not a clause ID on purpose
        assert!(serde_json::from_str::<Clause>("\"HOST-0\"").is_err()); // not a clause ID on purpose
    }
}
