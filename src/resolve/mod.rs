//! Stage 2: package sources, dependency resolution, the lock file, fetching.
//!
//! * [`index`]: the records a mirror or apt offers;
//! * [`solver`]: the closure of each image and build stage;
//! * [`Lock`]: `recipes/imgforge.lock`, byte-identical on every run;
//! * [`fetch`]: the `.deb` of a locked package, checked against its sha256;
//! * [`drift`]: locked or pinned versions the sources no longer have.
//!
//! Entry point: [`resolve_tree`] (recipes + index -> lock). Later stages
//! consume only the lock (plus [`fetch`] to find the files).

pub mod drift;
pub mod lockfile;

pub mod provider;
pub mod solver;
pub mod walk;
pub mod why;

use crate::pkgindex::{self as index, Index, Origin, Record};
use crate::recipe::{Recipe, Tree};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Errors of this stage.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(transparent)]
    Index(#[from] index::IndexError),
    #[error(transparent)]
    Solve(#[from] solver::ResolveError),
    #[error(
        "no package source: no --mirror was given, the base recipe names none, and {0}\nhelp: pass --mirror DIR (a flat repository or a directory of .deb files), or list archives in base/base.toml:\n  [[source.archive]]\n  uri = \"http://<your Debian mirror>/debian\"\n  suites = [\"bookworm\", \"bookworm-updates\"]\n  components = [\"main\"]\n  keyring = \"keys/debian-archive-keyring.gpg\""
    )]
    NoSource(String),
    #[error(
        "cannot read lock file {path}: {reason}\nhelp: delete it and run `imgforge lock` to write a fresh one"
    )]
    BadLock { path: PathBuf, reason: String },
    #[error("{path} is missing\nhelp: run `imgforge lock {dir}` and commit the lock file")]
    NoLock { path: PathBuf, dir: String },
    #[error(
        "the lock file {path} is out of date:\n{changes}\nhelp: run `imgforge lock` to update it (and review the change), or revert the recipe edit"
    )]
    Stale { path: PathBuf, changes: String },
    #[error(
        "checksum mismatch for {file}\n  expected sha256 {expected} ({from})\n  actual   sha256 {actual}\nhelp: the file is corrupt or was replaced; delete it and fetch it again, or fix the mirror"
    )]
    Checksum {
        file: PathBuf,
        expected: String,
        actual: String,
        from: String,
    },
    #[error(
        "{package} {version} (locked) is not in the package source\nhelp: add {filename} to the mirror, run `imgforge update` to move the pin, or set a snapshot in base/base.toml"
    )]
    Missing {
        package: String,
        version: String,
        filename: String,
    },
    #[error(
        "{package} is in no image or build stage of the lock\nhelp: check the name (`grep 'name = \"{package}' recipes/imgforge.lock`); packages come only through Pre-Depends/Depends"
    )]
    NotInLock { package: String },
    #[error(transparent)]
    Archive(#[from] crate::archive::ArchiveError),
    #[error("{0}")]
    Drift(String),
    #[error("{path}: {source}\nhelp: check permissions and free space")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Where packages come from.
#[derive(Debug, Clone)]
pub struct SourceOptions {
    /// A local mirror (overrides the base recipe's); when set, only it is read.
    pub mirror: Option<PathBuf>,
    /// Allow the host's apt configuration (`/etc/apt/sources.list[.d]`).
    pub apt: bool,
    /// The root the apt configuration is read under (`/`).
    pub apt_root: PathBuf,
    /// The cache root: verified indexes and the package store.
    pub cache_dir: PathBuf,
    /// Download Release and index files again (`lock`, `update`).
    pub refresh: bool,
}

impl SourceOptions {
    /// Where a command's packages come from; `refresh` downloads Release
    /// and indexes again.
    pub fn new(opts: &crate::options::CommonOptions, refresh: bool) -> SourceOptions {
        SourceOptions {
            mirror: opts.mirror.clone(),
            apt: opts.apt,
            apt_root: PathBuf::from("/"),
            cache_dir: opts.cache_dir(),
            refresh,
        }
    }
}

/// The archives to read: the base recipe's `[[source.archive]]`, else the
/// host's apt configuration (when allowed).
pub fn archive_sources(
    tree: &Tree,
    opts: &SourceOptions,
) -> Result<Vec<crate::archive::sources::ArchiveSource>, ResolveError> {
    if !tree.source.archives.is_empty() {
        return Ok(tree.source.archives.clone());
    }
    if opts.apt && tree.source.apt {
        return Ok(crate::archive::sources::host_sources(
            &opts.apt_root,
            &tree.source.arch,
        )?);
    }
    Ok(Vec::new())
}

/// Build the index for a tree: the mirror alone when one is given, else
/// every archive (signed Release, verified Packages; cached by hash).
pub fn load_index(tree: &Tree, opts: &SourceOptions) -> Result<Index, ResolveError> {
    Ok(load_index_report(tree, opts)?.0)
}

/// [`load_index`], with what the archives reported (suites, downloads).
pub fn load_index_report(
    tree: &Tree,
    opts: &SourceOptions,
) -> Result<(Index, crate::archive::LoadReport), ResolveError> {
    let mut idx = Index::new(&tree.source.arch);
    let mirror = opts.mirror.clone().or_else(|| tree.source.mirror.clone());
    if let Some(m) = &mirror {
        index::add_mirror(&mut idx, m)?;
        return Ok((idx, Default::default()));
    }
    let sources = archive_sources(tree, opts)?;
    if sources.is_empty() {
        return Err(ResolveError::NoSource(if opts.apt && tree.source.apt {
            format!(
                "the host has no apt configuration ({}etc/apt/sources.list[.d])",
                opts.apt_root.display()
            )
        } else {
            "the host's apt configuration is disabled (--no-apt or apt = false)".into()
        }));
    }
    let aopts = crate::archive::ArchiveOptions {
        cache: opts.cache_dir.clone(),
        arch: tree.source.arch.clone(),
        refresh: opts.refresh,
    };
    let mut report = crate::archive::load(&sources, &aopts, &mut idx)?;
    if let Some(snap) = &tree.source.snapshot {
        let snap_sources = snap.sources(&sources);
        let r = crate::archive::load(&snap_sources, &aopts, &mut idx)?;
        report.downloaded += r.downloaded;
        report.suites.extend(r.suites);
        for (k, v) in r.suite_of {
            report.suite_of.entry(k).or_insert(v);
        }
    }
    Ok((idx, report))
}

/// Find a program on PATH.
pub fn which(prog: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(prog))
        .find(|p| p.is_file())
}

