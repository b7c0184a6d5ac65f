//! Unit tests of the lint: resolution inside the image, the loader's
//! search, `#!` interpreters, what the config runs, and the layer scan.

use super::elf::{Content, ElfInfo};
use super::scan::{Fact, FactKind, LayerFacts};
use super::*;

fn fact(path: &str, kind: FactKind, package: Option<&str>) -> Fact {
    Fact {
        path: path.into(),
        kind,
        package: package.map(str::to_string),
    }
}

fn link(path: &str, t: &str) -> Fact {
    fact(path, FactKind::Symlink(t.into()), None)
}

fn file(path: &str, content: Content, pkg: &str) -> Fact {
    let exec = !matches!(content, Content::Text(_) | Content::Unread);
    fact(path, FactKind::File { exec, content }, Some(pkg))
}

fn elf(interp: Option<&str>, needed: &[&str], runpath: &[&str], rpath: &[&str]) -> Content {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect();
    Content::Elf(ElfInfo {
        interp: interp.map(str::to_string),
        needed: s(needed),
        runpath: s(runpath),
        rpath: s(rpath),
    })
}

fn script(interp: &str, arg: Option<&str>) -> Content {
    Content::Script {
        interp: interp.into(),
        arg: arg.map(str::to_string),
    }
}

const LD: &str = "/lib64/ld-linux-x86-64.so.2";

/// A merged-/usr root with a loader and libc, as the base has.
fn root() -> LayerFacts {
    LayerFacts {
        truncated: false,
        entries: vec![
            link("bin", "usr/bin"),
            link("lib", "usr/lib"),
            link("lib64", "usr/lib64"),
            link("sbin", "usr/sbin"),
            fact("usr", FactKind::Dir, None),
            file(
                "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
                elf(None, &[], &[], &[]),
                "libc6",
            ),
            link(
                "usr/lib64/ld-linux-x86-64.so.2",
                "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
            ),
            file(
                "usr/lib/x86_64-linux-gnu/libc.so.6",
                elf(Some(LD), &[], &[], &[]),
                "libc6",
            ),
        ],
    }
}

fn known(wanted: &BTreeSet<String>) -> Result<Providers, BoxError> {
    let lists = [
        ("dash", &["usr/bin/dash", "usr/bin/sh"][..]),
        ("zlib1g", &["usr/lib/x86_64-linux-gnu/libz.so.1"]),
        ("python3-minimal", &["usr/bin/python3"]),
    ];
    let mut out = Providers::new();
    for (name, paths) in lists {
        for p in paths.iter().filter(|p| wanted.contains(**p)) {
            out.entry(p.to_string())
                .or_default()
                .insert(name.to_string());
        }
    }
    Ok(out)
}

fn run(layers: &[&LayerFacts], start: Start) -> Result<Report, LintError> {
    let opts = LintOptions {
        image: "img:1",
        layers: layers
            .iter()
            .enumerate()
            .map(|(i, f)| LayerView {
                facts: f,
                label: format!("layer {i}"),
            })
            .collect(),
        start,
        arch: "amd64",
        known: &known,
    };
    check(&opts)
}

fn needs(r: &Report) -> Vec<(String, String, Vec<String>)> {
    r.unresolved
        .iter()
        .map(|u| (u.path.clone(), u.needs.clone(), u.providers.clone()))
        .collect()
}

fn entry(p: &str) -> Start {
    Start::new(Some(&[p.to_string()]), None, &BTreeMap::new(), None)
}

#[test]
fn a_script_without_its_shell_is_listed_with_the_package_that_ships_one() {
    let pkg = LayerFacts {
        truncated: false,
        entries: vec![
            file("usr/sbin/foo", script("/bin/sh", None), "bar"),
            file("usr/bin/ok", elf(Some(LD), &["libc.so.6"], &[], &[]), "bar"),
        ],
    };
    let r = run(&[&root(), &pkg], Start::default()).unwrap();
    assert_eq!(
        needs(&r),
        [(
            "/usr/sbin/foo".into(),
            "/bin/sh".into(),
            vec!["dash".into()]
        )]
    );
    assert_eq!(
        r.unresolved[0].describe(),
        "/usr/sbin/foo (package bar) needs /bin/sh, not in the image (dash ships it)"
    );
    let w = r.warning("img:1").unwrap();
    assert!(
        w.starts_with("img:1: 1 file dependency not in the image"),
        "{w}"
    );
}

