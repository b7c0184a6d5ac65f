//! `imgforge sources OUT -o DIR|FILE [--all]`: the complete corresponding
//! source of what a build ships, for GPL/LGPL-style compliance.
//!
//! For every shipped package of the build output `OUT` (its
//! `legal/all.licenses.json`: image, binary package, version, source
//! package and version, license) whose license obliges a source offer
//! (GPL, LGPL, AGPL, MPL, EPL, CDDL, ...; every package with `--all`), the
//! source package is found in the archives' signed `Sources` indexes (or a
//! mirror's, `--mirror`), and its `.dsc` and every file it lists are
//! fetched into the store, each checked by sha256 and size. Then, staged
//! and renamed into place:
//!
//! ```text
//! <source>_<version>/<file>   every file of each source package
//! sources.json                image -> binary -> source -> files (sha256, size)
//! OFFER.txt                   the written offer
//! ```
//!
//! as a directory, or as one deterministic tar when the destination ends in
//! `.tar` (sorted, mtime = the build's SOURCE_DATE_EPOCH, uid/gid 0, modes
//! 0644/0755). Everything is fetched before anything is written.

use super::{CommonOptions, Status, load_tree, source_options};
use crate::archive::srcpkg::{self, SourceFile, SourceIndex};
use crate::archive::{ArchiveError, ArchiveOptions};
use anyhow::Result;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Options of `sources`.
#[derive(Debug, Clone)]
pub struct SourcesOptions {
    /// Where the archives (or `--mirror`) and the cache come from.
    pub common: CommonOptions,
    /// The output directory of `imgforge build`.
    pub out: PathBuf,
    /// The directory, or `.tar` file, to write.
    pub dest: PathBuf,
    /// Every shipped package, not only those under a copyleft license.
    pub all: bool,
    pub quiet: bool,
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcesSummary {
    /// Shipped binary packages (name, version) covered.
    pub binaries: usize,
    /// Source packages written.
    pub sources: usize,
    /// Their files.
    pub files: usize,
    /// Their bytes.
    pub bytes: u64,
}

/// Errors of `sources`.
#[derive(Debug, thiserror::Error)]
pub enum SourcesError {
    #[error(
        "{path}: {reason}\nhelp: pass the output directory of `imgforge build` (it holds legal/all.licenses.json and imgforge-record.json)"
    )]
    NotAnOutput { path: PathBuf, reason: String },
    #[error(
        "no source package {source_name} {version} in {searched} (it is the source of binary package {binaries})\nhelp: the archive may have dropped this version: set [source.snapshot] in base/base.toml so the archive of record is read too, or pass --mirror DIR with a mirror that `imgforge vendor --sources` wrote while the archive still had it"
    )]
    Missing {
        source_name: String,
        version: String,
        binaries: String,
        searched: String,
    },
    #[error(
        "{path} exists and is not an `imgforge sources` output (no sources.json)\nhelp: choose a new or empty directory"
    )]
    Exists { path: PathBuf },
    #[error("cannot write {path}: {source}\nhelp: check permissions and free space")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SourcesError + '_ {
    move |source| SourcesError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One shipped binary package of one image.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Shipped {
    pub image: String,
    pub package: String,
    pub version: String,
    pub source: String,
    pub source_version: String,
    pub license: String,
}

/// What a build output says: its shipped packages, SOURCE_DATE_EPOCH and
/// images (reference -> manifest digest).
pub struct BuildFacts {
    pub shipped: Vec<Shipped>,
    pub source_date_epoch: i64,
    pub images: BTreeMap<String, String>,
}

/// Read `legal/all.licenses.json` and the record of the output `out`.
pub fn read_output(out: &Path) -> Result<BuildFacts, SourcesError> {
    let bad = |path: PathBuf, reason: String| SourcesError::NotAnOutput { path, reason };
    let rec_path = out.join(crate::plan::record::FILE_NAME);
    let record = crate::plan::record::read(&rec_path).map_err(|e| bad(rec_path.clone(), e))?;
    let annex = out.join("legal/all.licenses.json");
    let bytes = std::fs::read(&annex).map_err(|e| bad(annex.clone(), e.to_string()))?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|e| bad(annex.clone(), e.to_string()))?;
    let rows = v["packages"]
        .as_array()
        .ok_or_else(|| bad(annex.clone(), "no `packages` list".into()))?;
    let mut shipped = Vec::new();
    for p in rows {
        let s = |k: &str| p[k].as_str().unwrap_or_default().to_string();
        for img in p["images"].as_array().into_iter().flatten() {
            shipped.push(Shipped {
                image: img.as_str().unwrap_or_default().to_string(),
                package: s("package"),
                version: s("version"),
                source: s("source"),
                source_version: s("source_version"),
                license: s("license"),
            });
        }
    }
    shipped.sort();
    shipped.dedup();
    let images = record
        .images
        .iter()
        .map(|(r, i)| (r.clone(), i.manifest.clone()))
        .collect();
    Ok(BuildFacts {
        shipped,
        source_date_epoch: record.source_date_epoch,
        images,
    })
}

