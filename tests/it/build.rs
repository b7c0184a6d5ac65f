//! `imgforge build` end to end on the example recipes (issue "Deterministic
//! OCI images").
//!
//! Full builds are slow in debug (~50 s), so the examples are built ONCE per
//! test process ([`shared`]) and every tool test reads that output. The
//! determinism test builds a second time under perturbed conditions and
//! compares with the shared build, which is itself made under the "plain"
//! conditions (`--jobs 1`, umask 022, TZ=UTC, LANG=C, the fixture mirror).
//!
//! Tool tests skip (or fail under `IMGFORGE_REQUIRE_TOOLS=1`) when the
//! fixture or the tool is missing.

use crate::common::{copy_examples, imgforge, require_tool, run, text};
use crate::debgen::{Deb, T};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The shared build of the examples.
pub(crate) struct Shared {
    _tmp: tempfile::TempDir,
    /// The copied tree (recipes/, base/, the lock).
    pub(crate) tree: PathBuf,
    pub(crate) out: PathBuf,
    bundle: PathBuf,
    pub(crate) fixture: PathBuf,
}

impl Shared {
    fn lock(&self) -> imgforge::resolve::Lock {
        imgforge::resolve::Lock::read(&self.tree.join("recipes/imgforge.lock")).unwrap()
    }
}

/// Run `imgforge build` over `tree` with a controlled environment.
#[allow(clippy::too_many_arguments)]
fn build_examples(
    tree: &Path,
    mirror: &Path,
    out: &Path,
    bundle: &Path,
    cache: &Path,
    tmpdir: &Path,
    jobs: &str,
    umask: &str,
    tz: &str,
    lang: &str,
    extra: &[&str],
) -> std::process::Output {
    std::fs::create_dir_all(tmpdir).unwrap();
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(format!("umask {umask}; exec \"$@\""))
        .arg("sh")
        .arg(env!("CARGO_BIN_EXE_imgforge"))
        .args(["build", "recipes", "--no-apt", "--jobs", jobs])
        .arg("--mirror")
        .arg(mirror)
        .arg("--out")
        .arg(out)
        .arg("--bundle")
        .arg(bundle)
        .arg("--cache")
        .arg(cache)
        .args(extra)
        .current_dir(tree)
        .env_remove("SOURCE_DATE_EPOCH")
        .env("TMPDIR", tmpdir)
        .env("TZ", tz)
        .env("LANG", lang)
        .env("LC_ALL", lang);
    let t = std::time::Instant::now();
    let o = run(&mut c);
    eprintln!(
        "build (jobs {jobs}, umask {umask}) took {:.1}s",
        t.elapsed().as_secs_f64()
    );
    o
}

static SHARED: OnceLock<Option<Shared>> = OnceLock::new();

/// The examples built once (plain conditions), or `None` without the fixture.
pub(crate) fn shared() -> Option<&'static Shared> {
    SHARED
        .get_or_init(|| {
            let fixture = crate::common::examples_mirror()?;
            let tmp = copy_examples();
            let tree = tmp.path().to_path_buf();
            let out = tree.join("out");
            let bundle = tree.join("bundle.tar");
            let o = build_examples(
                &tree,
                &fixture,
                &out,
                &bundle,
                &tree.join("cache"),
                &tree.join("tmp"),
                "1",
                "022",
                "UTC",
                "C",
                &[],
            );
            assert!(o.status.success(), "shared build failed:\n{}", text(&o));
            Some(Shared {
                _tmp: tmp,
                tree,
                out,
                bundle,
                fixture,
            })
        })
        .as_ref()
}

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap_or_else(|e| panic!("{p:?}: {e}")))
        .unwrap_or_else(|e| panic!("{p:?}: {e}"))
}

fn blob(out: &Path, digest: &str) -> PathBuf {
    out.join("blobs/sha256")
        .join(digest.strip_prefix("sha256:").expect("sha256 digest"))
}

/// `name:tag` -> manifest JSON, from index.json.
fn manifests(out: &Path) -> BTreeMap<String, Value> {
    let index = read_json(&out.join("index.json"));
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let r = d["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .unwrap()
                .to_string();
            (r, read_json(&blob(out, d["digest"].as_str().unwrap())))
        })
        .collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Every file under `dir`, relative path -> bytes.
fn tree_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut m = BTreeMap::new();
    walk(dir, dir, &mut m);
    m
}

