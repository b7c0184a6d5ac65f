//! The configure step against real dpkg, and the configured images at work.
//!
//! The parity test installs each example image's packages, at the locked
//! versions, with real dpkg (`mmdebstrap --variant=essential --include=...`
//! from a local repository of `../shared/debian` + `../shared/debian-essential`),
//! and an Essential-only root beside it. Every path the image's packages own
//! (dpkg's `.list` files) and every path their scripts created or changed
//! (present in the first root, absent or different in the second) must exist
//! in the imgforge image with the same type, content, link target, mode and
//! owner. Out of scope: `var/log`, `var/cache`, `var/lib/dpkg`, `var/lib/apt`.
//! The documented exceptions are [`EXCEPTIONS`].

use crate::common;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Paths compared for existence and type only, with the reason.
const EXCEPTIONS: &[(&str, &str)] = &[(
    "etc/ld.so.cache",
    "its bytes index every library present, and the dpkg root has the whole Essential set",
)];

/// Trees out of scope (the issue's list), and the runtime's mount points.
const OUT_OF_SCOPE: &[&str] = &[
    "var/log",
    "var/cache",
    "var/lib/dpkg",
    "var/lib/apt",
    "proc",
    "sys",
    "dev",
];

const SDE: &str = "1735689600";

struct Built {
    _tmp: tempfile::TempDir,
    out: PathBuf,
    lock: imgforge::resolve::Lock,
    /// Unpacked image roots by image name.
    roots: BTreeMap<String, PathBuf>,
    bundle: PathBuf,
}

fn is_root() -> bool {
    // /proc/self belongs to the process's uid.
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The examples built once with the configure step, and unpacked.
fn built() -> Option<&'static Built> {
    static B: OnceLock<Option<Built>> = OnceLock::new();
    B.get_or_init(|| {
        let mirror = common::examples_mirror()?;
        if !common::require_tool("runc") || !common::require_tool("tar") {
            return None;
        }
        let tmp = common::copy_examples();
        let out = tmp.path().join("out");
        let bundle = tmp.path().join("bundle.tar");
        let o = common::run(
            common::imgforge()
                .current_dir(tmp.path())
                .env("SOURCE_DATE_EPOCH", SDE)
                .args(["build", "recipes", "--no-apt", "--no-cache", "--mirror"])
                .arg(&mirror)
                .arg("--out")
                .arg(&out)
                .arg("--bundle")
                .arg(&bundle)
                .arg("--cache")
                .arg(tmp.path().join("cache")),
        );
        assert!(o.status.success(), "{}", common::text(&o));
        eprintln!("{}", common::text(&o));
        let lock =
            imgforge::resolve::Lock::read(&tmp.path().join("recipes/imgforge.lock")).unwrap();
        let mut roots = BTreeMap::new();
        for (name, layers) in image_layers(&out) {
            let dir = tmp.path().join("roots").join(&name);
            std::fs::create_dir_all(&dir).unwrap();
            for l in layers {
                let st = Command::new("tar")
                    .args(["--same-owner", "-xpf"])
                    .arg(&l)
                    .arg("-C")
                    .arg(&dir)
                    .status()
                    .unwrap();
                assert!(st.success(), "untar {}", l.display());
            }
            roots.insert(name, dir);
        }
        Some(Built {
            _tmp: tmp,
            out,
            lock,
            roots,
            bundle,
        })
    })
    .as_ref()
}

/// Image name -> its layer blobs, bottom first.
pub(crate) fn image_layers(out: &Path) -> BTreeMap<String, Vec<PathBuf>> {
    let read = |p: PathBuf| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    };
    let blob = |d: &serde_json::Value| {
        out.join("blobs/sha256")
            .join(d.as_str().unwrap().trim_start_matches("sha256:"))
    };
    let index = read(out.join("index.json"));
    let mut m = BTreeMap::new();
    for d in index["manifests"].as_array().unwrap() {
        let r = d["annotations"]["org.opencontainers.image.ref.name"]
            .as_str()
            .unwrap();
        let name = r.split(':').next().unwrap().to_string();
        let man = read(blob(&d["digest"]));
        let layers = man["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| blob(&l["digest"]))
            .collect();
        m.insert(name, layers);
    }
    m
}

/// A local apt repository of both pools, as the Essential README shows.
fn repo(dir: &Path) -> PathBuf {
    let (deb, ess) = (common::fixture().unwrap(), common::essential().unwrap());
    repo_of(dir, &[&deb, &ess])
}

/// A local apt repository (suite bookworm, main) of the `.deb`s in the
/// `pool/` of each of `mirrors`.
pub(crate) fn repo_of(dir: &Path, mirrors: &[&Path]) -> PathBuf {
    let pool = dir.join("repo/pool/main");
    let dists = dir.join("repo/dists/bookworm/main/binary-amd64");
    std::fs::create_dir_all(&pool).unwrap();
    std::fs::create_dir_all(&dists).unwrap();
    for src in mirrors {
        for e in std::fs::read_dir(src.join("pool")).unwrap() {
            let p = e.unwrap().path();
            std::fs::copy(&p, pool.join(p.file_name().unwrap())).unwrap();
        }
    }
    let r = dir.join("repo");
    let o = Command::new("apt-ftparchive")
        .current_dir(&r)
        .args(["packages", "pool/main"])
        .output()
        .unwrap();
    assert!(o.status.success());
    std::fs::write(dists.join("Packages"), o.stdout).unwrap();
    let o = Command::new("apt-ftparchive")
        .current_dir(&r)
        .args([
            "-o",
            "APT::FTPArchive::Release::Suite=bookworm",
            "-o",
            "APT::FTPArchive::Release::Codename=bookworm",
            "-o",
            "APT::FTPArchive::Release::Components=main",
            "-o",
            "APT::FTPArchive::Release::Architectures=amd64",
            "release",
            "dists/bookworm",
        ])
        .output()
        .unwrap();
    assert!(o.status.success());
    std::fs::write(r.join("dists/bookworm/Release"), o.stdout).unwrap();
    r
}

