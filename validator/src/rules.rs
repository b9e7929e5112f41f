use serde::Serialize;

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

macro_rules! rules {
    ($($variant:ident = $clause:ident, $severity:ident, $title:literal;)*) => {
        /// A rule of the validator. Its ID is the spec clause it enforces
        /// and never changes meaning.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        // Titles quote patterns such as `[a-z][a-z0-9_]`, not links.
        #[allow(rustdoc::broken_intra_doc_links)]
        pub enum Rule {
            $(#[doc = concat!("`", stringify!($clause), "`: ", $title)] $variant,)*
        }

        impl Rule {
            /// Every rule, in spec order.
            pub const ALL: &'static [Rule] = &[$(Rule::$variant,)*];

            /// The spec clause ID, e.g. `IMP-3`.
            pub fn id(self) -> &'static str {
                self.clause().id()
            }

            /// The spec clause the rule enforces: a type, so that a rule
            /// naming a clause the spec does not have does not compile.
            pub fn clause(self) -> pabi_abi::Clause {
                match self { $(Rule::$variant => pabi_abi::Clause::$clause,)* }
            }

            pub fn severity(self) -> Severity {
                match self { $(Rule::$variant => Severity::$severity,)* }
            }

            /// A one-line summary of what the rule requires.
            pub fn title(self) -> &'static str {
                match self { $(Rule::$variant => $title,)* }
            }
        }
    };
}

rules! {
    InvalidModule = Mod1, Error, "the plugin must be a valid WebAssembly core module";
    FeatureOutsideProfile = Mod2, Error, "the module must use only the pabi-1.0 feature profile";
    StartSection = Mod3, Error, "the module must not have a start section";
    MemoryShape = Mod4, Error, "the module must define exactly one 32-bit, non-shared memory";
    MissingNameSection = Mod5, Warning, "the module should carry a name section";
    LargeData = Mod6, Warning, "data segments should total no more than 16 MiB";
    FloatInDeterministic = Mod7, Warning, "deterministic functions should not use NaN-producing float or SIMD instructions";
    ForeignImport = Imp1, Error, "imports must be functions from `pabi` (or `wasi_snapshot_preview1` in the wasi profile)";
    UnknownHostFunction = Imp2, Error, "every `pabi` import must name a host function of the spec";
    HostFunctionSignature = Imp3, Error, "every `pabi` import must have the signature the spec gives";
    ImportTooNew = Imp4, Error, "a plugin must not import a host function newer than its declared ABI";
    NewerThanDeclared = Ver9, Error, "a plugin must not use an export, metadata field or capability kind newer than its declared ABI";
    MemoryExport = Exp1, Error, "the memory must be exported as `memory`";
    ReservedExport = Exp2, Error, "`pabi_` export names are reserved";
    FunctionSignature = Exp3, Error, "plugin functions must have type (i32) -> i32";
    FunctionName = Exp4, Error, "plugin function names must match [a-z][a-z0-9_]{0,63}";
    LifecycleSignature = Exp5, Error, "lifecycle exports must have their exact types";
    CommandExport = Exp6, Error, "a plugin must not export `_start`";
    StatePair = Exp7, Error, "`pabi_state_save` and `pabi_state_load` come together";
    NoFunctions = Exp8, Error, "a plugin must export at least one plugin function";
    MetadataSection = Meta1, Error, "exactly one `pabi` custom section must be present";
    MetadataEncoding = Meta2, Error, "the metadata must be UTF-8 JSON of at most 64 KiB";
    MetadataSchema = Meta3, Error, "the metadata must match the schema";
    MetadataFunctions = Meta4, Error, "the metadata functions must equal the `pabi_fn_*` exports";
    MetadataDuplicate = Meta5, Error, "metadata function names must be unique";
    MetadataStatuses = Meta8, Error, "`statuses` keys must be codes 64-127";
    VersionSyntax = Ver1, Error, "`abi` must be MAJOR.MINOR";
    UnsupportedVersion = Ver3, Error, "the declared ABI version must be one this validator implements";
    WasiInCore = Wasi1, Error, "a core plugin imports no WASI and declares no capabilities";
    UncoveredWasiImport = Wasi4, Error, "every WASI import must be allowed and covered by a declared capability";
    CapabilityPath = Wasi3, Error, "`fs:` guest paths must be normal, and no two may overlap";
    WasiImportType = Wasi11, Error, "a WASI import must have the type preview1 gives it";
    HostCallDeclaration = Call1, Error, "each host call is declared once in `host_calls`";
    HostCallName = Call2, Error, "host-call names are `namespace.name`, outside the reserved `pabi` namespace";
}

impl Rule {
    /// Looks a rule up by its clause ID.
    pub fn from_id(id: &str) -> Option<Rule> {
        Rule::ALL.iter().copied().find(|rule| rule.id() == id)
    }

    /// Where the clause is defined, relative to the repository root.
    pub fn spec_anchor(self) -> String {
        format!("spec/abi.md#{}", self.clause().anchor())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_enforces_a_clause_of_the_spec() {
        for rule in Rule::ALL {
            assert!(pabi_abi::Clause::from_id(rule.id()).is_some(), "{} is not a clause", rule.id());
            assert_eq!(rule.clause().id(), rule.id());
        }
    }

    #[test]
    fn ids_are_unique_and_look_like_clauses() {
        let mut ids: Vec<_> = Rule::ALL.iter().map(|r| r.id()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), Rule::ALL.len());
        for id in ids {
            let (area, number) = id.split_once('-').unwrap();
            assert!(area.chars().all(|c| c.is_ascii_uppercase()), "{id}");
            assert!(number.parse::<u32>().is_ok(), "{id}");
            assert_eq!(Rule::from_id(id).unwrap().id(), id);
        }
    }
}
