//! Decide which parts of a copyright file apply to one binary package.
//!
//! A copyright file describes a whole *source* package. What a binary
//! package ships is known from its `.deb` ([`PackageEvidence`]): the paths,
//! the ELF programs with their `DT_NEEDED` libraries and imported symbols,
//! the shared libraries (by SONAME file name), and the sibling binaries of the
//! same source in the build. [`decide`] turns that evidence and a `Files:`
//! pattern list into keep/drop with a written reason; path components
//! anywhere in a pattern count (tests, docs, examples, build machinery, other
//! platforms, contrib, translations, programs of a library-only package).

use std::collections::BTreeSet;

/// An ELF program shipped by the package.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Program {
    /// Path in the package.
    pub path: String,
    /// `DT_NEEDED` entries.
    pub needed: Vec<String>,
    /// Undefined dynamic symbols (imports), sorted.
    pub imports: BTreeSet<String>,
}

/// What is known about the binary package.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackageEvidence {
    /// Binary package name.
    pub package: String,
    /// Leaf paths (files and symlinks), no leading `/`.
    pub paths: Vec<String>,
    /// Regular files (not symlinks) among `paths`, only under
    /// [`REGULAR_DIRS`] (what detection asks about; a package of a million
    /// files must not be held twice).
    pub regular: BTreeSet<String>,
    /// ELF programs under `bin/`, `sbin/`, `libexec/`.
    pub programs: Vec<Program>,
    /// Non-ELF executables (scripts) under `bin/`, `sbin/`.
    pub scripts: Vec<String>,
    /// Other binary packages of the same source in the build.
    pub siblings: BTreeSet<String>,
}

/// Why a stanza was kept or dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Keep the stanza.
    pub keep: bool,
    /// Why.
    pub reason: String,
    /// Kept only because no rule said otherwise (a risk for review).
    pub by_default: bool,
}

impl Decision {
    fn keep(reason: impl Into<String>) -> Self {
        Decision {
            keep: true,
            reason: reason.into(),
            by_default: false,
        }
    }
    fn drop(reason: impl Into<String>) -> Self {
        Decision {
            keep: false,
            reason: reason.into(),
            by_default: false,
        }
    }
}

/// Directories whose regular files [`PackageEvidence::regular`] records.
pub const REGULAR_DIRS: &[&str] = &["usr/share/info/", "usr/share/man/"];

const EXEC_DIRS: &[&str] = &["bin/", "sbin/", "usr/bin/", "usr/sbin/", "usr/games/"];

/// Whether a path is an executable location.
pub fn is_exec_path(p: &str) -> bool {
    EXEC_DIRS
        .iter()
        .any(|d| p.strip_prefix(d).is_some_and(|r| !r.contains('/')))
        || p.contains("/libexec/")
}

fn is_shlib(p: &str) -> bool {
    let base = p.rsplit('/').next().unwrap_or("");
    (p.starts_with("lib/") || p.starts_with("usr/lib/")) && base.contains(".so")
}

impl PackageEvidence {
    /// Ships programs (ELF or scripts) in executable locations.
    pub fn has_programs(&self) -> bool {
        self.paths.iter().any(|p| is_exec_path(p))
    }
    /// Ships shared libraries and no programs.
    pub fn library_only(&self) -> bool {
        !self.has_programs() && self.paths.iter().any(|p| is_shlib(p))
    }
    /// Ships nothing outside documentation/metadata directories.
    pub fn doc_only(&self) -> bool {
        !self.paths.is_empty()
            && !self.paths.iter().any(|p| {
                ![
                    "usr/share/doc/",
                    "usr/share/doc-base/",
                    "usr/share/lintian/",
                    "usr/share/bug/",
                ]
                .iter()
                .any(|d| p.starts_with(d))
            })
    }
    fn ships_regular_under(&self, prefix: &str) -> bool {
        debug_assert!(REGULAR_DIRS.contains(&prefix), "{prefix} is not recorded");
        self.regular.iter().any(|p| p.starts_with(prefix))
    }
    /// Ships an info manual (regular files).
    pub fn has_info(&self) -> bool {
        self.ships_regular_under("usr/share/info/")
    }
    /// Ships manual pages (regular files).
    pub fn has_man(&self) -> bool {
        self.ships_regular_under("usr/share/man/")
    }
    /// Ships something under a directory with this name (e.g. `mozilla/`,
    /// `bash-completion/`).
    fn ships_dir(&self, dir: &str) -> bool {
        let needle = format!("/{dir}/");
        let alt = dir.replace("shell-completion", "bash-completion");
        let needle2 = format!("/{alt}/");
        self.paths
            .iter()
            .any(|p| p.contains(&needle) || p.contains(&needle2))
    }