pub(crate) fn mmdebstrap(repo: &Path, include: &[String], target: &Path) {
    let mut c = Command::new("mmdebstrap");
    c.env("SOURCE_DATE_EPOCH", SDE).args([
        "--quiet",
        "--mode=root",
        "--variant=essential",
        "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
    ]);
    if !include.is_empty() {
        c.arg(format!("--include={}", include.join(",")));
    }
    let o = c
        .arg("bookworm")
        .arg(target)
        .arg(format!(
            "deb [trusted=yes] copy://{} bookworm main",
            repo.display()
        ))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "mmdebstrap failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// What is compared at one path.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Obj {
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    content: String,
}

/// Resolve `rel` beneath `root`, following symlinks in the parent
/// components within the root (an absolute link is taken from the root).
fn resolve_parent(root: &Path, rel: &str) -> Option<PathBuf> {
    let comps: Vec<&str> = rel.split('/').filter(|c| !c.is_empty()).collect();
    let (last, parents) = comps.split_last()?;
    let mut cur: Vec<String> = Vec::new();
    let mut todo: Vec<String> = parents.iter().rev().map(|s| s.to_string()).collect();
    let mut hops = 0;
    while let Some(c) = todo.pop() {
        match c.as_str() {
            "." => continue,
            ".." => {
                cur.pop();
                continue;
            }
            _ => {}
        }
        let p = root.join(cur.join("/")).join(&c);
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                hops += 1;
                if hops > 40 {
                    return None;
                }
                let t = std::fs::read_link(&p).ok()?.to_string_lossy().into_owned();
                if t.starts_with('/') {
                    cur.clear();
                }
                for x in t.split('/').filter(|x| !x.is_empty()).rev() {
                    todo.push(x.to_string());
                }
            }
            Ok(_) => cur.push(c),
            Err(_) => return None,
        }
    }
    Some(root.join(cur.join("/")).join(last))
}

pub(crate) fn obj(root: &Path, rel: &str) -> Option<Obj> {
    let p = resolve_parent(root, rel)?;
    let m = std::fs::symlink_metadata(&p).ok()?;
    let ft = m.file_type();
    let (kind, content) = if ft.is_symlink() {
        (
            "symlink",
            std::fs::read_link(&p)
                .unwrap()
                .to_string_lossy()
                .into_owned(),
        )
    } else if ft.is_dir() {
        ("dir", String::new())
    } else if ft.is_file() {
        (
            "file",
            hex::encode(Sha256::digest(std::fs::read(&p).unwrap())),
        )
    } else {
        ("other", String::new())
    };
    Some(Obj {
        kind,
        mode: if ft.is_symlink() {
            0
        } else {
            m.mode() & 0o7777
        },
        uid: m.uid(),
        gid: m.gid(),
        content,
    })
}

pub(crate) fn walk(root: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut it = walkdir::WalkDir::new(root).min_depth(1).into_iter();
    while let Some(e) = it.next() {
        let e = e.unwrap();
        let rel = e
            .path()
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if out_of_scope(&rel) {
            if e.file_type().is_dir() {
                it.skip_current_dir();
            }
            continue;
        }
        out.insert(rel);
    }
    out
}

fn out_of_scope(rel: &str) -> bool {
    OUT_OF_SCOPE
        .iter()
        .any(|t| rel == *t || rel.strip_prefix(t).is_some_and(|r| r.starts_with('/')))
}

/// Paths dpkg says `pkgs` own in `root`.
pub(crate) fn owned(root: &Path, pkgs: &BTreeSet<String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for e in std::fs::read_dir(root.join("var/lib/dpkg/info")).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".list") else {
            continue;
        };
        let pkg = stem.split(':').next().unwrap();
        if !pkgs.contains(pkg) {
            continue;
        }
        for l in std::fs::read_to_string(&p).unwrap().lines() {
            let rel = l.trim_start_matches('/');
            if !rel.is_empty() && rel != "." && !out_of_scope(rel) {
                out.insert(rel.to_string());
            }
        }
    }
    out
}

/// One image compared with real dpkg's install of the same packages.
pub(crate) struct Parity {
    pub ok: usize,
    pub excepted: usize,
    pub total: usize,
    pub scripts: usize,
    pub failures: Vec<String>,
}

impl Parity {
    pub fn percent(&self) -> f64 {
        100.0 * (self.ok + self.excepted) as f64 / self.total.max(1) as f64
    }

    pub fn line(&self, image: &str) -> String {
        format!(
            "parity {image}: {} of {} paths identical, {} documented exception(s) ({} created or changed by scripts), {:.2}%",
            self.ok,
            self.total,
            self.excepted,
            self.scripts,
            self.percent()
        )
    }
}

/// Compare `ours` (an unpacked image) with `full` (dpkg's install of
/// `names` on the Essential root `ess`, whose paths are `ess_paths`): every
/// path the packages own and every path their scripts made or changed.
/// A documented difference from dpkg's install: paths matching `pattern`
/// (exact, `prefix*`, `*suffix`, or `->TARGET` for dpkg's symlinks to
/// TARGET) are compared for type only, or may be absent from the image
/// when `absent`.
pub(crate) struct Exception {
    pub pattern: &'static str,
    pub absent: bool,
}

impl Exception {
    fn matches(&self, path: &str, dpkg: &Obj) -> bool {
        if let Some(target) = self.pattern.strip_prefix("->") {
            return dpkg.kind == "symlink" && dpkg.content == target;
        }
        match (
            self.pattern.strip_suffix('*'),
            self.pattern.strip_prefix('*'),
        ) {
            (Some(prefix), _) => path.starts_with(prefix),
            (_, Some(suffix)) => path.ends_with(suffix),
            _ => path == self.pattern,
        }
    }
}

