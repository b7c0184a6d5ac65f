//! `imgforge vendor DIR [RECIPES]`: every locked `.deb` (images and build
//! stages) into a flat mirror with a `Packages` index and `SHA256SUMS`, the
//! hand-over to a site with no network: `--mirror DIR` then rebuilds the
//! same bytes.
//!
//! With `--sources`, the source packages of every shipped package too
//! (`Sources` and `source/<source>_<version>/`, each file verified by
//! sha256), so `imgforge sources OUT --mirror DIR` works with no network.
//!
//! The mirror is written into a staging directory beside `DIR` and renamed
//! into place at the end; `DIR` may be empty or an earlier vendor output.

use super::{CommonOptions, Status, load_tree, source_options};
use crate::resolve::{self, LockedPackage};
use anyhow::{Context, Result, bail};
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Options of `vendor`.
#[derive(Debug, Clone)]
pub struct VendorOptions {
    pub common: CommonOptions,
    /// The mirror directory to write.
    pub dir: PathBuf,
    /// Also the source packages of every shipped package (a `Sources`
    /// index and `source/<source>_<version>/`), for `imgforge sources
    /// --mirror DIR` with no network.
    pub sources: bool,
    pub quiet: bool,
}

/// What was vendored.
#[derive(Debug, Clone)]
pub struct VendorSummary {
    pub packages: usize,
    pub bytes: u64,
}

/// `imgforge vendor`.
pub fn vendor(opts: &VendorOptions) -> Result<VendorSummary> {
    let st = Status { quiet: opts.quiet };
    let tree = load_tree(&opts.common)?;
    let src = source_options(&opts.common, false);
    let index = resolve::load_index(&tree, &src)?;
    let lock = super::lock_for_build(&tree, &index, true, st)?;
    let drifted = resolve::drift::locked(&lock, &index, &src.cache_dir);
    resolve::drift::report(&drifted, "locked", &tree.dir)?;
    let mut wanted: BTreeMap<(String, String), LockedPackage> = BTreeMap::new();
    for img in &lock.images {
        for p in &img.packages {
            wanted
                .entry((p.name.clone(), p.version.clone()))
                .or_insert_with(|| p.clone());
        }
    }
    let dir = &opts.dir;
    if dir.exists() && !is_vendor_output(dir) {
        bail!(
            "{} exists and is not an imgforge vendor mirror (no Packages and SHA256SUMS)\nhelp: choose an empty or new directory",
            dir.display()
        );
    }
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)
        .with_context(|| format!("cannot create {}", parent.display()))?;
    let staging = tempfile::Builder::new()
        .prefix(".imgforge-vendor-")
        .tempdir_in(parent)
        .with_context(|| format!("cannot create a staging directory in {}", parent.display()))?;
    let pool = staging.path().join("pool");
    std::fs::create_dir_all(&pool)?;
    st.say("Vendoring", format!("{} packages", wanted.len()));
    let stanzas: Vec<(String, String, u64)> = wanted
        .into_values()
        .collect::<Vec<_>>()
        .into_par_iter()
        .map(|p| -> Result<(String, String, u64)> {
            let deb = resolve::fetch(&p, &index, &src)?;
            let rel = format!("pool/{}", p.filename);
            std::fs::copy(&deb, staging.path().join(&rel))
                .with_context(|| format!("cannot copy {}", deb.display()))?;
            let ctl = crate::deb::read_control(&deb, &crate::deb::Limits::default())?;
            let stanza = format!(
                "{}\nFilename: {rel}\nSize: {}\nSHA256: {}\n",
                ctl.stanza.trim_end(),
                p.size,
                p.sha256
            );
            Ok((stanza, format!("{}  {rel}\n", p.sha256), p.size))
        })
        .collect::<Result<_>>()?;
    let packages: Vec<&str> = stanzas.iter().map(|s| s.0.as_str()).collect();
    let mut sums: Vec<String> = stanzas.iter().map(|s| s.1.clone()).collect();
    if opts.sources {
        sums.extend(vendor_sources(&opts.common, &lock, staging.path(), st)?);
    }
    sums.sort();
    std::fs::write(staging.path().join("Packages"), packages.join("\n"))?;
    std::fs::write(staging.path().join("SHA256SUMS"), sums.concat())?;
    if dir.exists() {
        std::fs::remove_dir_all(dir)
            .with_context(|| format!("cannot replace {}", dir.display()))?;
    }
    let kept = staging.keep();
    std::fs::rename(&kept, dir).with_context(|| format!("cannot write {}", dir.display()))?;
    let bytes = stanzas.iter().map(|s| s.2).sum();
    st.say(
        "Vendored",
        format!(
            "{} packages ({bytes} bytes) -> {}",
            stanzas.len(),
            dir.display()
        ),
    );
    Ok(VendorSummary {
        packages: stanzas.len(),
        bytes,
    })
}

fn is_vendor_output(dir: &Path) -> bool {
    let empty = std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_none());
    empty || (dir.join("Packages").is_file() && dir.join("SHA256SUMS").is_file())
}

/// The source packages of every shipped (runtime) package of `lock`,
/// verified, into `staging/source/<source>_<version>/` with a flat
/// `Sources` index; returns their `SHA256SUMS` lines.
fn vendor_sources(
    common: &CommonOptions,
    lock: &resolve::Lock,
    staging: &Path,
    st: Status,
) -> Result<Vec<String>> {
    let mut by_source: BTreeMap<(String, String), std::collections::BTreeSet<String>> =
        BTreeMap::new();
    for img in lock.images.iter().filter(|i| i.stage == "runtime") {
        for p in &img.packages {
            by_source
                .entry((p.source.clone(), p.source_version.clone()))
                .or_default()
                .insert(format!("{} {}", p.name, p.version));
        }
    }
    st.say("Vendoring", format!("{} source packages", by_source.len()));
    let wanted = by_source.keys().cloned().collect();
    let (idx, searched) = super::sources::load_index(common, &wanted)?;
    let cache = source_options(common, false).cache_dir;
    let fetched = super::sources::fetch_sources(&by_source, &idx, &searched, &cache)?;
    let mut index = String::new();
    let mut sums = Vec::new();
    for ((name, version), f) in &fetched {
        let dir = format!("source/{}", f.dir);
        std::fs::create_dir_all(staging.join(&dir))?;
        let mut lines = String::new();
        for (sf, path) in &f.files {
            let rel = format!("{dir}/{}", sf.name);
            std::fs::copy(path, staging.join(&rel))
                .with_context(|| format!("cannot copy {}", path.display()))?;
            lines.push_str(&format!(" {} {} {}\n", sf.sha256, sf.size, sf.name));
            sums.push(format!("{}  {rel}\n", sf.sha256));
        }
        index.push_str(&format!(
            "Package: {name}\nVersion: {version}\nDirectory: {dir}\nChecksums-Sha256:\n{lines}\n"
        ));
    }
    std::fs::write(staging.join("Sources"), index)?;
    Ok(sums)
}
