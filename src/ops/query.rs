//! `imgforge query --package NAME[=VERSION]`: which images of a recipe
//! tree ship a package, at which version, in which layers (the base's or
//! the image's own), and why: the chain from a recipe's pin, as
//! `lock --explain` prints it. Read from the tree's lock; an image built on
//! the base ships the base's packages too. Build stages and the configure
//! toolset are listed as not shipped. Needs no package source.

use super::{CommonOptions, load_tree};
use crate::recipe::{From, Tree};
use crate::resolve::{Lock, LockedImage, why};
use anyhow::Result;
use serde_json::json;
use std::path::PathBuf;

/// Options of `query`.
#[derive(Debug, Clone)]
pub struct QueryOptions {
    pub common: CommonOptions,
    /// `NAME` or `NAME=VERSION`.
    pub package: String,
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
}

/// `imgforge query`: every closure of the tree's lock that has the package.
pub fn query(opts: &QueryOptions) -> Result<Vec<Hit>> {
    let (name, version) = match opts.package.split_once('=') {
        Some((n, v)) => (n.trim(), Some(v.trim())),
        None => (opts.package.trim(), None),
    };
    let tree = load_tree(&opts.common)?;
    let lock = Lock::read(&tree.lock_path())?;
    let all = hits(&tree, &lock, name);
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
