//! The build plan: unchanged rebuilds reuse every step and read no package,
//! a change rebuilds only the steps it reaches, layers follow source
//! packages under the budget, and digests never depend on the store.

use crate::common::{copy_examples, imgforge, run, text};
use crate::debgen::{Deb, T};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Every file under `dir` (relative path -> bytes).
pub(crate) fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for e in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let e = e.unwrap();
        if e.file_type().is_file() {
            let rel = e
                .path()
                .strip_prefix(dir)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            out.insert(rel, std::fs::read(e.path()).unwrap());
        }
    }
    out
}

/// `name:tag` -> manifest JSON.
fn manifests(out: &Path) -> BTreeMap<String, Value> {
    let index: Value =
        serde_json::from_slice(&std::fs::read(out.join("index.json")).unwrap()).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let name = d["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .unwrap()
                .to_string();
            let hex = d["digest"].as_str().unwrap().trim_start_matches("sha256:");
            let m =
                serde_json::from_slice(&std::fs::read(out.join("blobs/sha256").join(hex)).unwrap())
                    .unwrap();
            (name, m)
        })
        .collect()
}

fn layer_digests(m: &Value) -> Vec<String> {
    m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect()
}

/// The `Steps` status line of a build.
pub(crate) fn steps_line(t: &str) -> String {
    t.lines()
        .find(|l| l.trim_start().starts_with("Steps"))
        .unwrap_or_else(|| panic!("no Steps line:\n{t}"))
        .to_string()
}

/// A base of synthetic packages (no maintainer scripts: no toolset needed)
/// and an `app` image, pins given; the mirror holds `debs`.
pub(crate) fn synthetic_tree(
    dir: &Path,
    base: &[(&str, &str)],
    app: &[(&str, &str)],
    debs: &[Deb],
) {
    let mut b = String::from(
        "[image]\nname = \"base\"\ntag = \"t1\"\nfrom = \"scratch\"\nsource-date-epoch = 0\n\n\
         [source]\napt = false\narch = \"amd64\"\ndistro = \"debian-12\"\n\n[packages]\n",
    );
    for (n, v) in base {
        b.push_str(&format!("{n} = \"{v}\"\n"));
    }
    let mut a = String::from("[image]\nname = \"app\"\ntag = \"1\"\n\n[packages]\n");
    for (n, v) in app {
        a.push_str(&format!("{n} = \"{v}\"\n"));
    }
    std::fs::create_dir_all(dir.join("base")).unwrap();
    std::fs::create_dir_all(dir.join("recipes")).unwrap();
    std::fs::write(dir.join("base/base.toml"), b).unwrap();
    std::fs::write(dir.join("recipes/app.toml"), a).unwrap();
    let _ = std::fs::remove_dir_all(dir.join("mirror"));
    crate::debgen::mirror(&dir.join("mirror"), debs);
}

pub(crate) fn pkg(name: &str, version: &str, source: &str, body: &'static [u8]) -> Deb {
    let path: &'static str = Box::leak(format!("./usr/share/{name}").into_boxed_str());
    Deb::new(name, version)
        .field("Source", source)
        .entry(T::File(path, body, 0o644))
}

/// Build the examples copied to `dir` from `mirror`, locked, with `cache`;
/// the output text (the build must succeed).
fn build_examples(dir: &Path, mirror: &Path, out: &str, cache: &str) -> String {
    let o = run(imgforge()
        .current_dir(dir)
        .env_remove("SOURCE_DATE_EPOCH")
        .args(["build", "recipes", "--no-apt", "--locked", "--cache", cache])
        .args(["--out", out, "--mirror"])
        .arg(mirror));
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    t
}

fn build_synthetic(dir: &Path, out: &str, extra: &[&str]) -> String {
    let o = run(imgforge()
        .current_dir(dir)
        .env_remove("SOURCE_DATE_EPOCH")
        .args([
            "build", "recipes", "--mirror", "mirror", "--no-apt", "--cache", "cache", "--out", out,
        ])
        .args(extra));
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    t
}

