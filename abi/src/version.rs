use std::fmt;
use std::str::FromStr;

/// An ABI version, `major.minor` (`VER-1`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AbiVersion {
    pub major: u32,
    pub minor: u32,
}

/// The ABI version the tools and the reference host implement.
pub const HOST_ABI: AbiVersion = AbiVersion { major: 1, minor: 1 };

impl AbiVersion {
    pub const fn new(major: u32, minor: u32) -> Self {
        Self { major, minor }
    }

    /// Whether a host implementing `self` accepts a plugin declaring `plugin`
    /// (`VER-2`, `VER-3`): same major, and a minor no newer than ours.
    pub fn accepts(self, plugin: AbiVersion) -> bool {
        plugin.major == self.major && plugin.minor <= self.minor
    }
}

impl serde::Serialize for AbiVersion {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for AbiVersion {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for AbiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// A version string that is not `major.minor` with decimal parts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not an ABI version of the form MAJOR.MINOR: two numbers of one to five digits, without leading zeros"
)]
pub struct VersionParseError(pub String);

impl FromStr for AbiVersion {
    type Err = VersionParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || VersionParseError(s.to_string());
        let (major, minor) = s.split_once('.').ok_or_else(err)?;
        // Up to five digits, as the schema's pattern allows, so that every
        // host reads the same versions (`VER-1`, `VER-8`).
        let part = |p: &str| -> Result<u32, VersionParseError> {
            let leading_zero = p.len() > 1 && p.starts_with('0');
            if p.is_empty() || p.len() > 5 || leading_zero || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err());
            }
            p.parse().map_err(|_| err())
        };
        Ok(Self::new(part(major)?, part(minor)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        assert_eq!("1.0".parse(), Ok(AbiVersion::new(1, 0)));
        assert_eq!("2.13".parse(), Ok(AbiVersion::new(2, 13)));
        // Five digits, as the schema allows, past what a u16 holds.
        assert_eq!("1.70000".parse(), Ok(AbiVersion::new(1, 70_000)));
        for bad in ["1", "1.", ".1", "1.0.0", "01.0", "a.b", "1.-1", "", "1.100000"] {
            assert!(bad.parse::<AbiVersion>().is_err(), "{bad}");
        }
    }

    #[test]
    fn acceptance_follows_ver_2() {
        let host = AbiVersion::new(1, 2);
        assert!(host.accepts(AbiVersion::new(1, 0)));
        assert!(host.accepts(AbiVersion::new(1, 2)));
        assert!(!host.accepts(AbiVersion::new(1, 3)));
        assert!(!host.accepts(AbiVersion::new(2, 0)));
        assert!(!host.accepts(AbiVersion::new(0, 9)));
    }
}
