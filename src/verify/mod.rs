//! Reproducibility checks: `imgforge verify`.
//!
//! Two modes, one report ([`report::Report`]):
//!
//! * **rebuild** (no `--against`): the tree is built twice, concurrently, by
//!   the imgforge binary itself in two isolated temporary roots that differ
//!   in everything that must not matter ([`rebuild`]): thread count, output
//!   and temporary paths, umask, time zone, locale, extra environment, and
//!   the mirror's file order and mtimes (each build reads its own copy).
//!   Each build has its own cache, so build stages really run twice. Then
//!   every output file is compared byte for byte ([`compare::compare_dirs`]).
//! * **against** (`--against RECORD`): the tree is built once (perturbed,
//!   fresh cache) and its record is compared with `RECORD`
//!   ([`compare::compare_record`]). When the recorded output directory is
//!   still beside the record (`blobs/`), changed layers and documents are
//!   diffed in depth too.
//!
//! On a difference, the report names the first one down the tree: image,
//! layer (index and both digests) or document, then the path inside the
//! layer and what differs (content, size, mode, owner, mtime, link, type,
//! order), or the JSON field path and both values. Layers are streamed side
//! by side ([`tardiff`]), never unpacked.
//!
//! Before building, a missing or stale lock is written as `imgforge build`
//! would (unless `--locked`); the builds themselves run `--locked`.

pub mod compare;
pub mod jsondiff;
pub mod rebuild;
pub use crate::plan::record;
pub mod report;
pub mod tardiff;

use crate::options::BuildOptions;
use crate::ui::Status;

/// Options of `verify`.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    pub build: BuildOptions,
    pub against: Option<std::path::PathBuf>,
    pub json: bool,
}
use report::{BuildInfo, Report};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Errors of `verify` (a difference is not an error: see [`run`]).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "build {side} of verify failed ({status}); it ran with {conditions}\n--- last lines of its log ---\n{log}\n---\nhelp: fix the build first: `imgforge build` on this tree fails the same way, or depends on one of these conditions"
    )]
    BuildFailed {
        side: &'static str,
        conditions: String,
        status: String,
        log: String,
    },
    #[error(
        "{0}\nhelp: pass the imgforge-record.json that `imgforge build` wrote into its output directory"
    )]
    BadRecord(String),
    #[error("{path}: {reason}")]
    BadOutput { path: PathBuf, reason: String },
    #[error(
        "cannot find the imgforge binary to run builds with (this program is {exe})\nhelp: set IMGFORGE_BIN to the imgforge executable"
    )]
    NoBinary { exe: PathBuf },
}

/// Mirrors larger than this are not copied (each build reads the original).
const MIRROR_COPY_LIMIT: u64 = 4 << 30;

/// Write the lock as `imgforge build` would, when it is missing or stale.
fn ensure_lock(opts: &VerifyOptions, st: Status) -> anyhow::Result<crate::recipe::Tree> {
    let common = &opts.build.common;
    let tree = crate::recipe::load_tree(&crate::recipe::LoadOptions {
        recipes: common.recipes.clone(),
        base: common.base.clone(),
    })?;
    if opts.build.locked {
        return Ok(tree);
    }
    let path = tree.lock_path();
    let current = crate::resolve::Lock::read(&path).is_ok_and(|l| {
        l.arch == tree.source.arch && crate::resolve::stale_entries(&tree, &l).is_empty()
    });
    if !current {
        st.say(
            "Locking",
            "the lock is missing or stale; resolving once first",
        );
        let index =
            crate::resolve::load_index(&tree, &crate::resolve::SourceOptions::new(common, true))?;
        crate::resolve::lockfile::lock_tree(&tree, &index, false, Status { quiet: true })?;
    }
    Ok(tree)
}