pub(crate) fn parity(
    full: &Path,
    ess: &Path,
    ess_paths: &BTreeSet<String>,
    ours: &Path,
    names: &BTreeSet<String>,
    image: &str,
    extra: &[Exception],
) -> Parity {
    let mut want = owned(full, names);
    let mut p = Parity {
        ok: 0,
        excepted: 0,
        total: 0,
        scripts: 0,
        failures: Vec::new(),
    };
    for path in walk(full) {
        if obj(full, &path) != obj(ess, &path) || !ess_paths.contains(&path) {
            p.scripts += usize::from(want.insert(path));
        }
    }
    for path in &want {
        let (a, o) = (obj(full, path), obj(ours, path));
        let Some(a) = a else { continue }; // dpkg lists a path it then replaced
        p.total += 1;
        let listed = EXCEPTIONS.iter().any(|e| e.0 == path);
        let documented = extra.iter().find(|e| e.matches(path, &a));
        match (listed || documented.is_some(), o) {
            (false, Some(o)) if o == a => p.ok += 1,
            (true, Some(o)) if documented.is_some() && o == a => p.ok += 1,
            (true, Some(o)) if o.kind == a.kind => p.excepted += 1,
            (true, None) if documented.is_some_and(|e| e.absent) => p.excepted += 1,
            (_, o) => p
                .failures
                .push(format!("{image}: /{path}: dpkg {a:?}, imgforge {o:?}")),
        }
    }
    p
}

needs! { [has_fixture_debian, has_fixture_debian_essential, has_runc, has_tar]
    "needs ../shared/debian, ../shared/debian-essential, `runc` on PATH, `tar` on PATH";
    fn parity_with_dpkg_for_every_example_image() {
        let Some(b) = built() else { return };
        for t in ["mmdebstrap", "apt-ftparchive"] {
            if !common::require_tool(t) {
                return;
            }
        }
        if !is_root() {
            assert!(
                !common::strict(),
                "the parity test needs root (mmdebstrap --mode=root)"
            );
            eprintln!("SKIP: the parity test needs root (mmdebstrap --mode=root)");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let repo = repo(tmp.path());
        let ess = tmp.path().join("essential");
        mmdebstrap(&repo, &[], &ess);
        let ess_paths = walk(&ess);
        let mut failures = Vec::new();
        for image in ["base", "nginx", "python"] {
            let mut pkgs = BTreeMap::new();
            for (n, s) in [("base", "runtime"), (image, "runtime")] {
                for p in &b.lock.get(n, s).unwrap().packages {
                    pkgs.insert(p.name.clone(), p.version.clone());
                }
            }
            let include: Vec<String> = pkgs.iter().map(|(n, v)| format!("{n}={v}")).collect();
            let full = tmp.path().join(format!("dpkg-{image}"));
            mmdebstrap(&repo, &include, &full);
            let names: BTreeSet<String> = pkgs.keys().cloned().collect();
            let p = parity(&full, &ess, &ess_paths, &b.roots[image], &names, image, &[]);
            eprintln!("{}", p.line(image));
            failures.extend(p.failures);
        }
        assert!(
            failures.is_empty(),
            "{} path(s) differ from dpkg's install:\n{}",
            failures.len(),
            failures[..failures.len().min(60)].join("\n")
        );
    }
}

/// Run a command in an image root with runc (no network), returning
/// (success, output).
fn run_in(image: &str, argv: &[&str]) -> Option<(bool, String)> {
    let b = built()?;
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path();
    let st = Command::new("runc")
        .arg("spec")
        .current_dir(bundle)
        .status()
        .unwrap();
    assert!(st.success());
    let cfg_path = bundle.join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&cfg_path).unwrap()).unwrap();
    cfg["root"]["path"] = b.roots[image].to_string_lossy().into();
    cfg["root"]["readonly"] = false.into();
    cfg["process"]["terminal"] = false.into();
    cfg["process"]["args"] = serde_json::json!(argv);
    cfg["process"]["env"] = serde_json::json!([
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"
    ]);
    std::fs::write(&cfg_path, serde_json::to_vec(&cfg).unwrap()).unwrap();
    let id = format!(
        "imgforge-cfgtest-{}-{}",
        std::process::id(),
        bundle.file_name().unwrap().to_string_lossy()
    );
    let o = Command::new("runc")
        .arg("--root")
        .arg(dir.path().join("state"))
        .args(["run", "--bundle"])
        .arg(bundle)
        .arg(&id)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    Some((o.status.success(), common::text(&o)))
}

needs! { [has_fixture_debian, has_fixture_debian_essential, has_runc, has_tar]
    "needs ../shared/debian, ../shared/debian-essential, `runc` on PATH, `tar` on PATH";
    fn base_has_a_working_ca_bundle_localtime_and_awk() {
        let Some(b) = built() else { return };
        let root = &b.roots["base"];
        // The CA bundle verifies with openssl (the image's own openssl) and
        // every hash link resolves.
        let bundle = root.join("etc/ssl/certs/ca-certificates.crt");
        assert!(bundle.is_file(), "no CA bundle");
        let text = std::fs::read_to_string(&bundle).unwrap();
        let first = &text[..text.find("-----END CERTIFICATE-----").unwrap() + 26];
        let one = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(one.path(), first).unwrap();
        let o = Command::new("openssl")
            .args(["verify", "-CAfile"])
            .arg(&bundle)
            .arg(one.path())
            .output()
            .unwrap();
        assert!(o.status.success(), "openssl verify: {}", common::text(&o));
        let mut links = 0;
        for e in std::fs::read_dir(root.join("etc/ssl/certs")).unwrap() {
            let p = e.unwrap().path();
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            if n.len() == 10 && n.ends_with(".0") {
                links += 1;
                let rel = format!("etc/ssl/certs/{n}");
                let mut target = resolve_parent(root, &rel).unwrap();
                for _ in 0..8 {
                    match std::fs::read_link(&target) {
                        Ok(t) if t.is_absolute() => {
                            target = root.join(t.strip_prefix("/").unwrap())
                        }
                        Ok(t) => target = target.parent().unwrap().join(t),
                        Err(_) => break,
                    }
                }
                assert!(target.is_file(), "hash link {rel} does not resolve");
            }
        }
        assert!(links > 100, "only {links} hash links");
        let lt = std::fs::read_link(root.join("etc/localtime")).unwrap();
        assert!(
            lt.to_string_lossy().starts_with("/usr/share/zoneinfo/"),
            "{lt:?}"
        );
        let Some((ok, out)) = run_in("base", &["awk", "BEGIN{print 6*7}"]) else {
            return;
        };
        assert!(ok && out.trim() == "42", "awk: {out}");
        let mut pems: Vec<String> = std::fs::read_dir(root.join("etc/ssl/certs"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".pem"))
            .collect();
        pems.sort();
        let pem = format!("/etc/ssl/certs/{}", pems[0]);
        let Some((ok, out)) = run_in(
            "base",
            &[
                "openssl",
                "verify",
                "-CAfile",
                "/etc/ssl/certs/ca-certificates.crt",
                &pem,
            ],
        ) else {
            return;
        };
        assert!(ok, "openssl verify inside the image: {out}");
    }
}