// ---------------------------------------------------------------- lock file

/// The lock file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lock {
    pub version: u32,
    pub arch: String,
    /// The snapshot (`<timestamp> <url template>`) the lock was resolved
    /// with, when the base recipe sets one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    #[serde(rename = "image", default)]
    pub images: Vec<LockedImage>,
}

/// The closure of one image or build stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedImage {
    pub name: String,
    /// `runtime` or `build`.
    pub stage: String,
    /// sha256 of the pins this closure was resolved from.
    pub pins: String,
    #[serde(rename = "package", default)]
    pub packages: Vec<LockedPackage>,
}

/// One package of a closure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LockedPackage {
    pub name: String,
    pub version: String,
    pub architecture: String,
    pub source: String,
    pub source_version: String,
    pub sha256: String,
    pub size: u64,
    pub filename: String,
    /// Why it is in the closure.
    pub reason: String,
}

impl LockedPackage {
    /// What the control file of this package must say.
    pub fn identity(&self) -> crate::deb::Identity {
        crate::deb::Identity {
            package: self.name.clone(),
            version: self.version.clone(),
            architecture: self.architecture.clone(),
            source: self.source.clone(),
            source_version: self.source_version.clone(),
        }
    }
}

impl Lock {
    /// The closure of `name`'s `stage`.
    pub fn get(&self, name: &str, stage: &str) -> Option<&LockedImage> {
        self.images
            .iter()
            .find(|i| i.name == name && i.stage == stage)
    }

