//! Roots made of shared layer trees with overlayfs.
//!
//! Every configure step (and the build stage) of a build needs a root made
//! of the base's layers plus its own. Unpacking every layer again for every
//! root costs one file creation per entry per root, which was most of a
//! cold build's time. Instead, [`Trees`] unpacks each layer blob once per
//! build into a directory of its own (with the same checks as a build root:
//! no write through a symlink, no `..`, no devices), and [`mount`] stacks
//! those directories read-only under a fresh, empty upper directory. The
//! scripts' writes land in the upper directory; the trees are never
//! changed, so every root of the build can share them.
//!
//! Mounting needs `CAP_SYS_ADMIN` (root). Where it is refused (rootless
//! builds), [`mount`] returns the error and the caller unpacks the layers
//! into a plain directory instead; both give the same root.
//!
//! The mount options name each directory as `/proc/self/fd/N` of an open
//! descriptor, so paths with `,` or `:` (the option separators) and long
//! paths (the options are limited to one page) are no problem.

use super::SandboxError;
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// One unpacked layer.
#[derive(Debug)]
pub struct Tree {
    /// The directory holding the layer's files.
    pub dir: PathBuf,
    /// Every path the layer wrote (relative, no leading `/`).
    pub paths: BTreeSet<String>,
}

type Cell = Arc<Mutex<Option<Arc<Tree>>>>;

/// The unpacked layers of one build, each unpacked once, on first use.
#[derive(Debug)]
pub struct Trees {
    dir: PathBuf,
    cells: Mutex<BTreeMap<PathBuf, Cell>>,
}

impl Trees {
    /// Trees will live under `dir` (created on first use; the caller
    /// removes it when the build ends).
    pub fn new(dir: &Path) -> Trees {
        Trees {
            dir: dir.to_path_buf(),
            cells: Mutex::new(BTreeMap::new()),
        }
    }

    /// The tree of layer `blob`, unpacked now if no other root asked
    /// for it yet. `label` names the image in errors.
    pub fn tree(&self, label: &str, blob: &Path) -> Result<Arc<Tree>, SandboxError> {
        let (cell, n) = {
            let mut cells = self.cells.lock().expect("trees");
            let n = cells.len();
            (cells.entry(blob.to_path_buf()).or_default().clone(), n)
        };
        // One thread unpacks; others asking for the same layer wait.
        let mut slot = cell.lock().expect("tree");
        if let Some(t) = slot.as_ref() {
            return Ok(t.clone());
        }
        let dir = self.dir.join(n.to_string());
        if dir.exists() {
            // A failed earlier attempt: start again from nothing.
            std::fs::remove_dir_all(&dir).map_err(super::io_error("removing", &dir))?;
        }
        let paths = super::unpack_layers(label, &dir, std::slice::from_ref(&blob.to_path_buf()))?;
        let t = Arc::new(Tree { dir, paths });
        *slot = Some(t.clone());
        Ok(t)
    }
}

impl Trees {
    /// The trees of `blobs`, in order, the missing ones unpacked in
    /// parallel. The first failing blob (in order) gives the error.
    pub fn trees(&self, label: &str, blobs: &[PathBuf]) -> Result<Vec<Arc<Tree>>, SandboxError> {
        use rayon::prelude::*;
        let got: Vec<Result<Arc<Tree>, SandboxError>> =
            blobs.par_iter().map(|b| self.tree(label, b)).collect();
        got.into_iter().collect()
    }
}

/// A mounted overlay; unmounted when dropped.
#[derive(Debug)]
pub struct Overlay {
    target: PathBuf,
}

impl Drop for Overlay {
    fn drop(&mut self) {
        if let Ok(c) = CString::new(self.target.as_os_str().as_bytes()) {
            // SAFETY: `c` is a valid NUL-terminated path.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

/// Mount `lower` (bottom first) read-only under the empty directory
/// `upper` at `target`; `work` is overlayfs' scratch directory (same file
/// system as `upper`). All three are created.
pub fn mount(
    lower: &[&Path],
    upper: &Path,
    work: &Path,
    target: &Path,
) -> std::io::Result<Overlay> {
    for d in [upper, work, target] {
        std::fs::create_dir_all(d)?;
    }
    // The root directory of the mount is the upper directory: give it the
    // mode of a root, whatever the umask.
    std::fs::set_permissions(upper, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let open = |p: &Path| File::open(p);
    let lowers: Vec<File> = lower
        .iter()
        .rev()
        .map(|p| open(p))
        .collect::<Result<_, _>>()?;
    let (up, wk) = (open(upper)?, open(work)?);
    let fd = |f: &File| format!("/proc/self/fd/{}", f.as_raw_fd());
    let base = format!(
        "lowerdir={},upperdir={},workdir={}",
        lowers.iter().map(fd).collect::<Vec<_>>().join(":"),
        fd(&up),
        fd(&wk)
    );
    // Without index, redirects or metadata-only copy-up, a changed file is
    // a whole file in the upper directory, as a layer needs it.
    let strict = format!("{base},index=off,redirect_dir=off,metacopy=off");
    let target_c = CString::new(target.as_os_str().as_bytes())?;
    let mut last = std::io::Error::other("not tried");
    for data in [strict, base] {
        let data = CString::new(data)?;
        // SAFETY: every pointer is a valid NUL-terminated string that
        // outlives the call.
        let rc = unsafe {
            libc::mount(
                c"overlay".as_ptr(),
                target_c.as_ptr(),
                c"overlay".as_ptr(),
                0,
                data.as_ptr().cast(),
            )
        };
        if rc == 0 {
            return Ok(Overlay {
                target: target.to_path_buf(),
            });
        }
        last = std::io::Error::last_os_error();
        if last.raw_os_error() != Some(libc::EINVAL) {
            break;
        }
    }
    Err(last)
}
