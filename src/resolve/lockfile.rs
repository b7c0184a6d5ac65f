//! The lock a command works from: resolve the recipes against the package
//! index, compare with `imgforge.lock`, and write it when allowed.

use crate::fsutil::write_atomic;
use crate::pkgindex::Index;
use crate::recipe::Tree;
use crate::resolve::{self, Lock};
use crate::ui::Status;
use anyhow::Result;

/// Resolve, compare with the lock file, and write it when allowed.
pub fn lock_tree(tree: &Tree, index: &Index, locked: bool, st: Status) -> Result<Lock> {
    let path = tree.lock_path();
    let fresh = resolve::resolve_tree(tree, index)?;
    let text = fresh.to_text();
    let old_text = std::fs::read_to_string(&path).ok();
    if old_text.as_deref() == Some(text.as_str()) {
        st.say("Unchanged", path.display());
        return Ok(fresh);
    }
    if locked {
        let changes = match &old_text {
            None => "  (no lock file)".to_string(),
            Some(_) => match Lock::read(&path) {
                Ok(old) => fresh.diff(&old).join("\n"),
                Err(e) => format!("  {e}"),
            },
        };
        return Err(resolve::ResolveError::Stale { path, changes }.into());
    }
    write_atomic(&path, text.as_bytes())?;
    st.say("Locked", path.display());
    Ok(fresh)
}

/// The lock a build uses: the file when it matches the recipes, else a
/// fresh resolution (written unless `--locked`).
pub fn lock_for_build(tree: &Tree, index: &Index, locked: bool, st: Status) -> Result<Lock> {
    let path = tree.lock_path();
    if path.is_file() {
        let lock = Lock::read(&path)?;
        let stale = resolve::stale_entries(tree, &lock);
        if stale.is_empty() && lock.arch == tree.source.arch {
            return Ok(lock);
        }
        if locked {
            return Err(resolve::ResolveError::Stale {
                path,
                changes: stale.join("\n"),
            }
            .into());
        }
    } else if locked {
        return Err(resolve::ResolveError::NoLock {
            path,
            dir: tree.dir.display().to_string(),
        }
        .into());
    }
    lock_tree(tree, index, false, st)
}