/// Copy a directory, giving every file and directory a different mtime.
fn copy_with_mtimes(from: &Path, to: &Path, mtime: std::time::SystemTime) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let t = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_with_mtimes(&e.path(), &t, mtime);
        } else {
            std::fs::copy(e.path(), &t).unwrap();
            let f = std::fs::File::options().write(true).open(&t).unwrap();
            f.set_times(
                std::fs::FileTimes::new()
                    .set_modified(mtime)
                    .set_accessed(mtime),
            )
            .unwrap();
        }
    }
    let d = std::fs::File::open(to).unwrap();
    let _ = d.set_modified(mtime);
}

// ---------------------------------------------------------------- 1. determinism

needs! { [has_fixture_debian, has_fixture_debian_essential]
    "needs ../shared/debian, ../shared/debian-essential";
    fn build_is_deterministic_under_perturbation() {
        let Some(s) = shared() else { return };
        let tmp = tempfile::tempdir().unwrap();
        // Another path for everything: tree, mirror (with other mtimes), out,
        // cache, TMPDIR; 8 jobs, umask 077, another zone and locale, roots
        // unpacked instead of mounted.
        let tree = tmp.path().join("elsewhere/tree");
        crate::common::copy_dir(&s.tree.join("base"), &tree.join("base"));
        crate::common::copy_dir(&s.tree.join("recipes"), &tree.join("recipes"));
        let mirror = tmp.path().join("mirror-copy");
        let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_007);
        copy_with_mtimes(&s.fixture, &mirror, when);
        let out = tmp.path().join("other/out-b");
        let bundle = tmp.path().join("other/b.tar");
        let o = build_examples(
            &tree,
            &mirror,
            &out,
            &bundle,
            &tmp.path().join("cache-b"),
            &tmp.path().join("tmpdir-b"),
            "8",
            "077",
            "Pacific/Chatham",
            "de_DE.UTF-8",
            // Roots unpacked, not mounted from shared layer trees: the
            // configuration layers and build stage must not notice.
            &["--unpack-roots"],
        );
        let t = text(&o);
        assert!(o.status.success(), "{t}");
        assert!(
            t.contains("Built hello build stage"),
            "the perturbed build reused a cached stage; it must run it:\n{t}"
        );

        let a = std::fs::read(s.out.join("index.json")).unwrap();
        let b = std::fs::read(out.join("index.json")).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&a),
            String::from_utf8_lossy(&b),
            "index.json differs"
        );
        let ba = tree_files(&s.out.join("blobs"));
        let bb = tree_files(&out.join("blobs"));
        assert_eq!(
            ba.keys().collect::<Vec<_>>(),
            bb.keys().collect::<Vec<_>>(),
            "blob sets differ"
        );
        for (k, v) in &ba {
            assert!(bb[k] == *v, "blob {k} differs in content");
        }
        for sub in ["sbom", "legal"] {
            let fa = tree_files(&s.out.join(sub));
            let fb = tree_files(&out.join(sub));
            assert_eq!(
                fa.keys().collect::<Vec<_>>(),
                fb.keys().collect::<Vec<_>>(),
                "{sub}/ file sets differ"
            );
            for (k, v) in &fa {
                assert!(
                    fb[k] == *v,
                    "{sub}/{k} differs:\n--- plain\n{}\n--- perturbed\n{}",
                    String::from_utf8_lossy(v)
                        .chars()
                        .take(2000)
                        .collect::<String>(),
                    String::from_utf8_lossy(&fb[k])
                        .chars()
                        .take(2000)
                        .collect::<String>()
                );
            }
        }
        // The whole output, then the bundle.
        let fa = tree_files(&s.out);
        let fb = tree_files(&out);
        let differ: Vec<&String> = fa
            .iter()
            .filter(|(k, v)| fb.get(*k) != Some(v))
            .map(|(k, _)| k)
            .collect();
        assert!(differ.is_empty(), "output files differ: {differ:?}");
        assert_eq!(fa.len(), fb.len());
        assert!(
            std::fs::read(&s.bundle).unwrap() == std::fs::read(&bundle).unwrap(),
            "bundles differ"
        );
    }
}

// ---------------------------------------------------------------- 5. structure