    /// A shipped program whose name is this file's name or stem
    /// (`run-parts.c` → `usr/bin/run-parts`).
    fn installed_as(&self, base: &str) -> Option<&str> {
        let stem = base.split('.').next().unwrap_or("");
        if stem.is_empty() || base.contains(['*', '?', '[']) && !base.ends_with(".*") {
            return None;
        }
        self.paths
            .iter()
            .filter(|p| is_exec_path(p))
            .find(|p| p.rsplit('/').next() == Some(stem) || p.rsplit('/').next() == Some(base))
            .map(String::as_str)
    }

    /// Ships a file with this base name (maybe compressed).
    fn ships_basename(&self, base: &str) -> bool {
        !base.contains(['*', '?', '['])
            && self.paths.iter().any(|p| {
                let b = p.rsplit('/').next().unwrap_or("");
                b == base || b.strip_suffix(".gz") == Some(base)
            })
    }
    fn has_locales(&self) -> bool {
        self.paths
            .iter()
            .any(|p| p.starts_with("usr/share/locale/"))
    }
    /// Library stems from shared library file names (`liblzma.so.5` →
    /// `liblzma`, `lzma`).
    pub fn library_stems(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for p in self.paths.iter().filter(|p| is_shlib(p)) {
            let base = p.rsplit('/').next().unwrap_or("");
            let stem = base.split(".so").next().unwrap_or("");
            if stem.len() > 3 {
                out.insert(stem.to_string());
                if let Some(s) = stem.strip_prefix("lib").filter(|s| s.len() > 1) {
                    out.insert(s.to_string());
                }
            }
        }
        out
    }
    /// Sibling packages whose shared library a shipped program links
    /// (Debian library naming: `libjq.so.1` is package `libjq1`).
    pub fn linked_siblings(&self) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        for prog in &self.programs {
            for n in &prog.needed {
                let pkg = library_package_name(n);
                if self.siblings.contains(&pkg) {
                    out.push((prog.path.clone(), n.clone(), pkg));
                }
            }
        }
        out
    }
}

/// The Debian package name for a SONAME (policy 8.1): `libjq.so.1` →
/// `libjq1`, `libfoo-2.so.0` → `libfoo-2-0`.
pub fn library_package_name(soname: &str) -> String {
    let Some((stem, ver)) = soname.split_once(".so") else {
        return soname.to_string();
    };
    let ver = ver.trim_start_matches('.');
    let stem = stem.to_ascii_lowercase();
    if ver.is_empty() {
        return stem;
    }
    if stem.ends_with(|c: char| c.is_ascii_digit()) {
        format!("{stem}-{ver}")
    } else {
        format!("{stem}{ver}")
    }
}