#[test]
fn symlinked_shell_and_interpreter_chains_resolve() {
    let pkg = LayerFacts {
        truncated: false,
        entries: vec![
            file(
                "usr/bin/dash",
                elf(Some(LD), &["libc.so.6"], &[], &[]),
                "dash",
            ),
            link("usr/bin/sh", "dash"),
            link("usr/local/bin/sh2", "../../bin/../../bin/sh"),
            file("usr/sbin/foo", script("/bin/sh", Some("-e")), "bar"),
            file("usr/sbin/foo2", script("/usr/local/bin/sh2", None), "bar"),
        ],
    };
    let r = run(&[&root(), &pkg], entry("/usr/sbin/foo2")).unwrap();
    assert!(r.unresolved.is_empty(), "{:?}", r.unresolved);
    assert_eq!(r.start.as_deref(), Some("/usr/sbin/foo2"));
}

#[test]
fn origin_runpath_and_rpath_are_searched() {
    let pkg = LayerFacts {
        truncated: false,
        entries: vec![
            file(
                "opt/app/bin/app",
                elf(
                    Some(LD),
                    &["libapp.so.1", "libc.so.6"],
                    &["$ORIGIN/../lib"],
                    &[],
                ),
                "app",
            ),
            file(
                "opt/app/lib/libapp.so.1",
                elf(None, &["libdep.so"], &[], &["${ORIGIN}/private"]),
                "app",
            ),
            file(
                "opt/app/lib/private/libdep.so",
                elf(None, &[], &[], &[]),
                "app",
            ),
            // RUNPATH given: RPATH is ignored, as the loader does.
            file(
                "opt/app/bin/tool",
                elf(
                    None,
                    &["libdep.so"],
                    &["/nowhere"],
                    &["$ORIGIN/../lib/private"],
                ),
                "app",
            ),
            // gconv modules find their helpers beside them.
            file(
                "usr/lib/x86_64-linux-gnu/gconv/EUC-JP.so",
                elf(None, &["libJIS.so"], &["$ORIGIN"], &[]),
                "libc6",
            ),
            file(
                "usr/lib/x86_64-linux-gnu/gconv/libJIS.so",
                elf(None, &[], &[], &[]),
                "libc6",
            ),
        ],
    };
    let r = run(&[&root(), &pkg], entry("/opt/app/bin/app")).unwrap();
    assert_eq!(
        needs(&r),
        [("/opt/app/bin/tool".into(), "libdep.so".into(), vec![])]
    );
}

#[test]
fn ld_so_conf_d_directories_are_searched() {
    let text = |p: &str, t: &str| file(p, Content::Text(t.into()), "conf");
    let lib = LayerFacts {
        truncated: false,
        entries: vec![
            file("opt/lib/libx.so.1", elf(None, &[], &[], &[]), "x"),
            file("usr/bin/usex", elf(Some(LD), &["libx.so.1"], &[], &[]), "x"),
        ],
    };
    let r = run(&[&root(), &lib], Start::default()).unwrap();
    assert_eq!(
        needs(&r),
        [("/usr/bin/usex".into(), "libx.so.1".into(), vec![])]
    );
    let conf = LayerFacts {
        truncated: false,
        entries: vec![text("etc/ld.so.conf.d/x.conf", "# x\n/opt/lib\n")],
    };
    let r = run(&[&root(), &lib, &conf], Start::default()).unwrap();
    assert!(r.unresolved.is_empty(), "{:?}", r.unresolved);
}

#[test]
fn env_shebangs_need_their_program_on_the_configs_path() {
    let pkg = LayerFacts {
        truncated: false,
        entries: vec![
            file(
                "usr/bin/env",
                elf(Some(LD), &["libc.so.6"], &[], &[]),
                "coreutils",
            ),
            file("usr/bin/tool", script("/usr/bin/env", Some("python3")), "t"),
            file(
                "usr/bin/tool2",
                script("/usr/bin/env", Some("-S python3 -u")),
                "t",
            ),
            file(
                "opt/py/python3",
                elf(Some(LD), &["libc.so.6"], &[], &[]),
                "py",
            ),
        ],
    };
    let r = run(&[&root(), &pkg], Start::default()).unwrap();
    let want = |p: &str| {
        (
            p.to_string(),
            "python3".to_string(),
            vec!["python3-minimal".to_string()],
        )
    };
    assert_eq!(needs(&r), [want("/usr/bin/tool"), want("/usr/bin/tool2")]);
    assert_eq!(r.unresolved[0].kind, NeedKind::Program);
    assert!(r.unresolved[0].describe().contains("needs python3 on PATH"));
    // On the config's PATH, it is found.
    let env = BTreeMap::from([("PATH".to_string(), "/opt/py:/usr/bin".to_string())]);
    let start = Start::new(None, Some(&["tool".to_string()]), &env, None);
    let r = run(&[&root(), &pkg], start).unwrap();
    assert!(r.unresolved.is_empty(), "{:?}", r.unresolved);
    assert_eq!(r.start.as_deref(), Some("/usr/bin/tool"));
    assert_eq!(find::env_program("-i A=b python3"), Some("python3"));
    assert_eq!(find::env_program("-u HOME perl -w"), Some("perl"));
}

