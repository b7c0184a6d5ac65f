//! One streaming pass over a layer tar: every path with its type, symlink
//! target, and, for the files the lint reads, what they run with.
//!
//! Which files are read (see [`reads`]): every regular file with an exec
//! bit (its `#!` line or ELF headers), every file named like a shared
//! object (`*.so`, `*.so.*`: its `DT_NEEDED`, whatever its mode, since
//! libraries are mapped, not executed, and are often `0644`), and the
//! loader's configuration (`etc/ld.so.conf`, `etc/ld.so.conf.d/*`) as
//! text. Other files are listed, never read. A hard link gets what its
//! target (earlier in the same layer) was found to be.
//!
//! With the layer's path index (`layer::index`: package layers have one),
//! each path is attributed to the package that ships it; the index is read
//! alongside the tar, a line at a time.
//!
//! Memory does not grow with a layer's entries: past [`MAX_PLAIN`]
//! directories and unread files are left out (harmless but for the rare
//! plain entry that replaces a lower layer's symlink or program), and past
//! [`MAX_READ`] the rest (the facts are then marked `truncated`, and the
//! report says so).

use super::LintError;
use super::elf::{self, Content};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{self, BufRead, Read};
use std::path::Path;

/// Largest loader configuration file read.
const MAX_TEXT: u64 = 64 << 10;
/// Plain entries (directories, files not read) kept per layer. Past it
/// they are left out: lookups never end at one, and directories are
/// implied by what lies below them, so they matter only when they replace
/// a symlink or a program of a lower layer.
pub const MAX_PLAIN: usize = 20_000;
/// Other entries (symlinks, files read, whiteouts) kept per layer; past
/// it the layer's facts are incomplete (`truncated`).
pub const MAX_READ: usize = 100_000;

/// What one layer holds, as the lint sees it (stored in the step store,
/// keyed by the layer's digest).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerFacts {
    /// In the layer's order.
    pub entries: Vec<Fact>,
    /// More than [`MAX_READ`] entries to keep: the rest were left out.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

/// One path of a layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fact {
    /// Relative, no leading or trailing `/`.
    pub path: String,
    pub kind: FactKind,
    /// The package that ships it (from the layer's path index).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
}

impl Fact {
    /// A directory or a file not read.
    pub fn is_plain(&self) -> bool {
        match &self.kind {
            FactKind::Dir => true,
            FactKind::File { content, .. } => *content == Content::Unread,
            _ => false,
        }
    }
}

/// The type of a path, or a whiteout of the layers below.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FactKind {
    Dir,
    Symlink(String),
    /// A regular file (or a hard link to one), FIFOs and the like too.
    File {
        exec: bool,
        content: Content,
    },
    /// `.wh.<name>`: the path is removed from the layers below.
    Whiteout,
    /// `.wh..wh..opq`: the directory's children below are removed.
    Opaque,
}

/// Whether the lint reads a file of this path and mode.
pub fn reads(path: &str, mode: u32) -> ReadAs {
    if is_ld_conf(path) {
        ReadAs::Text
    } else if mode & 0o111 != 0 || is_shared_object(path) {
        ReadAs::Head
    } else {
        ReadAs::No
    }
}

/// How [`reads`] reads a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadAs {
    No,
    /// `#!` or ELF headers.
    Head,
    /// The whole (small) file as text.
    Text,
}

/// `libz.so.1`, `libc.so.6`, `_ssl.cpython-311-x86_64-linux-gnu.so`.
pub fn is_shared_object(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.ends_with(".so") || name.contains(".so.")
}

fn is_ld_conf(path: &str) -> bool {
    path == "etc/ld.so.conf" || path.starts_with("etc/ld.so.conf.d/")
}

/// Scan the layer blob `blob` (gzip, zstd or plain tar), attributing paths
/// with its path index `index` when it has one. Memory is bounded by
/// [`MAX_PLAIN`] and [`MAX_READ`], whatever the number of entries.
pub fn scan_layer(blob: &Path, index: Option<&Path>) -> Result<LayerFacts, LintError> {
    let err = |source| LintError::Read {
        layer: blob.display().to_string(),
        source,
    };
    let index_err = |source| LintError::Read {
        layer: index.map(|i| i.display().to_string()).unwrap_or_default(),
        source,
    };
    let mut owners = Owners::open(index).map_err(index_err)?;
    let mut ar = tar::Archive::new(crate::layer::open_blob(blob).map_err(err)?);
    let mut facts = LayerFacts::default();
    let (mut plain, mut read) = (0usize, 0usize);
    // Files read in this layer by path, for its hard links.
    let mut files: BTreeMap<String, usize> = BTreeMap::new();
    for entry in ar.entries().map_err(err)? {
        let mut entry = entry.map_err(err)?;
        let Some(mut fact) = fact(&mut entry, &facts, &files).map_err(err)? else {
            continue;
        };
        let package = owners.of(&fact.path).map_err(index_err)?;
        let (count, cap) = match fact.is_plain() {
            true => (&mut plain, MAX_PLAIN),
            false => (&mut read, MAX_READ),
        };
        *count += 1;
        if *count > cap {
            // Plain entries past their cap only shadow what is below.
            facts.truncated |= cap == MAX_READ;
            continue;
        }
        if let FactKind::File { content, .. } = &fact.kind
            && *content != Content::Unread
        {
            files.insert(fact.path.clone(), facts.entries.len());
        }
        fact.package = package;
        facts.entries.push(fact);
    }
    Ok(facts)
}