/// Whether a shipped package's source is written (its license obliges a
/// source offer, or `all`).
pub fn selected(s: &Shipped, all: bool) -> bool {
    all || crate::sbom::license::requires_source_offer(&s.license)
}

/// The directory of a source package in the output: `<source>_<version>`,
/// the version without its epoch (as Debian names source files).
pub fn dir_name(source: &str, version: &str) -> String {
    let v = version.split_once(':').map_or(version, |(_, v)| v);
    format!("{source}_{v}")
}

/// The source records of `wanted`, from `--mirror` (or the base recipe's
/// mirror) alone when given, else the archives and their snapshot.
/// Returns them and what was searched, for messages.
pub(crate) fn load_index(
    common: &CommonOptions,
    wanted: &BTreeSet<(String, String)>,
) -> Result<(SourceIndex, String)> {
    let tree = load_tree(common)?;
    let src = source_options(common, false);
    let mut idx = SourceIndex::new();
    if let Some(m) = src.mirror.clone().or_else(|| tree.source.mirror.clone()) {
        let read = srcpkg::load_mirror(&m, wanted, &mut idx)?;
        let searched = match read.first() {
            Some(f) => f.clone(),
            None => format!("the mirror {} (it has no Sources file)", m.display()),
        };
        return Ok((idx, searched));
    }
    let mut archives = crate::resolve::archive_sources(&tree, &src)?;
    if let Some(snap) = &tree.source.snapshot {
        archives.extend(snap.sources(&archives));
    }
    let aopts = ArchiveOptions {
        cache: src.cache_dir.clone(),
        arch: tree.source.arch.clone(),
        refresh: false,
    };
    let read = srcpkg::load(&archives, &aopts, wanted, &mut idx)?;
    let searched = if read.is_empty() {
        "the archives' Sources indexes (none listed: no archive configured, or none has a source/Sources)".to_string()
    } else {
        format!("the Sources indexes of {}", read.join(", "))
    };
    Ok((idx, searched))
}

/// A fetched source package: its files in the store.
pub(crate) struct Fetched {
    pub(crate) dir: String,
    pub(crate) files: Vec<(SourceFile, PathBuf)>,
}

/// Every wanted source package, verified into the store.
fn fetch_all(
    facts: &[&Shipped],
    idx: &SourceIndex,
    searched: &str,
    cache: &Path,
) -> Result<BTreeMap<(String, String), Fetched>> {
    let mut by_source: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for s in facts {
        by_source
            .entry((s.source.clone(), s.source_version.clone()))
            .or_default()
            .insert(format!("{} {}", s.package, s.version));
    }
    fetch_sources(&by_source, idx, searched, cache)
}

/// The source packages of `by_source` ((name, version) -> the binary
/// packages built from it, for messages), verified into the store.
pub(crate) fn fetch_sources(
    by_source: &BTreeMap<(String, String), BTreeSet<String>>,
    idx: &SourceIndex,
    searched: &str,
    cache: &Path,
) -> Result<BTreeMap<(String, String), Fetched>> {
    let mut out = BTreeMap::new();
    for (key, bins) in by_source {
        let rec = idx.get(key).ok_or_else(|| SourcesError::Missing {
            source_name: key.0.clone(),
            version: key.1.clone(),
            binaries: bins.iter().cloned().collect::<Vec<_>>().join(", "),
            searched: searched.to_string(),
        })?;
        let (files, _) = srcpkg::fetch(rec, cache).map_err(|e: ArchiveError| {
            anyhow::Error::from(e).context(format!(
                "cannot fetch source package {} {} (for {})",
                key.0,
                key.1,
                bins.iter().cloned().collect::<Vec<_>>().join(", ")
            ))
        })?;
        let dir = dir_name(&key.0, &key.1);
        out.insert(key.clone(), Fetched { dir, files });
    }
    Ok(out)
}

