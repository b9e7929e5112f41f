/// What a plugin function returns (`ERR-1` … `ERR-4`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Status {
    Ok,
    InvalidInput,
    Unsupported,
    Failed,
    OutOfMemory,
    /// 64–127: meaning given by the plugin's metadata `statuses`.
    PluginDefined(u8),
}

impl Status {
    /// First code of the plugin-defined range (`ERR-3`).
    pub const PLUGIN_DEFINED_MIN: i32 = 64;
    /// Last code of the plugin-defined range (`ERR-3`).
    pub const PLUGIN_DEFINED_MAX: i32 = 127;

    /// The status for a returned code, or `None` when the code is reserved
    /// (5–63) or outside 0–127, which a host reports as `UNKNOWN_STATUS`.
    pub fn from_code(code: i32) -> Option<Status> {
        Some(match code {
            0 => Status::Ok,
            1 => Status::InvalidInput,
            2 => Status::Unsupported,
            3 => Status::Failed,
            4 => Status::OutOfMemory,
            Self::PLUGIN_DEFINED_MIN..=Self::PLUGIN_DEFINED_MAX => Status::PluginDefined(code as u8),
            _ => return None,
        })
    }

    pub fn code(self) -> i32 {
        match self {
            Status::Ok => 0,
            Status::InvalidInput => 1,
            Status::Unsupported => 2,
            Status::Failed => 3,
            Status::OutOfMemory => 4,
            Status::PluginDefined(code) => i32::from(code),
        }
    }

    /// The spec's name: `OK`, `INVALID_INPUT`, … or `PLUGIN_DEFINED`.
    pub fn name(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::InvalidInput => "INVALID_INPUT",
            Status::Unsupported => "UNSUPPORTED",
            Status::Failed => "FAILED",
            Status::OutOfMemory => "OUT_OF_MEMORY",
            Status::PluginDefined(_) => "PLUGIN_DEFINED",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name(), self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_or_is_unknown() {
        for code in -300..300 {
            match Status::from_code(code) {
                Some(status) => assert_eq!(status.code(), code),
                None => assert!(!(0..=4).contains(&code) && !(64..=127).contains(&code)),
            }
        }
        assert_eq!(Status::from_code(5), None);
        assert_eq!(Status::from_code(63), None);
        assert_eq!(Status::from_code(128), None);
        assert_eq!(Status::from_code(-1), None);
    }
}
