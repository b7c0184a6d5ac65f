//! Pruning the step store (`imgforge gc`): keep what the last build of each
//! given recipe tree used, remove the rest.
//!
//! Every finished build records the store entries it read or wrote as its
//! tree's root (`roots/<hex>.json`, see [`super::store`]). Keys are salted
//! with imgforge's sources, so each new imgforge, each changed package and
//! each edited recipe leaves entries no build will ask for again; without
//! pruning the store only grows. An entry is kept when a given tree's root
//! lists it or a directory above it. The store's lock is taken exclusively
//! first, so no build can be writing meanwhile (gc then fails with a hint);
//! leftovers in `tmp/` are removed with the rest.

use super::store::{Root, StepStore, StoreError, root_name};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Entries of the store, by where they live: `(directory, depth)`; an
/// entry is a file or directory that many levels below the directory.
const LAYOUT: &[(&str, usize)] = &[
    ("steps", 2),
    ("blobs/sha256", 1),
    ("stamps", 1),
    ("trees", 1),
    ("findings", 1),
    ("dpkg-lists", 2),
    ("stages", 1),
    ("roots", 1),
    ("tmp", 1),
];

/// What pruning did (or would do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pruned {
    pub kept: usize,
    pub removed: usize,
    pub removed_bytes: u64,
    /// Removed entries by kind (`steps`, `blobs/sha256`, ...).
    pub by_kind: BTreeMap<String, usize>,
    /// Given trees with no recorded build (nothing kept for them).
    pub unbuilt: Vec<PathBuf>,
}

/// Prune the step store at `root` for `trees`; with `dry_run`, only count.
pub fn prune(root: &Path, trees: &[PathBuf], dry_run: bool) -> Result<Pruned, StoreError> {
    let mut out = Pruned::default();
    if !root.is_dir() {
        return Ok(out);
    }
    let store = StepStore::open_unlocked(root)?;
    let _lock = store.lock(true)?;
    let mut keep: BTreeSet<PathBuf> = BTreeSet::new();
    for t in trees {
        let name = root_name(t);
        let recorded = std::fs::read(root.join("roots").join(&name))
            .ok()
            .and_then(|b| serde_json::from_slice::<Root>(&b).ok());
        match recorded {
            Some(r) => {
                keep.extend(r.used);
                keep.insert(Path::new("roots").join(name));
            }
            None => out.unbuilt.push(t.clone()),
        }
    }
    for (dir, depth) in LAYOUT {
        for rel in entries(root, Path::new(dir), *depth) {
            if rel.ancestors().any(|a| keep.contains(a)) {
                out.kept += 1;
                continue;
            }
            let path = root.join(&rel);
            out.removed_bytes += super::store::tree_size(&path);
            out.removed += 1;
            *out.by_kind.entry((*dir).to_string()).or_default() += 1;
            if !dry_run {
                remove(&path).map_err(|e| store.error("cannot remove", &path, e))?;
            }
        }
    }
    Ok(out)
}

/// Entries `depth` levels below `root/dir`, relative to `root`, sorted.
fn entries(root: &Path, dir: &Path, depth: usize) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = walkdir::WalkDir::new(root.join(dir))
        .min_depth(depth)
        .max_depth(depth)
        .sort_by_file_name()
        .into_iter()
        .filter_map(Result::ok)
        .filter_map(|e| e.path().strip_prefix(root).ok().map(Path::to_path_buf))
        .collect();
    v.sort();
    v
}

fn remove(p: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(p)?.is_dir() {
        true => std::fs::remove_dir_all(p),
        false => std::fs::remove_file(p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_what_a_root_lists_and_removes_the_rest() {
        let d = tempfile::tempdir().unwrap();
        let tree = d.path().join("recipes");
        std::fs::create_dir_all(&tree).unwrap();
        let root = d.path().join("plan");
        {
            let s = StepStore::open(&root).unwrap();
            s.put("layer", "used", &1u32).unwrap();
            s.put("layer", "stale", &2u32).unwrap();
            std::fs::write(s.blob("sha256:aa"), b"kept").unwrap();
            std::fs::write(root.join("blobs/sha256/bb"), b"stale blob").unwrap();
            std::fs::create_dir_all(root.join("findings/old")).unwrap();
            std::fs::write(root.join("findings/old/x.json"), b"{}").unwrap();
            for stage in ["kept", "old"] {
                std::fs::create_dir_all(root.join("stages").join(stage).join("files")).unwrap();
                std::fs::write(
                    root.join("stages").join(stage).join("artifacts.json"),
                    b"{}",
                )
                .unwrap();
            }
            // A store that only noted "used", blob aa and one build stage.
            let fresh = StepStore::open_unlocked(&root).unwrap();
            assert!(fresh.get::<u32>("layer", "used").is_some());
            let _ = fresh.blob("sha256:aa");
            fresh.mark(Path::new("stages").join("kept"));
            fresh.write_root(&tree).unwrap();
        }
        let other = d.path().join("never-built");
        let dry = prune(&root, &[tree.clone(), other.clone()], true).unwrap();
        assert_eq!(dry.removed, 4, "{dry:?}");
        assert_eq!(dry.unbuilt, vec![other]);
        assert!(root.join("steps/layer/stale.json").exists(), "dry run");
        let done = prune(&root, std::slice::from_ref(&tree), false).unwrap();
        assert_eq!(
            (done.removed, done.removed_bytes),
            (4, 1 + 10 + 2 + 2),
            "{done:?}"
        );
        assert!(root.join("steps/layer/used.json").exists());
        assert!(root.join("blobs/sha256/aa").exists());
        assert!(!root.join("steps/layer/stale.json").exists());
        assert!(!root.join("blobs/sha256/bb").exists());
        assert!(!root.join("findings/old").exists());
        assert!(root.join("stages/kept/artifacts.json").exists());
        assert!(
            !root.join("stages/old").exists(),
            "a stage no build used is collected"
        );
        // Nothing given: everything goes, the roots too.
        let all = prune(&root, &[], false).unwrap();
        assert!(all.removed >= 3, "{all:?}");
        assert!(!root.join("blobs/sha256/aa").exists());
    }

    #[test]
    fn a_running_build_keeps_gc_out() {
        let d = tempfile::tempdir().unwrap();
        let _build = StepStore::open(d.path()).unwrap();
        let e = prune(d.path(), &[], false).unwrap_err().to_string();
        assert!(e.contains("is a build using the cache?"), "{e}");
    }
}
