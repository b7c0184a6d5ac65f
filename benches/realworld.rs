//! Real-world benchmark: the ten package sets of `../shared/real-world`
//! (postgresql, redis, apache2, flask, openjdk17, nodejs, nginx-full, git,
//! curl + jq, php-fpm) built as one recipes tree on the example base, beside
//! the apt way on the same packages at the same versions, in the same run.
//!
//! `cargo bench --bench realworld` (root; needs the archive of the host's
//! apt configuration once, to pin the sets and fetch their packages):
//! 1. pins every set to the archive's current versions
//!    (`imgforge update --into`) and vendors every locked `.deb` into a
//!    local mirror; every timed run below reads only that mirror;
//! 2. imgforge cold (empty store), no-op (same store), and one security
//!    update of a library every image shares: `libssl3` moved in the base to
//!    a rebuild of the same package under the next version;
//! 3. the apt way cold (`benches/apt-way.sh`: mmdebstrap for the base,
//!    buildah + `apt-get install` of each image's pinned packages).
//!
//! Prints a Markdown table: wall time, peak RSS, store size, and for the
//! update the bytes of new layers per image. With a registry
//! (`IMGFORGE_TEST_REGISTRY=HOST:PORT`), every step is uploaded to a fresh
//! repository (`--cache-to`) and a build with an empty store fetches them
//! (`--cache-from`). `IMGFORGE_BENCH_JOBS` sets
//! `--jobs`; `IMGFORGE_BENCH_APT=0` skips the apt way. Says what is missing
//! and exits when a fixture or tool is absent.

mod common;

use common::{copy_dir, measure};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_imgforge"))
}

fn run_ok(cmd: &mut Command, what: &str) -> bool {
    match cmd.output() {
        Ok(o) if o.status.success() => true,
        Ok(o) => {
            eprintln!("{what} failed:\n{}", String::from_utf8_lossy(&o.stderr));
            false
        }
        Err(e) => {
            eprintln!("{what}: {e}");
            false
        }
    }
}

/// (name, packages) of each set in `sets.tsv`.
fn sets(shared: &Path) -> Vec<(String, Vec<String>)> {
    let text = std::fs::read_to_string(shared.join("real-world/sets.tsv")).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let mut f = l.split('\t');
            let name = f.next().unwrap().to_string();
            let pkgs = f.next().unwrap().split_whitespace().map(String::from);
            (name, pkgs.collect())
        })
        .collect()
}

/// The seed tree (the example base, one recipe per set pinned to "0"),
/// pinned into `dir/tree` by `imgforge update --into`, its packages
/// vendored into `dir/mirror`.
fn pinned_tree(root: &Path, dir: &Path, all: &[(String, Vec<String>)]) -> Option<PathBuf> {
    let seed = dir.join("seed");
    copy_dir(&root.join("base"), &seed.join("base"));
    std::fs::create_dir_all(seed.join("recipes")).unwrap();
    for (name, pkgs) in all {
        let mut r = format!(
            "[image]\nname = \"rw-{name}\"\ntag = \"bench\"\nessential = true\n\n[packages]\n"
        );
        for p in pkgs {
            r.push_str(&format!("\"{p}\" = \"0\"\n"));
        }
        std::fs::write(seed.join(format!("recipes/{name}.toml")), r).unwrap();
    }
    let tree = dir.join("tree");
    pin_and_vendor(&seed, &tree, &dir.join("mirror"), &dir.join("fetch-cache")).then_some(tree)
}

/// `imgforge update --into tree` on `seed`, then `vendor mirror` of it.
fn pin_and_vendor(seed: &Path, tree: &Path, mirror: &Path, cache: &Path) -> bool {
    let mut update = bin();
    update
        .current_dir(seed)
        .args(["-q", "update", "recipes", "--into"]);
    let mut vendor = bin();
    vendor.current_dir(tree).args(["-q", "vendor"]).arg(mirror);
    run_ok(
        update.arg(tree).arg("--cache").arg(cache),
        "imgforge update (pins to the archive's current versions)",
    ) && run_ok(vendor.arg("--cache").arg(cache), "imgforge vendor")
}

