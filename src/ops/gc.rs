//! `imgforge gc [RECIPES...] [--dry-run] [--max-size BYTES]`: prune the
//! package store and the step store.
//!
//! Package store policy: a `.deb` referenced (by sha256) by the lock of any
//! given tree is always kept. Without `--max-size`, every other `.deb` is
//! removed; with it, unreferenced ones are removed largest first (ties by
//! sha256) only until the store fits.
//!
//! Step store (`plan/`): what the last build of a given tree used is kept,
//! everything else removed (`plan::prune`; `--max-size` does not apply).
//!
//! Leftovers: the logs kept of failed maintainer-script and build-stage runs
//! (`logs/`; an error message names them, no build reads them) and the
//! build-stage cache of earlier imgforge versions (`stages/`; stages now live
//! in the step store) are removed whole.

use crate::archive::store::Store;
use crate::resolve::Lock;
use anyhow::Result;
use std::collections::BTreeSet;
use std::path::PathBuf;

/// Options of `gc`.
#[derive(Debug, Clone)]
pub struct GcOptions {
    /// Recipe directories whose `imgforge.lock` files say what to keep.
    pub trees: Vec<PathBuf>,
    pub cache: PathBuf,
    pub dry_run: bool,
    pub max_size: Option<u64>,
    pub quiet: bool,
}

/// What `gc` did (or would do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcSummary {
    pub kept: usize,
    pub kept_bytes: u64,
    pub removed: usize,
    pub removed_bytes: u64,
    /// The step store's pruning.
    pub plan: crate::plan::prune::Pruned,
    /// Files removed from `logs/` and the legacy `stages/`, and their bytes.
    pub leftovers: (usize, u64),
}

/// Directories of the cache that no build reads: failure logs, and the
/// build-stage cache of earlier versions.
const LEFTOVERS: &[(&str, &str)] = &[
    ("logs", "logs of failed runs"),
    ("stages", "build-stage cache of an earlier imgforge"),
];

/// `imgforge gc`.
pub fn gc(opts: &GcOptions) -> Result<GcSummary> {
    let st = super::Status { quiet: opts.quiet };
    let mut keep = BTreeSet::new();
    for t in &opts.trees {
        let lock = Lock::read(&t.join("imgforge.lock"))?;
        for img in &lock.images {
            keep.extend(img.packages.iter().map(|p| p.sha256.clone()));
        }
    }
    let debs = Store::new(&opts.cache).debs();
    let total: u64 = debs.iter().map(|d| d.2).sum();
    let mut victims: Vec<&(String, PathBuf, u64)> =
        debs.iter().filter(|d| !keep.contains(&d.0)).collect();
    victims.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)));
    let mut s = GcSummary::default();
    let mut size = total;
    for v in victims {
        if opts.max_size.is_some_and(|m| size <= m) {
            break;
        }
        if !opts.dry_run {
            std::fs::remove_file(&v.1)?;
        }
        st.say(
            if opts.dry_run {
                "Would remove"
            } else {
                "Removed"
            },
            v.1.display(),
        );
        size -= v.2;
        s.removed += 1;
        s.removed_bytes += v.2;
    }
    s.kept = debs.len() - s.removed;
    s.kept_bytes = size;
    st.say(
        "Finished",
        format!(
            "store: kept {} .deb ({} bytes), {} {} ({} bytes)",
            s.kept,
            s.kept_bytes,
            if opts.dry_run {
                "would remove"
            } else {
                "removed"
            },
            s.removed,
            s.removed_bytes
        ),
    );
    if opts.max_size.is_some_and(|m| size > m) {
        st.say(
            "Warning",
            "the packages the locks reference exceed --max-size; they are kept",
        );
    }
    s.plan = prune_plan(opts, st)?;
    s.leftovers = prune_leftovers(opts, st)?;
    Ok(s)
}