#[test]
fn an_entrypoint_that_cannot_start_is_an_error_naming_what_is_missing() {
    let pkg = LayerFacts {
        truncated: false,
        entries: vec![
            file(
                "usr/bin/app",
                elf(Some(LD), &["libz.so.1", "libc.so.6"], &[], &[]),
                "app",
            ),
            file("usr/bin/run", script("/bin/sh", None), "app"),
            file("usr/bin/data", Content::Other, "app"),
            fact(
                "usr/bin/noexec",
                FactKind::File {
                    exec: false,
                    content: Content::Unread,
                },
                Some("app"),
            ),
        ],
    };
    let err = |p: &str| run(&[&root(), &pkg], entry(p)).unwrap_err().to_string();
    let e = err("/usr/bin/app");
    assert!(
        e.starts_with("image img:1: its entrypoint \"/usr/bin/app\" cannot start:"),
        "{e}"
    );
    assert!(
        e.contains(
            "/usr/bin/app (package app) needs libz.so.1, not in the image (zlib1g ships it)"
        ),
        "{e}"
    );
    assert!(err("/usr/bin/run").contains("needs /bin/sh, not in the image (dash ships it)"));
    assert!(err("/usr/bin/nope").contains("/usr/bin/nope is not in the image"));
    assert!(err("/usr/bin/data").contains("neither an ELF file nor a #! script"));
    assert!(err("/usr/bin/noexec").contains("is not executable"));
    // Transitively: a library the program loads lacks its own dependency.
    let deep = LayerFacts {
        truncated: false,
        entries: vec![
            file(
                "usr/bin/deep",
                elf(Some(LD), &["libmid.so.1"], &[], &[]),
                "deep",
            ),
            file(
                "usr/lib/x86_64-linux-gnu/libmid.so.1",
                elf(None, &["libz.so.1"], &[], &[]),
                "mid",
            ),
        ],
    };
    let e = run(&[&root(), &deep], entry("/usr/bin/deep"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("/usr/lib/x86_64-linux-gnu/libmid.so.1 (package mid) needs libz.so.1"),
        "{e}"
    );
}

#[test]
fn a_librarys_interpreter_counts_only_when_it_is_executable() {
    let lib = |path: &str, exec: bool| {
        let content = elf(Some("/lib/ld-musl-x86_64.so.1"), &["libc.so.6"], &[], &[]);
        fact(path, FactKind::File { exec, content }, Some("l"))
    };
    let pkg = LayerFacts {
        truncated: false,
        entries: vec![
            lib("usr/lib/libl.so.1", false),
            lib("usr/lib/libx.so.1", true),
        ],
    };
    let r = run(&[&root(), &pkg], Start::default()).unwrap();
    let want = (
        "/usr/lib/libx.so.1".into(),
        "/lib/ld-musl-x86_64.so.1".into(),
        vec![],
    );
    assert_eq!(needs(&r), [want]);
}

#[test]
fn whiteouts_of_upper_layers_remove_what_a_file_needs() {
    let pkg = LayerFacts {
        truncated: false,
        entries: vec![file(
            "usr/bin/app",
            elf(Some(LD), &["libc.so.6"], &[], &[]),
            "app",
        )],
    };
    let top = LayerFacts {
        truncated: false,
        entries: vec![fact(
            "usr/lib/x86_64-linux-gnu/libc.so.6",
            FactKind::Whiteout,
            None,
        )],
    };
    let r = run(&[&root(), &pkg, &top], Start::default()).unwrap();
    assert_eq!(
        needs(&r),
        [("/usr/bin/app".into(), "libc.so.6".into(), vec![])]
    );
}

/// A layer tar with `entries` as `(path, kind, mode, bytes)`.
fn layer_tar(dir: &std::path::Path, entries: &[(&str, char, u32, &[u8])]) -> std::path::PathBuf {
    let p = dir.join("layer.tar");
    let mut b = tar::Builder::new(std::fs::File::create(&p).unwrap());
    for (path, kind, mode, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mode(*mode);
        h.set_size(0);
        match kind {
            'd' => h.set_entry_type(tar::EntryType::Directory),
            'l' => h.set_entry_type(tar::EntryType::Symlink),
            'h' => h.set_entry_type(tar::EntryType::Link),
            _ => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(data.len() as u64);
            }
        }
        match kind {
            'l' | 'h' => b
                .append_link(&mut h, path, std::str::from_utf8(data).unwrap())
                .unwrap(),
            _ => b.append_data(&mut h, path, *data).unwrap(),
        }
    }
    b.finish().unwrap();
    p
}