const TEST_DIRS: &[&str] = &[
    "tests",
    "test",
    "testsuite",
    "t",
    "testing",
    "regress",
    "fuzz",
    "ci",
    ".github",
    "testdata",
    "unittests",
    "gnulib-tests",
    "bench",
    "benchmarks",
];
const EXAMPLE_DIRS: &[&str] = &["examples", "example", "demo", "demos", "samples", "sample"];
const DOC_DIRS: &[&str] = &["doc", "docs", "man", "manual", "texinfo", "info"];
const BUILD_DIRS: &[&str] = &[
    "m4",
    "build-aux",
    "autom4te.cache",
    "cmake",
    "support",
    "autoconf",
    "buildtools",
];
const BUILD_FILES: &[&str] = &[
    "configure",
    "configure.ac",
    "configure.in",
    "aclocal.m4",
    "config.guess",
    "config.sub",
    "install-sh",
    "ltmain.sh",
    "missing",
    "depcomp",
    "compile",
    "Makefile.in",
    "Makefile.am",
    "Makefile",
    "autogen.sh",
    "mkinstalldirs",
    "ylwrap",
    "test-driver",
    "config.rpath",
    "CMakeLists.txt",
    "meson.build",
    "Doxyfile",
    "Doxyfile.in",
    "INSTALL",
    "INSTALL.generic",
];
const PLATFORM_DIRS: &[&str] = &[
    "windows", "win32", "win64", "dos", "djgpp", "os2", "amiga", "vms", "macos", "macosx", "msvc",
    "visualc", "vstudio", "android", "ios", "haiku", "beos", "qnx", "msdos", "mingw", "watcom",
    "cygwin",
];
/// Operating systems other than Linux, as file names spell them
/// (`fault-netbsd-alpha.c`, `sysdep-darwin.c`); matched as a prefix of a
/// name token (`macosdarwin7`).
const FOREIGN_OS: &[&str] = &[
    "darwin",
    "macos",
    "netbsd",
    "freebsd",
    "openbsd",
    "dragonfly",
    "solaris",
    "sunos",
    "hpux",
    "win32",
    "win64",
    "windows",
    "cygwin",
    "mingw",
    "haiku",
    "beos",
    "irix",
    "msdos",
];
/// CPU families as file names spell them; those of the package's own
/// architecture (read from its multiarch paths) are not foreign.
const ARCHES: &[(&str, &[&str])] = &[
    ("amd64", &["amd64", "x86_64", "x86"]),
    ("arm64", &["arm64", "aarch64"]),
    (
        "other",
        &[
            "m68k",
            "alpha",
            "powerpc",
            "ppc",
            "ppc64",
            "ppc64le",
            "sparc",
            "sparc64",
            "mips",
            "mips64",
            "mipsel",
            "hppa",
            "parisc",
            "ia64",
            "s390",
            "s390x",
            "riscv",
            "riscv64",
            "loongarch64",
            "armel",
            "armhf",
            "sh4",
            "vax",
        ],
    ),
];

/// A token of a file name that names another operating system or CPU
/// than the package is built for (rule: code not built for the package's
/// platform does not count). Only whole name tokens (split at `-`, `_`,
/// `.`) count, so `alarm.c` or `sparse.c` never match.
fn foreign_platform_token(base: &str, ev: &PackageEvidence) -> Option<String> {
    let native = if ev.paths.iter().any(|p| p.contains("/aarch64-linux-gnu/")) {
        "arm64"
    } else {
        "amd64"
    };
    let lower = base.to_ascii_lowercase();
    lower
        .split(['-', '_', '.'])
        .find(|t| {
            FOREIGN_OS.iter().any(|os| t.starts_with(os))
                || ARCHES
                    .iter()
                    .any(|(a, names)| *a != native && names.contains(t))
        })
        .map(str::to_string)
}

const CONTRIB_DIRS: &[&str] = &["contrib", "extra", "extras"];
const PROGRAM_DIRS: &[&str] = &[
    "programs", "tools", "utils", "util", "cli", "scripts", "bin", "sbin",
];
/// Language-binding directories and the files that show they are shipped.
const BINDINGS: &[(&str, &str)] = &[
    ("python", ".py"),
    ("perl", ".pm"),
    ("ruby", ".rb"),
    ("java", ".jar"),
    ("lua", ".lua"),
    ("tcl", ".tcl"),
];
/// Directory names too common to show anything by appearing in the
/// package's installed paths.
const GENERIC_DIRS: &[&str] = &[
    "lib",
    "src",
    "source",
    "share",
    "include",
    "usr",
    "etc",
    "var",
    "local",
    "common",
    "core",
    "data",
    "main",
    "x86_64-linux-gnu",
    "libexec",
    "internal",
    "private",
    "base",
];
/// Bundled replacements of C library functions, by file stem, with the
/// symbols that show the system's copy is used instead.
const REPLACEMENTS: &[(&str, &[&str])] = &[
    ("regexp", &["regcomp", "regexec", "regfree"]),
    ("regex", &["regcomp", "regexec", "regfree"]),
    ("getopt", &["getopt_long", "getopt"]),
    ("getopt1", &["getopt_long"]),
    ("inet_aton", &["inet_aton"]),
    ("inet_ntop", &["inet_ntop"]),
    ("inet_pton", &["inet_pton"]),
    ("fnmatch", &["fnmatch"]),
    ("strlcpy", &["strlcpy"]),
    ("snprintf", &["snprintf", "vsnprintf"]),
];

