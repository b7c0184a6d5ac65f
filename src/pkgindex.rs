//! The package index: every `.deb` imgforge may choose from. It sits below
//! both [`crate::archive`] (which fills it from signed indexes) and
//! [`crate::resolve`] (which chooses from it).
//!
//! Sources, in order of preference:
//! 1. a local mirror (`--mirror DIR`): a flat repository with a `Packages`
//!    (or `Packages.gz`/`.xz`) index, or a plain directory of `.deb` files
//!    that imgforge indexes by reading their control files;
//! 2. Debian archives read by [`crate::archive`] (signed Release, verified
//!    `Packages`), whose `.deb`s are downloaded into the package store.
//!
//! Each record keeps its sha256, so every `.deb` is checked before use.

use debian_control::lossy::Relations;
use debversion::Version;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Where a record's `.deb` lives.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Origin {
    /// In a mirror directory: `<root>/<Filename>`.
    Mirror(PathBuf),
    /// In a Debian archive: `<base URI>/<Filename>`.
    Url(String),
}

/// One package version as an index describes it.
#[derive(Debug, Clone)]
pub struct Record {
    pub name: String,
    pub version: Version,
    pub architecture: String,
    pub source: String,
    pub source_version: String,
    pub depends: Rels,
    pub pre_depends: Rels,
    pub provides: Rels,
    pub conflicts: Rels,
    pub breaks: Rels,
    /// `Filename:` as in the index (relative to the mirror root).
    pub filename: String,
    pub size: u64,
    pub sha256: String,
    pub origin: Origin,
}

/// A relation field (`Depends:`, `Provides:`...) kept as its text, checked
/// when the index is read and parsed again when first used. A real
/// archive's index has some 70,000 stanzas and the resolver looks at a few
/// hundred of them: holding every field parsed took about 180 MB of the
/// 250 MB heap of a lock from bookworm's indexes (measured with heaptrack).
#[derive(Clone, Default)]
pub struct Rels {
    text: Box<str>,
    parsed: std::sync::OnceLock<Relations>,
}

impl Rels {
    /// `text` (continuation lines joined), if it parses.
    fn checked(text: &str, field: &str) -> Result<Rels, String> {
        let text = text.replace('\n', " ");
        parse_relations(&text).map_err(|e| format!("cannot parse {field}: {e}"))?;
        Ok(Rels {
            text: text.into_boxed_str(),
            parsed: std::sync::OnceLock::new(),
        })
    }
}

impl Rels {
    /// The relations, parsed now and not kept.
    fn transient(&self) -> Relations {
        parse_relations(&self.text).expect("checked when the index was read")
    }
}

fn parse_relations(text: &str) -> Result<Relations, String> {
    match text.trim().is_empty() {
        true => Ok(Relations::new()),
        false => text.parse::<Relations>().map_err(|e| e.to_string()),
    }
}

impl std::ops::Deref for Rels {
    type Target = Relations;
    fn deref(&self) -> &Relations {
        self.parsed
            .get_or_init(|| parse_relations(&self.text).expect("checked when the index was read"))
    }
}

impl std::fmt::Debug for Rels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.text)
    }
}

impl Record {
    /// The `.deb` file name (basename).
    pub fn file_name(&self) -> String {
        Path::new(&self.filename)
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.filename.clone())
    }
    /// `name=version`.
    pub fn id(&self) -> String {
        format!("{}={}", self.name, self.version)
    }
}

/// Errors while indexing a package source.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("cannot read {path}: {source}\nhelp: check that the mirror path is right and readable")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path}: stanza {stanza} ({package}): {reason}\nhelp: regenerate the index with `dpkg-scanpackages` or `apt-ftparchive packages`"
    )]
    BadStanza {
        path: PathBuf,
        stanza: usize,
        package: String,
        reason: String,
    },
    #[error(transparent)]
    Deb(#[from] crate::deb::DebError),
    #[error(
        "{path} is neither a flat repository (no Packages index) nor a directory of .deb files\nhelp: point --mirror at a directory holding Packages (as dpkg-scanpackages writes it) or .deb files"
    )]
    EmptyMirror { path: PathBuf },
}