/// Remove (or count, with `--dry-run`) the [`LEFTOVERS`] directories.
fn prune_leftovers(opts: &GcOptions, st: super::Status) -> Result<(usize, u64)> {
    let mut total = (0, 0);
    for (dir, what) in LEFTOVERS {
        let path = opts.cache.join(dir);
        let (files, bytes) = usage(&path);
        if files == 0 && !path.exists() {
            continue;
        }
        if !opts.dry_run {
            std::fs::remove_dir_all(&path)
                .map_err(|e| anyhow::anyhow!("removing {}: {e}", path.display()))?;
        }
        let verb = if opts.dry_run {
            "Would remove"
        } else {
            "Removed"
        };
        st.say(
            verb,
            format!("{} ({what}: {files} files, {bytes} bytes)", path.display()),
        );
        total = (total.0 + files, total.1 + bytes);
    }
    Ok(total)
}

/// Files and bytes under `path` (symlinks counted, not followed).
fn usage(path: &std::path::Path) -> (usize, u64) {
    let Ok(rd) = std::fs::read_dir(path) else {
        return (0, 0);
    };
    rd.flatten().fold((0, 0), |(n, b), e| match e.file_type() {
        Ok(t) if t.is_dir() => {
            let (n2, b2) = usage(&e.path());
            (n + n2, b + b2)
        }
        _ => (n + 1, b + e.metadata().map_or(0, |m| m.len())),
    })
}

/// The step store's part of gc, with its status lines.
fn prune_plan(opts: &GcOptions, st: super::Status) -> Result<crate::plan::prune::Pruned> {
    let p = crate::plan::prune::prune(&opts.cache.join("plan"), &opts.trees, opts.dry_run)?;
    for t in &p.unbuilt {
        st.say(
            "Warning",
            format!(
                "no build of {} is recorded in this cache: none of its build steps are kept\nhelp: build it once before gc to keep them",
                t.display()
            ),
        );
    }
    let kinds: Vec<String> = p.by_kind.iter().map(|(k, n)| format!("{k} {n}")).collect();
    st.say(
        "Finished",
        format!(
            "step store: kept {} entries, {} {} ({} bytes){}",
            p.kept,
            if opts.dry_run {
                "would remove"
            } else {
                "removed"
            },
            p.removed,
            p.removed_bytes,
            if kinds.is_empty() {
                String::new()
            } else {
                format!(": {}", kinds.join(", "))
            }
        ),
    );
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(cache: &std::path::Path, dry_run: bool) -> GcOptions {
        GcOptions {
            trees: Vec::new(),
            cache: cache.to_path_buf(),
            dry_run,
            max_size: None,
            quiet: true,
        }
    }

    #[test]
    fn gc_removes_failure_logs_and_the_legacy_stage_cache() {
        let t = tempfile::tempdir().unwrap();
        let c = t.path();
        std::fs::create_dir_all(c.join("logs")).unwrap();
        std::fs::write(c.join("logs/hello-0123456789ab-step-1.log"), "boom\n").unwrap();
        std::fs::create_dir_all(c.join("stages/k1/files")).unwrap();
        std::fs::write(c.join("stages/k1/files/a.out"), "12345").unwrap();
        std::fs::write(c.join("stages/k1/artifacts.json"), "{}").unwrap();
        std::fs::create_dir_all(c.join("store/sha256")).unwrap();
        let dry = gc(&opts(c, true)).unwrap();
        assert_eq!(dry.leftovers, (3, 12));
        assert!(c.join("logs").is_dir() && c.join("stages").is_dir());
        let s = gc(&opts(c, false)).unwrap();
        assert_eq!(s.leftovers, (3, 12));
        assert!(!c.join("logs").exists() && !c.join("stages").exists());
        assert!(c.join("store/sha256").is_dir(), "the package store stays");
        assert_eq!(gc(&opts(c, false)).unwrap().leftovers, (0, 0));
    }
}