needs! { [has_fixture_debian, has_fixture_debian_essential, has_fixture_debian_index]
    "needs ../shared/debian, ../shared/debian-essential, ../shared/debian-index";
    fn build_layout_structure() {
        let Some(s) = shared() else { return };
        let ms = manifests(&s.out);
        let names: Vec<&str> = ms.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "base:bookworm-12.15",
                "hello:1.0.0",
                "nginx:1.22.1",
                "python:3.11.2"
            ]
        );
        let base_layer = ms["base:bookworm-12.15"]["layers"][0]["digest"].clone();
        let mut layers = BTreeSet::new();
        let mut configs = BTreeSet::new();
        let index = read_json(&s.out.join("index.json"));
        let manifest_digests: BTreeSet<String> = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["digest"].as_str().unwrap().to_string())
            .collect();
        for (r, m) in &ms {
            assert_eq!(
                m["layers"][0]["digest"], base_layer,
                "{r}: base layer differs"
            );
            assert_eq!(m["schemaVersion"], 2);
            let cfg_d = m["config"]["digest"].as_str().unwrap();
            configs.insert(cfg_d.to_string());
            let cfg = read_json(&blob(&s.out, cfg_d));
            assert_eq!(cfg["created"], "2025-01-01T00:00:00Z", "{r}");
            let diff_ids = cfg["rootfs"]["diff_ids"].as_array().unwrap();
            let ls = m["layers"].as_array().unwrap();
            assert_eq!(diff_ids.len(), ls.len(), "{r}");
            for (l, d) in ls.iter().zip(diff_ids) {
                let ld = l["digest"].as_str().unwrap();
                layers.insert(ld.to_string());
                let bytes = std::fs::read(blob(&s.out, ld)).unwrap();
                assert_eq!(format!("sha256:{}", sha256_hex(&bytes)), ld);
                assert_eq!(l["size"].as_u64(), Some(bytes.len() as u64));
                let mut tar = Vec::new();
                imgforge::layer::open_blob(&blob(&s.out, ld))
                    .unwrap()
                    .read_to_end(&mut tar)
                    .unwrap();
                assert_eq!(
                    d.as_str().unwrap(),
                    format!("sha256:{}", sha256_hex(&tar)),
                    "{r}: diff_id of {ld}"
                );
            }
        }
        let n = std::fs::read_dir(s.out.join("blobs/sha256"))
            .unwrap()
            .count();
        assert_eq!(
            n,
            layers.len() + configs.len() + manifest_digests.len(),
            "blobs/sha256 holds stray blobs"
        );
    }
}

/// Paths (no directories) of an image, from its layers.
fn image_paths(out: &Path, m: &Value) -> BTreeSet<String> {
    let mut set = BTreeSet::new();
    for l in m["layers"].as_array().unwrap() {
        let f = blob(out, l["digest"].as_str().unwrap());
        let mut a = tar::Archive::new(imgforge::layer::open_blob(&f).unwrap());
        for e in a.entries().unwrap() {
            let e = e.unwrap();
            if e.header().entry_type() != tar::EntryType::Directory {
                let p = String::from_utf8(e.path_bytes().into_owned()).unwrap();
                set.insert(p);
            }
        }
    }
    set
}

/// The non-directory paths a package puts into a layer (merged-/usr applied).
fn package_paths(deb: &Path, name: &str, spool: &Path) -> BTreeSet<String> {
    let limits = imgforge::deb::Limits::default();
    let control = imgforge::deb::read_control(deb, &limits).unwrap();
    let input = imgforge::layer::package::PackageInput {
        name: name.into(),
        deb: deb.to_path_buf(),
        control,
    };
    let opts = imgforge::layer::package::PackageOptions {
        source_date_epoch: 0,
        merged_usr: true,
        dpkg_metadata: true,
        limits,
    };
    imgforge::layer::package::package_entries(&input, spool, &opts)
        .unwrap()
        .into_iter()
        .filter(|e| e.kind != imgforge::layer::Kind::Dir)
        .map(|e| e.path)
        .collect()
}

