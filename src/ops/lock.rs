//! `imgforge lock`: resolve and write `imgforge.lock` (or, with
//! `--locked`, list what would change); `--explain PACKAGE`.

use super::{CommonOptions, Status, load_tree, source_options};
use crate::resolve::lockfile::lock_tree;
use crate::resolve::{self, Lock};
use anyhow::Result;

/// `imgforge lock --explain PACKAGE`: why `package` is in each image.
pub fn explain(lock: &Lock, package: &str) -> Result<String> {
    resolve::why::explain_lock(lock, package).ok_or_else(|| {
        resolve::ResolveError::NotInLock {
            package: package.to_string(),
        }
        .into()
    })
}

/// `imgforge lock`.
pub fn lock(opts: &CommonOptions, locked: bool, quiet: bool) -> Result<Lock> {
    let st = Status { quiet };
    let tree = load_tree(opts)?;
    let index = resolve::load_index(&tree, &source_options(opts, true))?;
    let lock = lock_tree(&tree, &index, locked, st)?;
    for img in &lock.images {
        st.say(
            "Resolved",
            format!(
                "{} ({}): {} packages",
                img.name,
                img.stage,
                img.packages.len()
            ),
        );
    }
    Ok(lock)
}
