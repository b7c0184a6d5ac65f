//! Which Debian archives to read: `[[source.archive]]` entries of the base
//! recipe, or the host's apt *configuration* (`sources.list`, one-line
//! `*.list` and deb822 `*.sources` files with their `Signed-By` keyrings).
//!
//! Only the configuration is read: no `apt-get`, no apt lists. Entries are
//! kept in file-name order, then in the order written, so the index built
//! from them never depends on directory order.

use super::ArchiveError;
use std::path::{Path, PathBuf};

/// Where the OpenPGP keys that sign an archive come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keys {
    /// Keyring files (binary or ASCII-armored).
    Files(Vec<PathBuf>),
    /// An armored key block written inline (deb822 `Signed-By:`).
    Inline(String),
}

/// One archive: a URI, its suites and components.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveSource {
    /// Base URI (`http://`, `https://` or `file://`), without a trailing `/`.
    pub uri: String,
    pub suites: Vec<String>,
    pub components: Vec<String>,
    pub keys: Keys,
    /// Accept an unsigned or badly signed Release (apt's `[trusted=yes]`).
    pub trusted: bool,
    /// Where it was declared, for messages (`file:line`).
    pub declared: String,
}

/// An archive-of-record that keeps every version (a `snapshot` setting):
/// `url` is a template where `{archive}` is the last path component of a
/// live archive's URI and `{timestamp}` is `timestamp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub timestamp: String,
    pub url: String,
}

impl Snapshot {
    /// The snapshot counterpart of every live source (same suites,
    /// components and keys).
    pub fn sources(&self, live: &[ArchiveSource]) -> Vec<ArchiveSource> {
        live.iter()
            .map(|s| {
                let archive = s.uri.rsplit('/').next().unwrap_or("");
                ArchiveSource {
                    uri: self
                        .url
                        .replace("{archive}", archive)
                        .replace("{timestamp}", &self.timestamp)
                        .trim_end_matches('/')
                        .to_string(),
                    declared: format!("snapshot {} of {}", self.timestamp, s.declared),
                    ..s.clone()
                }
            })
            .collect()
    }
}

impl std::fmt::Display for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.timestamp, self.url)
    }
}

/// Parse the host's apt configuration under `root` (`/` on a real host).
/// Returns an empty list when there is none.
pub fn host_sources(root: &Path, arch: &str) -> Result<Vec<ArchiveSource>, ArchiveError> {
    let etc = root.join("etc").join("apt");
    let default_keys = default_keyrings(&etc);
    let mut files = Vec::new();
    let main = etc.join("sources.list");
    if main.is_file() {
        files.push(main);
    }
    let mut extra: Vec<PathBuf> = std::fs::read_dir(etc.join("sources.list.d"))
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "list" || x == "sources"))
        .collect();
    extra.sort();
    files.extend(extra);
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).map_err(|source| ArchiveError::Io {
            path: f.clone(),
            source,
        })?;
        if f.extension().is_some_and(|x| x == "sources") {
            out.extend(parse_deb822(&text, &f, arch, &default_keys)?);
        } else {
            out.extend(parse_one_line(&text, &f, arch, &default_keys)?);
        }
    }
    Ok(out)
}

/// apt's keyrings for sources without `Signed-By`.
fn default_keyrings(etc: &Path) -> Keys {
    let mut v = Vec::new();
    if etc.join("trusted.gpg").is_file() {
        v.push(etc.join("trusted.gpg"));
    }
    let mut d: Vec<PathBuf> = std::fs::read_dir(etc.join("trusted.gpg.d"))
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "gpg" || x == "asc"))
        .collect();
    d.sort();
    v.extend(d);
    Keys::Files(v)
}

fn bad(file: &Path, line: usize, reason: impl Into<String>) -> ArchiveError {
    ArchiveError::BadSources {
        path: file.to_path_buf(),
        line,
        reason: reason.into(),
    }
}

fn signed_by(value: &str) -> Keys {
    let v = value.trim();
    if v.starts_with("-----BEGIN") {
        Keys::Inline(v.to_string())
    } else {
        Keys::Files(
            v.split([',', ' '])
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
                .collect(),
        )
    }
}

fn arch_fits(list: Option<&str>, arch: &str) -> bool {
    list.is_none_or(|l| l.split([',', ' ']).any(|a| a == arch || a == "all"))
}

/// One-line format: `deb [opt=value ...] URI SUITE [COMPONENT...]`.
pub fn parse_one_line(
    text: &str,
    file: &Path,
    arch: &str,
    default_keys: &Keys,
) -> Result<Vec<ArchiveSource>, ArchiveError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let (kind, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        if kind == "deb-src" {
            continue;
        }
        if kind != "deb" {
            return Err(bad(file, i + 1, format!("unknown entry type {kind:?}")));
        }
        let mut rest = rest.trim();
        let mut opts = Vec::new();
        if let Some(r) = rest.strip_prefix('[') {
            let (o, after) = r
                .split_once(']')
                .ok_or_else(|| bad(file, i + 1, "unclosed [options]"))?;
            opts = o.split_whitespace().map(str::to_string).collect();
            rest = after.trim();
        }
        let words: Vec<&str> = rest.split_whitespace().collect();
        if words.len() < 3 {
            return Err(bad(
                file,
                i + 1,
                "expected a URI, a suite and at least one component (flat repositories are not supported here)",
            ));
        }
        let opt = |k: &str| {
            opts.iter()
                .find_map(|o| o.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
        };
        if !arch_fits(opt("arch"), arch) {
            continue;
        }
        out.push(ArchiveSource {
            uri: words[0].trim_end_matches('/').to_string(),
            suites: vec![words[1].to_string()],
            components: words[2..].iter().map(|s| s.to_string()).collect(),
            keys: opt("signed-by").map_or_else(|| default_keys.clone(), signed_by),
            trusted: opt("trusted") == Some("yes"),
            declared: format!("{}:{}", file.display(), i + 1),
        });
    }
    Ok(out)
}

