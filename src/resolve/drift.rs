//! Drift: pinned or locked versions that the package sources no longer have
//! (Debian's archive keeps only current versions). Diagnosed all at once,
//! before anything is downloaded, with the versions the sources do have and
//! the commands that fix it.

use super::{Lock, ResolveError};
use crate::pkgindex::Index;
use crate::recipe::Tree;
use std::collections::BTreeSet;
use std::path::Path;

/// One package version the sources lack.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Drifted {
    pub package: String,
    pub version: String,
    /// Where it is pinned or locked (`base`, `hello (build)`).
    pub used_by: String,
    /// Versions the sources have, highest first.
    pub available: Vec<String>,
}

fn available(index: &Index, name: &str) -> Vec<String> {
    index
        .by_name
        .get(name)
        .map(|l| l.iter().map(|r| r.version.to_string()).collect())
        .unwrap_or_default()
}

fn has(index: &Index, name: &str, version: &str, sha256: Option<&str>) -> bool {
    index.by_name.get(name).is_some_and(|l| {
        l.iter()
            .any(|r| r.version.to_string() == version && sha256.is_none_or(|s| s == r.sha256))
    })
}

/// Every pin of the tree (images and build stages) missing from `index`.
pub fn pins(tree: &Tree, index: &Index) -> Vec<Drifted> {
    let mut out = BTreeSet::new();
    let mut scan = |label: String, pins: &std::collections::BTreeMap<String, String>| {
        for (name, version) in pins {
            // A refused stanza is not drift: resolution names it.
            if !has(index, name, version, None) && !refused(index, name) {
                out.insert(Drifted {
                    package: name.clone(),
                    version: version.clone(),
                    used_by: label.clone(),
                    available: available(index, name),
                });
            }
        }
    };
    scan(tree.base.name.clone(), &tree.base.packages);
    for img in &tree.images {
        scan(img.name.clone(), &img.packages);
        if let Some(b) = &img.build {
            scan(format!("{} (build)", img.name), &b.packages);
        }
    }
    out.into_iter().collect()
}

/// Every locked package neither in `index` (same version and sha256) nor
/// in the package store under `cache`.
pub fn locked(lock: &Lock, index: &Index, cache: &Path) -> Vec<Drifted> {
    let store = crate::archive::store::Store::new(cache);
    let mut out = BTreeSet::new();
    for img in &lock.images {
        for p in &img.packages {
            if has(index, &p.name, &p.version, Some(&p.sha256))
                || store.deb(&p.sha256).is_some()
                || refused(index, &p.name)
            {
                continue;
            }
            out.insert(Drifted {
                package: p.name.clone(),
                version: p.version.clone(),
                used_by: format!("{} ({})", img.name, img.stage),
                available: available(index, &p.name),
            });
        }
    }
    out.into_iter().collect()
}

/// An error listing every drifted package, or `Ok` when there is none.
pub fn report(items: &[Drifted], what: &str, recipes: &Path) -> Result<(), ResolveError> {
    if items.is_empty() {
        return Ok(());
    }
    let mut s = format!(
        "{} {what} package version(s) are not in the package sources (nothing was downloaded):",
        items.len()
    );
    for d in items {
        let have = if d.available.is_empty() {
            "the sources have no version of it".to_string()
        } else {
            format!("the sources have {}", d.available.join(", "))
        };
        s.push_str(&format!(
            "\n  {} {} ({}): {have}",
            d.package, d.version, d.used_by
        ));
    }
    let r = recipes.display();
    s.push_str(&format!(
        "\nhelp: take the archive's current versions with `imgforge update {r}` (it shows the changelog of each move), \
or set [source.snapshot] in the base recipe to fetch the old versions from an archive that keeps them, \
or build offline from a vendored mirror (`imgforge vendor DIR {r}` where the files exist, then --mirror DIR)"
    ));
    Err(ResolveError::Drift(s))
}

/// Whether the index refused a stanza claiming to be `name` (the error
/// for it comes from resolution or fetching, naming the stanza).
fn refused(index: &Index, name: &str) -> bool {
    index.bad.iter().any(|b| b.package.as_deref() == Some(name))
}