#[test]
fn plan_update_of_one_source_package_changes_only_its_layer() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let debs = vec![
        pkg("liba1", "1.0", "a", b"a1\n"),
        pkg("a-tools", "1.0", "a", b"a-tools\n"),
        pkg("libb", "1.0", "b", b"b old\n"),
        pkg("libb", "2.0", "b", b"b new\n"),
        pkg("appbin", "1.0", "app", b"app\n"),
    ];
    synthetic_tree(
        dir,
        &[("liba1", "1.0"), ("a-tools", "1.0"), ("libb", "1.0")],
        &[("appbin", "1.0")],
        &debs,
    );
    build_synthetic(dir, "out1", &[]);
    let before = manifests(&dir.join("out1"));
    // root, source a (liba1 + a-tools), source b.
    assert_eq!(
        layer_digests(&before["base:t1"]).len(),
        3,
        "{:#}",
        before["base:t1"]
    );
    assert_eq!(layer_digests(&before["app:1"]).len(), 4);

    synthetic_tree(
        dir,
        &[("liba1", "1.0"), ("a-tools", "1.0"), ("libb", "2.0")],
        &[("appbin", "1.0")],
        &debs,
    );
    let t = build_synthetic(dir, "out2", &[]);
    let after = manifests(&dir.join("out2"));
    let (b, a) = (
        layer_digests(&before["base:t1"]),
        layer_digests(&after["base:t1"]),
    );
    assert_eq!(a[0], b[0], "the merged-/usr root must not change");
    assert_eq!(
        a[1], b[1],
        "source a's layer must not change when only b moved"
    );
    assert_ne!(a[2], b[2], "source b's layer must change");
    let (b, a) = (
        layer_digests(&before["app:1"]),
        layer_digests(&after["app:1"]),
    );
    assert_eq!(
        a[3], b[3],
        "the app's own layer is the same bytes on the updated base"
    );
    assert!(
        steps_line(&t).contains("layer 3/4"),
        "only b's layer runs again: {}",
        steps_line(&t)
    );
}

#[test]
fn plan_noop_rebuild_of_synthetic_tree_reads_no_package() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let debs = vec![
        pkg("liba1", "1.0", "a", b"a1\n"),
        pkg("appbin", "1.0", "app", b"app\n"),
    ];
    synthetic_tree(dir, &[("liba1", "1.0")], &[("appbin", "1.0")], &debs);
    let first = build_synthetic(dir, "out", &["--bundle", "b1.tar"]);
    assert!(!steps_line(&first).contains(" ran 0 "), "{first}");
    let a = files(&dir.join("out"));
    let second = build_synthetic(dir, "out", &["--bundle", "b2.tar"]);
    let line = steps_line(&second);
    assert!(
        line.contains("ran 0 ") && line.contains(" 0 package(s) read"),
        "{line}"
    );
    assert_eq!(
        a,
        files(&dir.join("out")),
        "a no-op rebuild must write the same bytes"
    );
    assert_eq!(
        std::fs::read(dir.join("b1.tar")).unwrap(),
        std::fs::read(dir.join("b2.tar")).unwrap()
    );
    // A fresh store gives the same bytes.
    let fresh = run(imgforge()
        .current_dir(dir)
        .env_remove("SOURCE_DATE_EPOCH")
        .args([
            "build", "recipes", "--mirror", "mirror", "--no-apt", "--cache", "cache2", "--out",
            "out3",
        ]));
    assert!(fresh.status.success(), "{}", text(&fresh));
    assert_eq!(
        a,
        files(&dir.join("out3")),
        "two clean stores, different bytes"
    );
}