/// `sources.json`: image -> binary package -> source package -> files.
fn index_json(
    facts: &BuildFacts,
    chosen: &[&Shipped],
    fetched: &BTreeMap<(String, String), Fetched>,
    all: bool,
) -> Value {
    let mut images: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for s in chosen {
        let dir = &fetched[&(s.source.clone(), s.source_version.clone())].dir;
        images.entry(s.image.clone()).or_default().push(json!({
            "package": s.package, "version": s.version, "license": s.license,
            "source": {"package": s.source, "version": s.source_version, "directory": dir},
        }));
    }
    let images: BTreeMap<String, Value> = images
        .into_iter()
        .map(|(i, pkgs)| {
            let manifest = facts.images.get(&i).cloned().unwrap_or_default();
            (i, json!({"manifest": manifest, "packages": pkgs}))
        })
        .collect();
    let sources: Vec<Value> = fetched
        .iter()
        .map(|((name, version), f)| {
            let files: Vec<Value> = f
                .files
                .iter()
                .map(|(sf, _)| json!({"name": sf.name, "sha256": sf.sha256, "size": sf.size}))
                .collect();
            json!({"package": name, "version": version, "directory": f.dir, "files": files})
        })
        .collect();
    json!({
        "format": "imgforge-sources/1",
        "selection": if all { "all" } else { "copyleft" },
        "source_date_epoch": facts.source_date_epoch,
        "images": images,
        "sources": sources,
    })
}

/// `OFFER.txt`: the written offer, from the build's facts alone.
fn offer(facts: &BuildFacts, chosen: &[&Shipped], all: bool) -> String {
    let date = crate::image::rfc3339(facts.source_date_epoch);
    let mut s = format!(
        "WRITTEN OFFER FOR SOURCE CODE\n\n\
         The container images below (built {date}, SOURCE_DATE_EPOCH {}) contain \
         software whose licenses (the GNU GPL and LGPL, and others like them) \
         require that the complete corresponding source code be available to \
         everyone who receives the software.\n\n\
         This collection holds, for {}, the complete Debian source package it \
         was built from: the .dsc and every file it lists, each verified by \
         its sha256 (see sources.json, which maps each image to its binary \
         packages and their source packages). It may be distributed together \
         with the images.\n\n\
         For at least three years after the images were last distributed, \
         anyone who received them may also obtain a copy of this collection, \
         for no more than the cost of making and sending the copy, from:\n\n  \
         [name and postal or e-mail address of the distributor: to be completed \
         before distribution]\n\nImages:\n",
        facts.source_date_epoch,
        if all {
            "every shipped package"
        } else {
            "every shipped package under such a license"
        }
    );
    for (r, m) in &facts.images {
        s.push_str(&format!("  {r}  {m}\n"));
    }
    let mut by_src: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for c in chosen {
        by_src
            .entry((c.source.clone(), c.source_version.clone()))
            .or_default()
            .insert(c.license.clone());
    }
    s.push_str("\nSource packages (directory: licenses of the shipped binaries):\n");
    for ((name, version), lic) in &by_src {
        let l = lic.iter().cloned().collect::<Vec<_>>().join("; ");
        s.push_str(&format!("  {}/: {l}\n", dir_name(name, version)));
    }
    s
}

/// What the output holds: relative path -> a stored file or bytes.
enum Content {
    Stored(PathBuf),
    Bytes(Vec<u8>),
}

/// `imgforge sources`.
pub fn sources(opts: &SourcesOptions) -> Result<SourcesSummary> {
    let st = Status { quiet: opts.quiet };
    let facts = read_output(&opts.out)?;
    let chosen: Vec<&Shipped> = facts
        .shipped
        .iter()
        .filter(|s| selected(s, opts.all))
        .collect();
    let wanted: BTreeSet<(String, String)> = chosen
        .iter()
        .map(|s| (s.source.clone(), s.source_version.clone()))
        .collect();
    st.say("Finding", format!("{} source packages", wanted.len()));
    let (idx, searched) = load_index(&opts.common, &wanted)?;
    let cache = source_options(&opts.common, false).cache_dir;
    let fetched = fetch_all(&chosen, &idx, &searched, &cache)?;
    let mut entries: BTreeMap<String, Content> = BTreeMap::new();
    let (mut files, mut bytes) = (0, 0);
    for f in fetched.values() {
        for (sf, path) in &f.files {
            entries.insert(
                format!("{}/{}", f.dir, sf.name),
                Content::Stored(path.clone()),
            );
            files += 1;
            bytes += sf.size;
        }
    }
    let index = index_json(&facts, &chosen, &fetched, opts.all);
    let index = crate::json::to_canonical_pretty(&index);
    entries.insert("sources.json".into(), Content::Bytes(index));
    let text = offer(&facts, &chosen, opts.all).into_bytes();
    entries.insert("OFFER.txt".into(), Content::Bytes(text));
    if opts.dest.extension().is_some_and(|x| x == "tar") {
        write_tar(&opts.dest, &entries, facts.source_date_epoch)?;
    } else {
        write_dir(&opts.dest, &entries)?;
    }
    let binaries: BTreeSet<(&str, &str)> = chosen
        .iter()
        .map(|s| (s.package.as_str(), s.version.as_str()))
        .collect();
    st.say(
        "Wrote",
        format!(
            "{} source packages ({files} files, {bytes} bytes) for {} binary packages -> {}",
            fetched.len(),
            binaries.len(),
            opts.dest.display()
        ),
    );
    Ok(SourcesSummary {
        binaries: binaries.len(),
        sources: fetched.len(),
        files,
        bytes,
    })
}