fn doc_ext_needs(base: &str) -> Option<&'static str> {
    let ext = base.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
    match ext {
        "texi" | "texinfo" | "txi" | "info" => Some("info"),
        "1" | "2" | "3" | "4" | "5" | "6" | "7" | "8" | "[03]" | "man" => Some("man"),
        "pdf" | "dvi" | "ps" | "html" | "xbm" => Some("none"),
        _ => None,
    }
}

/// Context shared by the decisions about one copyright file.
#[derive(Debug, Clone, Default)]
pub struct FileContext {
    /// Directories that the file shows hold the library's own sources
    /// (a path component equal to a library stem, e.g. `src/liblzma/`; else
    /// `lib/` when patterns live there).
    pub library_dirs: BTreeSet<String>,
    /// Whether `library_dirs` come from the library's name (not just `lib/`).
    pub named: bool,
}

impl FileContext {
    /// Build from every pattern of the file.
    pub fn new(all_patterns: &[&str], ev: &PackageEvidence) -> Self {
        let stems = ev.library_stems();
        let mut library_dirs = BTreeSet::new();
        for p in all_patterns {
            let comps: Vec<&str> = p.trim_start_matches("./").split('/').collect();
            for (i, c) in comps.iter().enumerate().take(comps.len().saturating_sub(1)) {
                if stems.contains(*c) {
                    library_dirs.insert(comps[..=i].join("/") + "/");
                }
            }
        }
        let named = !library_dirs.is_empty();
        if !named && all_patterns.iter().any(|p| p.starts_with("lib/")) {
            library_dirs.insert("lib/".to_string());
        }
        FileContext {
            library_dirs,
            named,
        }
    }
}

/// Keep or drop one `Files:` pattern for this package.
pub fn decide(pattern: &str, ev: &PackageEvidence, cx: &FileContext) -> Decision {
    let p = pattern.trim_start_matches("./");
    if p == "*" {
        return Decision::keep("umbrella stanza: covers every file not named elsewhere");
    }
    let comps: Vec<&str> = p.split('/').collect();
    let dirs = &comps[..comps.len() - 1];
    let base = comps[comps.len() - 1];
    let lower: Vec<String> = dirs.iter().map(|d| d.to_ascii_lowercase()).collect();
    layout_decision(&comps, &lower, ev)
        .or_else(|| evidence_decision(p, &lower, base, ev, cx))
        .unwrap_or(Decision {
            keep: true,
            reason: "no evidence it is left out".into(),
            by_default: true,
        })
}

fn has_dir(lower: &[String], set: &[&str]) -> Option<String> {
    lower.iter().find(|d| set.contains(&d.as_str())).cloned()
}

