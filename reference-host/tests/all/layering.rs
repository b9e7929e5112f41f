//! The modules of `pabi-host` form layers: none uses a module that uses it
//! back, directly or through others. Each module's `crate::…` paths are
//! read from its code lines; names re-exported by `lib.rs` count as a use of
//! the module that defines them.
//!
//! The crate is a layer too: it and the crates below it make an embedder
//! compile the ABI but not the test tooling (`pabi-testkit`, a JSON Schema
//! validator), which only the `testing` feature brings in.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module → the modules it uses.
fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let read = |name: &str| std::fs::read_to_string(src.join(name)).unwrap();
    let lib = read("lib.rs");
    let modules: BTreeSet<String> = lib
        .lines()
        .filter_map(|l| l.trim().strip_prefix("mod ").or_else(|| l.trim().strip_prefix("pub mod ")))
        .map(|m| m.trim_end_matches(';').to_string())
        .collect();
    // `pub use config::{Allow, Config};` → Allow and Config live in config.
    let mut owner: BTreeMap<String, String> = BTreeMap::new();
    for statement in lib.split(';').filter_map(|s| s.trim().strip_prefix("pub use ")) {
        let Some((module, names)) = statement.split_once("::") else { continue };
        for name in names.trim_matches(|c| c == '{' || c == '}').split(',') {
            owner.insert(name.trim().to_string(), module.to_string());
        }
    }
    let mut graph = BTreeMap::new();
    for module in &modules {
        // Doc links (`[crate::Error]`) are not uses; only code lines count.
        // A module of several files (`pool/mod.rs`, `pool/in_process.rs`)
        // is all of them.
        let folder = src.join(module);
        let source = if folder.is_dir() {
            let mut files: Vec<_> = std::fs::read_dir(&folder).unwrap().map(|e| e.unwrap().path()).collect();
            files.sort();
            files.iter().map(|f| std::fs::read_to_string(f).unwrap()).collect::<Vec<_>>().join("\n")
        } else {
            read(&format!("{module}.rs"))
        };
        let text: String = source.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n");
        let mut uses = BTreeSet::new();
        for (at, _) in text.match_indices("crate::") {
            let rest = &text[at + "crate::".len()..];
            // `crate::{imports, Error}` names several items at once.
            let names: Vec<&str> = match rest.strip_prefix('{') {
                Some(list) => list.split('}').next().unwrap_or_default().split(',').collect(),
                None => vec![rest],
            };
            for name in names {
                let name: String = name.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                let target = if modules.contains(&name) { Some(name.clone()) } else { owner.get(&name).cloned() };
                if let Some(target) = target.filter(|t| t != module) {
                    uses.insert(target);
                }
            }
        }
        graph.insert(module.clone(), uses);
    }
    graph
}

/// A cycle of the graph, if it has one.
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|n| n == node) {
            let mut found = path[start..].to_vec();
            found.push(node.to_string());
            return Some(found);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(found) = visit(next, graph, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn no_module_uses_a_module_that_uses_it_back() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = graph(&src);
    assert!(graph.len() >= 8, "the module list was not read: {graph:?}");
    assert!(graph["plugin"].contains("engine"), "the use scan found nothing: {graph:?}");
    assert_eq!(cycle(&graph), None, "a circle of imports in reference-host/src");
}

#[test]
fn the_cycle_finder_finds_cycles() {
    let edges = |pairs: &[(&str, &str)]| {
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (from, to) in pairs {
            graph.entry(from.to_string()).or_default().insert(to.to_string());
            graph.entry(to.to_string()).or_default();
        }
        graph
    };
    assert_eq!(cycle(&edges(&[("host", "plugin"), ("plugin", "engine")])), None);
    let found = cycle(&edges(&[("host", "plugin"), ("plugin", "host")])).unwrap();
    assert_eq!(found.first(), found.last());
    assert!(cycle(&edges(&[("a", "b"), ("b", "c"), ("c", "a")])).is_some());
}

/// The dependencies a crate's users compile, by name, from its manifest:
/// `[dependencies]`, `[build-dependencies]` and their `[target.….]` forms,
/// with whether each is optional. Dev-dependencies are the crate's own.
fn compiled_dependencies(manifest: &str) -> BTreeMap<String, bool> {
    let mut deps = BTreeMap::new();
    let mut in_table = false;
    for line in manifest.lines().map(str::trim) {
        if let Some(header) = line.strip_prefix('[') {
            let header = header.trim_end_matches(']');
            in_table = !header.ends_with("dev-dependencies")
                && (header == "dependencies"
                    || header.ends_with(".dependencies")
                    || header.ends_with("build-dependencies"));
            continue;
        }
        if let (true, Some((name, spec))) = (in_table, line.split_once('=')) {
            let name = name.trim().trim_end_matches(".workspace").to_string();
            deps.insert(name, spec.contains("optional = true"));
        }
    }
    deps
}

/// An application that embeds the host compiles the ABI, not the test
/// tooling: no JSON Schema validator in the crates it builds, and
/// `pabi-testkit` only with the `testing` feature.
#[test]
fn an_embedder_compiles_no_test_tooling() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let manifest = |crate_dir: &str| std::fs::read_to_string(root.join(crate_dir).join("Cargo.toml")).unwrap();
    for crate_dir in ["abi", "validator", "reference-host"] {
        let deps = compiled_dependencies(&manifest(crate_dir));
        assert!(deps.contains_key("pabi-abi") || crate_dir == "abi", "{crate_dir}: nothing read: {deps:?}");
        assert!(!deps.contains_key("jsonschema"), "{crate_dir} makes its users compile jsonschema");
        let testkit = deps.get("pabi-testkit");
        assert!(testkit.is_none_or(|optional| *optional), "{crate_dir} needs pabi-testkit without a feature");
    }
    assert_eq!(compiled_dependencies(&manifest("reference-host")).get("pabi-testkit"), Some(&true));
}

#[test]
fn the_manifest_reader_tells_what_users_compile() {
    let deps = compiled_dependencies(
        "[package]\nname = \"x\"\n[dependencies]\na.workspace = true\nb = { workspace = true, optional = true }\n\
         [dev-dependencies]\nc = \"1\"\n[target.'cfg(unix)'.dependencies]\nd = \"1\"\n[lints]\nworkspace = true\n",
    );
    assert_eq!(deps, BTreeMap::from([("a".into(), false), ("b".into(), true), ("d".into(), false)]));
}