    /// Serialize (stable bytes).
    pub fn to_text(&self) -> String {
        let body = toml::to_string(self).expect("lock serializes");
        format!(
            "# imgforge.lock: written by `imgforge lock`; do not edit by hand.\n# Every package of every image and build stage, pinned with its sha256.\n\n{body}"
        )
    }

    /// Read a lock file.
    pub fn read(path: &Path) -> Result<Lock, ResolveError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                ResolveError::NoLock {
                    path: path.to_path_buf(),
                    dir: path
                        .parent()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default(),
                }
            } else {
                ResolveError::BadLock {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                }
            }
        })?;
        Self::parse(&text, path)
    }

    /// Parse lock file text; `path` labels errors.
    pub fn parse(text: &str, path: &Path) -> Result<Lock, ResolveError> {
        toml::from_str(text).map_err(|e| ResolveError::BadLock {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    }

    /// Human-readable differences from `old` to `self`.
    pub fn diff(&self, old: &Lock) -> Vec<String> {
        let mut out = Vec::new();
        let key = |i: &LockedImage| (i.name.clone(), i.stage.clone());
        let olds: BTreeMap<_, _> = old.images.iter().map(|i| (key(i), i)).collect();
        let news: BTreeMap<_, _> = self.images.iter().map(|i| (key(i), i)).collect();
        for (k, n) in &news {
            let label = format!("{} ({})", k.0, k.1);
            let Some(o) = olds.get(k) else {
                out.push(format!("  {label}: new in the recipes"));
                continue;
            };
            let op: BTreeMap<_, _> = o.packages.iter().map(|p| (&p.name, p)).collect();
            let np: BTreeMap<_, _> = n.packages.iter().map(|p| (&p.name, p)).collect();
            for (name, p) in &np {
                match op.get(name) {
                    None => out.push(format!("  {label}: + {name} {}", p.version)),
                    Some(q) if q.version != p.version => {
                        out.push(format!("  {label}: {name} {} -> {}", q.version, p.version))
                    }
                    Some(q) if q.sha256 != p.sha256 => out.push(format!(
                        "  {label}: {name} {}: sha256 changed ({} -> {})",
                        p.version, q.sha256, p.sha256
                    )),
                    Some(q) if q != p => out.push(format!(
                        "  {label}: {name} {}: now {} (was {})",
                        p.version, p.reason, q.reason
                    )),
                    _ => {}
                }
            }
            for (name, q) in &op {
                if !np.contains_key(name) {
                    out.push(format!("  {label}: - {name} {}", q.version));
                }
            }
        }
        for k in olds.keys() {
            if !news.contains_key(k) {
                out.push(format!("  {} ({}): no longer in the recipes", k.0, k.1));
            }
        }
        if out.is_empty() && self != old {
            out.push("  formatting or header changed".into());
        }
        out
    }
}

fn pins_digest(pins: &BTreeMap<String, String>) -> String {
    let mut s = String::new();
    for (k, v) in pins {
        s.push_str(&format!("{k}={v}\n"));
    }
    crate::digest::sha256_hex(s.as_bytes())
}

fn locked(chosen: &[solver::Chosen]) -> Vec<LockedPackage> {
    let mut v: Vec<LockedPackage> = chosen
        .iter()
        .map(|c| {
            let r = &c.record;
            LockedPackage {
                name: r.name.clone(),
                version: r.version.to_string(),
                architecture: r.architecture.clone(),
                source: r.source.clone(),
                source_version: r.source_version.clone(),
                sha256: r.sha256.clone(),
                size: r.size,
                filename: r.file_name(),
                reason: c.reason.clone(),
            }
        })
        .collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

/// The solver, refusing a selection that touches a refused index stanza
/// (a pin before solving, any closure member after).
fn solve(index: &Index, req: &solver::Request<'_>) -> Result<Vec<solver::Chosen>, ResolveError> {
    index.check_selected(req.pins.keys().map(String::as_str))?;
    let chosen = solver::resolve(index, req)?;
    index.check_selected(chosen.iter().map(|c| c.record.name.as_str()))?;
    Ok(chosen)
}

/// The package usrmerge converts a split-/usr root; imgforge's roots are
/// merged from the start, so it is never selected (usr-is-merged is).
pub const USRMERGE: &str = "usrmerge";
/// The marker package that says a root is merged-/usr.
pub const USR_IS_MERGED: &str = "usr-is-merged";

/// Whether the tree has a configure toolset: Debian's Essential set by
/// default, or only `[configure.toolset]`'s pins with `essential = false`.
pub fn toolset_wanted(tree: &Tree) -> bool {
    tree.base.configure.essential || !tree.base.configure.toolset.is_empty()
}

/// What the lock records as the toolset's pins: the recipe's, and whether
/// the Essential set was added (that set itself is frozen in the lock).
fn toolset_pins_key(tree: &Tree) -> BTreeMap<String, String> {
    let mut pins = tree.base.configure.toolset.clone();
    if tree.base.configure.essential {
        pins.insert("(essential)".into(), "yes".into());
    }
    pins
}

/// Packages requested as part of the Essential set (not pinned by the
/// recipe) say so in the lock.
fn mark_essential(packages: &mut [LockedPackage], pins: &BTreeMap<String, String>, why: &str) {
    for p in packages {
        if p.reason == "pinned" && !pins.contains_key(&p.name) {
            p.reason = format!("Essential (or usr-is-merged){why}");
        }
    }
}

/// Every `Essential: yes` name of the sources, and usr-is-merged, each with
/// its newest version (apt's candidate).
fn essential_set(index: &Index) -> BTreeMap<String, String> {
    index
        .hints
        .iter()
        .filter(|(_, h)| h.essential)
        .map(|(n, _)| n.as_str())
        .chain([USR_IS_MERGED])
        .filter_map(|n| {
            Some((
                n.to_string(),
                index.by_name.get(n)?.first()?.version.to_string(),
            ))
        })
        .collect()
}

/// A recipe's requested packages: its pins, and with `essential = true`
/// the Essential set less what `installed` has (pins win).
fn request(recipe: &Recipe, index: &Index, installed: &[Record]) -> BTreeMap<String, String> {
    let mut pins = recipe.packages.clone();
    if recipe.essential {
        for (n, v) in essential_set(index) {
            if !installed.iter().any(|r| r.name == n) {
                pins.entry(n).or_insert(v);
            }
        }
    }
    pins
}

/// What the lock records as a recipe's pins.
fn pins_key(recipe: &Recipe) -> BTreeMap<String, String> {
    let mut pins = recipe.packages.clone();
    if recipe.essential {
        pins.insert("(essential)".into(), "yes".into());
    }
    pins
}

/// The toolset's requested packages: the recipe's pins, then (by default)
/// every `Essential: yes` package of the sources and usr-is-merged, each
/// at its newest version (apt's candidate), less what the base installs
/// (the image's copy is used there).
pub fn toolset_request(tree: &Tree, index: &Index, base: &[Record]) -> BTreeMap<String, String> {
    let mut pins = tree.base.configure.toolset.clone();
    if !tree.base.configure.essential {
        return pins;
    }
    for (name, version) in essential_set(index) {
        if !base.iter().any(|r| r.name == name) {
            pins.entry(name).or_insert(version);
        }
    }
    pins
}

fn resolve_toolset(
    tree: &Tree,
    index: &Index,
    base: &[Record],
    pins: &BTreeMap<String, String>,
) -> Result<LockedImage, ResolveError> {
    let ts = solve(
        index,
        &solver::Request {
            label: format!("configure toolset ({})", tree.base.file.display()),
            pins,
            installed: base,
            prefer: &[],
        },
    )?;
    let mut packages = locked(&ts);
    mark_essential(
        &mut packages,
        &tree.base.configure.toolset,
        ", for maintainer scripts",
    );
    Ok(LockedImage {
        name: tree.base.name.clone(),
        stage: "toolset".into(),
        pins: pins_digest(&toolset_pins_key(tree)),
        packages,
    })
}

/// The records apt would see installed besides the base when it chooses
/// among alternatives: the toolset (Debian's Essential set and
/// usr-is-merged), as in a `debian:bookworm` container.
fn toolset_records(
    index: &Index,
    last: Option<&LockedImage>,
    base: &[Record],
    tree: &Tree,
) -> Vec<Record> {
    let Some(ts) = last.filter(|l| l.stage == "toolset" && l.name == tree.base.name) else {
        return Vec::new();
    };
    ts.packages
        .iter()
        .filter(|p| !base.iter().any(|b| b.name == p.name))
        .filter_map(|p| {
            let v = index.by_name.get(&p.name)?;
            v.iter()
                .find(|r| r.version.to_string() == p.version)
                .cloned()
        })
        .collect()
}

/// Resolve every image and build stage of `tree`.
pub fn resolve_tree(tree: &Tree, index: &Index) -> Result<Lock, ResolveError> {
    drift::report(&drift::pins(tree, index), "pinned", &tree.dir)?;
    let mut images = Vec::new();
    let base_pins = request(&tree.base, index, &[]);
    let base = solve(
        index,
        &solver::Request {
            label: format!("{} ({})", tree.base.name, tree.base.file.display()),
            pins: &base_pins,
            installed: &[],
            prefer: &[],
        },
    )?;
    let base_records: Vec<Record> = base.iter().map(|c| c.record.clone()).collect();
    let mut base_locked = locked(&base);
    mark_essential(&mut base_locked, &tree.base.packages, "");
    images.push(LockedImage {
        name: tree.base.name.clone(),
        stage: "runtime".into(),
        pins: pins_digest(&pins_key(&tree.base)),
        packages: base_locked,
    });
    // The configure step's toolset: on top of the base, never shipped.
    let toolset_pins = toolset_request(tree, index, &base_records);
    if !toolset_pins.is_empty() {
        images.push(resolve_toolset(tree, index, &base_records, &toolset_pins)?);
    }
    let prefer = toolset_records(index, images.last(), &base_records, tree);
    for img in &tree.images {
        let pins = request(img, index, &base_records);
        let rt = solve(
            index,
            &solver::Request {
                label: format!("{} ({})", img.name, img.file.display()),
                pins: &pins,
                installed: &base_records,
                prefer: &prefer,
            },
        )?;
        let mut packages = locked(&rt);
        mark_essential(&mut packages, &img.packages, "");
        images.push(LockedImage {
            name: img.name.clone(),
            stage: "runtime".into(),
            pins: pins_digest(&pins_key(img)),
            packages,
        });
        if let Some(b) = &img.build {
            let bs = solve(
                index,
                &solver::Request {
                    label: format!("{} build stage ({})", img.name, img.file.display()),
                    pins: &b.packages,
                    installed: &base_records,
                    prefer: &prefer,
                },
            )?;
            images.push(LockedImage {
                name: img.name.clone(),
                stage: "build".into(),
                pins: pins_digest(&b.packages),
                packages: locked(&bs),
            });
        }
    }
    images.sort_by(|a, b| (&a.name, &a.stage).cmp(&(&b.name, &b.stage)));
    Ok(Lock {
        version: 1,
        arch: tree.source.arch.clone(),
        snapshot: tree.source.snapshot.as_ref().map(|s| s.to_string()),
        images,
    })
}

/// Check that `lock` was resolved from the tree's current pins (without
/// re-resolving). Returns the stale entries.
pub fn stale_entries(tree: &Tree, lock: &Lock) -> Vec<String> {
    let mut out = Vec::new();
    let mut check =
        |name: &str, stage: &str, pins: &BTreeMap<String, String>| match lock.get(name, stage) {
            None => out.push(format!("  {name} ({stage}): not in the lock")),
            Some(l) if l.pins != pins_digest(pins) => {
                let locked: BTreeMap<&str, &LockedPackage> =
                    l.packages.iter().map(|p| (p.name.as_str(), p)).collect();
                let mut changed: Vec<String> = pins
                    .iter()
                    .filter_map(|(k, v)| match locked.get(k.as_str()) {
                        None => Some(format!("{k} {v} added")),
                        Some(p) if p.version != *v => Some(format!("{k} {} -> {v}", p.version)),
                        Some(p) if p.reason != "pinned" => Some(format!("{k} {v} newly pinned")),
                        Some(_) => None,
                    })
                    .collect();
                changed.extend(
                    l.packages
                        .iter()
                        .filter(|p| p.reason == "pinned" && !pins.contains_key(&p.name))
                        .map(|p| format!("{} {} unpinned", p.name, p.version)),
                );
                out.push(format!(
                    "  {name} ({stage}): pins changed{}",
                    if changed.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", changed.join(", "))
                    }
                ));
            }
            Some(_) => {}
        };
    check(&tree.base.name, "runtime", &pins_key(&tree.base));
    // With the Essential set only, sources that have none (a test's
    // synthetic mirror) leave no toolset in the lock.
    let essential_only = tree.base.configure.toolset.is_empty();
    if toolset_wanted(tree) && !(essential_only && lock.get(&tree.base.name, "toolset").is_none()) {
        check(&tree.base.name, "toolset", &toolset_pins_key(tree));
    }
    let dropped_toolset = !toolset_wanted(tree) && lock.get(&tree.base.name, "toolset").is_some();
    for img in &tree.images {
        check(&img.name, "runtime", &pins_key(img));
        if let Some(b) = &img.build {
            check(&img.name, "build", &b.packages);
        }
    }
    if dropped_toolset {
        out.push(format!(
            "  {} (toolset): no longer in the recipes",
            tree.base.name
        ));
    }
    out
}

// ---------------------------------------------------------------- fetching

/// The verified `.deb` of a locked package: from the mirror, from the
/// package store (by sha256, no index needed), or downloaded from its
/// archive into the store. The lock's sha256 is checked on every call.
pub fn fetch(
    pkg: &LockedPackage,
    index: &Index,
    opts: &SourceOptions,
) -> Result<PathBuf, ResolveError> {
    let missing = || ResolveError::Missing {
        package: pkg.name.clone(),
        version: pkg.version.clone(),
        filename: pkg.filename.clone(),
    };
    let rec = pkg
        .version
        .parse::<debversion::Version>()
        .ok()
        .and_then(|v| {
            let list = index.by_name.get(&pkg.name)?;
            list.iter()
                .find(|r| r.version == v && r.sha256 == pkg.sha256)
                .or_else(|| list.iter().find(|r| r.version == v))
        });
    let path = match rec.map(|r| (&r.origin, r)) {
        Some((Origin::Mirror(root), r)) => root.join(&r.filename),
        Some((Origin::Url(base), r)) if r.sha256 == pkg.sha256 => {
            crate::archive::fetch_deb(base, &r.filename, &r.sha256, &opts.cache_dir)?.0
        }
        _ => crate::archive::store::Store::new(&opts.cache_dir)
            .deb(&pkg.sha256)
            .ok_or_else(missing)?,
    };
    verify_file(&path, &pkg.sha256, "the lock file")?;
    Ok(path)
}

/// Check a file's sha256.
pub fn verify_file(path: &Path, expected: &str, from: &str) -> Result<(), ResolveError> {
    let (actual, _) = crate::digest::sha256_file(path).map_err(|source| ResolveError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if actual != expected {
        return Err(ResolveError::Checksum {
            file: path.to_path_buf(),
            expected: expected.to_string(),
            actual,
            from: from.to_string(),
        });
    }
    Ok(())
}