needs! { [has_fixture_debian, has_fixture_debian_essential]
    "needs ../shared/debian, ../shared/debian-essential";
    fn build_hello_ships_no_build_stage_files() {
        let Some(s) = shared() else { return };
        let lock = s.lock();
        let ms = manifests(&s.out);
        let hello = image_paths(&s.out, &ms["hello:1.0.0"]);
        assert!(
            hello.contains("usr/local/bin/hello"),
            "hello binary missing"
        );
        let shipped: BTreeSet<&str> = lock
            .images
            .iter()
            .filter(|i| i.stage == "runtime" && (i.name == "base" || i.name == "hello"))
            .flat_map(|i| i.packages.iter().map(|p| p.name.as_str()))
            .collect();
        let build = lock.get("hello", "build").expect("hello build closure");
        let spool = tempfile::tempdir().unwrap();
        let mut leaked = Vec::new();
        let mut shipped_paths = BTreeSet::new();
        for i in lock
            .images
            .iter()
            .filter(|i| i.stage == "runtime" && (i.name == "base" || i.name == "hello"))
        {
            for p in &i.packages {
                let deb = s.fixture.join("pool").join(&p.filename);
                shipped_paths.extend(package_paths(&deb, &p.name, spool.path()));
            }
        }
        let mut build_only = 0;
        for p in build
            .packages
            .iter()
            .filter(|p| !shipped.contains(p.name.as_str()))
        {
            build_only += 1;
            let deb = s.fixture.join("pool").join(&p.filename);
            for path in package_paths(&deb, &p.name, spool.path()) {
                if hello.contains(&path) && !shipped_paths.contains(&path) {
                    leaked.push(format!("{path} (from {})", p.name));
                }
            }
        }
        assert!(build_only >= 3, "the build closure looks empty: {build:?}");
        assert!(!hello.contains("usr/bin/gcc-12"));
        assert!(
            leaked.is_empty(),
            "build-stage files in the hello image: {leaked:#?}"
        );
    }
}

// ---------------------------------------------------------------- 2. layout tools

needs! { [has_fixture_debian, has_fixture_debian_essential, has_oci_image_tool]
    "needs ../shared/debian, ../shared/debian-essential, `oci-image-tool` on PATH";
    fn build_layout_passes_oci_image_tool() {
        let Some(s) = shared() else { return };
        if !require_tool("oci-image-tool") {
            return;
        }
        // Debian's oci-image-tool (1.0.0~rc1) has no `--type imageLayout`
        // ("unimplemented"); `--type image` on a directory autodetects the
        // layout and validates every ref of index.json.
        let o = run(Command::new("oci-image-tool")
            .args(["validate", "--type", "image"])
            .arg(&s.out));
        let t = text(&o);
        assert!(o.status.success(), "{t}");
        assert!(t.contains("imageLayout"), "{t}");
        assert!(t.contains("Validation succeeded"), "{t}");
    }
}

needs! { [has_fixture_debian, has_fixture_debian_essential, has_skopeo]
    "needs ../shared/debian, ../shared/debian-essential, `skopeo` on PATH";
    fn build_layout_passes_skopeo_inspect() {
        let Some(s) = shared() else { return };
        if !require_tool("skopeo") {
            return;
        }
        let ms = manifests(&s.out);
        let index = read_json(&s.out.join("index.json"));
        for (r, _) in ms {
            // skopeo's oci transport splits DIR:REF at the first ':' after
            // the directory, so `oci:<out>:python:3.11.2` selects the ref.
            let o = run(Command::new("skopeo")
                .arg("inspect")
                .arg(format!("oci:{}:{r}", s.out.display())));
            let t = text(&o);
            assert!(o.status.success(), "skopeo inspect {r}: {t}");
            let v: Value = serde_json::from_slice(&o.stdout).unwrap();
            let want = index["manifests"]
                .as_array()
                .unwrap()
                .iter()
                .find(|d| d["annotations"]["org.opencontainers.image.ref.name"] == r.as_str())
                .unwrap()["digest"]
                .clone();
            assert_eq!(v["Digest"], want, "{r}");
            assert_eq!(v["Architecture"], "amd64");
            assert_eq!(v["Created"], "2025-01-01T00:00:00Z");
        }
    }
}

/// `umoci unpack` an image into a fresh bundle and return its path.
fn unpack(s: &Shared, r: &str, dir: &Path) -> PathBuf {
    let bundle = dir.join(r.replace(':', "_"));
    let o = run(Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:{r}", s.out.display()))
        .arg(&bundle));
    assert!(o.status.success(), "umoci unpack {r}: {}", text(&o));
    bundle
}