/// Rules read from the path alone: packaging, tests, examples, platforms,
/// build machinery, contrib, translations, documentation, headers.
fn layout_decision(comps: &[&str], lower: &[String], ev: &PackageEvidence) -> Option<Decision> {
    let dirs = &comps[..comps.len() - 1];
    let base = comps[comps.len() - 1];
    let has_dir = |set: &[&str]| has_dir(lower, set);
    if comps[0] == "debian" {
        return Some(Decision::drop("Debian packaging (debian/*)"));
    }
    if let Some(d) = has_dir(TEST_DIRS) {
        return Some(Decision::drop(format!("test files ({d}/), not installed")));
    }
    if base.starts_with("test-")
        || base.starts_with("test_")
        || base.ends_with(".test")
        || base.ends_with(".tests")
    {
        return Some(Decision::drop("test files, not installed"));
    }
    if let Some(d) = has_dir(EXAMPLE_DIRS) {
        return Some(if ev.ships_basename(base) {
            Decision::keep(format!("example {base} is installed"))
        } else {
            Decision::drop(format!("examples ({d}/), not installed by the package"))
        });
    }
    if let Some(d) = has_dir(PLATFORM_DIRS) {
        return Some(Decision::drop(format!(
            "other platform ({d}/), not built for Linux"
        )));
    }
    if let Some(t) = foreign_platform_token(base, ev) {
        return Some(Decision::drop(format!(
            "other platform ({t} in the file name), not built for this one"
        )));
    }
    if let Some(d) = has_dir(BUILD_DIRS) {
        return Some(Decision::drop(format!(
            "build machinery ({d}/), not installed"
        )));
    }
    if BUILD_FILES.contains(&base)
        || base.ends_with(".m4")
        || base.ends_with(".cmake")
        || base.starts_with("Find") && dirs.iter().any(|d| d.eq_ignore_ascii_case("cmake"))
    {
        return Some(Decision::drop("build machinery, not installed"));
    }
    if let Some(d) = has_dir(CONTRIB_DIRS) {
        return Some(Decision::drop(format!(
            "contributed extras ({d}/), not part of the build"
        )));
    }
    if lower.iter().any(|d| d == "po") || base.ends_with(".po") {
        return Some(if ev.has_locales() {
            Decision::keep("translations, and the package ships message catalogs")
        } else {
            Decision::drop("translations (po/), and the package ships no message catalogs")
        });
    }
    if let Some(d) = doc_decision(lower, base, ev) {
        return Some(d);
    }
    if base.ends_with(".h") || base.ends_with(".hh") || base.ends_with(".hpp") {
        return Some(Decision::drop(
            "header file only: header-only inclusions are not counted",
        ));
    }
    None
}