/// An index stanza (or a `.deb` of a plain mirror directory) that was
/// refused. It fails only resolutions that select its package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadStanza {
    pub path: PathBuf,
    /// 1-based stanza number in the index.
    pub stanza: usize,
    /// The package it claims to be, when that much could be read.
    pub package: Option<String>,
    pub reason: String,
}

impl BadStanza {
    /// The error a resolution selecting this package gets.
    pub fn to_error(&self) -> IndexError {
        IndexError::BadStanza {
            path: self.path.clone(),
            stanza: self.stanza,
            package: self.package.clone().unwrap_or_else(|| "?".into()),
            reason: self.reason.clone(),
        }
    }
}

impl std::fmt::Display for BadStanza {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: stanza {} ({}) ignored: {}",
            self.path.display(),
            self.stanza,
            self.package
                .as_deref()
                .unwrap_or("no readable Package field"),
            self.reason
        )
    }
}

/// All known package records, by name and version.
#[derive(Debug, Default, Clone)]
pub struct Index {
    /// Refused stanzas, in source order.
    pub bad: Vec<BadStanza>,
    /// name -> records, highest version first.
    pub by_name: BTreeMap<String, Vec<Record>>,
    /// virtual name -> (provider name, provided version).
    pub providers: BTreeMap<String, Vec<(String, Option<Version>)>>,
    /// Target architecture.
    pub arch: String,
    /// What apt's provider order needs to know about each name (see
    /// [`AptHints`]); filled while indexes are read.
    pub hints: BTreeMap<String, AptHints>,
}

/// apt's per-name facts for ordering the providers of a virtual package:
/// flags, priority, and the order in which apt's cache first met the name
/// (its package ID; apt prefers the later one when nothing else decides).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AptHints {
    /// Rank of the first mention of the name (as a package, a relation
    /// target or a provided name) while reading the indexes in order.
    pub first_seen: u32,
    /// `Essential: yes` on some version.
    pub essential: bool,
    /// `Important: yes` or `Protected: yes` on some version.
    pub important: bool,
    /// apt's priority number of the highest version (1 required, 2
    /// important, 3 standard, 4 optional, 5 extra, 6 unknown).
    pub priority: u8,
    /// The version the priority was read from.
    priority_of: Option<Version>,
}

impl Index {
    /// An empty index for `arch`.
    pub fn new(arch: &str) -> Self {
        Index {
            arch: arch.to_string(),
            ..Default::default()
        }
    }

    /// Note a name's first mention (apt's cache order), if not yet seen.
    pub fn note_name(&mut self, name: &str) {
        if !self.hints.contains_key(name) {
            let first_seen = self.hints.len() as u32;
            self.hints.insert(
                name.to_string(),
                AptHints {
                    first_seen,
                    priority: 6,
                    ..Default::default()
                },
            );
        }
    }

