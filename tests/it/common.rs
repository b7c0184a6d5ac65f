//! Shared helpers: the package fixture, external tools, running the binary.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Declares a test that needs fixtures under `../shared/` or external tools:
///
/// ```ignore
/// needs! { [has_fixture_debian, has_runc] "needs ../shared/debian, `runc` on PATH";
///     /// What it checks.
///     fn builds_the_examples() { ... }
/// }
/// ```
///
/// gives the function (its doc comments, other attributes and return type
/// unchanged) `#[test]` and
/// `#[cfg_attr(not(all(has_fixture_debian, has_runc)), ignore = "needs ...")]`,
/// so where one of the cfgs is unset (`build.rs` probes this machine) the
/// test is reported as ignored with the reason, and under
/// `IMGFORGE_REQUIRE_TOOLS=1` (every cfg set) it runs.
///
/// The reason is written out because libtest reads only a string literal:
/// `ignore = concat!(..)` compiles, but the test is then reported as
/// ignored without any reason. Instead a compile-time check makes the
/// reason name what each cfg stands for ([`requirement!`]), so the list of
/// cfgs and the reason cannot drift apart.
macro_rules! needs {
    (
        [$($cfg:ident),+ $(,)?] $reason:literal;
        $(#[$meta:meta])*
        fn $name:ident $($rest:tt)*
    ) => {
        $(#[$meta])*
        #[test]
        #[cfg_attr(not(all($($cfg),+)), ignore = $reason)]
        fn $name $($rest)*

        $(
            const _: () = assert!(
                $crate::common::names($reason, requirement!($cfg)),
                concat!(
                    "needs!: the reason given for `", stringify!($name), "` does not name `",
                    requirement!($cfg), "` (for `", stringify!($cfg), "`)"
                ),
            );
        )+
    };
}

/// What a `build.rs` cfg stands for, as a reason given to [`needs!`] must
/// name it. One arm per cfg `build.rs` sets; an unknown cfg is an error.
#[rustfmt::skip]
macro_rules! requirement {
    (has_fixture_debian) => ("../shared/debian");
    (has_fixture_debian_essential) => ("../shared/debian-essential");
    (has_fixture_debian_licenses) => ("../shared/debian-licenses");
    (has_fixture_debian_index) => ("../shared/debian-index");
    (has_fixture_licenses) => ("../shared/licenses");
    (has_fixture_bench) => ("../shared/bench");
    (has_fixture_real_world) => ("../shared/real-world");
    (has_archive) => ("archive");
    (has_binfmt_aarch64) => ("qemu-aarch64");
    (has_busybox) => ("busybox");
    (has_chromium) => ("chromium");
    (has_curl) => ("curl");
    (has_docker) => ("docker");
    (has_docker_registry) => ("docker-registry");
    (has_mmdebstrap) => ("mmdebstrap");
    (has_newuidmap) => ("newuidmap");
    (has_oci_image_tool) => ("oci-image-tool");
    (has_openssl) => ("openssl");
    (has_pyspdxtools) => ("pyspdxtools");
    (has_runc) => ("runc");
    (has_skopeo) => ("skopeo");
    (has_syft) => ("syft");
    (has_tar) => ("tar");
    (has_time) => ("time");
    (has_trivy) => ("trivy");
    (has_umoci) => ("umoci");
    (has_root) => ("root");
    (has_python_cyclonedx) => ("cyclonedx-python-lib");
    (has_python_in_toto) => ("in-toto");
    ($other:ident) => {
        compile_error!(concat!(
            "needs!: unknown cfg `", stringify!($other), "`; add what it stands for",
            " to requirement! in tests/it/common.rs"
        ))
    };
}

/// Whether `reason` names `what` as a whole word (not as part of a longer
/// name: `../shared/debian` is not named by `../shared/debian-essential`,
/// nor `docker` by `docker-registry`). For [`needs!`], at compile time.
pub const fn names(reason: &str, what: &str) -> bool {
    const fn part_of_name(b: u8) -> bool {
        b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
    }
    let (r, w) = (reason.as_bytes(), what.as_bytes());
    let mut i = 0;
    while i + w.len() <= r.len() {
        let mut j = 0;
        while j < w.len() && r[i + j] == w[j] {
            j += 1;
        }
        let end = i + w.len();
        if j == w.len()
            && (i == 0 || !part_of_name(r[i - 1]))
            && (end == r.len() || !part_of_name(r[end]))
        {
            return true;
        }
        i += 1;
    }
    false
}

/// The project root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// True when skips must fail (CI sets `IMGFORGE_REQUIRE_TOOLS=1`).
pub fn strict() -> bool {
    std::env::var("IMGFORGE_REQUIRE_TOOLS").is_ok_and(|v| v == "1")
}

/// The real-package fixture `../shared/debian`, or `None` after printing
/// what the test needs. Panics instead when [`strict`].
pub fn fixture() -> Option<PathBuf> {
    let dir = root().join("..").join("shared").join("debian");
    if dir.join("Packages").is_file() {
        return Some(dir.canonicalize().expect("fixture path"));
    }
    let msg = format!(
        "this test needs the package fixture at {} (a flat Debian mirror with a Packages index and pool/)",
        dir.display()
    );
    missing(&msg)
}

/// The fixture's license answer key, if present.
pub fn license_answers() -> Option<PathBuf> {
    let p = root()
        .join("..")
        .join("shared")
        .join("licenses")
        .join("fixture-answers.tsv");
    if p.is_file() {
        return Some(p);
    }
    let msg = format!("this test needs {}", p.display());
    missing(&msg)
}

/// The dev license key and its frozen package pool
/// (`../shared/licenses/dev-answers.tsv`, `../shared/debian-licenses`), if present.
pub fn dev_license_fixture() -> Option<(PathBuf, PathBuf)> {
    let shared = root().join("..").join("shared");
    let key = shared.join("licenses").join("dev-answers.tsv");
    let pool = shared.join("debian-licenses");
    if key.is_file() && pool.join("Packages").is_file() {
        return Some((key, pool.canonicalize().expect("pool path")));
    }
    let msg = format!("this test needs {} and {}", key.display(), pool.display());
    missing(&msg)
}

/// Whether an external tool is on PATH; when it is not, prints a skip
/// message, or panics when [`strict`].
pub fn require_tool(name: &str) -> bool {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| is_executable(&d.join(name))))
        .unwrap_or(false);
    if !found {
        let msg = format!("this test needs `{name}` on PATH (.ci/run installs it)");
        missing(&msg);
    }
    found
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The imgforge binary built for this test run.
pub fn imgforge() -> Command {
    Command::new(env!("CARGO_BIN_EXE_imgforge"))
}

/// Run a command, returning its output (never panics on non-zero exit).
pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("spawn command")
}