needs! { [has_fixture_debian, has_fixture_debian_essential, has_runc, has_tar]
    "needs ../shared/debian, ../shared/debian-essential, `runc` on PATH, `tar` on PATH";
    fn python_imports_its_standard_library_from_shipped_bytecode() {
        let Some(b) = built() else { return };
        let pyc = b.roots["python"].join("usr/lib/python3.11/__pycache__/os.cpython-311.pyc");
        let head = std::fs::read(&pyc).expect("os.pyc is shipped");
        // PEP 552 flags: hash-based (bit 0), so independent of build time.
        assert_eq!(head[4] & 1, 1, "os.pyc is not hash-based");
        let Some((ok, out)) = run_in(
            "python",
            &["python3.11", "-v", "-c", "import os, re; print('imported')"],
        ) else {
            return;
        };
        assert!(ok && out.contains("imported"), "{out}");
        // `os` is frozen into the interpreter in 3.11; these two are not.
        for m in ["encodings/__init__", "re/__init__"] {
            let from = format!("code object from '/usr/lib/python3.11/{}'", cached(m));
            assert!(
                out.contains(&from),
                "{m} not imported from byte-code:\n{out}"
            );
        }
    }
}

/// `re/__init__` -> `re/__pycache__/__init__.cpython-311.pyc`.
fn cached(module: &str) -> String {
    match module.rsplit_once('/') {
        Some((dir, m)) => format!("{dir}/__pycache__/{m}.cpython-311.pyc"),
        None => format!("__pycache__/{module}.cpython-311.pyc"),
    }
}

needs! { [has_fixture_debian, has_fixture_debian_essential, has_runc, has_tar]
    "needs ../shared/debian, ../shared/debian-essential, `runc` on PATH, `tar` on PATH";
    fn nginx_has_its_default_site() {
        let Some(b) = built() else { return };
        let root = &b.roots["nginx"];
        let site = std::fs::read_link(root.join("etc/nginx/sites-enabled/default"))
            .expect("no default site");
        assert_eq!(site, Path::new("/etc/nginx/sites-available/default"));
        assert!(root.join("etc/nginx/sites-available/default").is_file());
        assert!(root.join("var/www/html/index.nginx-debian.html").is_file());
        let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
        assert!(
            passwd.lines().any(|l| l.starts_with("www-data:")),
            "{passwd}"
        );
    }
}