/// `imgforge verify`. Prints the report on stdout; returns true when the
/// outputs are identical. Errors (a failed build, unreadable record) are
/// `Err`; a difference is `Ok(false)`.
pub fn run(opts: &VerifyOptions) -> anyhow::Result<bool> {
    let st = Status {
        quiet: opts.build.quiet,
    };
    let record = match &opts.against {
        Some(p) => Some(record::read(p).map_err(VerifyError::BadRecord)?),
        None => None,
    };
    let tree = ensure_lock(opts, st)?;
    let exe = rebuild::imgforge_exe()?;
    let tmp = tempfile::Builder::new()
        .prefix("imgforge-verify-")
        .tempdir()
        .map_err(|e| VerifyError::Io {
            path: std::env::temp_dir(),
            source: e,
        })?;
    let root_a = tmp.path().join("a");
    let root_b = tmp.path().join("second build, other path").join("b");
    let [va, vb] = rebuild::variants(root_a, root_b);
    let sides: Vec<&rebuild::Variant> = if record.is_some() {
        vec![&vb]
    } else {
        vec![&va, &vb]
    };
    let mirror = opts
        .build
        .common
        .mirror
        .clone()
        .or_else(|| tree.source.mirror.clone());
    let mirrors = side_mirrors(&sides, mirror, st)?;
    st.say(
        "Building",
        format!(
            "{} time(s) in {} ({})",
            sides.len(),
            tmp.path().display(),
            if sides.len() == 2 {
                "concurrently, fresh caches"
            } else {
                "fresh cache"
            }
        ),
    );
    let runs = build_sides(&exe, opts, &sides, &mirrors)?;
    let builds: Vec<BuildInfo> = sides
        .iter()
        .zip(&runs)
        .map(|(v, r)| BuildInfo {
            side: v.side.to_string(),
            conditions: v.describe(),
            seconds: (r.seconds * 10.0).round() / 10.0,
        })
        .collect();
    for b in &builds {
        st.say("Built", format!("{} in {:.1}s", b.side, b.seconds));
    }
    st.say("Comparing", "outputs");
    let (outcome, mode, a, b) = match (&record, &opts.against) {
        (Some(rec), Some(path)) => against_record(rec, path, &runs[0].out)?,
        _ => two_builds(opts, &runs, [&va, &vb])?,
    };
    let report = Report {
        identical: outcome.difference.is_none(),
        mode: mode.to_string(),
        a,
        b,
        builds,
        compared: outcome.counts,
        difference: outcome.difference,
    };
    let bytes = if opts.json {
        report.to_json()
    } else {
        report.to_text().into_bytes()
    };
    let mut out = std::io::stdout().lock();
    out.write_all(&bytes)?;
    out.flush()?;
    Ok(report.identical)
}

/// The mirror each side builds from: a copy per side (file order and
/// mtimes varied) when the mirror is a directory of at most 4 GiB, else
/// the mirror itself.
fn side_mirrors(
    sides: &[&rebuild::Variant],
    mirror: Option<PathBuf>,
    st: Status,
) -> Result<Vec<Option<PathBuf>>, VerifyError> {
    let copy_mirror = mirror
        .as_deref()
        .is_some_and(|m| m.is_dir() && crate::plan::store::tree_size(m) <= MIRROR_COPY_LIMIT);
    if mirror.is_some() && !copy_mirror {
        st.say(
            "Note",
            "the mirror is not copied (missing or over 4 GiB): its file order and mtimes are not varied",
        );
    }
    let mut mirrors = Vec::new();
    for v in sides {
        std::fs::create_dir_all(&v.root).map_err(|e| VerifyError::Io {
            path: v.root.clone(),
            source: e,
        })?;
        let m = match (&mirror, copy_mirror) {
            (Some(m), true) => {
                let dst = v.root.join("mirror");
                rebuild::copy_mirror(m, &dst, v.reverse_mirror, v.mirror_mtime)?;
                Some(dst)
            }
            (m, _) => m.clone(),
        };
        mirrors.push(m);
    }
    Ok(mirrors)
}

/// Run every side's build at once; the first failure is the error.
fn build_sides(
    exe: &Path,
    opts: &VerifyOptions,
    sides: &[&rebuild::Variant],
    mirrors: &[Option<PathBuf>],
) -> Result<Vec<rebuild::BuildRun>, VerifyError> {
    let results: Vec<Result<rebuild::BuildRun, VerifyError>> = std::thread::scope(|s| {
        let handles: Vec<_> = sides
            .iter()
            .zip(mirrors)
            .map(|(v, m)| s.spawn(move || rebuild::run_build(exe, &opts.build, v, m.as_deref())))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("build thread"))
            .collect()
    });
    results.into_iter().collect()
}

/// What a comparison found, its mode and the names of its two sides.
type Compared = (compare::Outcome, &'static str, String, String);

/// The new build against the record at `path`.
fn against_record(
    rec: &record::Record,
    path: &Path,
    new_out: &Path,
) -> Result<Compared, VerifyError> {
    let old_dir = compare::recorded_dir(path);
    let o = compare::compare_record(rec, old_dir.as_deref(), new_out)?;
    let with = if old_dir.is_some() {
        " (with its output directory)"
    } else {
        " (digests only)"
    };
    Ok((
        o,
        "against",
        format!("the record {}{with}", path.display()),
        "a new build".to_string(),
    ))
}

/// Two builds' outputs, then their bundles when `--bundle` was given.
fn two_builds(
    opts: &VerifyOptions,
    runs: &[rebuild::BuildRun],
    [va, vb]: [&rebuild::Variant; 2],
) -> Result<Compared, VerifyError> {
    let mut o = compare::compare_dirs(&runs[0].out, &runs[1].out)?;
    if o.difference.is_none() && opts.build.bundle.is_some() {
        let (x, y) = (va.root.join("bundle.tar"), vb.root.join("bundle.tar"));
        if !compare::same_bytes(&x, &y)? {
            o.difference = Some(compare::diff_files(&x, &y, "bundle.tar")?);
        } else {
            o.counts.files += 1;
            o.counts.bytes += std::fs::metadata(&y).map(|m| m.len()).unwrap_or(0);
        }
    }
    Ok((o, "rebuild", "build a".to_string(), "build b".to_string()))
}