/// Rules that need the package's evidence: programs, bindings, installed
/// directories and names, replaced bundled code, library-only packages,
/// libraries of sibling packages.
fn evidence_decision(
    p: &str,
    lower: &[String],
    base: &str,
    ev: &PackageEvidence,
    cx: &FileContext,
) -> Option<Decision> {
    let has_dir = |set: &[&str]| has_dir(lower, set);
    let top_level = !p.contains('/');
    if let Some(d) = has_dir(PROGRAM_DIRS) {
        return Some(if ev.has_programs() {
            Decision::keep(format!("programs ({d}/), and the package ships programs"))
        } else {
            Decision::drop(format!(
                "programs ({d}/), and the package ships no programs"
            ))
        });
    }
    if let Some((d, ext)) = BINDINGS.iter().find(|(d, _)| lower.iter().any(|x| x == d)) {
        return Some(if ev.paths.iter().any(|p| p.ends_with(ext)) {
            Decision::keep(format!("{d} bindings, and the package ships {ext} files"))
        } else {
            Decision::drop(format!(
                "{d} bindings ({d}/), and the package ships no {ext} files"
            ))
        });
    }
    if let Some(d) = lower
        .iter()
        .find(|d| !GENERIC_DIRS.contains(&d.as_str()) && ev.ships_dir(d))
    {
        return Some(Decision::keep(format!(
            "the package installs files under a {d}/ directory"
        )));
    }
    if let Some(d) = replacement_decision(base, ev) {
        return Some(d);
    }
    let stem = base.split('.').next().unwrap_or("");
    if ev.library_only() && top_level && ev.library_stems().contains(stem) {
        return Some(Decision::keep(format!(
            "names the shipped library ({stem})"
        )));
    }
    if ev.library_only() && !cx.library_dirs.is_empty() {
        let inside = cx.library_dirs.iter().any(|d| p.starts_with(d.as_str()));
        if !inside {
            return Some(Decision::drop(format!(
                "outside the library's own sources ({}): another part of the source package",
                cx.library_dirs
                    .iter()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        return Some(Decision::keep("inside the shipped library's sources"));
    }
    if let Some(installed) = ev.installed_as(base) {
        return Some(Decision::keep(format!("installed as /{installed}")));
    }
    if let Some((prog, so, sib)) = ev.linked_siblings().first() {
        return Some(Decision::drop(format!(
            "compiled into {so} of sibling package {sib}, which /{prog} links dynamically"
        )));
    }
    None
}

fn doc_decision(dirs: &[String], base: &str, ev: &PackageEvidence) -> Option<Decision> {
    let in_doc = dirs.iter().any(|d| DOC_DIRS.contains(&d.as_str()));
    let need = doc_ext_needs(base);
    if !in_doc && need.is_none() {
        return None;
    }
    let wild = base.starts_with('*') && need.is_none();
    let ok = match need {
        Some("info") => ev.has_info(),
        Some("man") => ev.has_man(),
        Some(_) => false,
        None if wild => ev.has_info() || ev.has_man(),
        None => false,
    };
    Some(if ok {
        Decision::keep("documentation, and the package ships manuals built from it")
    } else {
        Decision::drop("documentation the package does not ship")
    })
}

fn replacement_decision(base: &str, ev: &PackageEvidence) -> Option<Decision> {
    let stem = base.split('.').next().unwrap_or("");
    let (_, syms) = REPLACEMENTS.iter().find(|(s, _)| *s == stem)?;
    let prog = ev
        .programs
        .iter()
        .find(|p| syms.iter().any(|s| p.imports.contains(*s)))?;
    let sym = syms.iter().find(|s| prog.imports.contains(**s))?;
    Some(Decision::drop(format!(
        "bundled replacement of {sym}: /{} imports {sym} from the system library",
        prog.path
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soname_to_package() {
        assert_eq!(library_package_name("libjq.so.1"), "libjq1");
        assert_eq!(library_package_name("libpcre2-8.so.0"), "libpcre2-8-0");
        assert_eq!(library_package_name("libc.so.6"), "libc6");
    }

    #[test]
    fn library_only_drops_other_parts() {
        let ev = PackageEvidence {
            package: "liblzma5".into(),
            paths: vec!["lib/x86_64-linux-gnu/liblzma.so.5".into()],
            ..Default::default()
        };
        let cx = FileContext::new(&["*", "src/liblzma/check/crc.h", "lib/*"], &ev);
        assert!(decide("*", &ev, &cx).keep);
        assert!(!decide("lib/*", &ev, &cx).keep);
        assert!(!decide("src/scripts/*", &ev, &cx).keep);
        assert!(!decide("windows/README", &ev, &cx).keep);
        assert!(!decide("po/de.po", &ev, &cx).keep);
    }

    #[test]
    fn files_named_for_another_platform_are_not_built() {
        let amd64 = PackageEvidence {
            package: "libsigsegv2".into(),
            paths: vec!["usr/lib/x86_64-linux-gnu/libsigsegv.so.2".into()],
            ..Default::default()
        };
        let cx = FileContext::new(&["*"], &amd64);
        for p in [
            "src/fault-netbsd-alpha.c",
            "src/fault-linux-m68k-old.c",
            "src/fault-macosdarwin7-powerpc.c",
            "src/stackvma-freebsd.c",
            "runtime/memmove_arm64.s",
        ] {
            assert!(!decide(p, &amd64, &cx).keep, "{p}");
        }
        for p in ["src/fault-linux-x86_64.c", "src/alarm.c", "src/sparse.c"] {
            assert!(decide(p, &amd64, &cx).keep, "{p}");
        }
        // For an arm64 package, arm64 files are its own and x86 ones are not.
        let arm64 = PackageEvidence {
            paths: vec!["usr/lib/aarch64-linux-gnu/libsigsegv.so.2".into()],
            ..amd64
        };
        assert!(decide("runtime/memmove_arm64.s", &arm64, &cx).keep);
        assert!(!decide("runtime/memmove_amd64.s", &arm64, &cx).keep);
    }
}
