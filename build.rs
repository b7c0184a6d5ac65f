//! Build script: tells the integration tests what this machine has.
//!
//! A test that needs the package fixtures under `../shared/` or an external
//! tool must be reported as *ignored, with its reason* when that is missing,
//! never as passed without having run. libtest decides `#[ignore]` at
//! compile time, so this script probes once and sets one `cfg` per fixture
//! and tool; tests are written inside `needs! { [has_fixture_debian]
//! "needs ../shared/debian"; fn ... }` (tests/it/common.rs), which adds the
//! `#[cfg_attr(not(...), ignore = ...)]`. A new cfg here needs its arm in
//! that file's `requirement!` too.
//!
//! Under `IMGFORGE_REQUIRE_TOOLS=1` (CI's strict mode) every cfg is set, so
//! every test runs and a missing fixture or tool is a failure.
//!
//! The cfgs are only read by `tests/`. One value reaches the library:
//! `IMGFORGE_SOURCE_DIGEST`, the sha256 of the sources that decide what a
//! build writes (the manifests, the lock file and every file under `src/`
//! of each crate), which salts the step keys: the same sources give the
//! same keys on every machine, whenever and wherever the binary was made,
//! and any edit to them gives new ones.

use std::path::{Path, PathBuf};

/// Fixture directories under `../shared/` and the file that proves each.
const FIXTURES: &[(&str, &str)] = &[
    ("debian", "Packages"),
    ("debian-essential", "Packages"),
    ("debian-licenses", "Packages"),
    ("debian-index", "SHA256SUMS"),
    ("licenses", "fixture-answers.tsv"),
    ("bench", "apt-peer"),
    ("real-world", "sets.tsv"),
];

/// External programs some tests run.
const TOOLS: &[&str] = &[
    "busybox",
    "chromium",
    "curl",
    "docker",
    "docker-registry",
    "mmdebstrap",
    "newuidmap",
    "oci-image-tool",
    "openssl",
    "pyspdxtools",
    "runc",
    "skopeo",
    "syft",
    "tar",
    "time",
    "trivy",
    "umoci",
];

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=IMGFORGE_REQUIRE_TOOLS");
    println!("cargo::rerun-if-env-changed=PATH");
    let strict = std::env::var("IMGFORGE_REQUIRE_TOOLS").is_ok_and(|v| v == "1");
    let root = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    println!(
        "cargo::rustc-env=IMGFORGE_SOURCE_DIGEST={}",
        source_digest(&root)
    );
    let shared = root.join("..").join("shared");
    for (name, proof) in FIXTURES {
        let cfg = format!("has_fixture_{}", name.replace('-', "_"));
        println!("cargo::rustc-check-cfg=cfg({cfg})");
        let dir = shared.join(name);
        // Watch the directory, or where it would appear: cargo re-runs this
        // script when it appears or disappears. A path that does not exist
        // is never watched: cargo would count it as changed on every build
        // and recompile the crate each time.
        println!("cargo::rerun-if-changed={}", watch_point(&dir).display());
        if strict || dir.join(proof).exists() {
            println!("cargo::rustc-cfg={cfg}");
        }
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for tool in TOOLS {
        let cfg = format!("has_{}", tool.replace('-', "_"));
        println!("cargo::rustc-check-cfg=cfg({cfg})");
        if strict || on_path(&path, tool) {
            println!("cargo::rustc-cfg={cfg}");
        }
    }
    // `has_root`: tests that mount (overlay roots, tmpfs) need euid 0.
    println!("cargo::rustc-check-cfg=cfg(has_root)");
    if strict || runs_as_root() {
        println!("cargo::rustc-cfg=has_root");
    }
    // `has_archive`: the host's apt configuration names an archive that
    // answers (a TCP connection within 3 s); tests that pin to its current
    // versions need it.
    println!("cargo::rustc-check-cfg=cfg(has_archive)");
    if strict || archive_answers() {
        println!("cargo::rustc-cfg=has_archive");
    }
    // `has_binfmt_aarch64`: arm64 programs run here under qemu-user (an
    // enabled, fix-binary binfmt_misc handler); the arm64 build tests need it.
    println!("cargo::rustc-check-cfg=cfg(has_binfmt_aarch64)");
    if strict || binfmt_aarch64() {
        println!("cargo::rustc-cfg=has_binfmt_aarch64");
    }
    for (cfg, module) in [
        ("has_python_cyclonedx", "cyclonedx"),
        ("has_python_in_toto", "in_toto, securesystemslib"),
    ] {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
        if strict || python_has(module) {
            println!("cargo::rustc-cfg={cfg}");
        }
    }
}