needs! { [has_curl, has_docker, has_fixture_debian, has_fixture_debian_essential, has_runc, has_tar]
    "needs `curl` on PATH, `docker` on PATH, ../shared/debian, ../shared/debian-essential, `runc` on PATH, `tar` on PATH";
    fn nginx_serves_the_welcome_page_in_docker() {
        let Some(b) = built() else { return };
        if !common::require_tool("docker") || !common::require_tool("curl") {
            return;
        }
        let o = common::run(Command::new("docker").args(["load", "-i"]).arg(&b.bundle));
        assert!(o.status.success(), "docker load: {}", common::text(&o));
        let port = 18000 + (std::process::id() % 1000) as u16;
        let name = format!("imgforge-cfg-nginx-{}", std::process::id());
        let o = common::run(Command::new("docker").args([
            "run",
            "-d",
            "--rm",
            "--name",
            &name,
            "-p",
            &format!("127.0.0.1:{port}:80"),
            "nginx:1.22.1",
        ]));
        assert!(o.status.success(), "docker run: {}", common::text(&o));
        let mut body = String::new();
        for _ in 0..30 {
            let c = common::run(
                Command::new("curl").args(["-s", &format!("http://127.0.0.1:{port}/")]),
            );
            body = String::from_utf8_lossy(&c.stdout).into_owned();
            if body.contains("Welcome to nginx") {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
        let _ = common::run(Command::new("docker").args(["rm", "-f", &name]));
        assert!(body.contains("Welcome to nginx!"), "got: {body}");
        let _ = &b.out;
    }
}

needs! { [has_fixture_debian, has_fixture_debian_essential, has_runc]
    "needs ../shared/debian, ../shared/debian-essential, `runc` on PATH";
    /// A `[debconf]` answer reaches the scripts (tzdata's zone), and
    /// `configure = false` runs no script and ships no configuration layer
    /// but warns, listing whose scripts did not run.
    fn debconf_answers_and_opt_out() {
        let Some(mirror) = common::examples_mirror() else {
            return;
        };
        if !common::require_tool("runc") {
            return;
        }
        let tmp = common::copy_examples();
        let base = tmp.path().join("base/base.toml");
        let mut text = std::fs::read_to_string(&base).unwrap();
        text.push_str(
            "\n[debconf]\n\"tzdata/Areas\" = \"Europe\"\n\"tzdata/Zones/Europe\" = \"Paris\"\n",
        );
        std::fs::write(&base, text).unwrap();
        for r in ["nginx.toml", "hello.toml"] {
            std::fs::remove_file(tmp.path().join("recipes").join(r)).unwrap();
        }
        let py = tmp.path().join("recipes/python.toml");
        let text = std::fs::read_to_string(&py)
            .unwrap()
            .replace("[image]\n", "[image]\nconfigure = false\n");
        std::fs::write(&py, text).unwrap();
        let out = tmp.path().join("out");
        let o = common::run(
            common::imgforge()
                .current_dir(tmp.path())
                .args([
                    "build",
                    "recipes",
                    "--no-apt",
                    "--no-cache",
                    "--layers",
                    "single",
                    "--mirror",
                ])
                .arg(&mirror)
                .arg("--out")
                .arg(&out),
        );
        let t = common::text(&o);
        assert!(o.status.success(), "{t}");
        assert!(
            t.contains("python: configure = false: the maintainer scripts of"),
            "{t}"
        );
        assert!(
            t.contains("python3.11-minimal (postinst") && !t.contains("Configured python"),
            "the warning lists whose scripts did not run, and none ran: {t}"
        );
        let layers = image_layers(&out);
        // base: packages + configuration; python: + its packages only.
        assert_eq!(layers["base"].len(), 2);
        assert_eq!(layers["python"].len(), 3);
        let root = tmp.path().join("root");
        std::fs::create_dir_all(&root).unwrap();
        for l in &layers["base"] {
            let st = Command::new("tar")
                .arg("-xf")
                .arg(l)
                .arg("-C")
                .arg(&root)
                .status()
                .unwrap();
            assert!(st.success());
        }
        let lt = std::fs::read_link(root.join("etc/localtime")).unwrap();
        assert_eq!(lt, Path::new("/usr/share/zoneinfo/Europe/Paris"));
        let tz = std::fs::read_to_string(root.join("etc/timezone")).unwrap();
        assert_eq!(tz.trim(), "Europe/Paris");
    }
}

needs! { [has_fixture_debian, has_fixture_debian_essential, has_runc, has_root]
    "needs ../shared/debian, ../shared/debian-essential, `runc` on PATH, root";
    fn failed_configure_keeps_its_full_log_where_the_error_says() {
        use crate::debgen::{Deb, T};
        // A real failing script: a chown to a user no package creates.
        let Some(mirror) = common::examples_mirror() else {
            return;
        };
        if !common::require_tool("runc") {
            return;
        }
        let failing = Deb::new("failing", "1.0")
            .entry(T::Dir("./var/lib/failing/", 0o755))
            .script(
                "postinst",
                "#!/bin/sh\nset -e\necho about to chown /var/lib/failing\nchown no-such-user /var/lib/failing\n",
            );
        let (tmp, o) = build_base_and_one(&mirror, failing, "fails");
        let t = common::text(&o);
        assert_eq!(o.status.code(), Some(1), "{t}");
        assert!(t.contains("fails: failing: `postinst` failed"), "{t}");
        let log = t
            .split("(full log: ")
            .nth(1)
            .and_then(|r| r.split(") ---").next())
            .unwrap_or_else(|| panic!("no log path in {t}"));
        // Relative to the working directory, like `--cache`.
        let log = tmp.path().join(log);
        assert!(
            log.starts_with(tmp.path().join("cache").join("logs")),
            "{}",
            log.display()
        );
        let full = std::fs::read_to_string(&log).expect("the log named by the error exists");
        assert!(
            full.contains("about to chown") && full.contains("no-such-user"),
            "{full}"
        );
    }
}

needs! { [has_fixture_debian, has_fixture_debian_essential, has_runc, has_root]
    "needs ../shared/debian, ../shared/debian-essential, `runc` on PATH, root (overlay roots)";
    /// A maintainer script that removes a path an image layer ships is refused,
    /// and the error names the package whose script did it (in an overlay root
    /// the driver sees the removal as a whiteout in the upper directory).
    fn a_script_removing_a_shipped_path_is_refused_and_named() {
        use crate::debgen::{Deb, T};
        let Some(mirror) = common::examples_mirror() else {
            return;
        };
        if !common::require_tool("runc") {
            return;
        }
        assert!(is_root(), "this test needs root (overlay roots)");
        let victim = Deb::new("shredder", "1.0")
            .entry(T::Dir("./usr/share/shredder/", 0o755))
            .entry(T::File("./usr/share/shredder/keep", b"data\n", 0o644))
            .script(
                "postinst",
                "#!/bin/sh\nset -e\nrm /usr/share/shredder/keep\n",
            );
        let (tmp, o) = build_base_and_one(&mirror, victim, "shred");
        let t = common::text(&o);
        assert_eq!(o.status.code(), Some(1), "{t}");
        assert!(
            t.contains(
                "shred: shredder removed /usr/share/shredder/keep, which an image layer ships"
            ),
            "{t}"
        );
        assert!(
            !tmp.path().join("out").exists(),
            "nothing half-written: {t}"
        );
    }
}

/// Builds the examples' base plus one image `name` holding `deb` (from the
/// examples' mirror plus `deb`), in a temporary copy of the examples.
fn build_base_and_one(
    mirror: &Path,
    deb: crate::debgen::Deb,
    name: &str,
) -> (tempfile::TempDir, std::process::Output) {
    build_base_and_one_under(mirror, deb, name, &[], &[])
}

/// [`build_base_and_one`] with imgforge run as `wrap... imgforge ...` (e.g.
/// under `setarch`), with `env` added.
fn build_base_and_one_under(
    mirror: &Path,
    deb: crate::debgen::Deb,
    name: &str,
    wrap: &[&str],
    env: &[(&str, &str)],
) -> (tempfile::TempDir, std::process::Output) {
    let tmp = common::copy_examples();
    for r in ["nginx.toml", "hello.toml", "python.toml"] {
        std::fs::remove_file(tmp.path().join("recipes").join(r)).unwrap();
    }
    let _ = std::fs::remove_file(tmp.path().join("recipes/imgforge.lock"));
    let own = tmp.path().join("mirror");
    let package = format!("{} = \"{}\"", deb.name, deb.version);
    crate::debgen::mirror(&own, &[deb]);
    let mut index = std::fs::read_to_string(own.join("Packages")).unwrap();
    index.push_str(&std::fs::read_to_string(mirror.join("Packages")).unwrap());
    std::fs::write(own.join("Packages"), index).unwrap();
    link_pool(mirror, &own);
    std::fs::write(
        tmp.path().join(format!("recipes/{name}.toml")),
        format!("[image]\nname = \"{name}\"\ntag = \"1\"\n\n[packages]\n{package}\n"),
    )
    .unwrap();
    let mut cmd = match wrap.split_first() {
        Some((program, args)) => {
            let mut c = Command::new(program);
            c.args(args).arg(common::imgforge().get_program());
            c
        }
        None => common::imgforge(),
    };
    cmd.current_dir(tmp.path())
        .args(["build", "recipes", "--no-apt", "--mirror", "mirror"])
        .args(["--out", "out", "--cache", "cache", "--scratch", "."])
        .envs(env.iter().copied());
    let o = common::run(&mut cmd);
    (tmp, o)
}

needs! { [has_fixture_debian, has_fixture_debian_essential, has_runc, has_root]
    "needs ../shared/debian, ../shared/debian-essential, `runc` on PATH, root (overlay roots)";
    fn scripts_run_in_a_chroot_as_under_mmdebstrap() {
        use crate::debgen::{Deb, T};
        let Some(mirror) = common::examples_mirror() else {
            return;
        };
        if !common::require_tool("runc") {
            return;
        }
        assert!(is_root(), "this test needs root (overlay roots)");
        // debianutils' ischroot (in the toolset) compares / with /proc/1/root;
        // libc6's postinst sleeps a second when it says "not a chroot".
        let probe = Deb::new("chroot-probe", "1.0")
            .entry(T::Dir("./usr/share/chroot-probe/", 0o755))
            .script(
                "postinst",
                "#!/bin/sh\nset -e\nischroot || { echo \"not in a chroot: $?\" >&2; exit 1; }\n\
                 [ -c /dev/null ] && [ -r /proc/self/status ]\n\
                 echo chrooted > /usr/share/chroot-probe/seen\n",
            );
        let (tmp, o) = build_base_and_one(&mirror, probe, "probe");
        let t = common::text(&o);
        assert!(o.status.success(), "{t}");
        assert!(
            t.contains("Configured probe: 1 script(s)"),
            "the probe's postinst ran: {t}"
        );
        let names: Vec<String> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            !names.iter().any(|n| n.starts_with(".imgforge-scratch")),
            "scratch removed: {names:?}"
        );
    }
}

/// Links in `own/pool` to every package of `mirror`'s pool (to the same
/// files the mirror's links point at).
fn link_pool(mirror: &Path, own: &Path) {
    for e in std::fs::read_dir(mirror.join("pool")).unwrap() {
        let p = e.unwrap().path();
        let target = std::fs::read_link(&p).unwrap_or(p.clone());
        std::os::unix::fs::symlink(target, own.join("pool").join(p.file_name().unwrap())).unwrap();
    }
}

/// A postinst that writes timestamp-based `.pyc` files as an import does
/// (magic of 3.11, flags 0, the source's mtime and size, a body), from the
/// shell: for each `source pyc` pair given.
fn pyc_writer(pairs: &[(&str, &str)], before: &str) -> String {
    let mut s = String::from(
        r#"#!/bin/sh
set -e
le32() { n=$1; for i in 1 2 3 4; do printf "\\$(printf %03o $((n % 256)))"; n=$((n / 256)); done; }
pyc() {
  mkdir -p "${2%/*}"
  { printf '\247\015\015\012\000\000\000\000'; le32 "$(stat -c %Y "$1" 2>/dev/null || echo 1)"
    le32 "$(stat -c %s "$1" 2>/dev/null || echo 1)"; printf '\343body'; } > "$2"
}
"#,
    );
    s.push_str(before);
    for (src, pyc) in pairs {
        s.push_str(&format!("pyc {src} {pyc}\n"));
    }
    s
}

/// `(mtime, bytes)` of every regular file in a gzip layer blob.
fn layer_files(blob: &Path) -> BTreeMap<String, (u64, Vec<u8>)> {
    let f = std::fs::File::open(blob).unwrap();
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(f));
    let mut out = BTreeMap::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        if e.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let path = e.path().unwrap().to_string_lossy().into_owned();
        let mtime = e.header().mtime().unwrap();
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut b).unwrap();
        out.insert(path.trim_start_matches("./").to_string(), (mtime, b));
    }
    out
}

