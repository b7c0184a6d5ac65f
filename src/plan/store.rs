//! The step store: results of build-plan steps, found again by key.
//!
//! ```text
//! <cache>/plan/blobs/sha256/<hex>     layer blobs and path indexes, per-image archives, bundles
//! <cache>/plan/steps/<kind>/<key>.json  a step's record (what it produced)
//! <cache>/plan/trees/<key>/...          a step that produced several files (SBOMs)
//! <cache>/plan/tmp/                     staging for the above, same file system
//! <cache>/plan/roots/<hex>.json          what the last build of one recipe tree used
//! <cache>/plan/stages/<key>/            a build stage's artifacts (the sandbox's store)
//! ```
//!
//! The store notes every entry a build reads or writes (records, blobs and
//! their stamps, trees, and what [`StepStore::mark`] is told), and a
//! finished build writes that list as its tree's root
//! ([`StepStore::write_root`]); `imgforge gc` keeps what the given trees'
//! roots list and removes the rest (module `prune`). Builds hold a shared
//! lock on `<cache>/plan/.lock` while they run; gc takes it exclusively.
//!
//! A record is written (atomically) only after everything it names is in
//! place, so a record always means a complete result; a blob a record names
//! that has gone missing makes the step run again. Outputs are assembled from
//! the store with hard links (copies across file systems); blobs are made
//! read-only, and each blob's size and modification time are noted when it
//! is stored (`stamps/<hex>`): a blob changed in place through a link in some
//! output (root ignores the read-only bit) no longer matches its stamp, and
//! the steps that made it run again.
//!
//! A blob changed without its size or time (a failing disk) is caught by
//! its bytes: a blob a build reuses for an output is hashed (streamed,
//! once per build) before it is linked out ([`StepStore::check_blob`]); one
//! that does not hash to its name is evicted (blob and stamp removed), so
//! the step that made it runs again. Blobs a build writes are hashed as
//! they are written.

use serde::{Serialize, de::DeserializeOwned};
use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// What one kind of step keeps in the store, listed one way for the local
/// store and the remote cache ([`super::remote`]): its record (stored as
/// `steps/<KIND>/<key>.json`), the blobs the record names, and, for a step
/// that made several files, its tree (`trees/<key>/`).
pub trait StepRecord: Serialize + DeserializeOwned {
    /// The step kind: the record's directory and the remote tag's prefix.
    const KIND: &'static str;
    /// Whether the step's files are a stored tree, `trees/<key>/`.
    const TREE: bool = false;
    /// Whether the build's `Steps` line counts it (a step fetched from a
    /// remote cache is counted there as `remote` only if so).
    const COUNTED: bool = true;
    /// The blobs (`sha256:<hex>`) the record names, each once.
    fn blobs(&self) -> Vec<String>;
}

/// Errors of the step store, each naming the file.
#[derive(Debug, thiserror::Error)]
#[error("step store: {what} {}: {source}\nhelp: check free space and permissions of the cache directory (--cache), or remove {} to start afresh", path.display(), root.display())]
pub struct StoreError {
    what: &'static str,
    path: PathBuf,
    root: PathBuf,
    #[source]
    source: io::Error,
}

/// A step store rooted at a directory.
#[derive(Debug, Clone)]
pub struct StepStore {
    root: PathBuf,
    /// Entries this build used, relative to `root` (shared by clones).
    used: Arc<Mutex<BTreeSet<PathBuf>>>,
    /// The shared lock builds hold (`None` for a store that is not locked).
    _lock: Option<Arc<std::fs::File>>,
    /// Blobs (hex) this build hashed or wrote: known to match their names.
    verified: Arc<Mutex<BTreeSet<String>>>,
}

/// What checking a stored blob's bytes against its name found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobCheck {
    /// There, unchanged since it was stored, and its bytes hash to its name.
    Good,
    /// Missing, or changed since it was stored (its stamp differs).
    Missing,
    /// Its bytes do not hash to its name (or cannot be read): `why` says
    /// what was found. It has been removed from the store.
    Evicted { why: String },
}

/// What the last build of one recipe tree used (`roots/<hex>.json`).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Root {
    /// The recipe tree (canonical path), for messages.
    pub tree: PathBuf,
    /// Store entries, relative to the store's root, sorted.
    pub used: Vec<PathBuf>,
}

/// The name of `tree`'s root record.
pub fn root_name(tree: &Path) -> String {
    use sha2::Digest as _;
    let canon = tree.canonicalize().unwrap_or_else(|_| tree.to_path_buf());
    let digest = sha2::Sha256::digest(canon.as_os_str().as_encoded_bytes());
    format!("{}.json", hex::encode(digest))
}