/// Run the bundle's process with `args` (no tty, plus `caps`) under runc.
fn runc_run(bundle: &Path, state: &Path, id: &str, args: &[&str], caps: &[&str]) -> (bool, String) {
    let cfg_path = bundle.join("config.json");
    let mut cfg = read_json(&cfg_path);
    cfg["process"]["terminal"] = Value::Bool(false);
    cfg["process"]["args"] = serde_json::json!(args);
    if let Some(c) = cfg["process"]["capabilities"].as_object_mut() {
        for set in c.values_mut() {
            let a = set.as_array_mut().unwrap();
            for cap in caps {
                if !a.iter().any(|x| x == cap) {
                    a.push(Value::String(cap.to_string()));
                }
            }
        }
    }
    std::fs::write(&cfg_path, serde_json::to_vec_pretty(&cfg).unwrap()).unwrap();
    let id = format!("imgforge-it-{id}-{}", std::process::id());
    let o = run(Command::new("runc")
        .arg("--root")
        .arg(state)
        .args(["run", "--bundle"])
        .arg(bundle)
        .arg(&id));
    (o.status.success(), text(&o))
}

/// Unpack `r` with umoci and run `args` in it under runc, with `caps` added.
fn run_image(
    r: &str,
    id: &str,
    args: &[&str],
    caps: &[&str],
) -> Option<(bool, String, PathBuf, tempfile::TempDir)> {
    let s = shared()?;
    if !require_tool("umoci") || !require_tool("runc") {
        return None;
    }
    let tmp = tempfile::tempdir().unwrap();
    let bundle = unpack(s, r, tmp.path());
    let (ok, t) = runc_run(&bundle, &tmp.path().join("runc-state"), id, args, caps);
    Some((ok, t, bundle, tmp))
}

needs! { [has_fixture_debian, has_fixture_debian_essential, has_runc, has_umoci]
    "needs ../shared/debian, ../shared/debian-essential, `runc` on PATH, `umoci` on PATH";
    fn build_python_runs_under_runc() {
        let Some((ok, t, ..)) = run_image(
            "python:3.11.2",
            "py",
            &["python3.11", "-c", "print(42)"],
            &[],
        ) else {
            return;
        };
        assert!(ok && t.trim() == "42", "{t}");
    }
}

needs! { [has_fixture_debian, has_fixture_debian_essential, has_runc, has_umoci]
    "needs ../shared/debian, ../shared/debian-essential, `runc` on PATH, `umoci` on PATH";
    fn build_hello_runs_under_runc() {
        let Some((ok, t, ..)) = run_image("hello:1.0.0", "hello", &["/usr/local/bin/hello"], &[])
        else {
            return;
        };
        assert!(ok && t.trim() == "Hello from imgforge!", "{t}");
    }
}

needs! { [has_fixture_debian, has_fixture_debian_essential, has_runc, has_umoci]
    "needs ../shared/debian, ../shared/debian-essential, `runc` on PATH, `umoci` on PATH";
    fn build_nginx_config_test_passes_under_runc() {
        // NOTES: nginx -t needs CAP_CHOWN, which umoci's default spec lacks.
        let Some((ok, t, bundle, _tmp)) = run_image(
            "nginx:1.22.1",
            "nginx",
            &["/usr/sbin/nginx", "-t"],
            &["CAP_CHOWN"],
        ) else {
            return;
        };
        let rootfs = bundle.join("rootfs");
        let missing: Vec<&str> = ["etc/passwd", "etc/group", "var/lib/nginx", "var/log/nginx"]
            .into_iter()
            .filter(|p| std::fs::symlink_metadata(rootfs.join(p)).is_err())
            .collect();
        assert!(
            ok && t.contains("test is successful"),
            "nginx -t failed; missing from the image: {missing:?}\n{t}"
        );
    }
}

// ---------------------------------------------------------------- 3. docker

fn docker_ready() -> bool {
    if !require_tool("docker") {
        return false;
    }
    let o = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output();
    match o {
        Ok(o) if o.status.success() => true,
        other => {
            let msg = format!(
                "this test needs a reachable docker daemon (`docker info` failed: {})",
                other.map(|o| text(&o)).unwrap_or_else(|e| e.to_string())
            );
            crate::common::missing(&msg)
        }
    }
}