/// Step keys name the sources imgforge was built from, never the binary
/// file: a copy of the same binary elsewhere, made later (as another CI
/// runner's or a reinstalled one), reuses every step.
#[test]
fn plan_a_copy_of_the_binary_made_later_reuses_every_step() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let debs = vec![
        pkg("liba1", "1.0", "a", b"a1\n"),
        pkg("appbin", "1.0", "app", b"app\n"),
    ];
    synthetic_tree(dir, &[("liba1", "1.0")], &[("appbin", "1.0")], &debs);
    let first = build_synthetic(dir, "out", &[]);
    assert!(!steps_line(&first).contains(" ran 0 "), "{first}");
    let copy = dir.join("elsewhere/imgforge");
    std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_imgforge"), &copy).unwrap();
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
    std::fs::File::options()
        .append(true)
        .open(&copy)
        .unwrap()
        .set_modified(later)
        .unwrap();
    let o = run(std::process::Command::new(&copy)
        .current_dir(dir)
        .env_remove("SOURCE_DATE_EPOCH")
        .args([
            "build", "recipes", "--mirror", "mirror", "--no-apt", "--cache", "cache",
        ])
        .args(["--out", "out2"]));
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(steps_line(&t).contains(" ran 0 "), "{t}");
    assert_eq!(files(&dir.join("out")), files(&dir.join("out2")));
}

#[test]
fn plan_gc_keeps_what_the_last_build_used_and_drops_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let debs = vec![
        pkg("liba1", "1.0", "a", b"a1\n"),
        pkg("libb", "1.0", "b", b"b old\n"),
        pkg("libb", "2.0", "b", b"b new\n"),
        pkg("appbin", "1.0", "app", b"app\n"),
    ];
    synthetic_tree(
        dir,
        &[("liba1", "1.0"), ("libb", "1.0")],
        &[("appbin", "1.0")],
        &debs,
    );
    build_synthetic(dir, "out1", &[]);
    // libb 2.0: the layers and records of 1.0 are no longer used.
    synthetic_tree(
        dir,
        &[("liba1", "1.0"), ("libb", "2.0")],
        &[("appbin", "1.0")],
        &debs,
    );
    build_synthetic(dir, "out2", &[]);
    let blobs = || {
        std::fs::read_dir(dir.join("cache/plan/blobs/sha256"))
            .unwrap()
            .count()
    };
    let before = blobs();
    let gc = |extra: &[&str]| {
        let o = run(imgforge()
            .current_dir(dir)
            .args(["gc", "recipes", "--cache", "cache"])
            .args(extra));
        let t = text(&o);
        assert!(o.status.success(), "{t}");
        t
    };
    let t = gc(&["--dry-run"]);
    assert!(t.contains("step store: kept "), "{t}");
    assert!(t.contains("would remove"), "{t}");
    assert_eq!(blobs(), before, "a dry run removes nothing");
    let t = gc(&[]);
    assert!(t.contains("blobs/sha256 "), "the old layer blobs go: {t}");
    assert!(blobs() < before, "{t}");
    // What the last build used is all there: nothing is read or run again.
    let t = build_synthetic(dir, "out3", &[]);
    assert!(t.contains("ran 0 "), "{}", steps_line(&t));
    assert!(t.contains("0 package(s) read"), "{}", steps_line(&t));
    assert_eq!(files(&dir.join("out2")), files(&dir.join("out3")));
    // A tree never built with this cache keeps nothing, and gc says so.
    let elsewhere = dir.join("recipes-elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    for f in ["app.toml", "imgforge.lock"] {
        std::fs::copy(dir.join("recipes").join(f), elsewhere.join(f)).unwrap();
    }
    let t = gc(&["recipes-elsewhere"]);
    assert!(
        t.contains("no build of recipes-elsewhere is recorded"),
        "{t}"
    );
}

/// A package of `source` shipping `path` with `body`.
fn shipping(name: &str, source: &str, path: &'static str, body: &'static [u8]) -> Deb {
    Deb::new(name, "1.0")
        .field("Source", source)
        .entry(T::Dir("./usr/share/common/", 0o755))
        .entry(T::File(path, body, 0o644))
}