needs! { [has_fixture_debian, has_fixture_debian_essential, has_runc, has_root]
    "needs ../shared/debian, ../shared/debian-essential, `runc` on PATH, root (overlay roots)";
    /// A timestamp-based `.pyc` a script writes (as `import` does while
    /// python3's postinst runs) ships with its header set to its source as
    /// the image has it: a packaged source's clamped mtime, a script-made
    /// source's SOURCE_DATE_EPOCH; size as shipped. The body is kept.
    fn a_timestamp_pyc_ships_with_the_mtime_its_source_has_in_the_image() {
        use crate::debgen::{Deb, T};
        let Some(mirror) = common::examples_mirror() else {
            return;
        };
        if !common::require_tool("runc") {
            return;
        }
        assert!(is_root(), "this test needs root (overlay roots)");
        let d = "/usr/share/pycgen";
        let script = pyc_writer(
            &[
                (
                    &format!("{d}/mod.py"),
                    &format!("{d}/__pycache__/mod.cpython-311.pyc"),
                ),
                (
                    &format!("{d}/made.py"),
                    &format!("{d}/__pycache__/made.cpython-311.opt-1.pyc"),
                ),
            ],
            &format!("echo 'y = 22' > {d}/made.py\n"),
        );
        let pkg = Deb::new("pycgen", "1.0")
            .entry(T::Dir("./usr/share/pycgen/", 0o755))
            .entry(T::File("./usr/share/pycgen/mod.py", b"x = 1\n", 0o644))
            .script("postinst", &script);
        let (tmp, o) = build_base_and_one(&mirror, pkg, "pycgen");
        let t = common::text(&o);
        assert!(o.status.success(), "{t}");
        let layers = image_layers(&tmp.path().join("out"));
        let mut files = BTreeMap::new();
        for l in &layers["pycgen"] {
            files.extend(layer_files(l));
        }
        let sde: u64 = SDE.parse().unwrap();
        let word = |b: &[u8], i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
        // Packaged source: the .deb's mtime (debgen: 1600000000, before SDE).
        let (src_mtime, src) = &files["usr/share/pycgen/mod.py"];
        assert_eq!(*src_mtime, 1_600_000_000);
        let (pyc_mtime, pyc) = &files["usr/share/pycgen/__pycache__/mod.cpython-311.pyc"];
        assert_eq!(*pyc_mtime, sde);
        assert_eq!(&pyc[..8], b"\xa7\x0d\r\n\0\0\0\0");
        assert_eq!(u64::from(word(pyc, 8)), *src_mtime, "header mtime");
        assert_eq!(word(pyc, 12) as usize, src.len(), "header size");
        assert_eq!(&pyc[16..], b"\xe3body");
        // Script-made source: SDE in the configuration layer, and so in
        // the header (the script wrote it with the clock's time).
        let (made_mtime, made) = &files["usr/share/pycgen/made.py"];
        assert_eq!(*made_mtime, sde);
        let (_, pyc) = &files["usr/share/pycgen/__pycache__/made.cpython-311.opt-1.pyc"];
        assert_eq!(u64::from(word(pyc, 8)), sde, "header mtime");
        assert_eq!(word(pyc, 12) as usize, made.len(), "header size");
    }
}