impl StepStore {
    /// Open (creating) the store at `root` for a build: with its lock
    /// held shared for as long as the store (or a clone) lives.
    pub fn open(root: &Path) -> Result<StepStore, StoreError> {
        let mut s = StepStore::open_unlocked(root)?;
        s._lock = Some(Arc::new(s.lock(false)?));
        Ok(s)
    }

    /// Open (creating) the store at `root` without taking its lock.
    pub fn open_unlocked(root: &Path) -> Result<StepStore, StoreError> {
        let s = StepStore {
            root: root.to_path_buf(),
            used: Arc::default(),
            _lock: None,
            verified: Arc::default(),
        };
        for d in [
            s.blobs_dir(),
            s.root.join("stamps"),
            s.root.join("steps"),
            s.root.join("trees"),
            s.tmp_dir(),
        ] {
            std::fs::create_dir_all(&d).map_err(|e| s.err("cannot create", &d, e))?;
        }
        Ok(s)
    }

    /// An error about `path` in this store.
    pub fn error(&self, what: &'static str, path: &Path, source: io::Error) -> StoreError {
        self.err(what, path, source)
    }

    /// Take the store's lock: shared (a build) or exclusive (gc, which
    /// fails at once with a hint while a build holds it).
    pub fn lock(&self, exclusive: bool) -> Result<std::fs::File, StoreError> {
        use rustix::fs::{FlockOperation, flock};
        let p = self.root.join(".lock");
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(|e| self.err("cannot open", &p, e))?;
        let op = match exclusive {
            true => FlockOperation::NonBlockingLockExclusive,
            false => FlockOperation::LockShared,
        };
        flock(&f, op).map_err(|e| {
            self.err(
                "cannot lock (is a build using the cache? run gc when none is)",
                &p,
                e.into(),
            )
        })?;
        Ok(f)
    }

    /// Note that this build used `rel` (relative to the store's root; a
    /// directory keeps everything in it).
    pub fn mark(&self, rel: impl Into<PathBuf>) {
        self.used.lock().expect("used").insert(rel.into());
    }

    /// The store's root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Record what this build used as `tree`'s root (atomically).
    pub fn write_root(&self, tree: &Path) -> Result<(), StoreError> {
        let dir = self.root.join("roots");
        std::fs::create_dir_all(&dir).map_err(|e| self.err("cannot create", &dir, e))?;
        let root = Root {
            tree: tree.canonicalize().unwrap_or_else(|_| tree.to_path_buf()),
            used: self.used.lock().expect("used").iter().cloned().collect(),
        };
        let path = dir.join(root_name(tree));
        let tmp = tempfile::NamedTempFile::new_in(self.tmp_dir())
            .map_err(|e| self.err("cannot write in", &self.tmp_dir(), e))?;
        let bytes = serde_json::to_vec_pretty(&root).map_err(io::Error::other);
        bytes
            .and_then(|b| std::fs::write(tmp.path(), b))
            .map_err(|e| self.err("cannot write", tmp.path(), e))?;
        tmp.persist(&path)
            .map_err(|e| self.err("cannot write", &path, e.error))?;
        Ok(())
    }

    fn mark_blob(&self, digest: &str) {
        let hex = digest.trim_start_matches("sha256:");
        self.mark(Path::new("blobs/sha256").join(hex));
        self.mark(Path::new("stamps").join(hex));
    }

    fn err(&self, what: &'static str, path: &Path, source: io::Error) -> StoreError {
        StoreError {
            what,
            path: path.to_path_buf(),
            root: self.root.clone(),
            source,
        }
    }