#[test]
fn plan_two_layers_shipping_one_path_differently_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let path = "./usr/share/common/file";
    let debs = vec![
        shipping("liba", "a", path, b"from a\n"),
        shipping("libb", "b", path, b"from b\n"),
        shipping("appbin", "app", path, b"from app\n"),
        shipping("appsame", "same", path, b"from a\n"),
    ];
    // Different source packages: different layers of one image.
    for (base, app, layers, other) in [
        (vec![("liba", "1.0"), ("libb", "1.0")], vec![], "16", "libb"),
        (
            vec![("liba", "1.0")],
            vec![("appbin", "1.0")],
            "16",
            "appbin",
        ),
        (
            vec![("liba", "1.0")],
            vec![("appbin", "1.0")],
            "single",
            "appbin",
        ),
    ] {
        synthetic_tree(dir, &base, &app, &debs);
        let o = run(imgforge()
            .current_dir(dir)
            .args(["build", "recipes", "--mirror", "mirror", "--no-apt"])
            .args(["--cache", "cache", "--out", "out", "--layers", layers]));
        let t = text(&o);
        assert_eq!(o.status.code(), Some(1), "{t}");
        assert!(
            t.contains(&format!(
                "\"usr/share/common/file\" is shipped by both liba and {other} with different content"
            )),
            "{t}"
        );
        assert!(t.contains("help: "), "{t}");
        assert!(!dir.join("out").exists(), "nothing half-written: {t}");
    }
    // The same bytes from two layers are allowed, as within one layer.
    synthetic_tree(dir, &[("liba", "1.0")], &[("appsame", "1.0")], &debs);
    build_synthetic(dir, "out", &[]);
}

#[test]
fn plan_layers_single_keeps_one_package_layer_per_image() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let debs = vec![
        pkg("liba1", "1.0", "a", b"a1\n"),
        pkg("libb", "1.0", "b", b"b\n"),
        pkg("appbin", "1.0", "app", b"app\n"),
        pkg("applib", "1.0", "applib", b"applib\n"),
    ];
    synthetic_tree(
        dir,
        &[("liba1", "1.0"), ("libb", "1.0")],
        &[("appbin", "1.0"), ("applib", "1.0")],
        &debs,
    );
    build_synthetic(dir, "single", &["--layers", "single"]);
    let m = manifests(&dir.join("single"));
    assert_eq!(layer_digests(&m["base:t1"]).len(), 1);
    assert_eq!(layer_digests(&m["app:1"]).len(), 2);
    // A budget of 4: the base keeps its root and one package layer (half
    // the budget less three, at least one); the app one more.
    build_synthetic(dir, "four", &["--layers", "4"]);
    let m = manifests(&dir.join("four"));
    assert_eq!(layer_digests(&m["base:t1"]).len(), 2, "{:#}", m["base:t1"]);
    assert!(layer_digests(&m["app:1"]).len() <= 4);
    let o = run(imgforge()
        .current_dir(dir)
        .args(["build", "recipes", "--layers", "2"]));
    assert!(!o.status.success());
    assert!(text(&o).contains("at least 4"), "{}", text(&o));
}

needs! { [has_fixture_debian, has_fixture_debian_essential, has_runc]
    "needs ../shared/debian, ../shared/debian-essential, runc";
    fn plan_examples_noop_and_one_change() {
        let mirror = crate::common::examples_mirror().expect("examples mirror");
        let tmp = copy_examples();
        let dir = tmp.path();
        let build = |out: &str| build_examples(dir, &mirror, out, "cache");
        build("out1");
        let t = build("out2");
        let line = steps_line(&t);
        assert!(
            line.contains("ran 0 ") && line.contains(" 0 package(s) read"),
            "{line}"
        );
        assert_eq!(files(&dir.join("out1")), files(&dir.join("out2")));
        // One change: a file added to python.
        std::fs::write(dir.join("recipes/extra.txt"), "extra\n").unwrap();
        let p = dir.join("recipes/python.toml");
        let mut r = std::fs::read_to_string(&p).unwrap();
        r.push_str("\n[[files]]\nsrc = \"extra.txt\"\ndest = \"/etc/extra.txt\"\n");
        std::fs::write(&p, r).unwrap();
        let t = build("out3");
        let (a, b) = (manifests(&dir.join("out1")), manifests(&dir.join("out3")));
        for name in ["base:bookworm-12.15", "hello:1.0.0", "nginx:1.22.1"] {
            assert_eq!(
                a[name], b[name],
                "{name} changed although only python's recipe did"
            );
        }
        assert_ne!(a["python:3.11.2"], b["python:3.11.2"]);
        let (la, lb) = (
            layer_digests(&a["python:3.11.2"]),
            layer_digests(&b["python:3.11.2"]),
        );
        let common = lb.iter().filter(|d| la.contains(d)).count();
        assert!(
            common + 2 >= lb.len(),
            "python rebuilt more than its files and configuration layers: {la:?} -> {lb:?}"
        );
        assert!(
            !steps_line(&t).contains("build stage 0/"),
            "hello's stage must be reused: {t}"
        );
    }
}