#[test]
fn a_layer_tar_is_scanned_in_one_pass() {
    let d = tempfile::tempdir().unwrap();
    let so = elf::testelf::elf64(None, &["libc.so.6"], Some("$ORIGIN"), None, 100);
    let exe = elf::testelf::elf64(Some(LD), &["libfoo.so.1"], None, None, 100);
    let p = layer_tar(
        d.path(),
        &[
            ("usr/", 'd', 0o755, b""),
            ("usr/bin/app", 'f', 0o755, &exe),
            ("usr/bin/app2", 'h', 0o755, b"usr/bin/app"),
            ("usr/bin/run", 'f', 0o755, b"#!/bin/sh\n"),
            ("usr/bin/notexec", 'f', 0o644, b"#!/bin/sh\n"),
            ("usr/lib/libfoo.so.1", 'f', 0o644, &so),
            ("usr/lib/libfoo.so", 'l', 0o777, b"libfoo.so.1"),
            ("etc/ld.so.conf.d/x.conf", 'f', 0o644, b"/opt\n"),
            ("usr/share/.wh.doc", 'f', 0o644, b""),
            ("opt/.wh..wh..opq", 'f', 0o644, b""),
        ],
    );
    let f = scan_layer(&p, None).unwrap();
    let kinds: Vec<(&str, &FactKind)> = f
        .entries
        .iter()
        .map(|e| (e.path.as_str(), &e.kind))
        .collect();
    let content = |i: usize| match kinds[i].1 {
        FactKind::File { content, .. } => content.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(kinds[0], ("usr", &FactKind::Dir));
    assert!(matches!(content(1), Content::Elf(e) if e.needed == ["libfoo.so.1"]));
    assert_eq!(content(2), content(1), "a hard link is what its target is");
    assert_eq!(content(3), script("/bin/sh", None));
    assert_eq!(content(4), Content::Unread, "not executable: not read");
    assert!(matches!(content(5), Content::Elf(e) if e.runpath == ["$ORIGIN"]));
    assert_eq!(
        kinds[6],
        (
            "usr/lib/libfoo.so",
            &FactKind::Symlink("libfoo.so.1".into())
        )
    );
    assert_eq!(content(7), Content::Text("/opt\n".into()));
    assert_eq!(kinds[8], ("usr/share/doc", &FactKind::Whiteout));
    assert_eq!(kinds[9], ("opt", &FactKind::Opaque));
}

#[test]
fn plain_entries_past_the_cap_are_left_out_and_owners_follow_the_index() {
    let d = tempfile::tempdir().unwrap();
    let n = scan::MAX_PLAIN + 5;
    let names: Vec<String> = (0..n).map(|i| format!("usr/share/m/{i:06}")).collect();
    let mut entries: Vec<(&str, char, u32, &[u8])> = names
        .iter()
        .map(|p| (p.as_str(), 'f', 0o644, &b""[..]))
        .collect();
    entries.push(("usr/share/z/run", 'f', 0o755, b"#!/bin/sh\n"));
    let p = layer_tar(d.path(), &entries);
    // The path index lists the same entries, in the same order.
    let mut index = String::new();
    for (path, ..) in &entries {
        let origin = if path.ends_with("run") {
            "runner"
        } else {
            "many"
        };
        index.push_str(&serde_json::to_string(&(path, "file", 0o644, 0, 0, "", origin)).unwrap());
        index.push('\n');
    }
    std::fs::write(d.path().join("index"), index).unwrap();
    let f = scan_layer(&p, Some(&d.path().join("index"))).unwrap();
    assert_eq!(f.entries.len(), scan::MAX_PLAIN + 1);
    assert!(!f.truncated, "plain entries only shadow");
    let last = f.entries.last().unwrap();
    assert_eq!(
        (last.path.as_str(), last.package.as_deref()),
        ("usr/share/z/run", Some("runner"))
    );
    assert_eq!(f.entries[0].package.as_deref(), Some("many"));
}