/// `dir` if it exists, else its nearest existing ancestor (whose modification
/// time changes when `dir`, or a parent of it, is created).
fn watch_point(dir: &Path) -> PathBuf {
    let mut p = dir.to_path_buf();
    while !p.exists() {
        match p.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => p = parent.to_path_buf(),
            _ => break,
        }
    }
    p
}

/// An enabled `qemu-aarch64` binfmt_misc handler with the F flag, or an
/// arm64 machine.
fn binfmt_aarch64() -> bool {
    if std::env::consts::ARCH == "aarch64" {
        return true;
    }
    std::fs::read_to_string("/proc/sys/fs/binfmt_misc/qemu-aarch64").is_ok_and(|t| {
        t.starts_with("enabled")
            && t.lines()
                .any(|l| l.strip_prefix("flags:").is_some_and(|f| f.contains('F')))
    })
}

fn runs_as_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

fn on_path(path: &std::ffi::OsStr, tool: &str) -> bool {
    std::env::split_paths(path).any(|d| is_executable(&d.join(tool)))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn python_has(module: &str) -> bool {
    std::process::Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether the first `http` archive of the host's apt sources accepts a
/// TCP connection within 3 s.
fn archive_answers() -> bool {
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(rd) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = rd.filter_map(|e| Some(e.ok()?.path())).collect();
        more.sort();
        files.extend(more);
    }
    // Comment lines skipped: a commented-out URI is not the archive.
    let text: String = files
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|t| {
            t.lines()
                .filter(|l| !l.trim_start().starts_with('#'))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect::<Vec<_>>()
        .join("\n");
    let Some(host) = text
        .split_whitespace()
        .find_map(|w| w.strip_prefix("http://"))
        .and_then(|rest| rest.split('/').next())
    else {
        return false;
    };
    let addr = if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:80")
    };
    use std::net::ToSocketAddrs;
    let Some(sock) = addr.to_socket_addrs().ok().and_then(|mut a| a.next()) else {
        return false;
    };
    std::net::TcpStream::connect_timeout(&sock, std::time::Duration::from_secs(3)).is_ok()
}

/// The sha256 over the sources that decide outputs: for each file, in byte
/// order of its path relative to `root`, the path, a NUL, its length as 8
/// little-endian bytes and its content. Watched, so an edit re-runs this.
fn source_digest(root: &Path) -> String {
    use sha2::{Digest, Sha256};
    let mut files = Vec::new();
    for top in ["Cargo.toml", "Cargo.lock", "src", "crates"] {
        println!("cargo::rerun-if-changed={top}");
        collect(root, Path::new(top), &mut files);
    }
    files.sort();
    let mut h = Sha256::new();
    for rel in files {
        let bytes = std::fs::read(root.join(&rel)).expect("a source file is readable");
        h.update(rel.as_bytes());
        h.update([0]);
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(&bytes);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Every file under `rel` (itself when a file) that can change a build's
/// output: manifests, the lock, `.rs` sources; not tests, benches or targets.
fn collect(root: &Path, rel: &Path, out: &mut Vec<String>) {
    let path = root.join(rel);
    let Ok(meta) = std::fs::symlink_metadata(&path) else {
        return;
    };
    if meta.is_file() {
        out.push(rel.to_str().expect("source paths are UTF-8").to_string());
        return;
    }
    if !meta.is_dir() {
        return;
    }
    let entries = std::fs::read_dir(&path).expect("a source directory is readable");
    for e in entries {
        let name = e.expect("a source directory is readable").file_name();
        let name = name.to_str().expect("source paths are UTF-8");
        let child = rel.join(name);
        let keep = match rel.components().count() {
            // crates/<name>: only its manifest and src/.
            1 if rel == Path::new("crates") => true,
            2 if rel.starts_with("crates") => name == "Cargo.toml" || name == "src",
            _ => true,
        };
        if keep && !name.starts_with('.') {
            collect(root, &child, out);
        }
    }
}