/// Every entry of `deb`'s data.tar: path, size, content.
fn data_entries(
    deb: &Path,
    limits: &imgforge::deb::Limits,
) -> Result<Vec<(String, Vec<u8>)>, imgforge::deb::DebError> {
    use std::io::Read;
    imgforge::deb::with_data_tar(deb, limits, |dt| {
        let mut out = Vec::new();
        for e in dt.archive.entries().map_err(|e| dt.ctx.error(e))? {
            let mut e = e.map_err(|e| dt.ctx.error(e))?;
            let path = e.path().unwrap().to_string_lossy().into_owned();
            let mut bytes = Vec::new();
            e.read_to_end(&mut bytes).map_err(|e| dt.ctx.error(e))?;
            out.push((path, bytes));
        }
        Ok::<_, imgforge::deb::DebError>(out)
    })
}

fn copies(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| {
        d.filter(|e| {
            let n = e.as_ref().unwrap().file_name();
            !n.to_string_lossy().starts_with('.')
        })
        .count()
    })
}

#[test]
fn plan_a_package_is_decompressed_once_and_later_readers_get_the_same_bytes() {
    use imgforge::deb::{Limits, plain::PlainCache};
    let tmp = tempfile::tempdir().unwrap();
    let deb = Deb::new("two-files", "1.0")
        .entry(T::File("./usr/share/two/a", b"alpha\n", 0o644))
        .entry(T::File("./usr/bin/two", b"#!/bin/sh\necho two\n", 0o755))
        .write(tmp.path());
    let dir = tmp.path().join("plain");
    let cached = Limits {
        plain: Some(std::sync::Arc::new(PlainCache::new(&dir))),
        ..Default::default()
    };
    let direct = data_entries(&deb, &Limits::default()).unwrap();
    assert!(direct.len() >= 2, "{direct:?}");
    assert_eq!(data_entries(&deb, &cached).unwrap(), direct);
    assert_eq!(
        copies(&dir),
        1,
        "the first read leaves one decompressed copy"
    );
    // Later reads come from the copy: with the package file gone, a
    // cached read still answers the same, a direct read cannot.
    let bytes = std::fs::read(&deb).unwrap();
    std::fs::write(&deb, b"not a deb").unwrap();
    assert_eq!(data_entries(&deb, &cached).unwrap(), direct);
    assert!(data_entries(&deb, &Limits::default()).is_err());
    std::fs::write(&deb, bytes).unwrap();
    assert_eq!(copies(&dir), 1);
}

#[test]
fn plan_a_refused_package_leaves_no_decompressed_copy() {
    use imgforge::deb::{Limits, plain::PlainCache};
    static ZEROS: [u8; 1 << 20] = [0u8; 1 << 20];
    let tmp = tempfile::tempdir().unwrap();
    let deb = Deb::new("big", "1.0")
        .entry(T::File("./usr/share/big/zeros", &ZEROS, 0o644))
        .write(tmp.path());
    let dir = tmp.path().join("plain");
    let capped = Limits {
        data_bytes: 64 << 10,
        plain: Some(std::sync::Arc::new(PlainCache::new(&dir))),
        ..Default::default()
    };
    for _ in 0..2 {
        let e = data_entries(&deb, &capped).unwrap_err().to_string();
        assert!(e.contains("exceeds the size limit"), "{e}");
        assert_eq!(copies(&dir), 0, "a refused read must leave no copy");
    }
}

/// `pid start-time` of a process, as the build records its scratch owner.
fn identity(pid: u32) -> String {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 1..];
    format!("{pid} {}", rest.split_whitespace().nth(19).unwrap())
}

