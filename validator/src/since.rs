//! What a plugin uses that is newer than the version it declares (`VER-9`):
//! exports, metadata fields and capability kinds. Imports have their own
//! rule (`IMP-4`). Every item of ABI 1.0 is as old as 1.0, so with the
//! current catalog this finds nothing in a 1.0 plugin; the tests make up a
//! later item of each kind to show that the check holds when one exists.

use pabi_abi::since::{Catalog, ItemKind};
use pabi_abi::AbiVersion;
use wasmparser::{Parser, Payload};

use crate::{Finding, Rule};

/// The items of `wasm` newer than `declared` in `catalog`, one finding each.
pub fn newer_than_declared(wasm: &[u8], declared: AbiVersion, catalog: &Catalog) -> Vec<Finding> {
    let mut used: Vec<(ItemKind, String)> = Vec::new();
    for payload in Parser::new(0).parse_all(wasm) {
        match payload {
            Ok(Payload::ExportSection(reader)) => {
                used.extend(reader.into_iter().flatten().map(|e| (ItemKind::Export, e.name.to_string())));
            }
            Ok(Payload::End(_)) | Err(_) => break,
            _ => {}
        }
    }
    if let Some(document) = metadata_document(wasm) {
        if let Some(top) = document.as_object() {
            used.extend(top.keys().map(|k| (ItemKind::MetadataField, k.clone())));
            let entries = top.get("functions").and_then(|f| f.as_array()).into_iter().flatten();
            for entry in entries.filter_map(|e| e.as_object()) {
                used.extend(entry.keys().map(|k| (ItemKind::MetadataField, format!("functions[].{k}"))));
            }
            let capabilities = top.get("capabilities").and_then(|c| c.as_array()).into_iter().flatten();
            for capability in capabilities.filter_map(|c| c.as_str()) {
                let kind = capability.split(':').next().unwrap_or(capability);
                used.push((ItemKind::CapabilityKind, kind.to_string()));
            }
        }
    }
    used.sort();
    used.dedup();
    used.into_iter()
        .filter_map(|(kind, name)| {
            let since = catalog.since(kind, &name)?;
            (since.major == declared.major && since.minor > declared.minor).then(|| Finding {
                rule: Rule::NewerThanDeclared,
                message: format!("the {kind} `{name}` arrived in ABI {since}, but the plugin declares ABI {declared}"),
                offset: None,
                subject: Some(name),
            })
        })
        .collect()
}

fn metadata_document(wasm: &[u8]) -> Option<serde_json::Value> {
    let sections = pabi_abi::find_custom_sections(wasm, pabi_abi::METADATA_SECTION).ok()?;
    let [section] = sections.as_slice() else { return None };
    serde_json::from_slice(&wasm[section.data.clone()]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1_0: AbiVersion = AbiVersion::new(1, 0);
    const V1_1: AbiVersion = AbiVersion::new(1, 1);

    fn plugin(extra_export: &str, metadata: &str) -> Vec<u8> {
        wat::parse_str(format!(
            r#"(module
                (memory (export "memory") 1)
                (func $f (export "pabi_fn_f") (param i32) (result i32) (i32.const 0))
                {extra_export}
                (@custom "pabi" "{}"))"#,
            metadata.replace('"', "\\\"")
        ))
        .unwrap()
    }

    const PLAIN: &str =
        r#"{"abi":"1.0","name":"p","version":"1.0.0","profile":"core","functions":[{"name":"f"}],"capabilities":[]}"#;

    fn subjects(wasm: &[u8], declared: AbiVersion, catalog: &Catalog) -> Vec<String> {
        newer_than_declared(wasm, declared, catalog).into_iter().filter_map(|f| f.subject).collect()
    }

    #[test]
    fn nothing_of_abi_1_0_is_newer_than_1_0() {
        let wasm = plugin(r#"(func (export "pabi_init") (param i32) (result i32) (i32.const 0))"#, PLAIN);
        assert!(newer_than_declared(&wasm, V1_0, &Catalog::current()).is_empty());
    }

    /// A made-up 1.1 item of each kind, used by a plugin that declares 1.0:
    /// one finding each; declaring 1.1 clears them.
    #[test]
    fn a_1_1_item_of_each_kind_in_a_1_0_plugin_is_found() {
        let catalog = Catalog::current()
            .with(ItemKind::Export, "pabi_describe", V1_1)
            .with(ItemKind::MetadataField, "host_calls", V1_1)
            .with(ItemKind::MetadataField, "functions[].streaming", V1_1)
            .with(ItemKind::CapabilityKind, "net", V1_1);
        let export = plugin(r#"(func (export "pabi_describe") (result i32) (i32.const 0))"#, PLAIN);
        assert_eq!(subjects(&export, V1_0, &catalog), ["pabi_describe"]);
        let field = plugin("", &PLAIN.replace(r#""capabilities":[]"#, r#""capabilities":[],"host_calls":[]"#));
        assert_eq!(subjects(&field, V1_0, &catalog), ["host_calls"]);
        let entry = plugin("", &PLAIN.replace(r#"{"name":"f"}"#, r#"{"name":"f","streaming":true}"#));
        assert_eq!(subjects(&entry, V1_0, &catalog), ["functions[].streaming"]);
        let capability = plugin("", &PLAIN.replace(r#""capabilities":[]"#, r#""capabilities":["net:example.com"]"#));
        assert_eq!(subjects(&capability, V1_0, &catalog), ["net"]);
        for wasm in [&export, &field, &entry, &capability] {
            assert!(subjects(wasm, V1_1, &catalog).is_empty(), "declaring 1.1 allows them");
        }
        let finding = &newer_than_declared(&export, V1_0, &catalog)[0];
        assert_eq!(finding.rule.id(), "VER-9");
        assert!(finding.message.contains("arrived in ABI 1.1") && finding.message.contains("declares ABI 1.0"));
    }
}
