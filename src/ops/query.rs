//! `imgforge query --package NAME[=VERSION]`: which images of a recipe
//! tree ship a package, at which version, in which layers (the base's or
//! the image's own), and why: the chain from a recipe's pin, as
//! `lock --explain` prints it. Read from the tree's lock; an image built on
//! the base ships the base's packages too. Build stages and the configure
//! toolset are listed as not shipped. Needs no package source.
//!
//! `--file PATH` first finds the packages whose `data.tar` has PATH (the
//! `.deb` files come from the package store, else the sources; a path
//! under `/bin`, `/sbin` or `/lib*` also matches its merged-`/usr` twin),
//! then answers for each of them as for `--package`.

use super::{CommonOptions, load_tree, source_options};
use crate::pkgindex::Index;
use crate::recipe::{From, Tree};
use crate::resolve::{self, Lock, LockedImage, why};
use anyhow::Result;
use serde_json::json;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Options of `query`.
#[derive(Debug, Clone)]
pub struct QueryOptions {
    pub common: CommonOptions,
    /// `NAME` or `NAME=VERSION`.
    pub package: Option<String>,
    /// A path in the images (`--file`): query the packages that ship it.
    pub file: Option<String>,
}

/// One closure of the lock that has the package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// The image (or, for the toolset, the base) name.
    pub image: String,
    /// `runtime`, `build` or `toolset`.
    pub stage: String,
    /// Whether the image ships it (runtime closures only).
    pub shipped: bool,
    pub version: String,
    /// The source package (layers are grouped by it).
    pub source: String,
    /// `base` (it comes with the base's layers) or `image` (the image's
    /// own), or the stage for what never ships.
    pub layer: String,
    /// From the recipe's pin to the package: (name, version, reason).
    pub chain: Vec<(String, String, String)>,
}

/// Errors of `query`.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error(
        "{package} is in no image of {lock}\nhelp: check the name (`imgforge lock --explain` takes the same names); packages come only through a pin's Pre-Depends/Depends"
    )]
    Absent { package: String, lock: PathBuf },
    #[error(
        "{package} {version} is in no image of {lock}; the lock has it at {found}\nhelp: query --package {package} lists every image and version"
    )]
    OtherVersions {
        package: String,
        version: String,
        found: String,
        lock: PathBuf,
    },
    #[error(
        "no package shipped by an image of {lock} has {file}\nhelp: give the path inside the image (e.g. /usr/lib/x86_64-linux-gnu/libssl.so.3); files made by maintainer scripts or build stages belong to no package"
    )]
    NoFile { file: String, lock: PathBuf },
    #[error(
        "query needs --package NAME[=VERSION] or --file PATH\nhelp: e.g. imgforge query --package libssl3"
    )]
    Nothing,
}

/// `imgforge query`: every closure of the tree's lock that has the
/// package (or, with `file`, each package that ships the file).
pub fn query(opts: &QueryOptions) -> Result<Vec<Hit>> {
    let tree = load_tree(&opts.common)?;
    let lock = Lock::read(&tree.lock_path())?;
    let stale = resolve::stale_entries(&tree, &lock);
    if !stale.is_empty() {
        eprintln!(
            "warning: {} does not match the recipes; the answer is the lock's:\n{}\n  help: run `imgforge lock` to bring it up to date",
            tree.lock_path().display(),
            stale.join("\n")
        );
    }
    if let Some(file) = &opts.file {
        let mut out = Vec::new();
        for owner in file_owners(&tree, &lock, &opts.common, file)? {
            out.extend(hits(&tree, &lock, &owner));
        }
        if out.is_empty() {
            return Err(QueryError::NoFile {
                file: file.clone(),
                lock: tree.lock_path(),
            }
            .into());
        }
        return Ok(out);
    }
    let spec = opts.package.as_deref().ok_or(QueryError::Nothing)?;
    package_hits(&tree, &lock, spec)
}

fn package_hits(tree: &Tree, lock: &Lock, spec: &str) -> Result<Vec<Hit>> {
    let (name, version) = match spec.split_once('=') {
        Some((n, v)) => (n.trim(), Some(v.trim())),
        None => (spec.trim(), None),
    };
    let all = hits(tree, lock, name);
    let wanted: Vec<Hit> = all
        .iter()
        .filter(|h| version.is_none_or(|v| v == h.version))
        .cloned()
        .collect();
    if !wanted.is_empty() {
        return Ok(wanted);
    }
    let lock_path = tree.lock_path();
    match (version, all.is_empty()) {
        (Some(v), false) => {
            let mut found: Vec<&str> = all.iter().map(|h| h.version.as_str()).collect();
            found.sort();
            found.dedup();
            Err(QueryError::OtherVersions {
                package: name.to_string(),
                version: v.to_string(),
                found: found.join(", "),
                lock: lock_path,
            }
            .into())
        }
        _ => Err(QueryError::Absent {
            package: name.to_string(),
            lock: lock_path,
        }
        .into()),
    }
}