needs! { [has_root] "needs root (it mounts a tmpfs)";
    /// A scratch directory left by a killed build (its owner gone, a mount
    /// still inside) is unmounted and removed by the next build beside it; one
    /// whose owner still runs is left alone.
    fn plan_a_killed_builds_scratch_and_mounts_are_cleaned_up() {
        assert!(nix_root(), "this test needs root (it mounts a tmpfs)");
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let debs = vec![
            pkg("liba1", "1.0", "a", b"a1\n"),
            pkg("appbin", "1.0", "app", b"app\n"),
        ];
        synthetic_tree(dir, &[("liba1", "1.0")], &[("appbin", "1.0")], &debs);
        let stale = dir.join(".imgforge-scratch-killed");
        let rootfs = stale.join("c d/rootfs");
        std::fs::create_dir_all(&rootfs).unwrap();
        let mut child = Command::new("true").spawn().unwrap();
        let gone = identity(child.id());
        child.wait().unwrap();
        std::fs::write(stale.join("owner"), format!("{gone}\n")).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "tmpfs"])
            .arg(&rootfs)
            .status()
            .unwrap();
        assert!(st.success(), "mount a tmpfs");
        let live = dir.join(".imgforge-scratch-live");
        std::fs::create_dir(&live).unwrap();
        std::fs::write(live.join("owner"), identity(std::process::id())).unwrap();
        let t = build_synthetic(dir, "out", &[]);
        let mounted = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        if mounted.contains(".imgforge-scratch-killed") {
            let _ = Command::new("umount").arg("-l").arg(&rootfs).status();
            panic!("the stale mount is still there: {t}");
        }
        assert!(
            t.contains("Cleaned 1 scratch directory left by killed builds (1 mount(s) detached)"),
            "{t}"
        );
        assert!(!stale.exists(), "{t}");
        assert!(
            live.join("owner").is_file(),
            "a running owner's scratch stays"
        );
    }
}

needs! { [has_fixture_debian, has_fixture_debian_essential, has_runc]
    "needs ../shared/debian, ../shared/debian-essential, runc";
    /// Builds of the examples killed (SIGKILL, the main process only: its
    /// sandboxes are orphaned mid-step) at several points, each resuming on
    /// the store the last one left; the build after them gives the bytes of
    /// a build that was never interrupted.
    fn plan_builds_killed_at_any_point_then_rebuilt_give_the_reference_output() {
        let mirror = crate::common::examples_mirror().expect("examples mirror");
        let tmp = copy_examples();
        let dir = tmp.path();
        build_examples(dir, &mirror, "ref", "ref-cache");
        let reference = files(&dir.join("ref"));
        let mut killed = 0;
        for ms in [1500u64, 4000, 8000, 15000] {
            let mut child = imgforge()
                .current_dir(dir)
                .env_remove("SOURCE_DATE_EPOCH")
                .args(["build", "recipes", "--no-apt", "--locked", "--cache", "cache"])
                .args(["--out", "out", "--mirror"])
                .arg(&mirror)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(std::time::Duration::from_millis(ms));
            if child.try_wait().unwrap().is_none() {
                child.kill().unwrap();
                killed += 1;
            }
            child.wait().unwrap();
        }
        assert!(killed >= 2, "only {killed} build(s) were still running when killed");
        eprintln!("{killed} build(s) killed mid-way");
        build_examples(dir, &mirror, "out", "cache");
        assert_eq!(files(&dir.join("out")), reference, "after {killed} killed build(s)");
    }
}

