//! A test of the architecture map in `lib.rs`: the crate's top-level
//! modules import each other without cycles, the leaves import nothing of
//! the crate, and dependencies point one way (commands → plan, verify,
//! registry → stages → leaves). It reads the sources, so a `use` that
//! breaks the layering fails `cargo test` with the offending file named.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Modules that import nothing from the crate.
const LEAVES: &[&str] = &["digest", "fsutil", "json", "limits", "options", "ui"];

/// Modules only the commands (and `verify`, which runs builds) may import.
const TOP: &[(&str, &[&str])] = &[("ops", &[]), ("plan", &["ops", "verify"])];

/// Every top-level module's crate imports: module → (imported module → a
/// file that imports it).
fn graph(src: &Path) -> BTreeMap<String, BTreeMap<String, PathBuf>> {
    let mut mods = BTreeMap::new();
    for e in std::fs::read_dir(src).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_stem().unwrap().to_string_lossy().to_string();
        if ["lib", "main", "cli", "layering"].contains(&name.as_str()) {
            continue;
        }
        mods.entry(name).or_insert_with(Vec::new).push(p);
    }
    let names: BTreeSet<String> = mods.keys().cloned().collect();
    let mut g = BTreeMap::new();
    for (m, roots) in &mods {
        let mut edges = BTreeMap::new();
        for root in roots {
            for file in rust_files(root) {
                let text = code_only(&std::fs::read_to_string(&file).unwrap());
                for used in crate_paths(&text) {
                    if &used != m && names.contains(&used) {
                        edges.entry(used).or_insert_with(|| file.clone());
                    }
                }
            }
        }
        g.insert(m.clone(), edges);
    }
    g
}

fn rust_files(p: &Path) -> Vec<PathBuf> {
    if p.is_file() {
        return vec![p.to_path_buf()];
    }
    let mut out = Vec::new();
    for e in std::fs::read_dir(p).unwrap() {
        out.extend(rust_files(&e.unwrap().path()));
    }
    out.retain(|f| f.extension().is_some_and(|x| x == "rs"));
    out
}

/// The text without comment lines (doc links may point anywhere).
fn code_only(text: &str) -> String {
    let lines = text.lines().filter(|l| !l.trim_start().starts_with("//"));
    lines.collect::<Vec<_>>().join("\n")
}

/// Module names after `crate::`, including those in `use crate::{a, b::c}`.
fn crate_paths(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices("crate::") {
        let rest = &text[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let body = &group[..group.find('}').unwrap_or(group.len())];
            for item in body.split(',') {
                out.insert(ident(item.trim()));
            }
        } else {
            out.insert(ident(rest));
        }
    }
    out
}

fn ident(s: &str) -> String {
    s.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// A cycle through `start`, if any (depth-first).
fn cycle(g: &BTreeMap<String, BTreeMap<String, PathBuf>>, start: &str) -> Option<Vec<String>> {
    fn walk(
        g: &BTreeMap<String, BTreeMap<String, PathBuf>>,
        at: &str,
        start: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        for next in g[at].keys() {
            if next == start {
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(g, next, start, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_string()];
    walk(g, start, start, &mut path, &mut BTreeSet::new()).then_some(path)
}

fn src_graph() -> BTreeMap<String, BTreeMap<String, PathBuf>> {
    graph(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"))
}

#[test]
fn modules_import_each_other_without_cycles() {
    let g = src_graph();
    assert!(g.len() > 10, "read {} modules", g.len());
    for m in g.keys() {
        if let Some(c) = cycle(&g, m) {
            let files: Vec<String> = c
                .iter()
                .zip(c.iter().cycle().skip(1))
                .map(|(a, b)| format!("{a} -> {b} ({})", g[a][b].display()))
                .collect();
            panic!("import cycle:\n  {}", files.join("\n  "));
        }
    }
}

#[test]
fn leaves_import_nothing_and_the_top_is_imported_only_from_above() {
    let g = src_graph();
    for leaf in LEAVES {
        let edges = &g[*leaf];
        assert!(edges.is_empty(), "{leaf} is a leaf but imports {edges:?}");
    }
    for (top, allowed) in TOP {
        for (m, edges) in &g {
            if let Some(file) = edges.get(*top) {
                assert!(
                    allowed.contains(&m.as_str()),
                    "{m} imports {top} ({}): only {allowed:?} may",
                    file.display()
                );
            }
        }
    }
}

#[test]
fn the_checker_sees_grouped_imports_and_ignores_comments() {
    let t = code_only(
        "//! see [`crate::ops`]\nuse crate::{json, plan::x};\nlet _ = crate::ui::Status;",
    );
    let got: Vec<String> = crate_paths(&t).into_iter().collect();
    assert_eq!(got, ["json", "plan", "ui"]);
}