/// The apt way needs apt in its base, which no set locks: a second tree
/// (the same base, one recipe of `apt`) pinned and vendored into
/// `dir/mirror-apt`.
fn apt_tools(root: &Path, dir: &Path) -> bool {
    for t in ["mmdebstrap", "buildah"] {
        if Command::new(t).arg("--version").output().is_err() {
            eprintln!("the apt way needs {t} on PATH (apt-get install {t}); not run");
            return false;
        }
    }
    let seed = dir.join("seed-apt");
    copy_dir(&root.join("base"), &seed.join("base"));
    std::fs::create_dir_all(seed.join("recipes")).unwrap();
    let r = "[image]\nname = \"apt-way-tools\"\ntag = \"bench\"\n\n[packages]\napt = \"0\"\n";
    std::fs::write(seed.join("recipes/apt.toml"), r).unwrap();
    let (tree, cache) = (dir.join("tree-apt"), dir.join("fetch-cache"));
    pin_and_vendor(&seed, &tree, &dir.join("mirror-apt"), &cache)
}

/// Each image's (layer digest, size) list, by image name.
fn layers(out: &Path) -> BTreeMap<String, Vec<(String, u64)>> {
    let read = |p: PathBuf| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    };
    let blob = |d: &serde_json::Value| {
        let d = d.as_str().unwrap();
        out.join("blobs/sha256").join(&d["sha256:".len()..])
    };
    let mut m = BTreeMap::new();
    for d in read(out.join("index.json"))["manifests"]
        .as_array()
        .unwrap()
    {
        let r = d["annotations"]["org.opencontainers.image.ref.name"]
            .as_str()
            .unwrap();
        let man = read(blob(&d["digest"]));
        let ls = man["layers"].as_array().unwrap().iter();
        let ls = ls.map(|l| {
            (
                l["digest"].as_str().unwrap().to_string(),
                l["size"].as_u64().unwrap(),
            )
        });
        m.insert(r.split(':').next().unwrap().to_string(), ls.collect());
    }
    m
}