needs! { [has_docker, has_fixture_debian, has_fixture_debian_essential]
    "needs `docker` on PATH, ../shared/debian, ../shared/debian-essential";
    fn build_bundle_loads_and_runs_in_docker() {
        let Some(s) = shared() else { return };
        if !docker_ready() {
            return;
        }
        let refs = [
            "base:bookworm-12.15",
            "hello:1.0.0",
            "nginx:1.22.1",
            "python:3.11.2",
        ];
        struct Cleanup<'a>(&'a [&'a str]);
        impl Drop for Cleanup<'_> {
            fn drop(&mut self) {
                let _ = Command::new("docker").arg("rmi").args(self.0).output();
            }
        }
        let _cleanup = Cleanup(&refs);
        let o = run(Command::new("docker").args(["load", "-i"]).arg(&s.bundle));
        let t = text(&o);
        assert!(o.status.success(), "docker load: {t}");
        for r in refs {
            assert!(
                t.contains(&format!("Loaded image: {r}")),
                "{r} not loaded: {t}"
            );
        }
        let o =
            run(Command::new("docker").args(["run", "--rm", "python:3.11.2", "-c", "print(42)"]));
        assert!(o.status.success(), "{}", text(&o));
        assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "42");
        let o = run(Command::new("docker").args(["run", "--rm", "hello:1.0.0"]));
        assert!(o.status.success(), "{}", text(&o));
        assert_eq!(
            String::from_utf8_lossy(&o.stdout).trim(),
            "Hello from imgforge!"
        );
    }
}

needs! { [has_fixture_debian, has_fixture_debian_essential, has_pyspdxtools, has_python_cyclonedx]
    "needs ../shared/debian, ../shared/debian-essential, `pyspdxtools` on PATH, python3 cyclonedx-python-lib";
    /// Every SBOM the examples' build writes (runtime and build stage, SPDX
    /// and CycloneDX, every image) passes both reference validators, and
    /// declares the license list it was written against.
    fn build_every_sbom_of_the_examples_validates() {
        let Some(s) = shared() else { return };
        let mut kinds = BTreeSet::new();
        let mut checked = 0;
        for img in ["base", "hello", "nginx", "python"] {
            let spdx = s.out.join(format!("sbom/{img}.spdx.json"));
            assert!(spdx.is_file(), "{} missing", spdx.display());
            for stem in [img.to_string(), format!("{img}.build")] {
                let (spdx, cdx) = (
                    s.out.join(format!("sbom/{stem}.spdx.json")),
                    s.out.join(format!("sbom/{stem}.cdx.json")),
                );
                if !spdx.is_file() && !cdx.is_file() {
                    continue;
                }
                let doc = read_json(&spdx);
                assert_eq!(
                    doc["creationInfo"]["licenseListVersion"].as_str(),
                    Some(imgforge::sbom::listed::list_version().as_str())
                );
                crate::sbom::validate_spdx(&spdx);
                crate::sbom::validate_cyclonedx(&cdx);
                kinds.insert(if stem.ends_with(".build") { "build" } else { "runtime" });
                checked += 2;
            }
        }
        // hello has a build stage: its build SBOMs are among those checked,
        // and one of its licenses is an id the validators do not know yet.
        let doc = read_json(&s.out.join("sbom/hello.build.spdx.json"));
        let tso = doc["hasExtractedLicensingInfos"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["licenseId"] == "LicenseRef-BSD-3-Clause-Tso");
        let tso = tso.expect("BSD-3-Clause-Tso is written as a LicenseRef");
        assert!(tso["extractedText"].as_str().unwrap().contains("Redistribution"));
        assert_eq!(kinds.len(), 2, "{kinds:?}");
        assert!(checked >= 10, "{checked} documents");
    }
}

// ---------------------------------------------------------------- 4. syft

