//! Running `imgforge build` under perturbed conditions.
//!
//! Each build is the imgforge binary itself, run as a subprocess (so umask,
//! environment and working directory really are its own), quiet, with its
//! output captured to a log file, in its own temporary root with:
//! * its own `--cache` (build stages run again: no shared stage cache),
//! * `--locked` (the lock is an input, never rewritten),
//! * its own copy of the mirror (see [`copy_mirror`]),
//! * the [`Variant`]'s thread count, umask, `TZ`, locale, `TMPDIR`, `HOME`
//!   and extra variables.
//!
//! `SOURCE_DATE_EPOCH` is an input: it is passed through unchanged.

use super::VerifyError;
use crate::options::BuildOptions;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

/// The conditions of one build.
#[derive(Debug, Clone)]
pub struct Variant {
    /// `a` or `b`.
    pub side: &'static str,
    /// Everything of this build lives below this directory.
    pub root: PathBuf,
    pub jobs: usize,
    pub umask: u32,
    /// Variables set (overriding the inherited environment).
    pub env: Vec<(String, String)>,
    /// Mirror copy: files created in reverse name order.
    pub reverse_mirror: bool,
    /// Mirror copy: every file's and directory's mtime set to this.
    pub mirror_mtime: Option<SystemTime>,
}

impl Variant {
    /// One line for the report.
    pub fn describe(&self) -> String {
        let get = |k: &str| {
            self.env
                .iter()
                .find(|(n, _)| n == k)
                .map_or("(inherited)", |(_, v)| v.as_str())
        };
        let junk = self
            .env
            .iter()
            .filter(|(k, _)| !["TZ", "LANG", "LC_ALL", "TMPDIR", "HOME"].contains(&k.as_str()))
            .count();
        format!(
            "jobs {}, umask {:03o}, TZ={}, LC_ALL={}, TMPDIR={}, {} extra env var(s), mirror copied in {} order{}",
            self.jobs,
            self.umask,
            get("TZ"),
            get("LC_ALL"),
            get("TMPDIR"),
            junk,
            if self.reverse_mirror {
                "reverse"
            } else {
                "name"
            },
            if self.mirror_mtime.is_some() {
                " with mtimes reset to 2001-09-09"
            } else {
                ""
            }
        )
    }

    /// The build's output directory.
    pub fn out(&self) -> PathBuf {
        self.root.join("out")
    }
}

fn var(k: &str, v: impl Into<String>) -> (String, String) {
    (k.to_string(), v.into())
}

/// The two builds: `a` plain, `b` different in everything that must not
/// matter. Roots are created by the caller.
pub fn variants(root_a: PathBuf, root_b: PathBuf) -> [Variant; 2] {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let a = Variant {
        side: "a",
        env: vec![
            var("TZ", "UTC"),
            var("LANG", "C.UTF-8"),
            var("LC_ALL", "C.UTF-8"),
            var("TMPDIR", root_a.join("tmp").to_string_lossy()),
        ],
        root: root_a,
        jobs: 1,
        umask: 0o022,
        reverse_mirror: false,
        mirror_mtime: None,
    };
    let b = Variant {
        side: "b",
        env: vec![
            // +12:45 / +13:45: an offset no one rounds to.
            var("TZ", "Pacific/Chatham"),
            // Turkish dotless i breaks naive case folding; sorting differs too.
            var("LANG", "tr_TR.UTF-8"),
            var("LC_ALL", "tr_TR.UTF-8"),
            var("TMPDIR", root_b.join("t m p/deeper").to_string_lossy()),
            var("HOME", root_b.join("home").to_string_lossy()),
            var("GZIP", "-9"),
            var("ZSTD_CLEVEL", "19"),
            var("ZSTD_NBTHREADS", "4"),
            var("TAR_OPTIONS", "--numeric-owner"),
            var("RAYON_NUM_THREADS", "3"),
            var("PYTHONHASHSEED", "random"),
            var("COLUMNS", "7"),
            var("IMGFORGE_VERIFY_JUNK", "x".repeat(4096)),
        ],
        root: root_b,
        jobs: cores.max(2),
        umask: 0o077,
        reverse_mirror: true,
        mirror_mtime: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000)),
    };
    [a, b]
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> VerifyError + '_ {
    move |source| VerifyError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Copy a mirror (files, directories, symlinks) to `dst`, creating entries