/// deb822 format (`*.sources`): `Types`, `URIs`, `Suites`, `Components`,
/// `Signed-By`, `Trusted`, `Enabled`, `Architectures`.
pub fn parse_deb822(
    text: &str,
    file: &Path,
    arch: &str,
    default_keys: &Keys,
) -> Result<Vec<ArchiveSource>, ArchiveError> {
    let mut out = Vec::new();
    for (start, para) in paragraphs(text) {
        let get = |k: &str| {
            para.iter()
                .find(|(f, _)| f.eq_ignore_ascii_case(k))
                .map(|(_, v)| v.as_str())
        };
        let words = |k: &str| -> Vec<String> {
            get(k)
                .map(|v| v.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default()
        };
        if !words("Types").iter().any(|t| t == "deb") {
            continue;
        }
        if get("Enabled").is_some_and(|v| v.trim() == "no") {
            continue;
        }
        if !arch_fits(get("Architectures"), arch) {
            continue;
        }
        let (suites, components) = (words("Suites"), words("Components"));
        if suites.is_empty() || components.is_empty() {
            return Err(bad(
                file,
                start,
                "a deb entry needs Suites and Components (flat repositories are not supported here)",
            ));
        }
        let keys = get("Signed-By").map_or_else(|| default_keys.clone(), signed_by);
        for uri in words("URIs") {
            out.push(ArchiveSource {
                uri: uri.trim_end_matches('/').to_string(),
                suites: suites.clone(),
                components: components.clone(),
                keys: keys.clone(),
                trusted: get("Trusted").is_some_and(|v| v.trim() == "yes"),
                declared: format!("{}:{start}", file.display()),
            });
        }
    }
    Ok(out)
}

/// Split deb822 text into paragraphs of (field, value), with the 1-based
/// line each starts on. Comment lines are dropped; continuation lines are
/// joined with `\n` (a lone `.` is an empty line, as in inline keys).
/// Written by hand: apt allows comments inside paragraphs, which the deb822
/// crates here reject.
fn paragraphs(text: &str) -> Vec<(usize, Vec<(String, String)>)> {
    let mut out: Vec<(usize, Vec<(String, String)>)> = Vec::new();
    let mut cur: Vec<(String, String)> = Vec::new();
    let mut start = 0;
    for (i, line) in text.lines().enumerate() {
        if line.starts_with('#') {
            continue;
        }
        if line.trim().is_empty() {
            if !cur.is_empty() {
                out.push((start, std::mem::take(&mut cur)));
            }
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = cur.last_mut() {
                let l = line.trim();
                v.push('\n');
                v.push_str(if l == "." { "" } else { l });
            }
            continue;
        }
        if cur.is_empty() {
            start = i + 1;
        }
        if let Some((k, v)) = line.split_once(':') {
            cur.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    if !cur.is_empty() {
        out.push((start, cur));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deb822_with_comments_and_two_paragraphs() {
        let text = "Types: deb\n# a comment\nURIs: http://a.invalid/debian\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /k.gpg\n\nTypes: deb-src\nURIs: http://b.invalid\nSuites: x\nComponents: main\n\nTypes: deb\nURIs: http://c.invalid/sec/\nSuites: bookworm-security\nComponents: main contrib\nTrusted: yes\n";
        let v = parse_deb822(text, Path::new("d.sources"), "amd64", &Keys::Files(vec![])).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].uri, "http://a.invalid/debian");
        assert_eq!(v[0].suites, ["bookworm", "bookworm-updates"]);
        assert_eq!(v[0].keys, Keys::Files(vec![PathBuf::from("/k.gpg")]));
        assert!(!v[0].trusted);
        assert_eq!(v[1].uri, "http://c.invalid/sec");
        assert_eq!(v[1].components, ["main", "contrib"]);
        assert!(v[1].trusted);
        assert_eq!(v[1].declared, "d.sources:13");
    }

    #[test]
    fn one_line_with_options() {
        let text = "# comment\ndeb [arch=amd64 signed-by=/k.asc] http://a.invalid/d bookworm main\ndeb-src http://a.invalid/d bookworm main\ndeb [arch=arm64] http://b.invalid bookworm main\ndeb [trusted=yes] file:///srv/r stable main contrib\n";
        let v = parse_one_line(text, Path::new("s.list"), "amd64", &Keys::Files(vec![])).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].keys, Keys::Files(vec![PathBuf::from("/k.asc")]));
        assert!(v[1].trusted);
        assert_eq!(v[1].uri, "file:///srv/r");
        assert_eq!(v[1].declared, "s.list:5");
    }

    #[test]
    fn inline_key_block() {
        let text = "Types: deb\nURIs: http://a.invalid\nSuites: s\nComponents: main\nSigned-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n abc\n -----END PGP PUBLIC KEY BLOCK-----\n";
        let v = parse_deb822(text, Path::new("x.sources"), "amd64", &Keys::Files(vec![])).unwrap();
        match &v[0].keys {
            Keys::Inline(k) => assert!(k.starts_with("-----BEGIN") && k.contains("\n\nabc\n")),
            k => panic!("{k:?}"),
        }
    }

    #[test]
    fn no_host_config_is_empty() {
        let t = tempfile::tempdir().unwrap();
        assert!(host_sources(t.path(), "amd64").unwrap().is_empty());
    }
}