needs! { [has_fixture_debian, has_fixture_debian_essential, has_syft]
    "needs ../shared/debian, ../shared/debian-essential, `syft` on PATH";
    fn build_syft_finds_every_package_of_the_python_image() {
        let Some(s) = shared() else { return };
        if !require_tool("syft") {
            return;
        }
        // syft 1.18's oci-dir source wants a layout with exactly one manifest:
        // make one (hard-linked blobs) holding only python.
        let tmp = tempfile::tempdir().unwrap();
        let one = tmp.path().join("python-layout");
        std::fs::create_dir_all(one.join("blobs/sha256")).unwrap();
        for e in std::fs::read_dir(s.out.join("blobs/sha256")).unwrap() {
            let e = e.unwrap();
            let dst = one.join("blobs/sha256").join(e.file_name());
            if std::fs::hard_link(e.path(), &dst).is_err() {
                std::fs::copy(e.path(), &dst).unwrap();
            }
        }
        std::fs::copy(s.out.join("oci-layout"), one.join("oci-layout")).unwrap();
        let mut index = read_json(&s.out.join("index.json"));
        index["manifests"]
            .as_array_mut()
            .unwrap()
            .retain(|d| d["annotations"]["org.opencontainers.image.ref.name"] == "python:3.11.2");
        std::fs::write(one.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();

        let o = run(Command::new("syft")
            .arg("scan")
            .arg(format!("oci-dir:{}", one.display()))
            .args(["-o", "json", "-q"])
            .env("SYFT_CHECK_FOR_APP_UPDATE", "false"));
        assert!(o.status.success(), "syft: {}", text(&o));
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        let found: BTreeSet<(String, String)> = v["artifacts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["type"] == "deb")
            .map(|a| {
                (
                    a["name"].as_str().unwrap().to_string(),
                    a["version"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let lock = s.lock();
        let want: BTreeSet<(String, String)> = lock
            .images
            .iter()
            .filter(|i| i.stage == "runtime" && (i.name == "base" || i.name == "python"))
            .flat_map(|i| {
                i.packages
                    .iter()
                    .map(|p| (p.name.clone(), p.version.clone()))
            })
            .collect();
        assert!(want.len() > 10, "{want:?}");
        let missing: Vec<_> = want.difference(&found).collect();
        let extra: Vec<_> = found.difference(&want).collect();
        assert!(missing.is_empty(), "syft misses {missing:?}");
        assert!(
            extra.is_empty(),
            "syft finds packages the lock lacks: {extra:?}"
        );
    }
}

// ---------------------------------------------------------------- 6. atomic output

/// A tiny tree with one synthetic package per pin.
fn tiny_tree(dir: &Path, pins: &[(&str, &str)], debs: &[Deb]) {
    let mut base = String::from(
        "[image]\nname = \"base\"\ntag = \"t1\"\nfrom = \"scratch\"\nsource-date-epoch = 0\n\n\
         [source]\napt = false\narch = \"amd64\"\ndistro = \"debian-12\"\n\n[packages]\n",
    );
    for (n, v) in pins {
        base.push_str(&format!("{n} = \"{v}\"\n"));
    }
    std::fs::create_dir_all(dir.join("base")).unwrap();
    std::fs::create_dir_all(dir.join("recipes")).unwrap();
    std::fs::write(dir.join("base/base.toml"), base).unwrap();
    let _ = std::fs::remove_dir_all(dir.join("mirror"));
    crate::debgen::mirror(&dir.join("mirror"), debs);
}

#[test]
fn build_failure_leaves_previous_output_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let good = Deb::new("good", "1.0").entry(T::File("./usr/share/good", b"ok\n", 0o644));
    // Resolves fine; rejected only when its data.tar is unpacked, i.e. after
    // resolution, the lock write and the staging directory's creation.
    let evil = Deb::new("evil", "1.0")
        .entry(T::File("./usr/share/fine", b"fine\n", 0o644))
        .entry(T::CharDev("./usr/share/evil-dev"));
    let build = || {
        run(imgforge()
            .current_dir(dir)
            .env_remove("SOURCE_DATE_EPOCH")
            .args(["build", "recipes", "--mirror", "mirror", "--no-apt"])
            .args(["--out", "out", "--bundle", "out.tar", "--cache", "cache"]))
    };
    tiny_tree(dir, &[("good", "1.0")], &[good.clone(), evil.clone()]);
    let o = build();
    assert!(o.status.success(), "{}", text(&o));
    let before = tree_files(&dir.join("out"));
    let bundle_before = std::fs::read(dir.join("out.tar")).unwrap();
    assert!(before.contains_key("index.json"));

    tiny_tree(dir, &[("good", "1.0"), ("evil", "1.0")], &[good, evil]);
    let o = build();
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(
        t.contains("evil") && t.contains("usr/share/evil-dev"),
        "{t}"
    );
    assert_eq!(tree_files(&dir.join("out")), before, "out/ changed");
    assert_eq!(std::fs::read(dir.join("out.tar")).unwrap(), bundle_before);
    let left: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".imgforge-") || n.starts_with(".bundle-"))
        .collect();
    assert!(left.is_empty(), "staging left behind: {left:?}");
}

/// A tiny tree for `--mirror ../shared/debian` alone: a netbase base with
/// no toolset, and the given image recipes.
fn netbase_tree(recipes: &[(&str, &str)]) -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    let base = "[image]\nname = \"base\"\ntag = \"tiny\"\nfrom = \"scratch\"\nsource-date-epoch = 0\n\n\
                [source]\napt = false\narch = \"amd64\"\ndistro = \"debian-12\"\n\n\
                [packages]\nnetbase = \"6.4\"\n\n[configure]\nessential = false\n";
    std::fs::create_dir_all(t.path().join("base")).unwrap();
    std::fs::create_dir_all(t.path().join("recipes")).unwrap();
    std::fs::write(t.path().join("base/base.toml"), base).unwrap();
    for (name, text) in recipes {
        std::fs::write(t.path().join("recipes").join(name), text).unwrap();
    }
    t
}

/// An image with a build stage whose one step runs `script` under busybox.
fn staged(name: &str, script: &str) -> String {
    format!(
        "[image]\nname = \"{name}\"\ntag = \"1\"\n\n[build]\n\
         packages = {{ busybox-static = \"1:1.35.0-4+deb12u1+b1\" }}\n\
         steps = [[\"/usr/bin/busybox\", \"sh\", \"-c\", {script:?}]]\nartifacts = [\"/out/a\"]\n\n\
         [[copy]]\nfrom = \"/out/a\"\nto = \"/a\"\nmode = \"0644\"\n\n[config]\nworkdir = \"/\"\n"
    )
}

needs! { [has_fixture_debian, has_runc] "needs ../shared/debian, `runc` on PATH";
    /// One failing image does not hide the others: every image is built,
    /// every failure reported at the end (exit 1), the output not written;
    /// the next build reuses what the good images made.
    fn a_failing_image_does_not_stop_the_others() {
        let Some(fixture) = crate::common::fixture() else {
            return;
        };
        if !require_tool("runc") {
            return;
        }
        let tree = netbase_tree(&[
            ("bad.toml", &staged("bad", "echo broken-step >&2; exit 9")),
            ("worse.toml", &staged("worse", "exit 4")),
            ("good.toml", &staged("good", "echo fine > /out/a")),
        ]);
        let build = || {
            run(imgforge()
                .current_dir(tree.path())
.args(["build", "recipes", "--no-apt", "--out", "out", "--cache", "cache", "--mirror"])
                .arg(&fixture))
        };
        let o = build();
        let t = text(&o);
        assert_eq!(o.status.code(), Some(1), "{t}");
        assert!(t.contains("2 of 3 image(s) failed: bad, worse; built: good"), "{t}");
        let (bad, worse) = (t.rfind("exit code 9"), t.rfind("exit code 4"));
        assert!(bad.is_some() && worse.is_some(), "{t}");
        assert!(bad < worse, "by image name: {t}");
        assert!(!tree.path().join("out").exists(), "{t}");
        // Fixed: good's stage is reused, the two fixed ones run.
        for n in ["bad", "worse"] {
            std::fs::write(
                tree.path().join(format!("recipes/{n}.toml")),
                // Distinct: two identical stages built at once share a key.
                staged(n, &format!("echo {n} > /out/a")),
            )
            .unwrap();
        }
        let o = build();
        let t = text(&o);
        assert!(o.status.success(), "{t}");
        assert!(t.contains("Built bad build stage") && t.contains("Built worse build stage"), "{t}");
        assert!(!t.contains("Built good build stage"), "good's stage is reused: {t}");
        assert!(tree.path().join("out/index.json").is_file());
    }
}

needs! { [has_fixture_debian, has_runc] "needs ../shared/debian, `runc` on PATH";
    /// Three images with the same build stage, built at once: the stages
    /// share one key, and a stage that finishes second must not replace the
    /// first one's stored result while its artifact layer is being written.
    fn identical_build_stages_built_at_once_all_ship() {
        let Some(fixture) = crate::common::fixture() else {
            return;
        };
        if !require_tool("runc") {
            return;
        }
        let same = "head -c 4000000 /dev/zero > /out/a";
        let tree = netbase_tree(&[
            ("one.toml", &staged("one", same)),
            ("two.toml", &staged("two", same)),
            ("three.toml", &staged("three", same)),
        ]);
        let o = run(imgforge()
            .current_dir(tree.path())
            .args(["build", "recipes", "--no-apt", "--out", "out", "--cache", "cache"])
            .args(["--jobs", "3", "--mirror"])
            .arg(&fixture));
        let t = text(&o);
        assert!(o.status.success(), "{t}");
        let idx = std::fs::read_to_string(tree.path().join("out/index.json")).unwrap();
        for n in ["one", "two", "three"] {
            assert!(idx.contains(&format!("\"{n}:1\"")), "{n} missing: {idx}");
        }
    }
}