/// in reverse name order when `reverse`, and setting every mtime to `mtime`.
/// Returns the number of files copied.
pub fn copy_mirror(
    src: &Path,
    dst: &Path,
    reverse: bool,
    mtime: Option<SystemTime>,
) -> Result<u64, VerifyError> {
    std::fs::create_dir_all(dst).map_err(io_err(dst))?;
    let mut names: Vec<_> = std::fs::read_dir(src)
        .map_err(io_err(src))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(io_err(src))?;
    names.sort();
    if reverse {
        names.reverse();
    }
    let mut n = 0;
    for name in names {
        let (s, d) = (src.join(&name), dst.join(&name));
        let meta = std::fs::symlink_metadata(&s).map_err(io_err(&s))?;
        if meta.is_dir() {
            n += copy_mirror(&s, &d, reverse, mtime)?;
        } else if meta.file_type().is_symlink() {
            let t = std::fs::read_link(&s).map_err(io_err(&s))?;
            std::os::unix::fs::symlink(t, &d).map_err(io_err(&d))?;
        } else {
            std::fs::copy(&s, &d).map_err(io_err(&s))?;
            if let Some(t) = mtime {
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&d)
                    .map_err(io_err(&d))?;
                f.set_modified(t).map_err(io_err(&d))?;
            }
            n += 1;
        }
    }
    if let Some(t) = mtime {
        std::fs::File::open(dst)
            .and_then(|f| f.set_modified(t))
            .map_err(io_err(dst))?;
    }
    Ok(n)
}

