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
}

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
    Ok(s)
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