/// A tmpfs of `size` mounted at `at`, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .unwrap();
        assert!(st.success(), "mount a tmpfs at {}", at.display());
        Tmpfs(at.to_path_buf())
    }

    fn resize(&self, size: &str) {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(st.success(), "remount {}", self.0.display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// `n` bytes no compressor shrinks (xorshift), leaked for a `Deb` entry.
fn noise(n: usize, seed: u64) -> &'static [u8] {
    let mut x = seed | 1;
    let v: Vec<u8> = (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect();
    Box::leak(v.into_boxed_slice())
}

needs! { [has_root] "needs root (it mounts a tmpfs)";
    /// A full disk under the cache, then under the output: each build ends in
    /// an error naming a path there and saying the device is full, the
    /// previous output stays as it was, and once space is freed the next
    /// build (same cache) succeeds with the reference bytes: nothing half
    /// written was taken for a result.
    fn plan_a_full_disk_is_an_error_and_poisons_nothing() {
        assert!(nix_root(), "this test needs root (it mounts a tmpfs)");
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let debs = vec![
            pkg("liba1", "1.0", "a", noise(3 << 20, 7)),
            pkg("appbin", "1.0", "app", noise(1 << 20, 9)),
        ];
        synthetic_tree(dir, &[("liba1", "1.0")], &[("appbin", "1.0")], &debs);
        let build = |out: &str, cache: &str| {
            run(imgforge()
                .current_dir(dir)
                .env_remove("SOURCE_DATE_EPOCH")
                .args(["build", "recipes", "--mirror", "mirror", "--no-apt"])
                .args(["--cache", cache, "--out", out]))
        };
        let o = build("ref", "ref-cache");
        assert!(o.status.success(), "{}", text(&o));
        let reference = files(&dir.join("ref"));
        // The output is there from an earlier build; the cache fills up.
        std::fs::rename(dir.join("ref"), dir.join("out")).unwrap();
        let cache = Tmpfs::mount(&dir.join("cache"), "2m");
        let o = build("out", "cache");
        let t = text(&o);
        assert!(!o.status.success(), "a build into a full cache succeeded:\n{t}");
        assert!(t.contains("No space left on device"), "{t}");
        assert!(t.contains(&dir.join("cache").display().to_string()), "the full path is named:\n{t}");
        assert_eq!(files(&dir.join("out")), reference, "the old output changed");
        cache.resize("200m");
        let o = build("out", "cache");
        assert!(o.status.success(), "after freeing space:\n{}", text(&o));
        assert_eq!(files(&dir.join("out")), reference);
        // The output's file system fills up: nothing is left half written.
        let small = Tmpfs::mount(&dir.join("small"), "1m");
        let o = build("small/out", "cache");
        let t = text(&o);
        assert!(!o.status.success(), "a build into a full output succeeded:\n{t}");
        assert!(t.contains("No space left on device"), "{t}");
        assert!(!dir.join("small/out").exists(), "a half-written output is in place:\n{t}");
        small.resize("100m");
        let o = build("small/out", "cache");
        assert!(o.status.success(), "after freeing space:\n{}", text(&o));
        assert_eq!(files(&dir.join("small/out")), reference);
        drop(small);
        drop(cache);
    }
}

fn nix_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

needs! { [has_fixture_debian, has_fixture_debian_essential, has_runc]
    "needs ../shared/debian, ../shared/debian-essential, runc";
    /// A debconf answer changed in the base: every configuration runs again,
    /// taking each package's `dpkg -L` list from the store (remembered by the
    /// first build), and the result is the same bytes as a build of the changed
    /// tree with an empty store.
    fn plan_reconfigure_from_remembered_file_lists_matches_a_fresh_store() {
        let mirror = crate::common::examples_mirror().expect("examples mirror");
        let tmp = copy_examples();
        let dir = tmp.path();
        let build = |out: &str, cache: &str| build_examples(dir, &mirror, out, cache);
        build("out1", "cache");
        let lists = dir.join("cache/plan/dpkg-lists/v1");
        let remembered = std::fs::read_dir(&lists).map(|d| d.count()).unwrap_or(0);
        assert!(remembered > 50, "{remembered} lists in {}", lists.display());
        let base = dir.join("base/base.toml");
        let mut text = std::fs::read_to_string(&base).unwrap();
        text.push_str(
            "\n[debconf]\n\"tzdata/Areas\" = \"Europe\"\n\"tzdata/Zones/Europe\" = \"Paris\"\n",
        );
        std::fs::write(&base, text).unwrap();
        let t = build("out2", "cache");
        assert!(steps_line(&t).contains("configure 0/"), "{t}");
        build("out3", "fresh-cache");
        assert_eq!(files(&dir.join("out2")), files(&dir.join("out3")));
        assert_ne!(
            manifests(&dir.join("out1"))["base:bookworm-12.15"],
            manifests(&dir.join("out2"))["base:bookworm-12.15"]
        );
    }
}
