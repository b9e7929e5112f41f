/// The host error kinds every pabi host surfaces the same way (`ERR-6`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HostErrorKind {
    InvalidModule,
    VersionMismatch,
    MissingCapability,
    AbiViolation,
    Trap,
    Timeout,
    FuelExhausted,
    MemoryLimit,
    OutputLimit,
    ModuleLimit,
    InputLimit,
    UnknownStatus,
    PluginError,
    UnknownFunction,
    CrashLoop,
    Unsupported,
    Cancelled,
    HostFailure,
}

impl HostErrorKind {
    pub const ALL: &'static [HostErrorKind] = &[
        HostErrorKind::InvalidModule,
        HostErrorKind::VersionMismatch,
        HostErrorKind::MissingCapability,
        HostErrorKind::AbiViolation,
        HostErrorKind::Trap,
        HostErrorKind::Timeout,
        HostErrorKind::FuelExhausted,
        HostErrorKind::MemoryLimit,
        HostErrorKind::OutputLimit,
        HostErrorKind::ModuleLimit,
        HostErrorKind::InputLimit,
        HostErrorKind::UnknownStatus,
        HostErrorKind::PluginError,
        HostErrorKind::UnknownFunction,
        HostErrorKind::CrashLoop,
        HostErrorKind::Unsupported,
        HostErrorKind::Cancelled,
        HostErrorKind::HostFailure,
    ];

    /// The stable name, as written in the spec and in JSON output.
    pub fn name(self) -> &'static str {
        match self {
            HostErrorKind::InvalidModule => "INVALID_MODULE",
            HostErrorKind::VersionMismatch => "VERSION_MISMATCH",
            HostErrorKind::MissingCapability => "MISSING_CAPABILITY",
            HostErrorKind::AbiViolation => "ABI_VIOLATION",
            HostErrorKind::Trap => "TRAP",
            HostErrorKind::Timeout => "TIMEOUT",
            HostErrorKind::FuelExhausted => "FUEL_EXHAUSTED",
            HostErrorKind::MemoryLimit => "MEMORY_LIMIT",
            HostErrorKind::OutputLimit => "OUTPUT_LIMIT",
            HostErrorKind::ModuleLimit => "MODULE_LIMIT",
            HostErrorKind::InputLimit => "INPUT_LIMIT",
            HostErrorKind::UnknownStatus => "UNKNOWN_STATUS",
            HostErrorKind::PluginError => "PLUGIN_ERROR",
            HostErrorKind::UnknownFunction => "UNKNOWN_FUNCTION",
            HostErrorKind::CrashLoop => "CRASH_LOOP",
            HostErrorKind::Unsupported => "UNSUPPORTED",
            HostErrorKind::Cancelled => "CANCELLED",
            HostErrorKind::HostFailure => "HOST_FAILURE",
        }
    }

    /// The fixed one-line description of the kind.
    pub fn message(self) -> &'static str {
        match self {
            HostErrorKind::InvalidModule => "the plugin is not a valid pabi module",
            HostErrorKind::VersionMismatch => "the plugin needs an ABI version this host does not implement",
            HostErrorKind::MissingCapability => {
                "the plugin declares a capability or a required host call that this host does not grant"
            }
            HostErrorKind::AbiViolation => "the plugin broke the ABI",
            HostErrorKind::Trap => "the plugin trapped",
            HostErrorKind::Timeout => "the call ran past its deadline",
            HostErrorKind::FuelExhausted => "the call ran out of fuel",
            HostErrorKind::MemoryLimit => "the plugin hit the memory limit",
            HostErrorKind::OutputLimit => "the plugin wrote more output than the limit allows",
            HostErrorKind::ModuleLimit => "the plugin is larger than this host compiles",
            HostErrorKind::InputLimit => "the input is longer than the host accepts",
            HostErrorKind::UnknownStatus => "the plugin returned a status code the ABI does not define",
            HostErrorKind::PluginError => "the plugin returned an error status",
            HostErrorKind::UnknownFunction => "the plugin has no function of that name",
            HostErrorKind::CrashLoop => "the plugin failed too often and was disabled",
            HostErrorKind::Unsupported => "the plugin needs a part of the ABI this host does not implement",
            HostErrorKind::Cancelled => "the call was cancelled by the host's caller",
            HostErrorKind::HostFailure => "the host failed, not the plugin",
        }
    }

    pub fn from_name(name: &str) -> Option<HostErrorKind> {
        Self::ALL.iter().copied().find(|kind| kind.name() == name)
    }
}

impl std::fmt::Display for HostErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_unique() {
        for &kind in HostErrorKind::ALL {
            assert_eq!(HostErrorKind::from_name(kind.name()), Some(kind));
        }
        let mut names: Vec<_> = HostErrorKind::ALL.iter().map(|k| k.name()).collect();
        names.dedup();
        assert_eq!(names.len(), HostErrorKind::ALL.len());
        assert_eq!(HostErrorKind::from_name("NOPE"), None);
    }
}
