//! Debian source packages: the `Sources` index of each suite and component
//! (verified through the signed Release, as `Packages` is), the `.dsc` and
//! every file it and the index list, each checked by sha256 and size and
//! kept in the store (`store/source/sha256/<hex>`).
//!
//! Trust chain: keyring -> signed Release -> SHA256 of `Sources` -> the
//! `Checksums-Sha256` of each source package -> each file; the `.dsc`'s own
//! list must agree with the index. A flat mirror (`imgforge vendor
//! --sources`) has a `Sources` file beside its `Packages`, trusted as the
//! mirror is.

use super::fetch::Client;
use super::sources::ArchiveSource;
use super::store::{self, Store};
use super::{ArchiveError, ArchiveOptions, release};
use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::path::{Path, PathBuf};

/// One file of a source package.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SourceFile {
    pub name: String,
    pub sha256: String,
    pub size: u64,
}

/// A source package as an index lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRecord {
    pub package: String,
    pub version: String,
    /// Where its files are, relative to `base`.
    pub directory: String,
    /// The archive URI (or `file://` mirror) the record came from.
    pub base: String,
    /// Where the record's digests come from, for messages.
    pub against: String,
    /// Every file (the `.dsc` included), sorted by name.
    pub files: Vec<SourceFile>,
}

impl SourceRecord {
    /// The `.dsc` of the package, if the index lists one.
    pub fn dsc(&self) -> Option<&SourceFile> {
        self.files.iter().find(|f| f.name.ends_with(".dsc"))
    }
}

/// Source records by (package, version); the first index to list one wins.
pub type SourceIndex = BTreeMap<(String, String), SourceRecord>;

/// Parse `Checksums-Sha256` lines (`<sha256> <size> <name>`).
pub fn checksums(value: &str) -> Vec<SourceFile> {
    let mut v: Vec<SourceFile> = value
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            match w[..] {
                [h, size, name] => Some(SourceFile {
                    name: name.to_string(),
                    sha256: h.to_ascii_lowercase(),
                    size: size.parse().ok()?,
                }),
                _ => None,
            }
        })
        .collect();
    v.sort();
    v
}

/// Read the records of a `Sources` text that `wanted` names, streaming
/// (a whole archive's index is large).
pub fn read_sources(
    r: impl BufRead,
    path: &Path,
    base: &str,
    against: &str,
    wanted: &BTreeSet<(String, String)>,
    out: &mut SourceIndex,
) -> Result<(), ArchiveError> {
    let mut fields: BTreeMap<String, String> = BTreeMap::new();
    let mut last = String::new();
    let mut flush = |fields: &mut BTreeMap<String, String>| {
        let get = |k: &str| {
            fields
                .get(k)
                .map(|v| v.trim().to_string())
                .unwrap_or_default()
        };
        let key = (get("Package"), get("Version"));
        if wanted.contains(&key) && !out.contains_key(&key) {
            let rec = SourceRecord {
                package: key.0.clone(),
                version: key.1.clone(),
                directory: get("Directory"),
                base: base.to_string(),
                against: against.to_string(),
                files: checksums(fields.get("Checksums-Sha256").map_or("", String::as_str)),
            };
            out.insert(key, rec);
        }
        fields.clear();
    };
    for line in r.lines() {
        let line = line.map_err(ArchiveError::io(path))?;
        if line.trim().is_empty() {
            flush(&mut fields);
        } else if line.starts_with([' ', '\t']) {
            if let Some(v) = fields.get_mut(&last) {
                v.push('\n');
                v.push_str(line.trim());
            }
        } else if let Some((k, v)) = line.split_once(':') {
            last = k.trim().to_string();
            fields.insert(last.clone(), v.trim().to_string());
        }
    }
    flush(&mut fields);
    Ok(())
}

/// The records `wanted` names from every suite and component of the
/// archives (signed Release, verified `Sources`, cached by hash).
pub fn load(
    sources: &[ArchiveSource],
    opts: &ArchiveOptions,
    wanted: &BTreeSet<(String, String)>,
    out: &mut SourceIndex,
) -> Result<Vec<String>, ArchiveError> {
    let client = Client::new();
    let mut read = Vec::new();
    let mut downloaded = 0;
    for src in sources {
        for suite in &src.suites {
            let rel = release::get_release(&client, src, suite, opts, &mut downloaded)?;
            for comp in &src.components {
                let dir = format!("{comp}/source");
                let Some(path) =
                    release::index_file(&client, &dir, "Sources", &rel, opts, &mut downloaded)?
                else {
                    continue;
                };
                let against = format!("the signed Sources index of {} {suite}", src.uri);
                let r = store::open_index(&path)?;
                read_sources(r, &path, &src.uri, &against, wanted, out)?;
                read.push(format!("{} {suite} {comp}", src.uri));
            }
            release::commit(&rel)?;
        }
    }
    Ok(read)
}