/// One tar entry as a fact (`None` for the root itself).
fn fact<R: Read>(
    entry: &mut tar::Entry<R>,
    facts: &LayerFacts,
    files: &BTreeMap<String, usize>,
) -> io::Result<Option<Fact>> {
    let Some(path) = clean(&String::from_utf8_lossy(&entry.path_bytes())) else {
        return Ok(None);
    };
    let (parent, base) = path.rsplit_once('/').unwrap_or(("", &path));
    let at = |p: &str, kind| Fact {
        path: p.to_string(),
        kind,
        package: None,
    };
    if base == ".wh..wh..opq" {
        return Ok(Some(at(parent, FactKind::Opaque)));
    }
    if let Some(hidden) = base.strip_prefix(".wh.") {
        let p = if parent.is_empty() {
            hidden.to_string()
        } else {
            format!("{parent}/{hidden}")
        };
        return Ok(Some(at(&p, FactKind::Whiteout)));
    }
    let h = entry.header();
    let mode = h.mode().unwrap_or(0);
    let exec = mode & 0o111 != 0;
    let link = || -> String {
        entry
            .link_name_bytes()
            .map(|l| String::from_utf8_lossy(&l).into_owned())
            .unwrap_or_default()
    };
    let kind = match h.entry_type() {
        tar::EntryType::Directory => FactKind::Dir,
        tar::EntryType::Symlink => FactKind::Symlink(link()),
        tar::EntryType::Link => {
            let target = clean(&link()).unwrap_or_default();
            let content = match files.get(&target).map(|i| &facts.entries[*i].kind) {
                Some(FactKind::File { content, .. }) => content.clone(),
                _ => Content::Unread,
            };
            FactKind::File { exec, content }
        }
        tar::EntryType::Regular | tar::EntryType::Continuous => {
            let size = entry.size();
            let content = match reads(&path, mode) {
                ReadAs::No => Content::Unread,
                ReadAs::Head => elf::read_content(entry, size)?,
                ReadAs::Text if size <= MAX_TEXT => {
                    let mut s = String::new();
                    entry.read_to_string(&mut s).ok();
                    Content::Text(s)
                }
                ReadAs::Text => Content::Other,
            };
            FactKind::File { exec, content }
        }
        _ => FactKind::File {
            exec: false,
            content: Content::Unread,
        },
    };
    Ok(Some(at(&path, kind)))
}

/// A tar name as a relative path: `./usr/bin/` -> `usr/bin`; `None` for
/// the root.
fn clean(raw: &str) -> Option<String> {
    let parts: Vec<&str> = raw
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// The packages of a layer's paths, from its path index (`[path, kind,
/// mode, uid, gid, what, origin]` per line, in the layer's order), read
/// forward as the layer's entries come: one line in memory.
struct Owners {
    lines: Option<io::Lines<io::BufReader<std::fs::File>>>,
    /// The next line's path and origin, read but not yet matched.
    head: Option<(String, String)>,
}

impl Owners {
    fn open(index: Option<&Path>) -> io::Result<Owners> {
        let lines = match index {
            Some(i) => Some(io::BufReader::new(std::fs::File::open(i)?).lines()),
            None => None,
        };
        Ok(Owners { lines, head: None })
    }

    /// The package that ships `path` (the layer's next entry), if any.
    fn of(&mut self, path: &str) -> io::Result<Option<String>> {
        use std::cmp::Ordering;
        loop {
            if self.head.is_none() {
                let Some(line) = self.lines.as_mut().and_then(Iterator::next) else {
                    return Ok(None);
                };
                let rec: (String, String, u32, u64, u64, String, String) =
                    serde_json::from_str(&line?).map_err(io::Error::other)?;
                let origin = if rec.1 == "dir" { String::new() } else { rec.6 };
                self.head = Some((rec.0, origin));
            }
            let (p, origin) = self.head.as_ref().expect("just read");
            match crate::layer::spool::cmp_paths(p.as_bytes(), path.as_bytes()) {
                Ordering::Less => self.head = None,
                Ordering::Greater => return Ok(None),
                Ordering::Equal => {
                    let o = (!origin.is_empty()).then(|| origin.clone());
                    self.head = None;
                    return Ok(o);
                }
            }
        }
    }
}