needs! { [has_fixture_debian, has_fixture_debian_essential, has_runc, has_root]
    "needs ../shared/debian, ../shared/debian-essential, `runc` on PATH, root (overlay roots)";
    /// A timestamp-based `.pyc` whose source the image does not have is
    /// refused, naming the package and the path.
    fn a_timestamp_pyc_without_its_source_is_refused_and_named() {
        use crate::debgen::{Deb, T};
        let Some(mirror) = common::examples_mirror() else {
            return;
        };
        if !common::require_tool("runc") {
            return;
        }
        assert!(is_root(), "this test needs root (overlay roots)");
        let d = "/usr/share/pycgen";
        let script = pyc_writer(
            &[(
                &format!("{d}/gone.py"),
                &format!("{d}/__pycache__/gone.cpython-311.pyc"),
            )],
            "",
        );
        let pkg = Deb::new("pycgen-orphan", "1.0")
            .entry(T::Dir("./usr/share/pycgen/", 0o755))
            .script("postinst", &script);
        let (_tmp, o) = build_base_and_one(&mirror, pkg, "orphan");
        let t = common::text(&o);
        assert_eq!(o.status.code(), Some(1), "{t}");
        assert!(
            t.contains("orphan: pycgen-orphan made /usr/share/pycgen/__pycache__/gone.cpython-311.pyc non-deterministic: a timestamp-based .pyc")
                && t.contains("whose source /usr/share/pycgen/gone.py is not in the image"),
            "{t}"
        );
    }
}

needs! { [has_fixture_debian, has_fixture_debian_essential, has_runc, has_root]
    "needs ../shared/debian, ../shared/debian-essential, `runc` on PATH, root (overlay roots)";
    /// Maintainer scripts see a fixed machine, not imgforge's: run under
    /// `setarch x86_64 --uname-2.6` (reprotest's kernel variation), on one
    /// CPU, with another host and domain name, time zone and locale, a
    /// script records the same kernel release (the running kernel's, not
    /// "2.6"), machine, host and domain name, time zone, locale variables
    /// and CPU count as a plain run; and libc6's preinst (in the base)
    /// accepts the kernel.
    fn scripts_see_a_fixed_machine_under_setarch_taskset_and_another_locale() {
        use crate::debgen::{Deb, T};
        let Some(mirror) = common::examples_mirror() else {
            return;
        };
        if !["runc", "setarch", "taskset", "unshare", "domainname", "hostname"]
            .iter()
            .all(|t| common::require_tool(t))
        {
            return;
        }
        assert!(is_root(), "this test needs root (overlay roots)");
        let probe = || {
            Deb::new("machine-probe", "1.0")
                .entry(T::Dir("./usr/share/machine-probe/", 0o755))
                .script(
                    "postinst",
                    "#!/bin/sh\nset -e\n{\n\
                     echo \"release $(uname -r)\"; echo \"machine $(uname -m)\"\n\
                     echo \"hostname $(uname -n)\"; echo \"domain $(cat /proc/sys/kernel/domainname)\"\n\
                     echo \"zone $(date +%Z)\"; echo \"cpus $(nproc)\"\n\
                     for v in TZ LANG LANGUAGE LC_ALL LC_CTYPE LC_MESSAGES; do eval \"echo $v=\\${$v-unset}\"; done\n\
                     } > /usr/share/machine-probe/seen\n",
                )
        };
        let seen = |tmp: &tempfile::TempDir| {
            let layers = image_layers(&tmp.path().join("out"));
            let files = layer_files(layers["probe"].last().unwrap());
            let (_, b) = &files["usr/share/machine-probe/seen"];
            String::from_utf8(b.clone()).unwrap()
        };
        let (plain_tmp, o) = build_base_and_one(&mirror, probe(), "probe");
        assert!(o.status.success(), "{}", common::text(&o));
        let plain = seen(&plain_tmp);
        let (tmp, o) = build_base_and_one_under(
            &mirror,
            probe(),
            "probe",
            &[
                "taskset",
                "-c",
                "0",
                "setarch",
                "x86_64",
                "--uname-2.6",
                "unshare",
                "--uts",
                "sh",
                "-c",
                "domainname host-domain && hostname host-name && exec \"$0\" \"$@\"",
            ],
            &[
                ("TZ", "Pacific/Chatham"),
                ("LANG", "tr_TR.UTF-8"),
                ("LC_ALL", "tr_TR.UTF-8"),
                ("LANGUAGE", "tr"),
            ],
        );
        assert!(o.status.success(), "{}", common::text(&o));
        let varied = seen(&tmp);
        assert_eq!(plain, varied, "what the scripts saw differs");
        eprintln!("{plain}");
        let release = plain
            .lines()
            .find_map(|l| l.strip_prefix("release "))
            .unwrap();
        let mut v = release
            .split(|c: char| !c.is_ascii_digit())
            .map(|n| n.parse::<u32>().unwrap_or(0));
        let (major, minor) = (v.next().unwrap(), v.next().unwrap_or(0));
        assert!((major, minor) >= (3, 2), "kernel release {release}");
        for want in [
            "machine x86_64",
            "hostname imgforge-build",
            "domain (none)",
            "zone UTC",
            "TZ=UTC",
            "LC_ALL=C.UTF-8",
            "LANG=unset",
        ] {
            assert!(plain.lines().any(|l| l == want), "no {want:?} in {plain}");
        }
    }
}