/// The records `wanted` names from a flat mirror's `Sources` file (none
/// when it has no such file).
pub fn load_mirror(
    dir: &Path,
    wanted: &BTreeSet<(String, String)>,
    out: &mut SourceIndex,
) -> Result<Vec<String>, ArchiveError> {
    let dir = dir.canonicalize().map_err(ArchiveError::io(dir))?;
    for name in ["Sources.xz", "Sources.gz", "Sources"] {
        let path = dir.join(name);
        if path.is_file() {
            let base = format!("file://{}", dir.display());
            let against = format!("the mirror's {}", path.display());
            read_sources(
                store::open_index(&path)?,
                &path,
                &base,
                &against,
                wanted,
                out,
            )?;
            return Ok(vec![path.display().to_string()]);
        }
    }
    Ok(Vec::new())
}

/// One file of `rec` in the store, downloaded and verified (sha256, then
/// size) when the store does not have it. Returns its path and the bytes
/// downloaded.
fn fetch_file(
    client: &Client,
    rec: &SourceRecord,
    f: &SourceFile,
    st: &Store,
) -> Result<(PathBuf, u64), ArchiveError> {
    let dest = st.source_path(&f.sha256);
    if dest.is_file() {
        return Ok((dest, 0));
    }
    let url = format!("{}/{}/{}", rec.base, rec.directory, f.name);
    let n = client
        .download_verified(&url, &dest, &f.sha256, &rec.against)?
        .ok_or_else(|| ArchiveError::Http {
            url: url.clone(),
            reason: "not found (HTTP 404): the archive no longer has it".into(),
        })?;
    if n != f.size {
        let _ = std::fs::remove_file(&dest);
        return Err(ArchiveError::Hash {
            url,
            against: format!("{} (size)", rec.against),
            expected: format!("{} bytes", f.size),
            actual: format!("{n} bytes"),
        });
    }
    Ok((dest, n))
}

/// Every file of `rec` in the store, verified; the `.dsc`'s own
/// `Checksums-Sha256` must agree with the index. Returns (file, path) by
/// name and the bytes downloaded.
pub fn fetch(
    rec: &SourceRecord,
    cache: &Path,
) -> Result<(Vec<(SourceFile, PathBuf)>, u64), ArchiveError> {
    let client = Client::new();
    let st = Store::new(cache);
    let mut out = Vec::new();
    let mut downloaded = 0;
    for f in &rec.files {
        let (p, n) = fetch_file(&client, rec, f, &st)?;
        downloaded += n;
        out.push((f.clone(), p));
    }
    if let Some((dsc, path)) = out.iter().find(|(f, _)| f.name.ends_with(".dsc")) {
        let text = std::fs::read_to_string(path).map_err(ArchiveError::io(path))?;
        for f in checksums(&dsc_field(&text, "Checksums-Sha256")) {
            if !rec.files.contains(&f) {
                return Err(ArchiveError::Hash {
                    url: format!("{}/{}/{}", rec.base, rec.directory, dsc.name),
                    against: format!("{} (the .dsc lists {})", rec.against, f.name),
                    expected: format!("{} {} bytes", f.sha256, f.size),
                    actual: "a file the index does not list with that digest".into(),
                });
            }
        }
    }
    Ok((out, downloaded))
}

/// A multi-line field of a `.dsc` (its signature, if any, is outside the
/// fields read).
fn dsc_field(text: &str, name: &str) -> String {
    let mut value = String::new();
    let mut inside = false;
    for line in text.lines() {
        if line.starts_with([' ', '\t']) {
            if inside {
                value.push_str(line.trim());
                value.push('\n');
            }
            continue;
        }
        inside = line
            .split_once(':')
            .is_some_and(|(k, _)| k.trim().eq_ignore_ascii_case(name));
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCES: &str = "Package: hello\nBinary: hello\nVersion: 2.10-3\nDirectory: pool/main/h/hello\nChecksums-Sha256:\n aa11 10 hello_2.10-3.dsc\n bb22 200 hello_2.10.orig.tar.gz\n\nPackage: other\nVersion: 1\nDirectory: pool/main/o/other\nChecksums-Sha256:\n cc33 5 other_1.dsc\n";

    #[test]
    fn reads_only_the_wanted_records() {
        let wanted: BTreeSet<(String, String)> =
            [("hello".to_string(), "2.10-3".to_string())].into();
        let mut idx = SourceIndex::new();
        read_sources(
            SOURCES.as_bytes(),
            Path::new("Sources"),
            "http://a.invalid/debian",
            "test",
            &wanted,
            &mut idx,
        )
        .unwrap();
        assert_eq!(idx.len(), 1);
        let r = &idx[&("hello".to_string(), "2.10-3".to_string())];
        assert_eq!(r.directory, "pool/main/h/hello");
        assert_eq!(r.files.len(), 2);
        assert_eq!(r.dsc().unwrap().name, "hello_2.10-3.dsc");
        assert_eq!(r.files[1].size, 200);
    }

    #[test]
    fn dsc_checksums_field() {
        let dsc = "Format: 3.0 (quilt)\nSource: hello\nChecksums-Sha256:\n bb22 200 hello_2.10.orig.tar.gz\nFiles:\n x 200 hello_2.10.orig.tar.gz\n";
        let v = checksums(&dsc_field(dsc, "Checksums-Sha256"));
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].sha256, "bb22");
    }
}