    /// Note what apt learns from one index stanza: the names it mentions, in
    /// the order apt's cache generator reads them, and its flags/priority.
    pub fn note_stanza(&mut self, p: &deb822_fast::Paragraph) {
        let Some(name) = p.get("Package").map(str::trim) else {
            return;
        };
        let arch = p.get("Architecture").map(str::trim).unwrap_or("");
        if arch != self.arch && arch != "all" {
            return;
        }
        self.note_name(name);
        for field in [
            "Pre-Depends",
            "Depends",
            "Conflicts",
            "Breaks",
            "Recommends",
            "Suggests",
            "Replaces",
            "Enhances",
            "Provides",
        ] {
            for target in p.get(field).into_iter().flat_map(|v| v.split([',', '|'])) {
                let target = target
                    .trim()
                    .split([' ', '(', ':', '\n'])
                    .next()
                    .unwrap_or("");
                if !target.is_empty() {
                    self.note_name(target);
                }
            }
        }
        let yes = |f: &str| {
            p.get(f)
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("yes"))
        };
        let (essential, important) = (yes("Essential"), yes("Important") || yes("Protected"));
        let version = p
            .get("Version")
            .and_then(|v| v.trim().parse::<Version>().ok());
        let priority = match p.get("Priority").map(str::trim) {
            Some("required") => 1,
            Some("important") => 2,
            Some("standard") => 3,
            Some("optional") => 4,
            Some("extra") => 5,
            _ => 6,
        };
        let h = self.hints.get_mut(name).expect("noted above");
        h.essential |= essential;
        h.important |= important;
        if h.priority_of.is_none() || version > h.priority_of {
            h.priority = priority;
            h.priority_of = version;
        }
    }

    /// Add a record unless the same name+version is already known (earlier
    /// sources win) or its architecture does not fit.
    pub fn add(&mut self, r: Record) {
        if r.architecture != self.arch && r.architecture != "all" {
            return;
        }
        self.note_name(&r.name);
        // Parsed for their names only, not kept (see [`Rels`]).
        for rels in [r.pre_depends.transient(), r.depends.transient()] {
            for rel in rels.iter().flatten() {
                self.note_name(&rel.name);
            }
        }
        for rel in r.provides.iter().flatten() {
            self.note_name(&rel.name);
        }
        let list = self.by_name.entry(r.name.clone()).or_default();
        if list.iter().any(|x| x.version == r.version) {
            return;
        }
        for group in r.provides.iter() {
            for p in group {
                let v = p.version.as_ref().map(|(_, v)| v.clone());
                let prov = self.providers.entry(p.name.clone()).or_default();
                if !prov.iter().any(|(n, pv)| n == &r.name && pv == &v) {
                    prov.push((r.name.clone(), v));
                    prov.sort();
                }
            }
        }
        list.push(r);
        list.sort_by(|a, b| b.version.cmp(&a.version));
    }

    /// The record for an exact name and version.
    pub fn get(&self, name: &str, version: &Version) -> Option<&Record> {
        self.by_name
            .get(name)?
            .iter()
            .find(|r| &r.version == version)
    }

    /// Fail when a refused stanza claims one of `names`: a resolution must
    /// not silently pick another version of a package whose index entry
    /// was hostile or broken.
    pub fn check_selected<'a>(
        &self,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), IndexError> {
        if self.bad.is_empty() {
            return Ok(());
        }
        for n in names {
            if let Some(b) = self.bad.iter().find(|b| b.package.as_deref() == Some(n)) {
                return Err(b.to_error());
            }
        }
        Ok(())
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.by_name.values().map(Vec::len).sum()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

fn relations(p: &deb822_fast::Paragraph, field: &str) -> Result<Rels, String> {
    match p.get(field) {
        None => Ok(Rels::default()),
        Some(v) => Rels::checked(v, field),
    }
}

/// Build a [`Record`] from a control/index paragraph.
pub fn record_from_paragraph(
    p: &deb822_fast::Paragraph,
    filename: Option<String>,
    sha256: Option<String>,
    size: Option<u64>,
    origin: Origin,
) -> Result<Record, String> {
    let name = p
        .get("Package")
        .ok_or("no Package field")?
        .trim()
        .to_string();
    let version_s = p.get("Version").ok_or("no Version field")?.trim();
    let version: Version = version_s
        .parse()
        .map_err(|e| format!("bad Version {version_s:?}: {e:?}"))?;
    let architecture = p
        .get("Architecture")
        .ok_or("no Architecture field")?
        .trim()
        .to_string();
    let (source, source_version) = match p.get("Source") {
        None => (name.clone(), version_s.to_string()),
        Some(s) => {
            let s = s.trim();
            match s.split_once('(') {
                Some((n, v)) => (
                    n.trim().to_string(),
                    v.trim_end_matches(')').trim().to_string(),
                ),
                None => (s.to_string(), version_s.to_string()),
            }
        }
    };
    let filename = filename
        .or_else(|| p.get("Filename").map(|s| s.trim().to_string()))
        .ok_or("no Filename field")?;
    if filename.split('/').any(|c| c == "..") || filename.starts_with('/') {
        return Err(format!("Filename {filename:?} leaves the mirror"));
    }
    let sha256 = sha256
        .or_else(|| p.get("SHA256").map(|s| s.trim().to_string()))
        .ok_or("no SHA256 field")?;
    if !crate::digest::is_sha256_hex(&sha256) {
        return Err(format!("SHA256 {sha256:?} is not 64 hex digits"));
    }
    let size = match size {
        Some(s) => s,
        None => p
            .get("Size")
            .ok_or("no Size field")?
            .trim()
            .parse()
            .map_err(|_| "bad Size field")?,
    };
    Ok(Record {
        depends: relations(p, "Depends")?,
        pre_depends: relations(p, "Pre-Depends")?,
        provides: relations(p, "Provides")?,
        conflicts: relations(p, "Conflicts")?,
        breaks: relations(p, "Breaks")?,
        name,
        version,
        architecture,
        source,
        source_version,
        filename,
        size,
        sha256,
        origin,
    })
}

/// Parse a `Packages` index text into `index`. Each stanza is parsed on
/// its own (strictly, as a control file is): a bad one is recorded in
/// [`Index::bad`] and does not stop the others.
pub fn add_packages_text(
    index: &mut Index,
    text: &str,
    path: &Path,
    origin: Origin,
) -> Result<usize, IndexError> {
    add_packages_reader(index, text.as_bytes(), path, origin, |_| {})
}

/// [`add_packages_text`] from a reader, a stanza at a time (a real
/// archive's index is some 45 MB of text: it is never held whole), calling
/// `each` with every stanza's text, good or bad.
pub fn add_packages_reader(
    index: &mut Index,
    mut reader: impl std::io::BufRead,
    path: &Path,
    origin: Origin,
    mut each: impl FnMut(&str),
) -> Result<usize, IndexError> {
    let io = |source| IndexError::Io {
        path: path.to_path_buf(),
        source,
    };
    let (mut n, mut i) = (0, 0);
    let mut stanza = String::new();
    loop {
        let start = stanza.len();
        let read = reader.read_line(&mut stanza).map_err(io)?;
        // An empty line (or the end) closes the stanza.
        if read != 0 && &stanza[start..] != "\n" {
            continue;
        }
        // As between two empty lines: no newline at either end.
        let text = stanza[..start].trim_matches('\n');
        if !text.trim().is_empty() {
            i += 1;
            each(text);
            n += add_stanza(index, text, i, path, &origin) as usize;
        }
        stanza.clear();
        if read == 0 {
            return Ok(n);
        }
    }
}

/// Add one stanza (the `i`th of `path`): whether it was good.
fn add_stanza(index: &mut Index, stanza: &str, i: usize, path: &Path, origin: &Origin) -> bool {
    let parsed = crate::deb::control::parse(stanza.as_bytes()).and_then(|c| {
        let p = c.paragraph();
        record_from_paragraph(&p, None, None, None, origin.clone()).map(|r| (r, p))
    });
    match parsed {
        Ok((rec, p)) => {
            index.note_stanza(&p);
            index.add(rec);
            true
        }
        Err(reason) => {
            index.bad.push(BadStanza {
                path: path.to_path_buf(),
                stanza: i,
                package: claimed_package(stanza),
                reason,
            });
            false
        }
    }
}

/// The first `Package:` value of a stanza, if it looks like a name.
fn claimed_package(stanza: &str) -> Option<String> {
    stanza
        .lines()
        .find_map(|l| l.strip_prefix("Package:"))
        .map(str::trim)
        .filter(|n| crate::deb::control::valid_package_name(n))
        .map(str::to_string)
}

fn read_maybe_compressed(path: &Path) -> Result<String, IndexError> {
    let io = |source| IndexError::Io {
        path: path.to_path_buf(),
        source,
    };
    let f = std::fs::File::open(path).map_err(io)?;
    let name = path.to_string_lossy();
    let mut r: Box<dyn Read> = if name.ends_with(".gz") {
        Box::new(flate2::read::MultiGzDecoder::new(f))
    } else if name.ends_with(".xz") {
        Box::new(liblzma::read::XzDecoder::new(f))
    } else if name.ends_with(".lz4") {
        Box::new(lz4_flex::frame::FrameDecoder::new(f))
    } else {
        Box::new(f)
    };
    let mut s = String::new();
    r.read_to_string(&mut s).map_err(io)?;
    Ok(s)
}

/// Index a local mirror directory.
pub fn add_mirror(index: &mut Index, dir: &Path) -> Result<usize, IndexError> {
    for name in ["Packages", "Packages.gz", "Packages.xz"] {
        let p = dir.join(name);
        if p.is_file() {
            let text = read_maybe_compressed(&p)?;
            return add_packages_text(index, &text, &p, Origin::Mirror(dir.to_path_buf()));
        }
    }
    // A plain directory of .deb files: read each control file (in parallel).
    let mut debs = Vec::new();
    for e in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let e = e.map_err(|e| IndexError::Io {
            path: dir.to_path_buf(),
            source: e.into(),
        })?;
        if e.file_type().is_file() && e.path().extension().is_some_and(|x| x == "deb") {
            debs.push(e.into_path());
        }
    }
    if debs.is_empty() {
        return Err(IndexError::EmptyMirror {
            path: dir.to_path_buf(),
        });
    }
    use rayon::prelude::*;
    let recs: Vec<Result<(Record, deb822_fast::Paragraph), IndexError>> = debs
        .par_iter()
        .map(|deb| {
            let ctl = crate::deb::read_control(deb, &crate::deb::Limits::default())?;
            let (sha, size) = crate::digest::sha256_file(deb).map_err(|source| IndexError::Io {
                path: deb.clone(),
                source,
            })?;
            let rel = deb
                .strip_prefix(dir)
                .unwrap_or(deb)
                .to_string_lossy()
                .into_owned();
            record_from_paragraph(
                &ctl.fields,
                Some(rel),
                Some(sha),
                Some(size),
                Origin::Mirror(dir.to_path_buf()),
            )
            .map(|r| (r, ctl.fields.clone()))
            .map_err(|reason| IndexError::BadStanza {
                path: deb.clone(),
                stanza: 1,
                package: ctl.get("Package").unwrap_or("?").to_string(),
                reason,
            })
        })
        .collect();
    let mut n = 0;
    for (i, (r, deb)) in recs.into_iter().zip(&debs).enumerate() {
        match r {
            Ok((r, p)) => {
                index.note_stanza(&p);
                index.add(r);
                n += 1;
            }
            Err(IndexError::Io { path, source }) => return Err(IndexError::Io { path, source }),
            Err(e) => index.bad.push(BadStanza {
                path: deb.clone(),
                stanza: i + 1,
                package: deb
                    .file_name()
                    .and_then(|f| f.to_string_lossy().split('_').next().map(str::to_string))
                    .filter(|n| crate::deb::control::valid_package_name(n)),
                reason: e.to_string(),
            }),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stanza(name: &str, version: &str, depends: &str) -> String {
        format!(
            "Package: {name}\nVersion: {version}\nArchitecture: amd64\nDepends: {depends}\n\
             Filename: pool/{name}.deb\nSize: 1\nSHA256: {}\n",
            "a".repeat(64)
        )
    }

    #[test]
    fn stanzas_are_read_one_at_a_time_between_empty_lines() {
        // Extra empty lines, a bad stanza, no newline at the end.
        let text = format!(
            "\n{}\n\n\n{}\nPackage: broken\n\n{}",
            stanza("a", "1", "b (>= 2) | c, d"),
            stanza("b", "2", ""),
            stanza("c", "3", "a").trim_end()
        );
        let mut index = Index::new("amd64");
        let mut seen = Vec::new();
        let n = add_packages_reader(
            &mut index,
            std::io::BufReader::with_capacity(7, text.as_bytes()),
            Path::new("Packages"),
            Origin::Url(String::new()),
            |s| seen.push(s.lines().next().unwrap_or_default().to_string()),
        )
        .unwrap();
        assert_eq!(n, 3);
        assert_eq!(
            seen,
            ["Package: a", "Package: b", "Package: broken", "Package: c"]
        );
        assert_eq!(index.bad.len(), 1, "{:?}", index.bad);
        assert_eq!(index.bad[0].stanza, 3);
        assert_eq!(index.bad[0].package.as_deref(), Some("broken"));
        let a = &index.by_name["a"][0];
        let groups: Vec<Vec<&str>> = a
            .depends
            .iter()
            .map(|g| g.iter().map(|r| r.name.as_str()).collect())
            .collect();
        assert_eq!(groups, [vec!["b", "c"], vec!["d"]]);
        assert!(index.by_name["b"][0].depends.iter().next().is_none());
    }

    #[test]
    fn a_relation_field_that_does_not_parse_refuses_the_stanza() {
        let text = stanza("x", "1", "y (>> )");
        let mut index = Index::new("amd64");
        let n = add_packages_text(
            &mut index,
            &text,
            Path::new("P"),
            Origin::Url(String::new()),
        )
        .unwrap();
        assert_eq!(n, 0);
        assert!(index.bad[0].reason.contains("Depends"), "{:?}", index.bad);
    }
}