/// stdout + stderr as one string.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Copy the project's `recipes/` and `base/` into a fresh temp dir, so a
/// test can edit them or write a lock without touching the tree.
pub fn copy_examples() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("tempdir");
    for d in ["recipes", "base"] {
        copy_dir(&root().join(d), &tmp.path().join(d));
    }
    tmp
}

/// Recursive copy of a directory tree (files and dirs only).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let t = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &t);
        } else {
            std::fs::copy(e.path(), &t).unwrap();
        }
    }
}

/// The frozen Essential set `../shared/debian-essential` (the configure
/// toolset's perl-base, sed, grep, findutils, libc-bin... and what real dpkg
/// needs), or `None` after printing a skip (a panic when [`strict`]).
pub fn essential() -> Option<PathBuf> {
    let dir = root().join("..").join("shared").join("debian-essential");
    if dir.join("Packages").is_file() {
        return Some(dir.canonicalize().expect("essential path"));
    }
    let msg = format!(
        "this test needs the Essential fixture at {} (the configure step's toolset comes from it)",
        dir.display()
    );
    missing(&msg)
}

/// The mirror the example recipes build from: `../shared/debian` plus
/// `../shared/debian-essential` in one flat repository (symlinks to both
/// pools and their `Packages` indexes concatenated), made once per target
/// directory.
pub fn examples_mirror() -> Option<PathBuf> {
    static ONCE: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        let (debian, essential) = (fixture()?, essential()?);
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("imgforge-examples-mirror");
        if dir.join("Packages").is_file() {
            return Some(dir);
        }
        let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
        let pool = tmp.path().join("pool");
        std::fs::create_dir(&pool).unwrap();
        let mut index = String::new();
        for src in [&debian, &essential] {
            for e in std::fs::read_dir(src.join("pool")).unwrap() {
                let p = e.unwrap().path();
                std::os::unix::fs::symlink(&p, pool.join(p.file_name().unwrap())).unwrap();
            }
            index.push_str(
                std::fs::read_to_string(src.join("Packages"))
                    .unwrap()
                    .trim_end(),
            );
            index.push_str("\n\n");
        }
        std::fs::write(tmp.path().join("Packages"), index).unwrap();
        // Another test binary may have won the race: keep its copy.
        let _ = std::fs::rename(tmp.keep(), &dir);
        Some(dir)
    })
    .clone()
}

/// The frozen bookworm `Packages` indexes `../shared/debian-index` (main,
/// amd64: bookworm, bookworm-updates, bookworm-security, in that order), or
/// `None` after printing what the test needs. Panics instead when [`strict`].
pub fn debian_index() -> Option<Vec<PathBuf>> {
    let dir = root().join("..").join("shared").join("debian-index");
    let files: Vec<PathBuf> = ["bookworm", "bookworm-updates", "bookworm-security"]
        .iter()
        .map(|s| dir.join(format!("{s}-main-amd64-Packages.xz")))
        .collect();
    if files.iter().all(|f| f.is_file()) {
        return Some(files);
    }
    let msg = format!(
        "this test needs the frozen bookworm indexes at {}",
        dir.display()
    );
    missing(&msg)
}

/// A fixture or tool that a running test needs is missing: a failure, never
/// a silent pass. Tests that need one are declared with [`needs!`]
/// (`build.rs` sets the cfgs from what this machine has), so they are
/// reported as ignored, with the reason, where it is missing; under
/// `IMGFORGE_REQUIRE_TOOLS=1` every cfg is set and they all run.
pub fn missing(msg: &str) -> ! {
    panic!(
        "{msg}\nhelp: a test that needs it is declared with needs! {{ [has_...] \"needs ...\"; fn ... }} (tests/it/common.rs; build.rs sets the cfgs); strict mode (IMGFORGE_REQUIRE_TOOLS={}) runs every such test",
        if strict() { "1" } else { "unset" }
    )
}

/// `chown -R` (without following symlinks).
pub fn chown_tree(p: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid)).unwrap();
    if p.symlink_metadata().unwrap().is_dir() {
        for e in std::fs::read_dir(p).unwrap() {
            chown_tree(&e.unwrap().path(), uid, gid);
        }
    }
}