/// The binary to run builds with: `IMGFORGE_BIN`, else this executable.
pub fn imgforge_exe() -> Result<PathBuf, VerifyError> {
    if let Some(p) = std::env::var_os("IMGFORGE_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().map_err(io_err(Path::new("/proc/self/exe")))?;
    let name = exe
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !name.starts_with("imgforge") {
        return Err(VerifyError::NoBinary { exe });
    }
    Ok(exe)
}

fn abs(p: &Path) -> PathBuf {
    p.canonicalize()
        .or_else(|_| std::path::absolute(p))
        .unwrap_or_else(|_| p.to_path_buf())
}

/// One finished build.
#[derive(Debug, Clone)]
pub struct BuildRun {
    pub out: PathBuf,
    pub seconds: f64,
}

/// The options of one side's build: the user's, with this side's output,
/// cache, job count and mirror copy, every path absolute (the child runs
/// in another directory), the lock frozen, and no metadata file or JSON.
fn child_options(opts: &BuildOptions, v: &Variant, mirror: Option<&Path>) -> BuildOptions {
    let c = &opts.common;
    let abs_opt = |p: &Option<PathBuf>| p.as_deref().map(abs);
    let mut child = opts.clone();
    child.common.recipes = abs(&c.recipes);
    child.common.base = abs_opt(&c.base);
    child.common.mirror = mirror.map(abs);
    child.common.cache = Some(v.root.join("cache"));
    child.out = v.out();
    child.bundle = opts.bundle.as_ref().map(|_| v.root.join("bundle.tar"));
    child.jobs = Some(v.jobs);
    child.locked = true;
    child.quiet = true;
    child.metadata_file = None;
    child.json = false;
    child.sign_key = abs_opt(&opts.sign_key);
    child.scratch = abs_opt(&opts.scratch);
    // Deliberately no remote cache: each side proves the bytes by building
    // them, so neither reads nor uploads step results (nor the recipe's
    // `[cache]`).
    child.remote = crate::options::RemoteCacheOptions {
        from: None,
        to: None,
        ignore_recipe: true,
    };
    child
}

/// Run one build in `v.root` (which must exist).
pub fn run_build(
    exe: &Path,
    opts: &BuildOptions,
    v: &Variant,
    mirror: Option<&Path>,
) -> Result<BuildRun, VerifyError> {
    for d in ["cache", "tmp", "t m p/deeper", "home", "cwd"] {
        let p = v.root.join(d);
        std::fs::create_dir_all(&p).map_err(io_err(&p))?;
    }
    let args = child_options(opts, v, mirror).to_args();
    let log = v.root.join("build.log");
    let log_file = std::fs::File::create(&log).map_err(io_err(&log))?;
    let log_err = log_file.try_clone().map_err(io_err(&log))?;
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(format!("umask {:03o} && exec \"$0\" \"$@\"", v.umask))
        .arg(exe)
        .args(&args)
        .current_dir(v.root.join("cwd"))
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(log_err);
    for (k, val) in &v.env {
        cmd.env(k, val);
    }
    if let Some(sde) = opts.source_date_epoch {
        cmd.env("SOURCE_DATE_EPOCH", sde.to_string());
    }
    let t0 = Instant::now();
    let status = cmd.status().map_err(io_err(exe))?;
    let seconds = t0.elapsed().as_secs_f64();
    if !status.success() {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(30)..].join("\n");
        return Err(VerifyError::BuildFailed {
            side: v.side,
            conditions: v.describe(),
            status: status.to_string(),
            log: tail,
        });
    }
    Ok(BuildRun {
        out: v.out(),
        seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_copy_reverses_and_resets_mtimes() {
        let src = tempfile::tempdir().unwrap();
        std::fs::create_dir(src.path().join("pool")).unwrap();
        for n in ["a.deb", "b.deb", "c.deb"] {
            std::fs::write(src.path().join("pool").join(n), n).unwrap();
        }
        std::fs::write(src.path().join("Packages"), "x").unwrap();
        let dst = tempfile::tempdir().unwrap();
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        let n = copy_mirror(src.path(), &dst.path().join("m"), true, Some(t)).unwrap();
        assert_eq!(n, 4);
        let m = std::fs::metadata(dst.path().join("m/pool/b.deb")).unwrap();
        assert_eq!(m.modified().unwrap(), t);
        assert_eq!(
            std::fs::read_to_string(dst.path().join("m/pool/c.deb")).unwrap(),
            "c.deb"
        );
    }

    #[test]
    fn each_side_builds_with_every_flag_of_the_user() {
        let opts = BuildOptions {
            common: crate::options::CommonOptions {
                recipes: "recipes".into(),
                base: None,
                mirror: None,
                apt: false,
                cache: None,
            },
            out: "out".into(),
            bundle: None,
            jobs: None,
            compression: crate::options::Compression::ZSTD,
            locked: false,
            use_cache: true,
            quiet: false,
            force: false,
            metadata_file: Some("m.json".into()),
            json: true,
            source_date_epoch: None,
            max_package_entries: 77,
            layers: crate::options::LayerPolicy::Single,
            sign_key: Some("/k/key.pem".into()),
            unpack_roots: true,
            scratch: Some("/s".into()),
            executor: crate::options::Executor::Buildkit {
                host: Some("tcp://b:2375".into()),
            },
            remote: crate::options::RemoteCacheOptions {
                from: Some("127.0.0.1:5000/c".into()),
                to: None,
                ignore_recipe: false,
            },
        };
        let [a, _] = variants("/x/a".into(), "/y/b".into());
        let args: Vec<String> = child_options(&opts, &a, Some(Path::new("/m")))
            .to_args()
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect();
        let line = args.join(" ");
        for want in [
            "--max-package-entries 77",
            "--unpack-roots",
            "--scratch /s",
            "--sign-key /k/key.pem",
            "--layers single",
            "--compression zstd",
            "--mirror /m",
            "--no-apt",
            "--locked",
            "--jobs 1",
            "--executor buildkit=tcp://b:2375",
            "--no-remote-cache",
        ] {
            assert!(line.contains(want), "{want} missing from {line}");
        }
        assert!(!line.contains("--cache-from"), "{line}");
        assert!(
            !line.contains("m.json") && !line.contains("--format"),
            "{line}"
        );
        assert!(line.contains("--out /x/a/out"), "{line}");
    }

    #[test]
    fn variants_differ_in_what_must_not_matter() {
        let [a, b] = variants("/x/a".into(), "/y/b".into());
        assert_ne!(a.umask, b.umask);
        assert_ne!(a.jobs, b.jobs);
        assert!(b.describe().contains("umask 077"), "{}", b.describe());
        assert!(a.describe().contains("jobs 1"), "{}", a.describe());
    }
}