fn tree_size(p: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => tree_size(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

/// The base's libssl3, rebuilt under the next version (same files, as a
/// security update that changes one library looks to every image), added
/// to a copy of the mirror; returns (mirror, new version).
fn ssl_update(dir: &Path, mirror: &Path, old: &str) -> (PathBuf, String) {
    let new = format!("{old}+bench1");
    let work = dir.join("repack");
    let deb = std::fs::read_dir(mirror.join("pool"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("libssl3_")
        })
        .expect("libssl3 in the vendored mirror");
    assert!(run_ok(
        Command::new("dpkg-deb").arg("-R").arg(&deb).arg(&work),
        "dpkg-deb -R"
    ));
    let control = work.join("DEBIAN/control");
    let c = std::fs::read_to_string(&control).unwrap();
    std::fs::write(
        &control,
        c.replace(
            &format!("\nVersion: {old}\n"),
            &format!("\nVersion: {new}\n"),
        ),
    )
    .unwrap();
    let m2 = dir.join("mirror2");
    std::fs::create_dir_all(m2.join("pool")).unwrap();
    for e in std::fs::read_dir(mirror.join("pool")).unwrap().flatten() {
        std::os::unix::fs::symlink(e.path(), m2.join("pool").join(e.file_name())).unwrap();
    }
    let out = m2.join(format!(
        "pool/libssl3_{}_amd64.deb",
        new.replace(':', "%3a")
    ));
    let mut b = Command::new("dpkg-deb");
    b.args(["--root-owner-group", "-Zxz", "-b"])
        .arg(&work)
        .arg(&out);
    assert!(run_ok(&mut b, "dpkg-deb -b"));
    let o = Command::new("apt-ftparchive")
        .current_dir(&m2)
        .args(["packages", "pool"])
        .output()
        .unwrap();
    assert!(o.status.success(), "apt-ftparchive packages");
    std::fs::write(m2.join("Packages"), o.stdout).unwrap();
    (m2, new)
}

/// A local apt repository (suite bookworm, main) of the vendored mirrors.
fn apt_repo(dir: &Path, mirrors: &[PathBuf]) -> PathBuf {
    let r = dir.join("repo");
    let bin = r.join("dists/bookworm/main/binary-amd64");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(r.join("pool")).unwrap();
    for m in mirrors {
        for e in std::fs::read_dir(m.join("pool")).unwrap().flatten() {
            let to = r.join("pool").join(e.file_name());
            if !to.exists() {
                std::fs::copy(e.path(), to).unwrap();
            }
        }
    }
    let o = Command::new("apt-ftparchive")
        .current_dir(&r)
        .args(["packages", "pool"])
        .output()
        .unwrap();
    assert!(o.status.success(), "apt-ftparchive packages");
    std::fs::write(bin.join("Packages"), o.stdout).unwrap();
    let mut rel = Command::new("apt-ftparchive");
    rel.current_dir(&r);
    for o in [
        "Suite=bookworm",
        "Codename=bookworm",
        "Components=main",
        "Architectures=amd64",
    ] {
        rel.arg("-o").arg(format!("APT::FTPArchive::Release::{o}"));
    }
    let o = rel.args(["release", "dists/bookworm"]).output().unwrap();
    assert!(o.status.success(), "apt-ftparchive release");
    std::fs::write(r.join("dists/bookworm/Release"), o.stdout).unwrap();
    r
}

/// The apt way's inputs: the base's pinned packages, and per image the
/// packages its lock adds to the base, pinned.
fn apt_inputs(dir: &Path, tree: &Path) -> (PathBuf, PathBuf) {
    let lock = imgforge::resolve::Lock::read(&tree.join("recipes/imgforge.lock")).unwrap();
    let pins = |img: &str| -> BTreeSet<String> {
        let p = &lock.get(img, "runtime").unwrap().packages;
        p.iter()
            .map(|p| format!("{}={}", p.name, p.version))
            .collect()
    };
    let base = pins("base");
    let (bp, sp) = (dir.join("base-pkgs"), dir.join("sets"));
    std::fs::write(
        &bp,
        base.iter().map(|p| format!("{p}\n")).collect::<String>(),
    )
    .unwrap();
    let mut sets = String::new();
    for img in lock
        .images
        .iter()
        .map(|i| i.name.clone())
        .collect::<BTreeSet<_>>()
    {
        if let Some(name) = img.strip_prefix("rw-") {
            let own: Vec<String> = pins(&img).difference(&base).cloned().collect();
            sets.push_str(&format!("{name} {}\n", own.join(" ")));
        }
    }
    std::fs::write(&sp, sets).unwrap();
    (bp, sp)
}

/// A repository of the loopback registry named by `IMGFORGE_TEST_REGISTRY`
/// that no earlier run used, for the remote step cache cases.
fn remote_repo() -> Option<String> {
    let host = std::env::var("IMGFORGE_TEST_REGISTRY").ok()?;
    let unique = tempfile::Builder::new().prefix("rw-").tempdir().ok()?;
    let name = unique.path().file_name()?.to_string_lossy().to_lowercase();
    let name = name.replace(|c: char| !c.is_ascii_alphanumeric(), "-");
    Some(format!("{host}/imgforge-bench/{name}"))
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let shared = root.join("../shared");
    if !shared.join("real-world/sets.tsv").is_file() {
        eprintln!("the real-world benchmark needs ../shared/real-world/sets.tsv; not run");
        return;
    }
    for t in ["dpkg-deb", "apt-ftparchive", "runc"] {
        if Command::new(t).arg("--version").output().is_err() {
            eprintln!("the real-world benchmark needs {t} on PATH; not run");
            return;
        }
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let all = sets(&shared);
    let Some(tree) = pinned_tree(&root, dir, &all) else {
        eprintln!("the real-world benchmark could not pin or fetch the sets; not run");
        return;
    };
    let mirror = dir.join("mirror");
    let jobs = std::env::var("IMGFORGE_BENCH_JOBS").unwrap_or_else(|_| {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .to_string()
    });
    let build_in = |out: &str, mirror: &Path, locked: bool, cache: &str, extra: &[&str]| {
        let mut c = bin();
        c.current_dir(&tree)
            .args(["-q", "build", "recipes", "--no-apt", "--jobs", &jobs]);
        if locked {
            c.arg("--locked");
        }
        c.arg("--mirror")
            .arg(mirror)
            .arg("--cache")
            .arg(dir.join(cache));
        measure(c.args(["--out", out]).args(extra))
    };
    let build =
        |out: &str, mirror: &Path, locked: bool| build_in(out, mirror, locked, "cache", &[]);
    eprintln!("imgforge: cold build of {} images", all.len() + 1);
    let cold = build("out-cold", &mirror, true);
    let store = tree_size(&dir.join("cache"));
    let noop = build("out-noop", &mirror, true);
    let remote = remote_repo().map(|repo| {
        eprintln!("imgforge: the steps uploaded to {repo}, then fetched into an empty store");
        let up = build_in("out-up", &mirror, true, "cache", &["--cache-to", &repo]);
        let fetched = build_in(
            "out-remote",
            &mirror,
            true,
            "cache-remote",
            &["--cache-from", &repo],
        );
        (up, fetched)
    });
    // The apt way installs what the cold build locked (read before the
    // update below moves libssl3).
    let apt = (std::env::var("IMGFORGE_BENCH_APT").as_deref() != Ok("0") && apt_tools(&root, dir))
        .then(|| apt_inputs(dir, &tree));
    let base_toml = tree.join("base/base.toml");
    let text = std::fs::read_to_string(&base_toml).unwrap();
    let old = text
        .lines()
        .find_map(|l| l.strip_prefix("libssl3 = \""))
        .map(|v| v.trim_end_matches('"').to_string())
        .expect("libssl3 pinned in base.toml");
    let (m2, new) = ssl_update(dir, &mirror, &old);
    std::fs::write(
        &base_toml,
        text.replace(
            &format!("libssl3 = \"{old}\""),
            &format!("libssl3 = \"{new}\""),
        ),
    )
    .unwrap();
    eprintln!("imgforge: libssl3 {old} -> {new}");
    let update = build("out-update", &m2, false);
    let (before, after) = (
        layers(&tree.join("out-cold")),
        layers(&tree.join("out-update")),
    );
    let mut per_image = Vec::new();
    for (img, ls) in &after {
        let had: BTreeSet<&String> = before
            .get(img)
            .into_iter()
            .flatten()
            .map(|l| &l.0)
            .collect();
        let new_bytes: u64 = ls.iter().filter(|l| !had.contains(&l.0)).map(|l| l.1).sum();
        let all_bytes: u64 = ls.iter().map(|l| l.1).sum();
        per_image.push(format!(
            "{img} {:.1}/{:.1} MB",
            new_bytes as f64 / 1e6,
            all_bytes as f64 / 1e6
        ));
    }
    println!(
        "| case ({} images, --jobs {jobs}) | wall (s) | peak RSS (MiB) |",
        after.len()
    );
    println!("|---|---|---|");
    println!(
        "| imgforge cold (empty store; store after: {:.0} MB) | {:.1} | {:.0} |",
        store as f64 / 1e6,
        cold.0,
        cold.1
    );
    println!("| imgforge no-op rebuild | {:.2} | {:.0} |", noop.0, noop.1);
    println!(
        "| imgforge after libssl3 moved in the base | {:.1} ({:.0}% of cold) | {:.0} |",
        update.0,
        100.0 * update.0 / cold.0,
        update.1
    );
    match remote {
        Some((up, fetched)) => {
            println!(
                "| imgforge warm store, uploading every step (--cache-to) | {:.1} | {:.0} |",
                up.0, up.1
            );
            println!(
                "| imgforge empty store, --cache-from the warmed registry | {:.1} ({:.0}% of cold) | {:.0} |",
                fetched.0,
                100.0 * fetched.0 / cold.0,
                fetched.1
            );
        }
        None => println!(
            "| (remote cache cases not run: no IMGFORGE_TEST_REGISTRY=HOST:PORT registry) | | |"
        ),
    }
    if let Some((bp, sp)) = apt {
        let repo = apt_repo(dir, &[mirror.clone(), dir.join("mirror-apt")]);
        let mut c = Command::new("bash");
        c.arg(root.join("benches/apt-way.sh"))
            .arg(&repo)
            .arg(&bp)
            .arg(&sp)
            .arg(dir.join("apt-out"));
        let apt = measure(&mut c);
        println!(
            "| the apt way, cold (mmdebstrap + buildah, apt-get install) | {:.1} | {:.0} |",
            apt.0, apt.1
        );
        println!(
            "\nimgforge cold is {:.1} times faster than the apt way in this run",
            apt.0 / cold.0
        );
    }
    println!("\nnew layer bytes per image after the libssl3 update (new / all):");
    for l in per_image {
        println!("- {l}");
    }
}