/// The names of the runtime closures' packages whose `data.tar` has `file`.
fn file_owners(
    tree: &Tree,
    lock: &Lock,
    common: &CommonOptions,
    file: &str,
) -> Result<Vec<String>> {
    let want = file.trim_start_matches('/').trim_end_matches('/');
    let mut paths = vec![want.to_string()];
    if ["bin/", "sbin/", "lib"].iter().any(|p| want.starts_with(p)) {
        paths.push(format!("usr/{want}"));
    }
    let src = source_options(common, false);
    let index = match resolve::load_index(tree, &src) {
        Ok(i) => i,
        Err(resolve::ResolveError::NoSource(_)) => Index::new(&tree.source.arch),
        Err(e) => return Err(e.into()),
    };
    let mut seen = BTreeSet::new();
    let mut owners = BTreeSet::new();
    for img in lock.images.iter().filter(|i| i.stage == "runtime") {
        for p in &img.packages {
            if seen.insert(p.sha256.clone()) && ships(&resolve::fetch(p, &index, &src)?, &paths)? {
                owners.insert(p.name.clone());
            }
        }
    }
    Ok(owners.into_iter().collect())
}

/// Whether the package's `data.tar` has one of `paths` (normalized).
fn ships(deb: &Path, paths: &[String]) -> Result<bool, crate::deb::DebError> {
    crate::deb::with_data_tar(deb, &crate::deb::Limits::default(), |dt| {
        let entries = dt.archive.entries().map_err(|e| dt.ctx.error(e))?;
        for entry in entries {
            let entry = entry.map_err(|e| dt.ctx.error(e))?;
            let raw = entry.path().map_err(|e| dt.ctx.error(e))?;
            let raw = raw.to_string_lossy();
            if crate::deb::strip_data_prefix(&raw).is_some_and(|p| paths.iter().any(|w| w == p)) {
                return Ok(true);
            }
        }
        Ok(false)
    })
}

/// The hits in tree order: the base, its toolset, then each image's
/// runtime (its own packages, else the base's) and build stage.
fn hits(tree: &Tree, lock: &Lock, name: &str) -> Vec<Hit> {
    let base = lock.get(&tree.base.name, "runtime");
    let mut out = Vec::new();
    out.extend(base.and_then(|b| hit(b, name, "base", true)));
    out.extend(
        lock.get(&tree.base.name, "toolset")
            .and_then(|t| hit(t, name, "toolset", false)),
    );
    for img in &tree.images {
        let own = lock
            .get(&img.name, "runtime")
            .and_then(|l| hit(l, name, "image", true));
        let via_base = || {
            let b = base.filter(|_| img.from == From::Base)?;
            let mut h = hit(b, name, "base", true)?;
            h.image = img.name.clone();
            Some(h)
        };
        out.extend(own.or_else(via_base));
        out.extend(
            lock.get(&img.name, "build")
                .and_then(|l| hit(l, name, "build stage", false)),
        );
    }
    out
}

fn hit(closure: &LockedImage, name: &str, layer: &str, shipped: bool) -> Option<Hit> {
    let p = closure.packages.iter().find(|p| p.name == name)?;
    let mut chain = why::lock_chain(closure, name)?;
    if let Some(first) = chain.first_mut().filter(|_| layer == "base")
        && first.2 == "pinned"
    {
        first.2 = "pinned in the base recipe".into();
    }
    Some(Hit {
        image: closure.name.clone(),
        stage: closure.stage.clone(),
        shipped,
        version: p.version.clone(),
        source: format!("{} {}", p.source, p.source_version),
        layer: layer.to_string(),
        chain,
    })
}

/// The hits for a terminal: one block per closure, the chain indented.
pub fn render_text(hits: &[Hit]) -> String {
    let mut s = String::new();
    for h in hits {
        let name = h.chain.last().map(|c| c.0.as_str()).unwrap_or("");
        let place = if h.shipped {
            format!("shipped, in the {}'s layers", h.layer)
        } else {
            format!("{}, not shipped", h.layer)
        };
        s.push_str(&format!(
            "{} ({}): {name} {} ({place}; source {})\n",
            h.image, h.stage, h.version, h.source
        ));
        for (n, v, reason) in &h.chain {
            s.push_str(&format!("  {n} {v}: {reason}\n"));
        }
    }
    s
}

/// The hits as JSON (sorted keys), an array in tree order.
pub fn render_json(hits: &[Hit]) -> String {
    let v: Vec<serde_json::Value> = hits
        .iter()
        .map(|h| {
            json!({
                "image": h.image,
                "stage": h.stage,
                "shipped": h.shipped,
                "version": h.version,
                "source": h.source,
                "layer": h.layer,
                "chain": h.chain.iter().map(|(n, v, r)| json!({
                    "package": n, "version": v, "reason": r,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    String::from_utf8(crate::json::to_canonical_pretty(&serde_json::Value::Array(
        v,
    )))
    .expect("json is utf-8")
    .trim_end()
    .to_string()
}