    /// `blobs/sha256`: layer writers write straight into it.
    pub fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }

    /// Scratch space on the store's file system.
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// The path of blob `digest` (`sha256:<hex>` or `<hex>`).
    pub fn blob(&self, digest: &str) -> PathBuf {
        self.mark_blob(digest);
        self.blobs_dir().join(digest.trim_start_matches("sha256:"))
    }

    fn record_path(&self, kind: &str, key: &str) -> PathBuf {
        self.root
            .join("steps")
            .join(kind)
            .join(format!("{key}.json"))
    }

    /// The record of step `kind`/`key`, if there is a readable one.
    pub fn get<T: DeserializeOwned>(&self, kind: &str, key: &str) -> Option<T> {
        let bytes = std::fs::read(self.record_path(kind, key)).ok()?;
        let v = serde_json::from_slice(&bytes).ok()?;
        self.mark(Path::new("steps").join(kind).join(format!("{key}.json")));
        Some(v)
    }

    /// Store the record of step `kind`/`key` (atomically).
    pub fn put<T: Serialize>(&self, kind: &str, key: &str, value: &T) -> Result<(), StoreError> {
        let path = self.record_path(kind, key);
        let dir = path.parent().expect("records live in a directory");
        std::fs::create_dir_all(dir).map_err(|e| self.err("cannot create", dir, e))?;
        let v = serde_json::to_value(value)
            .map_err(|e| self.err("cannot encode", &path, io::Error::other(e)))?;
        let tmp = tempfile::NamedTempFile::new_in(self.tmp_dir())
            .map_err(|e| self.err("cannot write in", &self.tmp_dir(), e))?;
        std::fs::write(tmp.path(), crate::json::to_canonical(&v))
            .map_err(|e| self.err("cannot write", tmp.path(), e))?;
        tmp.persist(&path)
            .map_err(|e| self.err("cannot write", &path, e.error))?;
        self.mark(Path::new("steps").join(kind).join(format!("{key}.json")));
        Ok(())
    }

    /// Move a finished file into the blob store under `digest`, read-only.
    pub fn adopt_blob(&self, file: &Path, digest: &str) -> Result<PathBuf, StoreError> {
        let dest = self.blob(digest);
        std::fs::rename(file, &dest).map_err(|e| self.err("cannot store", &dest, e))?;
        self.seal_blob(digest)?;
        Ok(dest)
    }

    /// Make a blob written in place by a layer writer read-only and note
    /// its stamp.
    pub fn seal_blob(&self, digest: &str) -> Result<(), StoreError> {
        let p = self.blob(digest);
        set_read_only(&p).map_err(|e| self.err("cannot protect", &p, e))?;
        let stamp = stamp(&p).map_err(|e| self.err("cannot read", &p, e))?;
        let sp = self.stamp_path(digest);
        let tmp = tempfile::NamedTempFile::new_in(self.tmp_dir())
            .map_err(|e| self.err("cannot write in", &self.tmp_dir(), e))?;
        std::fs::write(tmp.path(), stamp).map_err(|e| self.err("cannot write", tmp.path(), e))?;
        tmp.persist(&sp)
            .map_err(|e| self.err("cannot write", &sp, e.error))?;
        // Hashed as it was written: its name is its digest.
        self.verified
            .lock()
            .expect("verified")
            .insert(digest.trim_start_matches("sha256:").to_string());
        Ok(())
    }

    /// Check blob `digest` before a build ships it: there, unchanged since
    /// it was stored ([`StepStore::has_blob`]) and its bytes (streamed)
    /// hash to its name. Each blob is hashed once per build. A blob that
    /// does not match is evicted: its file and stamp are removed, so the
    /// step that made it runs again.
    pub fn check_blob(&self, digest: &str) -> Result<BlobCheck, StoreError> {
        let hex = digest.trim_start_matches("sha256:");
        if !self.has_blob(digest) {
            return Ok(BlobCheck::Missing);
        }
        if self.verified.lock().expect("verified").contains(hex) {
            return Ok(BlobCheck::Good);
        }
        let path = self.blob(digest);
        let why = match crate::digest::sha256_file(&path) {
            Ok((found, _)) if found == hex => {
                self.verified
                    .lock()
                    .expect("verified")
                    .insert(hex.to_string());
                return Ok(BlobCheck::Good);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(BlobCheck::Missing),
            Ok((found, _)) => format!("its bytes hash to sha256:{found}"),
            Err(e) => format!("it cannot be read: {e}"),
        };
        self.evict_blob(digest)?;
        Ok(BlobCheck::Evicted { why })
    }

    /// Remove blob `digest` and its stamp from the store.
    pub fn evict_blob(&self, digest: &str) -> Result<(), StoreError> {
        self.verified
            .lock()
            .expect("verified")
            .remove(digest.trim_start_matches("sha256:"));
        for p in [self.blob(digest), self.stamp_path(digest)] {
            match std::fs::remove_file(&p) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(self.err("cannot remove", &p, e));
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn stamp_path(&self, digest: &str) -> PathBuf {
        self.root
            .join("stamps")
            .join(digest.trim_start_matches("sha256:"))
    }

    /// Whether blob `digest` is there, unchanged since it was stored.
    pub fn has_blob(&self, digest: &str) -> bool {
        self.mark_blob(digest);
        let Ok(noted) = std::fs::read_to_string(self.stamp_path(digest)) else {
            return false;
        };
        stamp(&self.blob(digest)).is_ok_and(|now| now == noted)
    }

    /// The directory of a stored tree, if complete.
    pub fn tree(&self, key: &str) -> Option<PathBuf> {
        let p = self.root.join("trees").join(key);
        self.mark(Path::new("trees").join(key));
        p.is_dir().then_some(p)
    }

    /// A fresh staging directory for a tree (or any temporary work).
    pub fn stage_dir(&self) -> Result<tempfile::TempDir, StoreError> {
        tempfile::Builder::new()
            .prefix("step-")
            .tempdir_in(self.tmp_dir())
            .map_err(|e| self.err("cannot create a directory in", &self.tmp_dir(), e))
    }

    /// Move a finished staging directory into the store as tree `key`.
    pub fn adopt_tree(&self, staged: tempfile::TempDir, key: &str) -> Result<PathBuf, StoreError> {
        let dest = self.root.join("trees").join(key);
        self.mark(Path::new("trees").join(key));
        let src = staged.keep();
        if let Err(e) = std::fs::rename(&src, &dest) {
            if dest.is_dir() {
                // Another build stored the same tree first: same bytes.
                let _ = std::fs::remove_dir_all(&src);
            } else {
                return Err(self.err("cannot store", &dest, e));
            }
        }
        Ok(dest)
    }
}

/// Total size of the regular files at or below `path`.
pub fn tree_size(path: &Path) -> u64 {
    walkdir::WalkDir::new(path)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// `size mtime-nanoseconds` of a file: what an in-place write changes.
fn stamp(p: &Path) -> io::Result<String> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(p)?;
    Ok(format!("{} {}.{}", m.len(), m.mtime(), m.mtime_nsec()))
}

fn set_read_only(p: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o444))
}

