//! The version that introduced each addition of the ABI (`VER-9`): every
//! host function, export, metadata field, capability kind, plugin status,
//! import return code and host error kind. The spec's tables carry the same
//! "Since" column; a test checks that the two agree.
//!
//! A [`Catalog`] holds what a version has, so that a validator can tell a
//! plugin which items it uses that are newer than the version it declares,
//! and a test can make up a newer item before any exists.

use crate::{AbiVersion, HostErrorKind, ImportCode, Status, EXPORTS, IMPORTS};

const V1_0: AbiVersion = AbiVersion::new(1, 0);
const V1_1: AbiVersion = AbiVersion::new(1, 1);

/// The kinds of addition a minor version may make (`VER-5`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ItemKind {
    Import,
    Export,
    MetadataField,
    CapabilityKind,
    Status,
    ImportCode,
    HostErrorKind,
}

impl std::fmt::Display for ItemKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ItemKind::Import => "host function",
            ItemKind::Export => "export",
            ItemKind::MetadataField => "metadata field",
            ItemKind::CapabilityKind => "capability kind",
            ItemKind::Status => "status",
            ItemKind::ImportCode => "import return code",
            ItemKind::HostErrorKind => "host error kind",
        })
    }
}

/// One addition: its kind, its name as the spec writes it, and its Since.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    pub kind: ItemKind,
    pub name: String,
    pub since: AbiVersion,
}

/// Metadata fields: top-level keys, and keys of a function entry written
/// `functions[].key`.
pub const METADATA_FIELDS: &[(&str, AbiVersion)] = &[
    ("abi", V1_0),
    ("name", V1_0),
    ("version", V1_0),
    ("description", V1_0),
    ("profile", V1_0),
    ("functions", V1_0),
    ("functions[].name", V1_0),
    ("functions[].summary", V1_0),
    ("functions[].input", V1_0),
    ("functions[].output", V1_0),
    ("functions[].deterministic", V1_0),
    ("capabilities", V1_0),
    ("statuses", V1_0),
    ("host_calls", V1_1),
    ("host_calls[].name", V1_1),
    ("host_calls[].required", V1_1),
    ("host_calls[].summary", V1_1),
    ("host_calls[].request", V1_1),
    ("host_calls[].reply", V1_1),
];

/// Capability kinds, by the text before the first `:` (`WASI-3`).
pub const CAPABILITY_KINDS: &[(&str, AbiVersion)] = &[("clock", V1_0), ("random", V1_0), ("env", V1_0), ("fs", V1_0)];

/// Every addition of the ABI this crate implements, with its Since.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Catalog {
    items: Vec<Item>,
}

impl Catalog {
    /// The catalog of this crate's ABI.
    pub fn current() -> Catalog {
        let item = |kind, name: &str, since| Item { kind, name: name.to_string(), since };
        let mut items: Vec<Item> = Vec::new();
        items.extend(IMPORTS.iter().map(|i| item(ItemKind::Import, i.name, i.since)));
        items.extend(EXPORTS.iter().map(|e| item(ItemKind::Export, e.name, e.since)));
        items.extend(METADATA_FIELDS.iter().map(|(n, s)| item(ItemKind::MetadataField, n, *s)));
        items.extend(CAPABILITY_KINDS.iter().map(|(n, s)| item(ItemKind::CapabilityKind, n, *s)));
        items.extend(
            [Status::Ok, Status::InvalidInput, Status::Unsupported, Status::Failed, Status::OutOfMemory]
                .into_iter()
                .map(|s| item(ItemKind::Status, s.name(), s.since())),
        );
        items.extend(
            [ImportCode::Limit, ImportCode::Invalid, ImportCode::Unavailable, ImportCode::Failed, ImportCode::Absent]
                .into_iter()
                .map(|c| item(ItemKind::ImportCode, c.name(), c.since())),
        );
        items.extend(HostErrorKind::ALL.iter().map(|k| item(ItemKind::HostErrorKind, k.name(), k.since())));
        Catalog { items }
    }

    /// This catalog with one more item, for tests of what a later version
    /// adds before it exists.
    pub fn with(mut self, kind: ItemKind, name: &str, since: AbiVersion) -> Catalog {
        self.items.push(Item { kind, name: name.to_string(), since });
        self
    }

    pub fn items(&self) -> &[Item] {
        &self.items
    }

    /// The Since of an item, or `None` when no version has it.
    pub fn since(&self, kind: ItemKind, name: &str) -> Option<AbiVersion> {
        self.items.iter().find(|i| i.kind == kind && i.name == name).map(|i| i.since)
    }
}

impl Status {
    /// The version that introduced this status; plugin-defined statuses
    /// are as old as the range (`ERR-3`).
    pub fn since(self) -> AbiVersion {
        V1_0
    }
}

impl ImportCode {
    /// The version that introduced this code (`ERR-5`).
    pub fn since(self) -> AbiVersion {
        match self {
            ImportCode::Limit | ImportCode::Invalid | ImportCode::Unavailable => V1_0,
            ImportCode::Failed | ImportCode::Absent => V1_1,
        }
    }
}

impl HostErrorKind {
    /// The version that introduced this kind (`ERR-6`).
    pub fn since(self) -> AbiVersion {
        V1_0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_item_is_named_once_per_kind_and_none_is_newer_than_the_abi() {
        let catalog = Catalog::current();
        let mut seen = std::collections::BTreeSet::new();
        for item in catalog.items() {
            assert!(seen.insert((item.kind, item.name.clone())), "{} `{}` twice", item.kind, item.name);
            assert!(crate::HOST_ABI.accepts(item.since), "{} `{}` is newer than the ABI", item.kind, item.name);
        }
        assert_eq!(catalog.since(ItemKind::Import, "log"), Some(V1_0));
        assert_eq!(catalog.since(ItemKind::Import, "host_call"), Some(V1_1));
        assert_eq!(catalog.since(ItemKind::Import, "kv_get"), None);
        let later = catalog.with(ItemKind::Import, "kv_get", AbiVersion::new(1, 2));
        assert_eq!(later.since(ItemKind::Import, "kv_get"), Some(AbiVersion::new(1, 2)));
    }

    /// Every item has a table row in the spec that names it and ends with
    /// its Since, and every row of a Since table names an item.
    #[test]
    fn the_spec_tables_give_the_same_since() {
        let spec = include_str!("../../spec/abi.md");
        let rows: Vec<&str> = spec.lines().map(str::trim).filter(|l| l.starts_with('|')).collect();
        let catalog = Catalog::current();
        for item in catalog.items() {
            let name = match item.kind {
                ItemKind::Export if item.name.starts_with("pabi_fn_") => "`pabi_fn_<name>`".to_string(),
                _ => format!("`{}`", item.name),
            };
            let ending = format!("| {} |", item.since);
            assert!(
                rows.iter().any(|row| row.contains(&name) && row.ends_with(&ending)),
                "no spec table row for the {} {name} ending in `{ending}`",
                item.kind
            );
        }
    }
}
