//! The workspace's layering (docs/layout.md): each crate uses only the
//! crates before it in `LAYERS`, and no crate's modules import each other
//! in a circle. Read from the sources, so a change that reaches up or
//! closes a loop fails here rather than in review.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Folder and package of every crate, bottom up.
const LAYERS: &[(&str, &str)] = &[
    ("checker", "faultline-checker"),
    ("workloads", "faultline-workloads"),
    ("nemesis", "faultline-nemesis"),
    ("durable", "faultline-durable"),
    ("rundir", "faultline-rundir"),
    ("net", "faultline-net"),
    ("process", "faultline-process"),
    ("systems", "faultline-systems"),
    ("report", "faultline-report"),
    ("target-node", "target-node"),
    ("harness", "faultline"),
];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn every_crate_uses_only_the_crates_below_it() {
    let members: toml::Value =
        toml::from_str(&std::fs::read_to_string(workspace().join("Cargo.toml")).unwrap()).unwrap();
    let members: BTreeSet<&str> = members["workspace"]["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    let listed: BTreeSet<&str> = LAYERS.iter().map(|(dir, _)| *dir).collect();
    assert_eq!(members, listed, "LAYERS names every workspace member");
    for (i, (dir, _)) in LAYERS.iter().enumerate() {
        let below: Vec<&str> = LAYERS[..i].iter().map(|(_, p)| *p).collect();
        let manifest = workspace().join(dir).join("Cargo.toml");
        let cargo: toml::Value =
            toml::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
        let deps = cargo.get("dependencies").and_then(|d| d.as_table());
        for name in deps.into_iter().flat_map(|d| d.keys()) {
            let ours = LAYERS.iter().any(|(_, p)| p == name);
            assert!(
                !ours || below.contains(&name.as_str()),
                "{dir} uses {name}, which is not below it in docs/layout.md"
            );
        }
    }
}

#[test]
fn no_crate_has_an_import_cycle() {
    for (dir, _) in LAYERS {
        let graph = imports(&workspace().join(dir).join("src"));
        if let Some(cycle) = find_cycle(&graph) {
            panic!(
                "{dir}: modules import each other in a circle: {}",
                cycle.join(" -> ")
            );
        }
    }
}

/// The crates that hold the contracts with users (the run directory,
/// and the report drawn from it alone) carry no async runtime and no
/// command line: a tool reading run directories need not build either.
/// Read from Cargo.lock: every package the crate needs, transitively.
#[test]
fn the_run_directory_and_report_need_no_runtime_or_cli() {
    let lock: toml::Value =
        toml::from_str(&std::fs::read_to_string(workspace().join("Cargo.lock")).unwrap()).unwrap();
    let deps: BTreeMap<&str, Vec<&str>> = lock["package"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let names = p.get("dependencies").and_then(|d| d.as_array());
            // An entry is "name" or "name version" when two versions exist.
            let names = names.into_iter().flatten();
            let names = names.map(|d| d.as_str().unwrap().split(' ').next().unwrap());
            (p["name"].as_str().unwrap(), names.collect())
        })
        .collect();
    for root in ["faultline-rundir", "faultline-report"] {
        let (mut seen, mut todo) = (BTreeSet::new(), vec![root]);
        while let Some(p) = todo.pop() {
            if seen.insert(p) {
                todo.extend(deps.get(p).into_iter().flatten());
            }
        }
        for banned in ["tokio", "clap"] {
            assert!(!seen.contains(banned), "{root} needs {banned}");
        }
        assert!(
            seen.contains("serde_json"),
            "{root}: the walk found its dependencies"
        );
    }
}

#[test]
fn a_cycle_is_found_when_there_is_one() {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    g.entry("a".into()).or_default().insert("b".into());
    g.entry("b".into()).or_default().insert("c".into());
    assert_eq!(find_cycle(&g), None);
    g.entry("c".into()).or_default().insert("a".into());
    assert_eq!(find_cycle(&g).map(|c| c.len()), Some(4), "a -> b -> c -> a");
}

/// Module path (`run::cluster`; the crate root is ``) of every source file.
fn modules(src: &Path) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    let mut todo = vec![src.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let rel = p.strip_prefix(src).unwrap().with_extension("");
                let mut parts: Vec<String> = rel
                    .iter()
                    .map(|s| s.to_string_lossy().into_owned())
                    .collect();
                if matches!(
                    parts.last().map(String::as_str),
                    Some("mod" | "lib" | "main")
                ) {
                    parts.pop();
                }
                out.insert(parts.join("::"), p);
            }
        }
    }
    out
}

/// Which modules each module imports (`crate::x`, `crate::{x, y}`,
/// `super::x`), tests and comments left out; a module's own children and
/// ancestors do not count (Rust nests them).
fn imports(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mods = modules(src);
    let mut graph = BTreeMap::new();
    for (m, path) in &mods {
        let text = std::fs::read_to_string(path).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        let code: String = code
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let parent = {
            let is_dir_module = path.file_stem().is_some_and(|s| s == "mod" || s == "lib");
            let mut p: Vec<&str> = m.split("::").filter(|s| !s.is_empty()).collect();
            p.pop();
            if is_dir_module {
                p.pop();
            }
            p.join("::")
        };
        let mut uses = BTreeSet::new();
        let mut add = |target: String| {
            let nested =
                m.starts_with(&format!("{target}::")) || target.starts_with(&format!("{m}::"));
            if target != *m && !target.is_empty() && !nested && mods.contains_key(&target) {
                uses.insert(target);
            }
        };
        for (prefix, base) in [("crate::", String::new()), ("super::", parent)] {
            for (at, _) in code.match_indices(prefix) {
                let rest = &code[at + prefix.len()..];
                let names: Vec<&str> = match rest.strip_prefix('{') {
                    Some(group) => group.split('}').next().unwrap_or("").split(',').collect(),
                    None => vec![rest],
                };
                for name in names {
                    let path: Vec<&str> = name
                        .trim()
                        .split("::")
                        .map(|s| s.trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '_'))
                        .take_while(|s| {
                            !s.is_empty()
                                && s.chars().all(|c| {
                                    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'
                                })
                        })
                        .collect();
                    // The longest prefix that is a module.
                    for k in (1..=path.len()).rev() {
                        let joined = path[..k].join("::");
                        let target = if base.is_empty() {
                            joined
                        } else {
                            format!("{base}::{joined}")
                        };
                        if mods.contains_key(&target) {
                            add(target);
                            break;
                        }
                    }
                }
            }
        }
        graph.insert(m.clone(), uses);
    }
    graph
}

/// A cycle (its modules, the first repeated at the end), if any.
fn find_cycle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        v: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == v) {
            let mut cycle = path[i..].to_vec();
            cycle.push(v.to_string());
            return Some(cycle);
        }
        if done.contains(v) {
            return None;
        }
        path.push(v.to_string());
        for w in g.get(v).into_iter().flatten() {
            if let Some(c) = visit(w, g, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(v.to_string());
        None
    }
    let mut done = BTreeSet::new();
    g.keys()
        .find_map(|v| visit(v, g, &mut Vec::new(), &mut done))
}
