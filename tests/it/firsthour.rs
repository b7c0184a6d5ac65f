//! A new user's first hour: shell completions and man pages, `query`
//! (which images ship a package, and why), `add`/`remove` and `init`,
//! against synthetic mirrors (no fixture needed).

use crate::common::*;
use crate::debgen::*;
use std::path::Path;

fn write(p: &Path, s: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, s).unwrap();
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

#[test]
fn completions_for_each_shell_name_real_subcommands() {
    for shell in ["bash", "zsh", "fish"] {
        let o = run(imgforge().args(["completions", shell]));
        assert!(o.status.success(), "{shell}: {}", text(&o));
        let s = stdout(&o);
        for sub in ["build", "lock", "query", "vendor", "completions"] {
            assert!(s.contains(sub), "{shell} completions lack {sub}");
        }
        assert!(s.contains("--mirror"), "{shell} completions lack --mirror");
    }
    let o = run(imgforge().args(["completions", "tcsh"]));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

#[test]
fn man_pages_are_generated_for_the_tool_and_each_command() {
    let o = run(imgforge().arg("man"));
    assert!(o.status.success(), "{}", text(&o));
    let page = stdout(&o);
    assert!(
        page.starts_with(".ie") || page.contains(".TH imgforge"),
        "{page}"
    );
    assert!(page.contains("build") && page.contains("query"), "{page}");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("man1");
    let o = run(imgforge().args(["man", "--out"]).arg(&dir));
    assert!(o.status.success(), "{}", text(&o));
    for page in ["imgforge.1", "imgforge-build.1", "imgforge-query.1"] {
        let t = std::fs::read_to_string(dir.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(t.contains(".TH"), "{page}: {t}");
    }
    let b = std::fs::read_to_string(dir.join("imgforge-build.1")).unwrap();
    assert!(b.contains("bundle"), "{b}");
}

/// A mirror where libssl3 reaches two images by different chains, and the
/// base pins zlib (so every image built on it ships zlib).
fn query_mirror(dir: &Path) -> std::path::PathBuf {
    mirror(
        dir,
        &[
            Deb::new("zlib1g", "1.2.13"),
            Deb::new("libssl3", "3.0.22")
                .entry(T::Dir("./usr/lib/", 0o755))
                .entry(T::File("./usr/lib/libssl.so.3", b"elf\n", 0o644)),
            Deb::new("libweb1", "1.4").field("Depends", "libssl3 (>= 3), zlib1g"),
            Deb::new("web", "1.0").field("Depends", "libweb1"),
            Deb::new("cli", "2.0").field("Depends", "libssl3"),
            Deb::new("gcc", "12").field("Depends", "libssl3"),
            Deb::new("broken", "1").field("Depends", "ghost"),
        ],
    )
}

fn query_tree(dir: &Path) {
    write(
        &dir.join("base/base.toml"),
        "[image]\nname = \"base\"\ntag = \"1\"\nfrom = \"scratch\"\nsource-date-epoch = 0\n[packages]\nzlib1g = \"1.2.13\"\n",
    );
    write(
        &dir.join("recipes/web.toml"),
        "[image]\nname = \"web\"\ntag = \"1\"\n[packages]\nweb = \"1.0\"\n",
    );
    write(
        &dir.join("recipes/cli.toml"),
        "[image]\nname = \"cli\"\ntag = \"1\"\n[packages]\ncli = \"2.0\"\n[build]\npackages = { gcc = \"12\" }\nsteps = [\"true\"]\nartifacts = [\"/out/x\"]\n[[copy]]\nfrom = \"/out/x\"\nto = \"/x\"\n",
    );
}

#[test]
fn query_finds_a_library_across_images_with_its_chain() {
    let tmp = tempfile::tempdir().unwrap();
    let m = query_mirror(&tmp.path().join("mirror"));
    let t = tmp.path().join("tree");
    query_tree(&t);
    let o = run(imgforge()
        .current_dir(&t)
        .args(["lock", "recipes", "--no-apt", "-q", "--mirror"])
        .arg(&m));
    assert!(o.status.success(), "{}", text(&o));

    let o = run(imgforge()
        .current_dir(&t)
        .args(["query", "recipes", "--package", "libssl3"]));
    assert!(o.status.success(), "{}", text(&o));
    let s = stdout(&o);
    assert!(
        s.contains("web (runtime): libssl3 3.0.22 (shipped, in the image's layers"),
        "{s}"
    );
    assert!(s.contains("  web 1.0: pinned\n  libweb1 1.4: web depends on libweb1\n  libssl3 3.0.22: libweb1 depends on libssl3 (>= 3)\n"), "{s}");
    assert!(s.contains("cli (runtime): libssl3 3.0.22"), "{s}");
    assert!(
        s.contains("  cli 2.0: pinned\n  libssl3 3.0.22: cli depends on libssl3\n"),
        "{s}"
    );
    assert!(
        s.contains("cli (build): libssl3 3.0.22 (build stage, not shipped"),
        "{s}"
    );

    // JSON: one entry per closure, in tree order (base, then images by name).
    let o = run(imgforge().current_dir(&t).args([
        "query",
        "recipes",
        "--format",
        "json",
        "--package",
        "zlib1g=1.2.13",
    ]));
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let got: Vec<(String, String, String)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["image"].as_str().unwrap().to_string(),
                h["stage"].as_str().unwrap().to_string(),
                h["layer"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());
    assert_eq!(
        got,
        [
            want("base", "runtime", "base"),
            want("cli", "runtime", "base"),
            want("web", "runtime", "base"),
        ]
    );
    assert_eq!(v[2]["chain"][0]["reason"], "pinned in the base recipe");
    assert_eq!(v[2]["shipped"], true);

    // By file: the package whose data.tar has it (a /lib path matches its
    // merged-/usr twin), then every image shipping that package.
    let o = run(imgforge()
        .current_dir(&t)
        .args([
            "query",
            "recipes",
            "--no-apt",
            "--file",
            "/lib/libssl.so.3",
            "--mirror",
        ])
        .arg(&m));
    assert!(o.status.success(), "{}", text(&o));
    let s = stdout(&o);
    assert!(s.contains("cli (runtime): libssl3 3.0.22"), "{s}");
    assert!(s.contains("web (runtime): libssl3 3.0.22"), "{s}");
    let o = run(imgforge()
        .current_dir(&t)
        .args([
            "query",
            "recipes",
            "--no-apt",
            "--file",
            "/etc/none",
            "--mirror",
        ])
        .arg(&m));
    assert!(!o.status.success());
    assert!(
        text(&o).contains("no package shipped by an image"),
        "{}",
        text(&o)
    );
    assert!(text(&o).contains("help:"), "{}", text(&o));

    // A version the lock does not have, and a package it does not have.
    let o = run(imgforge()
        .current_dir(&t)
        .args(["query", "recipes", "--package", "libssl3=1.1"]));
    assert!(!o.status.success());
    assert!(
        text(&o).contains("the lock has it at 3.0.22"),
        "{}",
        text(&o)
    );
    let o = run(imgforge()
        .current_dir(&t)
        .args(["query", "recipes", "--package", "nothere"]));
    assert!(!o.status.success());
    assert!(text(&o).contains("help:"), "{}", text(&o));

    // A lock older than the recipes still answers, with a warning.
    write(
        &t.join("recipes/web.toml"),
        "[image]\nname = \"web\"\ntag = \"1\"\n",
    );
    let o = run(imgforge()
        .current_dir(&t)
        .args(["query", "recipes", "--package", "libweb1"]));
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        stdout(&o).contains("web (runtime): libweb1 1.4"),
        "{}",
        text(&o)
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("does not match the recipes"), "{err}");
}

#[test]
fn add_of_a_version_the_sources_lack_lists_theirs_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let m = query_mirror(&tmp.path().join("mirror"));
    let t = tmp.path().join("tree");
    query_tree(&t);
    let recipe = std::fs::read_to_string(t.join("recipes/web.toml")).unwrap();
    let o = run(imgforge()
        .current_dir(&t)
        .args([
            "add",
            "libssl3=1.1.1",
            "--image",
            "web",
            "--no-apt",
            "--mirror",
        ])
        .arg(&m));
    assert!(!o.status.success());
    let err = text(&o);
    assert!(
        err.contains("libssl3 1.1.1 is not in the configured sources; they have 3.0.22"),
        "{err}"
    );
    assert!(err.contains("help: add libssl3=3.0.22"), "{err}");
    let o = run(imgforge()
        .current_dir(&t)
        .args(["add", "nope", "--image", "web", "--no-apt", "--mirror"])
        .arg(&m));
    assert!(
        text(&o).contains("nope is not in the configured sources"),
        "{}",
        text(&o)
    );
    let o = run(imgforge()
        .current_dir(&t)
        .args(["add", "cli", "--image", "nosuch", "--no-apt", "--mirror"])
        .arg(&m));
    assert!(
        text(&o).contains("the tree's images: cli, web"),
        "{}",
        text(&o)
    );
    // A pin the sources have but that cannot be resolved: the recipe is put back.
    let o = run(imgforge()
        .current_dir(&t)
        .args(["add", "broken", "--image", "web", "--no-apt", "--mirror"])
        .arg(&m));
    assert!(!o.status.success());
    assert!(text(&o).contains("ghost"), "{}", text(&o));
    assert!(text(&o).contains("Restored"), "{}", text(&o));
    assert_eq!(
        std::fs::read_to_string(t.join("recipes/web.toml")).unwrap(),
        recipe
    );
}