needs! { [has_fixture_debian, has_fixture_debian_essential, has_runc, has_root]
    "needs ../shared/debian, ../shared/debian-essential, `runc` on PATH, root (overlay roots)";
    /// Scripts see a Debian system as dpkg leaves it: `dpkg-query -S /lib64`
    /// names libc6 (file lists name paths as packages ship them, for the
    /// base's packages too), the toolset's own scripts have run (PAM's
    /// common files exist), and `dpkg-trigger` activates a trigger its
    /// interested package then processes. A random machine id ships as
    /// "uninitialized".
    fn scripts_see_dpkg_s_database_triggers_and_a_configured_toolset() {
        use crate::debgen::{Deb, T};
        let Some(mirror) = common::examples_mirror() else {
            return;
        };
        if !common::require_tool("runc") {
            return;
        }
        assert!(is_root(), "this test needs root (overlay roots)");
        let d = "/usr/share/dbprobe";
        let probe = Deb::new("dbprobe", "1.0")
            .entry(T::Dir("./usr/share/dbprobe/", 0o755))
            .script("triggers", "interest dbprobe-trig\n")
            .script(
                "postinst",
                &format!(
                    "#!/bin/sh\nset -e\n\
                     if [ \"$1\" = triggered ]; then echo \"$2\" > {d}/triggered; exit 0; fi\n\
                     dpkg-query -S /lib64 > {d}/owner\n\
                     [ -e /etc/pam.d/common-auth ] && echo yes > {d}/pam\n\
                     head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n' > /etc/machine-id\n\
                     dpkg-trigger dbprobe-trig\n"
                ),
            );
        let (tmp, o) = build_base_and_one(&mirror, probe, "dbprobe");
        let t = common::text(&o);
        assert!(o.status.success(), "{t}");
        let layers = image_layers(&tmp.path().join("out"));
        let mut files = BTreeMap::new();
        for l in &layers["dbprobe"] {
            files.extend(layer_files(l));
        }
        let text = |p: &str| String::from_utf8_lossy(&files[p].1).into_owned();
        assert!(text("usr/share/dbprobe/owner").starts_with("libc6"), "{}", text("usr/share/dbprobe/owner"));
        assert_eq!(text("usr/share/dbprobe/pam"), "yes\n");
        assert_eq!(text("usr/share/dbprobe/triggered"), "dbprobe-trig\n");
        assert_eq!(text("etc/machine-id"), "uninitialized\n");
        assert!(!files.contains_key("etc/pam.d/common-auth"), "the toolset's files never ship");
    }
}

needs! { [has_fixture_debian, has_fixture_debian_essential, has_runc, has_root]
    "needs ../shared/debian, ../shared/debian-essential, `runc` on PATH, root (overlay roots)";
    /// An image that ships dpkg (`essential = true`) carries dpkg's
    /// database as `apt-get install` leaves it: `var/lib/dpkg/status` with
    /// every package of the image (base included) installed, a `.list` and
    /// `.md5sums` each, and `status.d` whited out so scanners read each
    /// package once; an image without dpkg gets none of it. Two builds give
    /// the same layer.
    fn an_image_shipping_dpkg_has_its_database() {
        let Some(mirror) = common::examples_mirror() else {
            return;
        };
        let tmp = common::copy_examples();
        for r in ["nginx.toml", "python.toml"] {
            std::fs::remove_file(tmp.path().join("recipes").join(r)).unwrap();
        }
        let _ = std::fs::remove_file(tmp.path().join("recipes/imgforge.lock"));
        std::fs::write(
            tmp.path().join("recipes/slim.toml"),
            "[image]\nname = \"slim\"\ntag = \"1\"\nessential = true\n\n[packages]\nlibtirpc-common = \"1.3.3+ds-1\"\n",
        )
        .unwrap();
        let build = |out: &str| {
            let o = common::run(
                common::imgforge()
                    .current_dir(tmp.path())
                    .args(["-q", "build", "recipes", "--no-apt", "--mirror"])
                    .arg(&mirror)
                    .args(["--out", out, "--cache", "cache", "--scratch", "."]),
            );
            assert!(o.status.success(), "{}", common::text(&o));
            image_layers(&tmp.path().join(out))
        };
        let layers = build("out");
        let lock: toml::Value = toml::from_str(
            &std::fs::read_to_string(tmp.path().join("recipes/imgforge.lock")).unwrap(),
        )
        .unwrap();
        let names = |image: &str| -> BTreeSet<String> {
            lock["image"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|i| i["name"].as_str() == Some(image) && i["stage"].as_str() == Some("runtime"))
                .flat_map(|i| i["package"].as_array().unwrap().iter())
                .map(|p| p["name"].as_str().unwrap().to_string())
                .collect()
        };
        let mut shipped = names("slim");
        shipped.extend(names("base"));
        assert!(shipped.contains("dpkg"), "{shipped:?}");
        let top = layer_files(layers["slim"].iter().rev().find(|l| {
            layer_files(l).contains_key("var/lib/dpkg/status")
        }).expect("a layer with var/lib/dpkg/status"));
        let status = String::from_utf8(top["var/lib/dpkg/status"].1.clone()).unwrap();
        let listed: Vec<String> = status
            .lines()
            .filter_map(|l| l.strip_prefix("Package: "))
            .map(String::from)
            .collect();
        let mut sorted = listed.clone();
        sorted.sort();
        assert_eq!(listed, sorted, "status is sorted by package name");
        assert_eq!(listed.iter().cloned().collect::<BTreeSet<_>>(), shipped);
        assert_eq!(
            status.matches("\nStatus: install ok installed\n").count(),
            shipped.len()
        );
        assert!(top.contains_key("var/lib/dpkg/.wh.status.d"), "{:?}", top.keys());
        let list = String::from_utf8(top["var/lib/dpkg/info/dash.list"].1.clone()).unwrap();
        assert!(list.starts_with("/.\n") && list.contains("\n/bin/dash\n"), "{list}");
        assert!(top.contains_key("var/lib/dpkg/info/dash.md5sums"));
        // hello ships no dpkg: no database, status.d as before.
        for l in &layers["hello"] {
            assert!(!layer_files(l).contains_key("var/lib/dpkg/status"));
        }
        // The same inputs give the same image.
        let again = build("out2");
        assert_eq!(again["slim"], layers["slim"].iter().map(|p| {
            tmp.path().join("out2/blobs/sha256").join(p.file_name().unwrap())
        }).collect::<Vec<_>>());
    }
}
