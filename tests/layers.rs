//! The crate's layers, checked from its source: no cycle among its top-level modules, and the
//! sans-IO layers stay below the runtime (DESIGN.md, "The shape"; STYLE.md §12).
//!
//! A module depends on another when its non-test code names `crate::other` or `super::`
//! reaches it from a nested file; doc comments do not count. Test-only files (`*_tests.rs`) and
//! `#[cfg(test)] mod tests` blocks are left out: tests may reach anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// Top-level module name → the top-level modules its code uses.
fn dependencies() -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).expect("src is readable") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if !name.ends_with(".rs") || name.ends_with("_tests.rs") {
                continue;
            }
            let relative = path.strip_prefix(&src).expect("under src");
            let top = relative.components().next().expect("a first component");
            let top = top.as_os_str().to_string_lossy().trim_end_matches(".rs").to_string();
            let uses = graph.entry(top.clone()).or_default();
            for used in crate_paths(&fs::read_to_string(&path).expect("a source file")) {
                if used != top {
                    uses.insert(used);
                }
            }
        }
    }
    graph
}

/// The first segment of every `crate::x` path in the code of `source` (tests and comments
/// left out).
fn crate_paths(source: &str) -> Vec<String> {
    let code = match source.find("#[cfg(test)]\nmod tests") {
        Some(i) => &source[..i],
        None => source,
    };
    let mut found = Vec::new();
    for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
        let mut rest = line;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            let name: String =
                rest.chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect();
            if !name.is_empty() {
                found.push(name);
            }
        }
    }
    found
}

/// A cycle through `start`, if there is one (depth-first search).
fn cycle_from(graph: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    let mut path = vec![start.to_string()];
    let mut seen = BTreeSet::new();
    fn walk(
        graph: &BTreeMap<String, BTreeSet<String>>,
        start: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        let here = path.last().cloned().unwrap_or_default();
        for next in graph.get(&here).into_iter().flatten() {
            if next == start {
                path.push(next.clone());
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(graph, start, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    walk(graph, start, &mut path, &mut seen).then_some(path)
}

#[test]
fn no_top_level_module_depends_on_itself_through_others() {
    let graph = dependencies();
    assert!(graph.len() >= 10, "the walk found too few modules: {graph:?}");
    for module in graph.keys() {
        if let Some(cycle) = cycle_from(&graph, module) {
            panic!("module cycle: {}", cycle.join(" -> "));
        }
    }
}

#[test]
fn the_sans_io_layers_never_reach_the_runtime_or_the_api() {
    let graph = dependencies();
    let above = ["runtime", "node", "cli", "config", "sim", "metrics"];
    for layer in ["bytes", "identity", "wire", "transport", "protocol", "kad", "core"] {
        let uses = graph.get(layer).cloned().unwrap_or_default();
        for upper in above {
            assert!(!uses.contains(upper), "{layer} uses {upper}: {uses:?}");
        }
    }
    // Protocols see only the contract, never the router or each other.
    let kad = graph.get("kad").cloned().unwrap_or_default();
    assert!(!kad.contains("core"), "kad uses core: {kad:?}");
    let contract = graph.get("protocol").cloned().unwrap_or_default();
    assert!(!contract.contains("core") && !contract.contains("kad"), "{contract:?}");
}

#[test]
fn the_node_does_not_depend_on_its_control_socket() {
    // The control server is started by `petrel run` with a node's handle; nothing below the
    // CLI may need it (`errors` only re-exports its error types).
    let graph = dependencies();
    for (module, uses) in &graph {
        if !["cli", "control", "errors"].contains(&module.as_str()) {
            assert!(!uses.contains("control"), "{module} uses control: {uses:?}");
        }
    }
    assert!(graph.get("control").is_some_and(|uses| uses.contains("node")), "{graph:?}");
}

#[test]
fn only_the_metrics_module_names_the_prometheus_crate() {
    // DESIGN.md, "The shape": the cores count in plain structs; one module exports them.
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut stack = vec![src.clone()];
    let mut users = Vec::new();
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).expect("src is readable") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if fs::read_to_string(&path).unwrap_or_default().contains("prometheus::") {
                users.push(path.strip_prefix(&src).expect("under src").to_path_buf());
            }
        }
    }
    assert!(!users.is_empty(), "the walk found no user of the crate at all");
    for path in users {
        assert!(path.starts_with("metrics"), "{} names the prometheus crate", path.display());
    }
}

#[test]
fn the_check_sees_a_dependency_and_ignores_comments_and_tests() {
    let source = "use crate::wire::x;\n//! see [`crate::core::A`]\nfn f() { crate::kad::g() }\n\
                  #[cfg(test)]\nmod tests { use crate::sim::S; }\n";
    assert_eq!(crate_paths(source), vec!["wire".to_string(), "kad".to_string()]);
    let mut graph = BTreeMap::new();
    graph.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    graph.insert("b".to_string(), BTreeSet::from(["a".to_string()]));
    assert_eq!(cycle_from(&graph, "a"), Some(vec!["a".into(), "b".into(), "a".into()]));
}
