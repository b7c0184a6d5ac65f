//! `imgforge check`: the pinning policy, then resolution when a package
//! source exists. Writes nothing.

use super::{CommonOptions, Status, cache_dir, load_tree, source_options};
use crate::resolve::{self, Lock};
use anyhow::Result;
use std::time::Instant;

/// `imgforge check`: the pinning policy for every recipe, then (when a
/// package source exists) resolution of every image. Writes nothing.
pub fn check(opts: &CommonOptions, quiet: bool) -> Result<()> {
    let st = Status { quiet };
    let t0 = Instant::now();
    let tree = load_tree(opts)?;
    st.say(
        "Checked",
        format!(
            "{} recipe(s) and the base: every input is pinned",
            tree.images.len()
        ),
    );
    let index = match resolve::load_index(&tree, &source_options(opts, false)) {
        Ok(i) => i,
        Err(resolve::ResolveError::NoSource(why)) => {
            st.say(
                "Skipped",
                format!("resolution: no package source ({why}); pass --mirror DIR to check it"),
            );
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    for bad in &index.bad {
        eprintln!(
            "warning: {bad}\n  help: builds that select this package fail; fix or remove the stanza in the mirror's index"
        );
    }
    if let Ok(locked) = Lock::read(&tree.lock_path()) {
        let cache = cache_dir(opts);
        resolve::drift::report(
            &resolve::drift::locked(&locked, &index, &cache),
            "locked",
            &tree.dir,
        )?;
    }
    let lock = resolve::resolve_tree(&tree, &index)?;
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
    st.say(
        "Finished",
        format!("check in {:.2}s", t0.elapsed().as_secs_f64()),
    );
    Ok(())
}