/// Hard-link `from` to `to` (copy when linking is impossible, e.g. across
/// file systems). An existing `to` is left alone: it is the same content.
pub fn link_or_copy(from: &Path, to: &Path) -> io::Result<()> {
    if to.exists() {
        return Ok(());
    }
    if std::fs::hard_link(from, to).is_err() {
        std::fs::copy(from, to)?;
    }
    Ok(())
}

/// Link every file of the tree `from` into `to`, creating directories.
/// Files are visited in name order.
pub fn link_tree(from: &Path, to: &Path) -> io::Result<()> {
    for e in walkdir::WalkDir::new(from).sort_by_file_name() {
        let e = e.map_err(io::Error::other)?;
        let rel = e
            .path()
            .strip_prefix(from)
            .expect("walk stays below its root");
        let dest = to.join(rel);
        if e.file_type().is_dir() {
            std::fs::create_dir_all(&dest)?;
        } else if e.file_type().is_file() {
            link_or_copy(e.path(), &dest)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_missing_ones_are_none() {
        let d = tempfile::tempdir().unwrap();
        let s = StepStore::open(d.path()).unwrap();
        assert_eq!(s.get::<Vec<u32>>("layer", "k1"), None);
        s.put("layer", "k1", &vec![1u32, 2, 3]).unwrap();
        assert_eq!(s.get::<Vec<u32>>("layer", "k1"), Some(vec![1, 2, 3]));
        assert_eq!(s.get::<Vec<u32>>("layer", "k2"), None);
    }

    #[test]
    fn adopted_blobs_are_read_only_and_linked_out() {
        let d = tempfile::tempdir().unwrap();
        let s = StepStore::open(&d.path().join("store")).unwrap();
        let f = s.tmp_dir().join("x");
        std::fs::write(&f, b"data").unwrap();
        let p = s.adopt_blob(&f, "sha256:abcd").unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o444
        );
        let out = d.path().join("out");
        link_or_copy(&p, &out).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"data");
    }

    #[test]
    fn trees_are_adopted_whole() {
        let d = tempfile::tempdir().unwrap();
        let s = StepStore::open(d.path()).unwrap();
        assert!(s.tree("t").is_none());
        let st = s.stage_dir().unwrap();
        std::fs::create_dir_all(st.path().join("a/b")).unwrap();
        std::fs::write(st.path().join("a/b/f"), b"1").unwrap();
        let t = s.adopt_tree(st, "t").unwrap();
        let out = d.path().join("copy");
        link_tree(&t, &out).unwrap();
        assert_eq!(std::fs::read(out.join("a/b/f")).unwrap(), b"1");
    }
}