/// A mirror for a tree started from nothing: some of the base's packages
/// (base-files, which must name a real Debian release, is left out) and
/// two packages to add, one in two versions.
fn first_hour_mirror(dir: &Path) -> std::path::PathBuf {
    mirror(
        dir,
        &[
            Deb::new("libc6", "2.36-9").entry(T::File("./usr/lib/libc.txt", b"c\n", 0o644)),
            Deb::new("netbase", "6.4"),
            Deb::new("tzdata", "2025a-0"),
            Deb::new("hello", "2.10-3")
                .field("Depends", "libc6 (>= 2.34)")
                .entry(T::File("./usr/share/hello.txt", b"hello\n", 0o644)),
            Deb::new("hello", "2.10-2").field("Depends", "libc6"),
            Deb::new("jq", "1.6-2.1").field("Depends", "libonig5, libc6"),
            Deb::new("libonig5", "6.9.8-1"),
        ],
    )
}

#[test]
fn init_then_add_two_packages_then_build_from_an_empty_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let m = first_hour_mirror(&tmp.path().join("mirror"));
    let p = tmp.path().join("project");
    let cmd = |args: &[&str]| {
        let mut c = imgforge();
        c.current_dir(&p)
            .args(args)
            .arg("--no-apt")
            .arg("--mirror")
            .arg(&m);
        run(&mut c)
    };
    std::fs::create_dir_all(&p).unwrap();
    let o = cmd(&["init"]);
    assert!(o.status.success(), "{}", text(&o));
    let base = std::fs::read_to_string(p.join("base/base.toml")).unwrap();
    assert!(
        base.contains("# the C library every binary needs\nlibc6 = \"2.36-9\"\n"),
        "{base}"
    );
    assert!(base.contains("tzdata = \"2025a-0\""), "{base}");
    assert!(
        base.contains("Not in the sources when this file was written: base-files"),
        "{base}"
    );
    let o = cmd(&["init"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("already exists"), "{}", text(&o));
    assert_eq!(
        std::fs::read_to_string(p.join("base/base.toml")).unwrap(),
        base
    );

    let o = cmd(&["add", "hello", "jq", "--image", "example", "--build"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = stdout(&o);
    for line in [
        "  + hello 2.10-3 (",
        "  + jq 1.6-2.1 (",
        "  + libonig5 6.9.8-1 (",
    ] {
        assert!(out.contains(line), "{line}: {out}");
    }
    assert!(out.contains("example: 3 -> 6 packages"), "{out}");
    let recipe = std::fs::read_to_string(p.join("recipes/example.toml")).unwrap();
    assert!(
        recipe.contains("# pins the version the sources have"),
        "comments kept: {recipe}"
    );
    assert!(
        recipe.contains("came in.\n[packages]\nhello = \"2.10-3\"\njq = \"1.6-2.1\"\n\n[config]"),
        "{recipe}"
    );

    assert!(p.join("out/index.json").is_file(), "add --build built");
    let o = cmd(&["build", "recipes", "-q", "--locked"]);
    assert!(o.status.success(), "{}", text(&o));

    let o = cmd(&["remove", "jq", "--image", "example"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = stdout(&o);
    assert!(out.contains("  - libonig5 6.9.8-1 ("), "{out}");
    assert!(out.contains("example: 6 -> 4 packages"), "{out}");
    let o = cmd(&["remove", "jq", "--image", "example"]);
    assert!(text(&o).contains("jq is not pinned in"), "{}", text(&o));
}