/// The parent directory of `dest` (created), where staging goes.
fn parent_of(dest: &Path) -> Result<PathBuf, SourcesError> {
    let parent = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    std::fs::create_dir_all(&parent).map_err(io_err(&parent))?;
    Ok(parent)
}

/// Write the entries as a directory: staged beside `dest`, renamed into
/// place (replacing an earlier `sources` output).
fn write_dir(dest: &Path, entries: &BTreeMap<String, Content>) -> Result<(), SourcesError> {
    use std::os::unix::fs::PermissionsExt;
    let empty = std::fs::read_dir(dest).is_ok_and(|mut d| d.next().is_none());
    if dest.exists() && !empty && !dest.join("sources.json").is_file() {
        return Err(SourcesError::Exists {
            path: dest.to_path_buf(),
        });
    }
    let parent = parent_of(dest)?;
    let staging = tempfile::Builder::new()
        .prefix(".imgforge-sources-")
        .tempdir_in(&parent)
        .map_err(io_err(&parent))?;
    for (rel, c) in entries {
        let path = staging.path().join(rel);
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d).map_err(io_err(d))?;
        }
        match c {
            Content::Stored(p) => std::fs::copy(p, &path).map(|_| ()),
            Content::Bytes(b) => std::fs::write(&path, b),
        }
        .map_err(io_err(&path))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
            .map_err(io_err(&path))?;
    }
    if dest.exists() {
        std::fs::remove_dir_all(dest).map_err(io_err(dest))?;
    }
    let kept = staging.keep();
    std::fs::rename(&kept, dest).map_err(io_err(dest))
}

/// Write the entries as one deterministic tar: directories then files in
/// path order, mtime `sde`, uid/gid 0, no names, modes 0755/0644.
fn write_tar(
    dest: &Path,
    entries: &BTreeMap<String, Content>,
    sde: i64,
) -> Result<(), SourcesError> {
    let parent = parent_of(dest)?;
    let tmp = tempfile::Builder::new()
        .prefix(".imgforge-sources-")
        .tempfile_in(&parent)
        .map_err(io_err(&parent))?;
    let mut paths: BTreeSet<String> = BTreeSet::new();
    for rel in entries.keys() {
        let mut p = Path::new(rel).parent();
        while let Some(d) = p.filter(|d| !d.as_os_str().is_empty()) {
            paths.insert(format!("{}/", d.display()));
            p = d.parent();
        }
        paths.insert(rel.clone());
    }
    let mut b = tar::Builder::new(std::io::BufWriter::new(tmp.as_file()));
    for rel in &paths {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(sde.max(0) as u64);
        h.set_uid(0);
        h.set_gid(0);
        let r = if rel.ends_with('/') {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_size(0);
            b.append_data(&mut h, rel, std::io::empty())
        } else {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(0o644);
            match &entries[rel] {
                Content::Stored(p) => {
                    let f = std::fs::File::open(p).map_err(io_err(p))?;
                    h.set_size(f.metadata().map_err(io_err(p))?.len());
                    b.append_data(&mut h, rel, f)
                }
                Content::Bytes(v) => {
                    h.set_size(v.len() as u64);
                    b.append_data(&mut h, rel, v.as_slice())
                }
            }
        };
        r.map_err(io_err(dest))?;
    }
    b.into_inner()
        .and_then(|w| w.into_inner().map_err(|e| e.into_error()).map(|_| ()))
        .map_err(io_err(dest))?;
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::Permissions::from_mode(0o644);
    std::fs::set_permissions(tmp.path(), mode).map_err(io_err(dest))?;
    tmp.persist(dest).map_err(|e| io_err(dest)(e.error))?;
    Ok(())
}
