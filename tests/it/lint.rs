//! The runtime lint end to end (issue 23, item 6): what an image's files
//! need and the image lacks is listed in the metadata, and an image whose
//! entrypoint cannot start fails the build without touching the previous
//! output. Synthetic packages only (`debgen`).

use crate::common::{imgforge, run, text};
use crate::debgen::{Deb, T};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// A static ELF executable: a header with no program headers (no
/// interpreter, no libraries).
const STATIC_ELF: [u8; 64] = {
    let mut h = [0u8; 64];
    let ident = *b"\x7fELF\x02\x01\x01";
    let mut i = 0;
    while i < ident.len() {
        h[i] = ident[i];
        i += 1;
    }
    h[16] = 2; // ET_EXEC
    h[18] = 62; // x86-64
    h[20] = 1;
    h[52] = 64; // e_ehsize
    h[54] = 56; // e_phentsize
    h
};

/// `fakesh` ships `/bin/sh`; `tool` a `#!/bin/sh` script.
fn debs() -> Vec<Deb> {
    vec![
        Deb::new("fakesh", "1.0").entry(T::File("./bin/sh", &STATIC_ELF, 0o755)),
        Deb::new("tool", "1.0").entry(T::File("./usr/bin/tool", b"#!/bin/sh\necho hi\n", 0o755)),
    ]
}

/// A tree: the base with `base` pinned, and one recipe per `(name,
/// packages, extra)` (`extra` is appended: `[config]`...).
fn tree(dir: &Path, base: &[&str], images: &[(&str, &[&str], &str)]) {
    let pins = |ps: &[&str]| -> String { ps.iter().map(|p| format!("{p} = \"1.0\"\n")).collect() };
    let b = format!(
        "[image]\nname = \"base\"\ntag = \"t1\"\nfrom = \"scratch\"\nsource-date-epoch = 0\n\n\
         [source]\napt = false\narch = \"amd64\"\ndistro = \"debian-12\"\n\n[packages]\n{}",
        pins(base)
    );
    let _ = std::fs::remove_dir_all(dir.join("recipes"));
    std::fs::create_dir_all(dir.join("base")).unwrap();
    std::fs::create_dir_all(dir.join("recipes")).unwrap();
    std::fs::write(dir.join("base/base.toml"), b).unwrap();
    for (name, ps, extra) in images {
        let r = format!(
            "[image]\nname = \"{name}\"\ntag = \"1\"\n\n[packages]\n{}\n{extra}",
            pins(ps)
        );
        std::fs::write(dir.join(format!("recipes/{name}.toml")), r).unwrap();
    }
    if !dir.join("mirror").is_dir() {
        crate::debgen::mirror(&dir.join("mirror"), &debs());
    }
}

fn build(dir: &Path) -> std::process::Output {
    run(imgforge()
        .current_dir(dir)
        .env_remove("SOURCE_DATE_EPOCH")
        .args(["build", "recipes", "--mirror", "mirror", "--no-apt"])
        .args([
            "--out",
            "out",
            "--cache",
            "cache",
            "--metadata-file",
            "meta.json",
        ]))
}

fn unresolved(meta: &Value, image: &str) -> Vec<Value> {
    meta["images"][image]["lint"]["unresolved"]
        .as_array()
        .unwrap_or_else(|| panic!("no lint for {image}: {meta:#}"))
        .clone()
}

#[test]
fn lint_lists_a_script_whose_shell_is_not_in_the_image() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // The base ships the script; the shell image adds a /bin/sh, so the
    // lock knows a package that ships one.
    tree(dir, &["tool"], &[("shell", &["fakesh"], "")]);
    let o = build(dir);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("base:t1: 1 file dependency not in the image")
            && t.contains(
                "/usr/bin/tool (package tool) needs /bin/sh, not in the image (fakesh ships it)"
            ),
        "{t}"
    );
    let meta: Value =
        serde_json::from_slice(&std::fs::read(dir.join("meta.json")).unwrap()).unwrap();
    let want = serde_json::json!({
        "package": "tool",
        "path": "/usr/bin/tool",
        "kind": "interpreter",
        "needs": "/bin/sh",
        "layer": "packages",
        "providers": ["fakesh"],
    });
    assert_eq!(unresolved(&meta, "base:t1"), [want]);
    // Where the shell is, the script's interpreter resolves.
    assert_eq!(unresolved(&meta, "shell:1"), Vec::<Value>::new());
    // A rebuild takes the lint from the store: the same metadata.
    let o = build(dir);
    assert!(o.status.success(), "{}", text(&o));
    let again: Value =
        serde_json::from_slice(&std::fs::read(dir.join("meta.json")).unwrap()).unwrap();
    assert_eq!(again, meta);
}

#[test]
fn lint_fails_the_build_when_the_entrypoints_interpreter_is_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let app = "[config]\nentrypoint = [\"/usr/bin/tool\"]\n";
    tree(dir, &[], &[("app", &["tool", "fakesh"], app)]);
    let o = build(dir);
    assert!(o.status.success(), "{}", text(&o));
    let meta: Value =
        serde_json::from_slice(&std::fs::read(dir.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["images"]["app:1"]["lint"]["start"], "/usr/bin/tool");
    let before = files(&dir.join("out"));
    let meta_before = std::fs::read(dir.join("meta.json")).unwrap();

    // The shell moves to another image: the app's entrypoint cannot start.
    tree(
        dir,
        &[],
        &[("app", &["tool"], app), ("shell", &["fakesh"], "")],
    );
    let o = build(dir);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(
        t.contains("image app:1: its entrypoint \"/usr/bin/tool\" cannot start")
            && t.contains(
                "/usr/bin/tool (package tool) needs /bin/sh, not in the image (fakesh ships it)"
            )
            && t.contains("help: "),
        "{t}"
    );
    assert_eq!(files(&dir.join("out")), before, "out/ changed");
    assert_eq!(std::fs::read(dir.join("meta.json")).unwrap(), meta_before);
    let left: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".imgforge-"))
        .collect();
    assert!(left.is_empty(), "staging left behind: {left:?}");
}

/// Every file under `dir` by relative path, with its bytes.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for e in walk(dir) {
        let rel = e.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
        out.insert(rel, std::fs::read(&e).unwrap());
    }
    out
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            v.extend(walk(&p));
        } else {
            v.push(p);
        }
    }
    v.sort();
    v
}
